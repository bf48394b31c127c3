package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sanitize"
	"github.com/mlagent/mlagent/internal/store"
)

func init() {
	register(&Command{
		Name:    "sandbox",
		Summary: "run commands in isolated sandboxes (run, ls, exec, kill, rm)",
		Run:     runSandbox,
	})
}

const sandboxHelp = `Sandboxes are isolated environments (bubblewrap locally): a non-root user, no
capabilities, the host's /usr read-only (or an OCI image's root with --image),
a private /tmp, a persisted /workspace, and named volumes (default: data at /data, trackio at ~/.cache/huggingface/trackio).
The only network of "sandbox run" is an in-process gateway that holds the real
keys (package indexes through its allowlist, the Hugging Face Hub with the token
added outside); inside there is only a per-sandbox token, revoked when it ends.
--no-gateway leaves loopback only.

  mlagent sandbox run [flags] -- CMD...   create, run CMD, stream it, clean up; exits with CMD's code
  mlagent sandbox ls                      list the sandboxes that run (or are starting)
  mlagent sandbox exec NAME -- CMD...     run CMD in a running sandbox (from any terminal)
  mlagent sandbox kill NAME               terminate a sandbox and every process in it
  mlagent sandbox rm NAME                 delete a terminated sandbox's workspace

A sandbox whose CLI was killed (kill -9) dies with it; the next mlagent command
revokes its token and removes its record, cgroups and an empty workspace. A
workspace with files stays (a session's always) until "sandbox rm NAME".

Example:
  mlagent sandbox run -- python3 -c "print(1)"
  mlagent sandbox run --name work --gpu=optional -- python3 train.py
  mlagent sandbox run --image python:3.12-slim -- python3 -c "import sys; print(sys.version)"`

func runSandbox(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(env.Stdout, "Usage: mlagent sandbox run|ls|exec|kill|rm ...\n\n"+sandboxHelp)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "run":
		return sandboxRun(ctx, env, rest)
	case "ls", "list":
		return sandboxLs(ctx, env, rest)
	case "exec":
		return sandboxExec(ctx, env, rest)
	case "kill", "terminate":
		return sandboxKill(ctx, env, rest)
	case "rm", "remove":
		return sandboxRm(ctx, env, rest)
	}
	fmt.Fprintf(env.Stderr, "mlagent sandbox: unknown subcommand %q\n\n%s\n", sub, sandboxHelp)
	return ExitUsage
}

// openBackend opens the store and the configured backend; close releases them.
func openBackend(ctx context.Context, env *Env) (sandbox.Backend, func(), error) {
	db, err := store.Open(ctx, env.Config.StorePath())
	if err != nil {
		return nil, nil, err
	}
	bin, err := os.Executable()
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	b, err := launch.NewBackend(ctx, env.Config, db, bin, env.Log)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	launch.ReapDead(ctx, db, b, env.Log)
	return b, func() { db.Close() }, nil
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// gpuFlag is --gpu (required), --gpu=optional, --gpu=none, or a count
// and type for a cluster (--gpu A100:2).
type gpuFlag struct {
	sandbox.GPU
	mode sandbox.GPUMode
}

func (g *gpuFlag) String() string   { return g.GPU.String() }
func (g *gpuFlag) IsBoolFlag() bool { return true }
func (g *gpuFlag) Set(v string) (err error) {
	g.GPU, err = sandbox.ParseGPU(v)
	g.mode = g.GPU.Mode
	return err
}

func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("duration %q: want a Go duration like 30m", s)
	}
	return d, nil
}

func sandboxRun(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "sandbox run", "sandbox run [flags] -- CMD...",
		"Create a sandbox, run CMD in it with this terminal's input and output, and\nterminate it; exits with CMD's exit code.")
	name := fs.String("name", "", "sandbox name (default: random); a named sandbox keeps its /workspace")
	var volumes, envs listFlag
	fs.Var(&volumes, "volume", "mount a named volume, VOLUME:/path (repeatable; default data:/data and trackio:~/.cache/huggingface/trackio)")
	fs.Var(&envs, "env", "set KEY=VALUE inside (repeatable)")
	var gpu gpuFlag
	fs.Var(&gpu, "gpu", "use the host's NVIDIA GPUs: --gpu (required) or --gpu=optional")
	timeout := fs.String("timeout", env.Config.Sandbox.Timeout, "wall-clock limit, e.g. 2h (config sandbox.timeout)")
	idle := fs.String("idle-timeout", env.Config.Sandbox.IdleTimeout, "end after this long with no command running (config sandbox.idle_timeout)")
	keep := fs.Bool("keep", false, "keep the workspace of an unnamed sandbox after it ends")
	noGateway := fs.Bool("no-gateway", false, "no gateway: loopback only inside, no pip, no Hugging Face Hub")
	img := fs.String("image", env.Config.Sandbox.Image, `OCI image to run on (registry reference, OCI layout directory or archive; "mlagent image --help"); "" = the host's /usr (config sandbox.image)`)
	var limits limitFlags
	limits.register(fs, env.Config)
	if code := parseFlags(fs, args, env); code >= 0 {
		return code
	}
	argv := fs.Args()
	if len(argv) == 0 {
		fmt.Fprintln(env.Stderr, "mlagent sandbox run: no command; usage: mlagent sandbox run [flags] -- CMD...")
		return ExitUsage
	}
	spec := sandbox.Spec{Name: *name, GPU: gpu.mode, GPUCount: gpu.Count, GPUType: gpu.Type, Env: map[string]string{}, Image: *img}
	var err error
	if spec.Timeout, err = parseDuration(*timeout); err == nil {
		spec.IdleTimeout, err = parseDuration(*idle)
	}
	if err == nil {
		spec.CPUs, spec.MemoryBytes, err = limits.values()
	}
	if err == nil {
		spec.Pids, err = limits.pidsLimit()
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent sandbox run: %v\n", err)
		return ExitUsage
	}
	for _, kv := range envs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			fmt.Fprintf(env.Stderr, "mlagent sandbox run: --env %q: want KEY=VALUE\n", k)
			return ExitUsage
		}
		spec.Env[k] = v
	}
	if len(volumes) == 0 {
		spec.Volumes = sandbox.DefaultMounts()
	}
	for _, v := range volumes {
		vol, p, ok := strings.Cut(v, ":")
		if !ok {
			fmt.Fprintf(env.Stderr, "mlagent sandbox run: --volume %q: want VOLUME:/path\n", v)
			return ExitUsage
		}
		if strings.HasPrefix(p, "~/") {
			p = sandbox.Home + p[1:]
		}
		spec.Volumes = append(spec.Volumes, sandbox.Mount{Volume: vol, Path: p})
	}
	if err := spec.Validate(); err != nil {
		fmt.Fprintf(env.Stderr, "mlagent sandbox run: %v\n", err)
		return ExitUsage
	}
	if len(volumes) > 0 {
		if code := createMissingVolumes(ctx, env, env.Config.Sandbox.Backend, "sandbox run", spec.Volumes); code >= 0 {
			return code
		}
	}
	// Ctrl-C ends the command and the sandbox cleanly.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	sb, b, cleanup, err := createRunSandbox(ctx, env, spec, *noGateway)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent sandbox run: %v\n", err)
		return ExitFailure
	}
	defer func() {
		tctx := context.WithoutCancel(ctx)
		// For a gateway sandbox this also revokes its token.
		if err := sb.Terminate(tctx); err != nil {
			fmt.Fprintf(env.Stderr, "mlagent sandbox run: %v\n", err)
		}
		if r, ok := b.(sandbox.Remover); ok && *name == "" && !*keep {
			r.Remove(tctx, sb.Name())
		}
		cleanup()
	}()
	code, err := sb.Exec(ctx, sandbox.ExecRequest{Argv: argv, Stdin: env.Stdin, Stdout: env.Stdout, Stderr: env.Stderr})
	explainOOM(ctx, env, "sandbox run", b, sb.Name(), code)
	return execExit(ctx, env, "sandbox run", b, sb.Name(), argv, code, err)
}

// Exit codes for a command the sandbox's end cut short, as timeout(1)
// and a SIGKILL would give.
const (
	ExitTimedOut = 124
	ExitKilled   = 137
)

// killedElsewhere reports whether a sandbox whose connection was lost
// was terminated by another process (mlagent sandbox kill), which forgets
// its record; the lost connection can reach us a moment before the
// record goes.
func killedElsewhere(ctx context.Context, b sandbox.Backend, name string) bool {
	ctx = context.WithoutCancel(ctx)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := b.Get(ctx, name); errors.Is(err, sandbox.ErrNotFound) {
			return true
		}
	}
	return false
}

// execExit maps how a command in a sandbox ended to the exit code, saying
// in words why it was cut short: the sandbox's time limit (124), or the
// sandbox ended by mlagent sandbox kill (137).
func execExit(ctx context.Context, env *Env, cmd string, b sandbox.Backend, name string, argv []string, code int, err error) int {
	switch {
	case err == nil:
		return code
	case errors.Is(err, context.Canceled):
		return 130
	case errors.Is(err, sandbox.ErrTimedOut):
		fmt.Fprintf(env.Stderr, "mlagent %s: %s was stopped: %v\n", cmd, sanitize.Line(argv[0], 80), err)
		return ExitTimedOut
	case (errors.Is(err, sandbox.ErrNotRunning) || strings.Contains(err.Error(), "lost the sandbox")) && killedElsewhere(ctx, b, name):
		fmt.Fprintf(env.Stderr, "mlagent %s: sandbox %s was killed (mlagent sandbox kill) while %s ran\n", cmd, name, sanitize.Line(argv[0], 80))
		return ExitKilled
	case errors.Is(err, sandbox.ErrNotRunning):
		fmt.Fprintf(env.Stderr, "mlagent %s: sandbox %s ended while %s ran\n", cmd, name, sanitize.Line(argv[0], 80))
		return ExitKilled
	}
	fmt.Fprintf(env.Stderr, "mlagent %s: %v\n", cmd, err)
	if code > 0 {
		return code
	}
	return ExitFailure
}

// explainOOM says so when a command was SIGKILLed and the sandbox's
// memory limit is why: a bare 137 tells the user nothing.
func explainOOM(ctx context.Context, env *Env, cmd string, b sandbox.Backend, name string, code int) {
	if code != 128+int(syscall.SIGKILL) {
		return
	}
	infos, _ := b.List(ctx)
	for _, in := range infos {
		if in.Name == name && in.OOMKills > 0 {
			fmt.Fprintf(env.Stderr, "mlagent %s: killed for using more memory than the sandbox's limit (--memory)\n", cmd)
		}
	}
}

// createRunSandbox creates the sandbox of `sandbox run`: behind an
// in-process gateway holding the real keys (the sandbox gets only its own
// token, revoked when it terminates), or with loopback only.
func createRunSandbox(ctx context.Context, env *Env, spec sandbox.Spec, noGateway bool) (sandbox.Sandbox, sandbox.Backend, func(), error) {
	if noGateway {
		b, closeDB, err := openBackend(ctx, env)
		if err != nil {
			return nil, nil, nil, err
		}
		if err := sandbox.PrepareImage(ctx, b, spec.Image, env.Stderr); err != nil {
			closeDB()
			return nil, nil, nil, err
		}
		sb, err := b.Create(ctx, spec)
		if err != nil {
			closeDB()
			return nil, nil, nil, err
		}
		return sb, b, closeDB, nil
	}
	keys, err := launch.ResolveKeys(env.Config, env.Getenv)
	if err != nil {
		return nil, nil, nil, err
	}
	bin, err := os.Executable()
	if err != nil {
		return nil, nil, nil, err
	}
	opts := keys.Options(env.Config, env.Log, "")
	opts.Binary = bin
	host, err := launch.Start(ctx, opts)
	if err != nil {
		return nil, nil, nil, err
	}
	sb, err := host.NewSandbox(ctx, launch.SandboxRequest{
		Name: spec.Name, Volumes: spec.Volumes, GPU: spec.GPU, GPUCount: spec.GPUCount, GPUType: spec.GPUType, Env: spec.Env, Labels: spec.Labels,
		Timeout: spec.Timeout, IdleTimeout: spec.IdleTimeout, CPUs: spec.CPUs, MemoryBytes: spec.MemoryBytes,
		Pids:  spec.Pids,
		Image: spec.Image, Progress: env.Stderr,
	})
	if err != nil {
		host.Close()
		return nil, nil, nil, err
	}
	return sb, host.Backend(), func() { host.Close() }, nil
}

func sandboxLs(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "sandbox ls", "sandbox ls", "List sandboxes: running, or starting (being created by another process). Dead ones (their CLI was killed) are reaped by every command before it lists.")
	if code := parseFlags(fs, args, env); code >= 0 {
		return code
	}
	b, closeDB, err := openBackend(ctx, env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent sandbox ls: %v\n", err)
		return ExitFailure
	}
	defer closeDB()
	infos, err := b.List(ctx)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent sandbox ls: %v\n", err)
		return ExitFailure
	}
	if len(infos) == 0 {
		fmt.Fprintln(env.Stdout, "no sandboxes")
		return ExitOK
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tCREATED\tGPU\tLABELS\tNOTES")
	for _, in := range infos {
		var labels []string
		for k, v := range in.Labels {
			labels = append(labels, k+"="+v)
		}
		sort.Strings(labels)
		gpu := "-"
		if in.GPU {
			gpu = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", sanitize.Line(in.Name, 0), in.State, in.Created.Local().Format(time.DateTime), gpu,
			sanitize.Line(strings.Join(labels, ","), 0), sanitize.Line(strings.Join(in.Notes, "; "), 0))
	}
	tw.Flush()
	return ExitOK
}

func sandboxExec(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "sandbox exec", "sandbox exec NAME -- CMD...", "Run CMD in a running sandbox with this terminal's input and output.")
	var envs listFlag
	fs.Var(&envs, "env", "set KEY=VALUE for CMD (repeatable)")
	dir := fs.String("dir", "", "working directory inside (default /workspace)")
	if code := parseFlags(fs, args, env); code >= 0 {
		return code
	}
	rest := fs.Args()
	if len(rest) > 0 && rest[0] != "--" {
		// NAME came first: flags may follow it.
		name := rest[0]
		if code := parseFlags(fs, rest[1:], env); code >= 0 {
			return code
		}
		rest = append([]string{name}, fs.Args()...)
	}
	if len(rest) < 2 {
		fmt.Fprintln(env.Stderr, "usage: mlagent sandbox exec NAME -- CMD...")
		return ExitUsage
	}
	name, argv := rest[0], rest[1:]
	req := sandbox.ExecRequest{Argv: argv, Dir: *dir, Env: map[string]string{}, Stdin: env.Stdin, Stdout: env.Stdout, Stderr: env.Stderr}
	for _, kv := range envs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			fmt.Fprintln(env.Stderr, "mlagent sandbox exec: --env wants KEY=VALUE")
			return ExitUsage
		}
		req.Env[k] = v
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	b, closeDB, err := openBackend(ctx, env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent sandbox exec: %v\n", err)
		return ExitFailure
	}
	defer closeDB()
	sb, err := b.Get(ctx, name)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent sandbox exec: %v\n", err)
		return ExitFailure
	}
	code, err := sb.Exec(ctx, req)
	explainOOM(ctx, env, "sandbox exec", b, name, code)
	return execExit(ctx, env, "sandbox exec", b, name, req.Argv, code, err)
}

func sandboxKill(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "sandbox kill", "sandbox kill NAME...", "Terminate sandboxes and every process in them (dead ones are just forgotten).")
	if code := parseFlags(fs, args, env); code >= 0 {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(env.Stderr, "usage: mlagent sandbox kill NAME...")
		return ExitUsage
	}
	b, closeDB, err := openBackend(ctx, env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent sandbox kill: %v\n", err)
		return ExitFailure
	}
	defer closeDB()
	code := ExitOK
	for _, name := range fs.Args() {
		sb, err := b.Get(ctx, name)
		if sb == nil || (err != nil && !errors.Is(err, sandbox.ErrNotRunning)) {
			fmt.Fprintf(env.Stderr, "mlagent sandbox kill: %v\n", err)
			code = ExitFailure
			continue
		}
		if err := sb.Terminate(ctx); err != nil {
			fmt.Fprintf(env.Stderr, "mlagent sandbox kill: %v\n", err)
			code = ExitFailure
			continue
		}
		fmt.Fprintf(env.Stdout, "terminated %s\n", name)
	}
	return code
}

func sandboxRm(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "sandbox rm", "sandbox rm NAME...", "Delete the persisted workspace of terminated sandboxes.")
	if code := parseFlags(fs, args, env); code >= 0 {
		return code
	}
	b, closeDB, err := openBackend(ctx, env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent sandbox rm: %v\n", err)
		return ExitFailure
	}
	defer closeDB()
	r, ok := b.(sandbox.Remover)
	if !ok {
		fmt.Fprintln(env.Stderr, "mlagent sandbox rm: this backend keeps no workspaces")
		return ExitFailure
	}
	code := ExitOK
	for _, name := range fs.Args() {
		if err := r.Remove(ctx, name); err != nil {
			fmt.Fprintf(env.Stderr, "mlagent sandbox rm: %v\n", err)
			code = ExitFailure
			continue
		}
		fmt.Fprintf(env.Stdout, "removed %s\n", name)
	}
	return code
}
