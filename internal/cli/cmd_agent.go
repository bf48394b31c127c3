package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/mlagent/mlagent/internal/agent"
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/skills"
	"github.com/mlagent/mlagent/internal/tools"
)

func init() {
	register(&Command{
		Name:    "agent",
		Summary: "run the agent engine (inside a sandbox; speaks JSON lines on stdio)",
		Hidden:  true,
		Run:     runAgent,
	})
}

const agentHelp = `Runs the agent loop. It is started inside the sandbox by "mlagent run"; it reads
protocol inputs (user_message, answer, interrupt, shutdown) as JSON lines on
stdin and writes events on stdout, one JSON object a line (docs/protocol.md).
Logs go to stderr.

Environment: ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY (the gateway and this
sandbox's token), HF_ENDPOINT and HF_TOKEN (the gateway's Hugging Face route),
TRACKIO_DIR. The transcript is <sessions-dir>/<session>.jsonl, written before
every model request; --resume continues it.`

func runAgent(ctx context.Context, env *Env, args []string) int {
	flags := newFlagSet(env, "agent", "agent [flags]", agentHelp)
	model := flags.String("model", env.Config.Run.Model, "model id")
	session := flags.String("session", "", "session id (a new one if empty)")
	sessionsDir := flags.String("sessions-dir", "/data/sessions", "directory of session transcripts")
	resume := flags.Bool("resume", false, "continue the transcript of --session")
	maxTurns := flags.Int("max-turns", env.Config.Run.MaxTurns, "most model requests per user message")
	skillsDir := flags.String("skills-dir", "/data/skills", "folder of user skills (each a folder with SKILL.md)")
	workdir := flags.String("workdir", "/workspace", "working directory of the tools")
	maxTokens := flags.Int64("max-tokens", 16384, "most output tokens per model response")
	systemExtra := flags.String("system-extra", "", "text appended to the system prompt")
	if code := parseFlags(flags, args, env); code >= 0 {
		return code
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "mlagent agent: unexpected arguments %q\n", flags.Args())
		return ExitUsage
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(env.Stderr, "mlagent agent: "+format+"\n", a...)
		return ExitFailure
	}
	if *resume && *session == "" {
		fmt.Fprintln(env.Stderr, "mlagent agent: --resume needs --session")
		return ExitUsage
	}
	if *session == "" {
		*session = newSessionID()
	}
	tpath, err := agent.TranscriptPath(*sessionsDir, *session)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent agent: %v\n", err)
		return ExitUsage
	}
	var history []agent.Message
	if *resume {
		if history, err = agent.LoadTranscript(tpath); err != nil {
			return fail("resume: %v", err)
		}
	} else if st, err := os.Stat(tpath); err == nil && st.Size() > 0 {
		return fail("session %s already has a transcript at %s; pass --resume to continue it", *session, tpath)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fail("%v", err)
	}
	if st, err := os.Stat(*workdir); err != nil || !st.IsDir() {
		return fail("workdir %s is not a directory", *workdir)
	}
	tr, err := agent.OpenTranscript(tpath)
	if err != nil {
		return fail("%v", err)
	}
	defer tr.Close()
	resumed := len(history)
	for _, m := range agent.Repair(history) {
		if err := tr.AppendMessage(m); err != nil {
			return fail("%v", err)
		}
		history = append(history, m)
	}

	log := env.Log.With("session", *session)
	if env.Getenv("ANTHROPIC_API_KEY") == "" {
		log.Warn("ANTHROPIC_API_KEY is empty; the gateway will refuse requests")
	}
	set, errs := skills.Load(*skillsDir)
	for _, e := range errs {
		log.Warn("skill not loaded", "err", e)
	}
	shell, err := tools.NewShell(*workdir, filepath.Join(*sessionsDir, *session+".shell"))
	if err != nil {
		return fail("%v", err)
	}
	defer shell.Close() // background jobs end with the agent
	files := &tools.Files{Dir: *workdir}

	out := protocol.NewWriter(env.Stdout)
	sess := &agent.Session{ID: *session, Model: *model, Resumed: resumed, Out: out, Log: log}
	todo := &tools.TodoTool{OnChange: func(items []protocol.TodoItem) {
		sess.Emit(protocol.Event{Type: protocol.EventTodo, Items: items})
	}}
	reg := tools.NewRegistry(
		&tools.BashTool{Shell: shell},
		&tools.JobsTool{Shell: shell},
		&tools.ReadTool{Files: files},
		&tools.WriteTool{Files: files},
		&tools.EditTool{Files: files},
		&tools.GlobTool{Files: files},
		&tools.GrepTool{Files: files},
		todo,
		&tools.AskUserTool{Asker: sess},
		&tools.HFSearchTool{Endpoint: hfEndpoint(env.Getenv), Token: env.Getenv("HF_TOKEN")},
		&tools.SkillTool{Skills: set},
	)
	system := agent.SystemPrompt(agent.PromptOptions{
		Workdir: *workdir, DataDir: "/data", TrackioDir: env.Getenv("TRACKIO_DIR"),
		Skills: set.All(), Extra: *systemExtra,
	})
	a, err := agent.New(agent.Config{
		BaseURL: env.Getenv("ANTHROPIC_BASE_URL"), APIKey: env.Getenv("ANTHROPIC_API_KEY"),
		Model: *model, MaxTokens: *maxTokens, MaxTurns: *maxTurns, System: system, Tools: reg,
		SessionID: *session, Transcript: tr, History: history, Emit: sess.Emit, Log: log,
	})
	if err != nil {
		return fail("%v", err)
	}
	sess.Agent = a
	log.Info("agent started", "model", *model, "transcript", tpath, "resumed_messages", resumed, "tools", len(reg.Tools()), "skills", len(set.All()))
	if err := sess.Serve(ctx, env.Stdin); err != nil && !errors.Is(err, context.Canceled) {
		return fail("%v", err)
	}
	cost, ratio, n := a.Usage()
	log.Info("agent stopped", "requests", n, "cost_usd", fmt.Sprintf("%.4f", cost), "cache_read_ratio", fmt.Sprintf("%.2f", ratio))
	return ExitOK
}

func hfEndpoint(getenv func(string) string) string {
	if e := getenv("HF_ENDPOINT"); e != "" {
		return e
	}
	return "https://huggingface.co"
}

// newSessionID is sortable by time and unique enough across machines.
func newSessionID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}
