// Package cli implements the mlagent command line: a registry of
// subcommands, each in its own file, sharing one environment (config,
// logger, standard streams).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/mlagent/mlagent/internal/config"
	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/volume"
)

// Exit codes shared by every command.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Env is what a command gets: its streams, the loaded config and a logger.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Config *config.Config
	Log    *slog.Logger
	// Getenv reads the process environment; tests replace it.
	Getenv func(string) string
}

// Command is one subcommand of mlagent.
type Command struct {
	Name    string
	Summary string // one line for `mlagent help`
	// Hidden commands (such as the in-sandbox `init`) are not listed.
	Hidden bool
	// Service commands (the gateway, the syncer, the dashboard, the Slack
	// bot) and those run inside a sandbox log to stderr, where their
	// supervisor reads it. The others log to $MLAGENT_HOME/logs/mlagent.log
	// and say only warnings on stderr, once each, in a line of their own:
	// their output is the user's (a conversation, a command's).
	Service bool
	// OwnSignals commands are left alone with SIGINT and SIGTERM: Main
	// only cancels their ctx on SIGTERM and never ends them early. The
	// gateway drains its streams on its own terms; init (PID 1), agent
	// and podexec run inside a sandbox, which ends them itself.
	OwnSignals bool
	// Interactive commands (the chat) give Ctrl-C a meaning of their own
	// (interrupt the turn); for them only SIGTERM starts the stop.
	Interactive bool
	// Run executes the command with the arguments after its name and
	// returns the process exit code.
	Run func(ctx context.Context, env *Env, args []string) int
}

var commands = map[string]*Command{}

// register adds a command; each command file calls it from init.
func register(c *Command) {
	if _, dup := commands[c.Name]; dup {
		panic("cli: duplicate command " + c.Name)
	}
	commands[c.Name] = c
}

// Main runs mlagent with the given arguments (without the program name).
func Main(args []string) int {
	env := &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	var c *Command
	if len(args) > 0 {
		c = commands[args[0]]
	}
	if c != nil && c.OwnSignals {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		return run(ctx, env, args)
	}
	return runStoppable(env, c, args)
}

func run(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 && args[0] == "help" {
			return run(ctx, env, []string{args[1], "--help"})
		}
		usage(env.Stdout)
		return ExitOK
	}
	if args[0] == "--version" || args[0] == "version" {
		fmt.Fprintln(env.Stdout, "mlagent", Version)
		return ExitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "mlagent: unknown command %q\n\n", args[0])
		usage(env.Stderr)
		return ExitUsage
	}
	if env.Config == nil {
		cfg, err := config.Load(env.Getenv)
		if err != nil {
			fmt.Fprintf(env.Stderr, "mlagent: %v\n", err)
			return ExitUsage
		}
		env.Config = cfg
	}
	if env.Log == nil {
		level := env.Config.LogLevel
		if level == "" {
			level = "info"
		}
		if cmd.Service {
			env.Log = newLogger(env.Stderr, level)
		} else {
			env.Log = newUserLogger(env.Stderr, "mlagent "+cmd.Name, env.Config.LogsDir(), level)
		}
	}
	return cmd.Run(ctx, env, args[1:])
}

// Version is set at build time with -ldflags "-X .../cli.Version=…".
var Version = "dev"

func usage(w io.Writer) {
	fmt.Fprint(w, `mlagent: a Claude agent that trains and runs open models in an isolated sandbox,
with every secret kept outside it.

Usage: mlagent <command> [flags] [args]

Commands:
`)
	names := make([]string, 0, len(commands))
	for n, c := range commands {
		if !c.Hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].Summary)
	}
	fmt.Fprint(w, `
Run "mlagent <command> --help" for a command's flags.
State lives in $MLAGENT_HOME (default $XDG_DATA_HOME/mlagent); config in
$XDG_CONFIG_HOME/mlagent/config.toml (flags > environment > config file).
`)
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// newFlagSet returns a flag set whose --help prints the command's usage
// line, its description and its flags with their defaults.
func newFlagSet(env *Env, name, usageLine, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: mlagent %s\n\n%s\n", usageLine, strings.TrimSpace(description))
		var any bool
		fs.VisitAll(func(*flag.Flag) { any = true })
		if any {
			fmt.Fprintln(out, "\nFlags:")
			printFlags(out, fs)
		}
	}
	return fs
}

// printFlags lists the flags as they are written: --name (or -x for one
// letter), as in the README, rather than flag.PrintDefaults' -name.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		typ, usage := flag.UnquoteUsage(f)
		line := "  " + dash + f.Name
		if typ != "" {
			line += " " + typ
		}
		line += "\n    \t" + strings.ReplaceAll(usage, "\n", "\n    \t")
		if d := f.DefValue; d != "" && d != "false" && d != "0" && d != "[]" {
			if typ == "string" {
				d = strconvQuote(d)
			}
			line += " (default " + d + ")"
		}
		fmt.Fprintln(w, line)
	})
}

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }

// parseFlags parses args and maps the outcome to an exit code: -1 means
// "go on", anything else is the code to return (0 after --help). A bad
// flag is one line and a pointer to --help, not the whole help.
func parseFlags(fs *flag.FlagSet, args []string, env *Env) int {
	usage := fs.Usage
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.Usage = usage
	switch {
	case err == nil:
		return -1
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(env.Stdout) // help asked for is output, not an error
		usage()
		return ExitOK
	default:
		msg := longDashes().ReplaceAllString(err.Error(), "$1--$2")
		fmt.Fprintf(env.Stderr, "mlagent %s: %s; see mlagent %s --help\n", fs.Name(), msg, fs.Name())
		return ExitUsage
	}
}

// longDashes finds the flag package's "-name" for a long flag, which the
// help and the README write "--name".
// Compiled on first use: every sandbox's PID 1 is this binary too.
var longDashes = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(^|[ :])-([A-Za-z][A-Za-z0-9-]+)`) })

// trackioDir is the host directory of the Trackio volume, which the
// dashboard and the syncer read.
func trackioDir(cfg *config.Config) string {
	return filepath.Join(cfg.VolumesDir(), volume.Trackio)
}

// warnTrackioInCluster says, for a dashboard or syncer reading the local
// Trackio volume while sandboxes run in a cluster, that the runs' metrics
// are not there: reading a cluster's Trackio claim from this host is not
// done yet.
func warnTrackioInCluster(env *Env, cmd string) {
	if launch.IsKubernetes(env.Config.Sandbox.Backend) {
		fmt.Fprintf(env.Stderr, "mlagent %s: the kubernetes backend keeps the Trackio volume in the cluster, not in %s; run the %s Deployment of `mlagent deploy kubernetes`, or copy the databases here first (mlagent volume get trackio / DIR, then --dir DIR/trackio)\n",
			cmd, trackioDir(env.Config), cmd)
	}
}
