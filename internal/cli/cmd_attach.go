package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mlagent/mlagent/internal/chat"
	"github.com/mlagent/mlagent/internal/sanitize"
	"github.com/mlagent/mlagent/internal/sessionhost"
)

func init() {
	register(&Command{
		Interactive: true,
		Name:        "attach",
		Summary:     "come back to a session left running (run --detach, or leaving while a job runs)",
		Run:         runAttach,
	})
}

const attachHelp = `Re-attaches the chat to a session that is still running in its sandbox: one
started with "mlagent run --detach", or left running when you exited while a
background job (training) ran. You see what happened while you were away (the
recent events), the jobs still running and any question or approval waiting.
Without SESSION, the most recent running session.

Leave again the same way (/exit asks while jobs run; /detach leaves at once);
"stop it" ends the session and its sandbox. "mlagent logs SESSION JOB" follows a
job's output without attaching.`

func runAttach(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "attach", "attach [flags] [SESSION]", attachHelp)
	var allow allowFlags
	allow = append(allow, env.Config.Run.Allow...)
	fs.Var(&allow, "allow", `allow without asking (repeatable): "hub:push you/*", "git:push"`)
	dashboard := fs.String("dashboard-listen", env.Config.Dashboard.Listen, `live dashboard address (loopback); "off" disables it`)
	pos, code := parseInterleaved(fs, args, env)
	if code >= 0 {
		return code
	}
	if len(pos) > 1 {
		fmt.Fprintf(env.Stderr, "mlagent attach: one SESSION at most, got %q; see mlagent attach --help\n", pos)
		return ExitUsage
	}
	id := ""
	if len(pos) == 1 {
		id = pos[0]
	}
	if id == "" || id == "latest" {
		running := runningSessions(env)
		if len(running) == 0 {
			fmt.Fprintln(env.Stderr, "mlagent attach: no session is running; mlagent sessions lists them, mlagent resume ID reopens one")
			return ExitFailure
		}
		id = running[0]
	}
	conn, err := sessionhost.Dial(env.Config, id)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent attach: session %s is not running (%v); mlagent resume %s reopens it\n", sanitize.Line(id, 80), shortErr(err), sanitize.Line(id, 80))
		return ExitFailure
	}
	cf := chatFlags{permMode: "default", allow: allow}
	perm, err := cf.policy()
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent attach: %v\n", err)
		return ExitUsage
	}
	dashURL, stopDashboard := chatDashboard(env, *dashboard, env.Log.With("cmd", "attach", "session", id))
	defer stopDashboard()
	interrupts, stopInterrupts := ctrlC()
	defer stopInterrupts()
	out := env.Stdout
	tty := writerIsTerminal(out)
	header := "mlagent · attached to session " + id
	if dashURL != "" {
		header += " · live metrics: " + dashURL
	}
	res, err := chat.Run(ctx, chat.Options{
		AgentIn: sessionhost.Input(conn), AgentOut: conn, CanDetach: true,
		In: env.Stdin, Out: out, Err: env.Stderr, TTY: tty,
		Editor: tty && readerIsTerminal(env.Stdin), HistoryPath: env.Config.HistoryPath(),
		NoColor: env.Getenv("NO_COLOR") != "", Header: header + " · /help",
		Permissions: perm, DashboardURL: dashURL, Interrupt: interrupts,
		BudgetUSD: -1, // the session host's, not known here
		AttachDir: cwd(),
	})
	conn.Close()
	if res.Detached {
		fmt.Fprintf(out, "session %s left running · mlagent attach %s · mlagent logs %s\n", id, id, id)
		return ExitOK
	}
	// The host ends the sandbox once the agent is gone; wait for it, so
	// that nothing is left running when attach returns.
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if !sessionhost.Running(env.Config, id) {
			break
		}
	}
	fmt.Fprintf(out, "session %s saved · mlagent resume %s\n", id, id)
	switch {
	case errors.Is(err, chat.ErrInterrupted):
		return ExitInterrupted
	case err != nil && !errors.Is(err, chat.ErrAgentExited):
		fmt.Fprintf(env.Stderr, "mlagent attach: %s\n", sanitize.Text(err.Error()))
		return ExitFailure
	}
	return ExitOK
}

// runningSessions are the sessions whose host answers, newest first.
func runningSessions(env *Env) []string {
	socks, _ := filepath.Glob(filepath.Join(filepath.Dir(env.Config.SessionSocket("x")), "s-*.sock"))
	var ids []string
	for _, s := range socks {
		id := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(s), "s-"), ".sock")
		if sessionhost.Running(env.Config, id) {
			ids = append(ids, id)
		}
	}
	// Session ids begin with their start time.
	sort.Sort(sort.Reverse(sort.StringSlice(ids)))
	return ids
}

func shortErr(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

// ctrlC delivers SIGINT (Ctrl-C where the terminal is not the editor's)
// to a chat; a press the chat has not yet taken is not queued twice.
func ctrlC() (<-chan struct{}, func()) {
	interrupts := make(chan struct{}, 1)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	go func() {
		for range sig {
			select {
			case interrupts <- struct{}{}:
			default:
			}
		}
	}()
	return interrupts, func() { signal.Stop(sig) }
}
