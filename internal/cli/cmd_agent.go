package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/mlagent/mlagent/internal/agent"
	"github.com/mlagent/mlagent/internal/models"
	"github.com/mlagent/mlagent/internal/permission"
	"github.com/mlagent/mlagent/internal/sandbox"
)

func init() {
	register(&Command{
		OwnSignals: true,
		Name:       "agent",
		Service:    true,
		Summary:    "run the agent engine (inside a sandbox; speaks JSON lines on stdio)",
		Hidden:     true,
		Run:        runAgent,
	})
}

const agentHelp = `Runs the agent loop. It is started inside the sandbox by "mlagent run"; it reads
protocol inputs (user_message, answer, approval, interrupt, shutdown) as JSON lines on
stdin and writes events on stdout, one JSON object a line (docs/protocol.md).
Logs go to stderr.

Environment: ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY (the gateway and this
sandbox's token), HF_ENDPOINT and HF_TOKEN (the gateway's Hugging Face route),
TRACKIO_DIR. The transcript is <sessions-dir>/<session>.jsonl, written before
every model request; --resume continues it.`

func runAgent(ctx context.Context, env *Env, args []string) int {
	flags := newFlagSet(env, "agent", "agent [flags]", agentHelp)
	o := agent.RunOptions{DataDir: sandbox.DataMount, Getenv: env.Getenv, In: env.Stdin, Out: env.Stdout, Log: env.Log}
	flags.StringVar(&o.Model, "model", cmp.Or(env.Config.Run.Model, models.Fallback), "model id")
	flags.StringVar(&o.Session, "session", "", "session id (a new one if empty)")
	flags.StringVar(&o.SessionsDir, "sessions-dir", sandbox.SessionsDir, "directory of session transcripts")
	flags.BoolVar(&o.Resume, "resume", false, "continue the transcript of --session")
	flags.IntVar(&o.MaxTurns, "max-turns", env.Config.Run.MaxTurns, "most model requests per user message")
	flags.StringVar(&o.SkillsDir, "skills-dir", sandbox.SkillsDir, "folder of user skills (each a folder with SKILL.md)")
	flags.StringVar(&o.Workdir, "workdir", sandbox.Workspace, "working directory of the tools")
	flags.Int64Var(&o.MaxTokens, "max-tokens", 16384, "most output tokens per model response")
	flags.StringVar(&o.SystemExtra, "system-extra", "", "text appended to the system prompt")
	mode := flags.String("permission-mode", "default", "default, ask-all (each command waits for an approval input) or bypass")
	if code := parseFlags(flags, args, env); code >= 0 {
		return code
	}
	m, err := permission.ParseMode(*mode)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent agent: %v\n", err)
		return ExitUsage
	}
	o.AskBeforeBash = m == permission.AskAll
	if flags.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "mlagent agent: unexpected arguments %q\n", flags.Args())
		return ExitUsage
	}
	// Not dumpable: the tools' commands run as the agent's user, and would
	// otherwise open its stdout through /proc/<pid>/fd/1 (the host's end
	// of the protocol) to write events of their own, ptrace it, or read
	// its memory. Commands it starts are dumpable again after execve, and
	// get no descriptor of it but the stdio the tools give them.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		fmt.Fprintf(env.Stderr, "mlagent agent: not dumpable: %v\n", err)
		return ExitFailure
	}
	if err := agent.Run(ctx, o); err != nil {
		fmt.Fprintf(env.Stderr, "mlagent agent: %v\n", err)
		if errors.Is(err, agent.ErrBadSession) {
			return ExitUsage
		}
		return ExitFailure
	}
	return ExitOK
}
