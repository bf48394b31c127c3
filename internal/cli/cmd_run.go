package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mlagent/mlagent/internal/chat"
	"github.com/mlagent/mlagent/internal/config"
	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/permission"
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sanitize"
	"github.com/mlagent/mlagent/internal/sessionhost"
	"github.com/mlagent/mlagent/internal/sessions"
)

func init() {
	register(&Command{
		Interactive: true,
		Name:        "run",
		Summary:     "chat with the agent in a new sandbox (or -p: one prompt, for scripts)",
		Run:         runRun,
	})
}

// ExitInterrupted is the exit code after a second Ctrl-C (128+SIGINT).
const ExitInterrupted = 130

const runHelp = `Starts the gateway in-process, creates a sandbox (bubblewrap by default) with
the data and Trackio volumes, runs the agent inside and holds the conversation:
streamed text, one line per tool call, the plan, questions (type a choice's
number or your own answer), usage and cost after each turn.

In the chat: /cost, /todo, /dashboard, /exit (or Ctrl-D). Enter sends, Ctrl-J
starts a new line, ↑/↓ recall earlier messages; Esc or Ctrl-C interrupts the
turn, a second Ctrl-C within 2 s exits. On exit the sandbox ends and its token is revoked;
volumes and the transcript stay ("mlagent sessions", "mlagent resume").

The model key is $ANTHROPIC_API_KEY, else the secret store's (an exported key
wins, as with the Anthropic SDK and Claude Code; the chat says so when they
differ); with --base-url an Anthropic-compatible server (Ollama ≥ 0.14,
llama.cpp's server) needs none, and an address that does not answer the
Messages API fails at once.

What leaves the sandbox waits for you: a Hub write (pushing a model or a
dataset, creating or deleting a repo) or a git push is held by the gateway
until you answer in the chat (y, n, a for always in this chat, or say what to
do instead). Inside the sandbox commands run freely; --permission-mode ask-all
also asks before each command, bypass never asks. --allow "hub:push you/*",
--allow git:push or --allow "bash(python3 *)" allow without asking. With -p
nobody can answer: what the rules do not allow is denied, and the agent is
told why.

--mount . binds this directory read-only at /workspace/<its name> (:rw to let
the agent write), as Claude Code works in yours; its AGENTS.md or MLAGENT.md
(and /data's) is project memory. @path in a message attaches a text file.

-p runs PROMPT to the end of its turn and prints the final answer (or every
event with --output-format stream-json); a question fails the run unless
--answers FILE answers it (a JSON object question-fragment → answer, a JSON
array, or one answer a line). The exit code is non-zero on failure.

Examples:
  mlagent run "Train a model for categorizing multispectral satellite imagery"
  mlagent run -p --answers answers.json "Fine-tune a small model on imdb"
  mlagent run --base-url http://localhost:11434 --model qwen3-coder "hello"
  mlagent run --gpu --image pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime "…"`

// chatFlags are the flags shared by run and resume.
type chatFlags struct {
	print        bool
	outputFormat string
	answers      string
	model        string
	sessionModel bool // model is the resumed session's, not the user's choice
	budgetUSD    float64
	maxTurns     int
	baseURL      string
	gateway      string
	gatewayAdmin string
	backend      string
	gpu          gpuFlag
	volumes      volumeFlags
	dashboard    string
	limits       limitFlags
	permMode     string
	allow        allowFlags
	image        string
	detach       bool
	mounts       mountFlags
}

func (c *chatFlags) register(fs *flag.FlagSet, cfg *config.Config, withSandbox bool) {
	fs.BoolVar(&c.print, "p", false, "print mode: run the prompt to completion, print the result, exit")
	fs.BoolVar(&c.print, "print", false, "same as -p")
	fs.StringVar(&c.outputFormat, "output-format", "", "with -p: text (the final answer, default), json (one result object: result, is_error, session_id, num_turns, cost_usd…) or stream-json (every event); chat shows the conversation")
	fs.StringVar(&c.answers, "answers", "", "file of answers to the agent's questions (needed by -p when it asks)")
	fs.StringVar(&c.model, "model", cfg.Run.Model, "model id (env MLAGENT_MODEL); default: the newest Sonnet-class model your key can use")
	fs.Float64Var(&c.budgetUSD, "budget-usd", cfg.Run.BudgetUSD, "most this sandbox may spend on the model API, USD; 0 = no limit (env MLAGENT_BUDGET_USD)")
	fs.IntVar(&c.maxTurns, "max-turns", cfg.Run.MaxTurns, "most model requests per user message")
	fs.StringVar(&c.baseURL, "base-url", cfg.Run.BaseURL, "Anthropic-compatible API base URL instead of the configured upstream (env MLAGENT_BASE_URL)")
	fs.StringVar(&c.gateway, "gateway", "", "shared gateway data-plane URL instead of the in-process one")
	fs.StringVar(&c.gatewayAdmin, "gateway-admin", "", "the shared gateway's admin-plane URL (admin token: secret or $MLAGENT_ADMIN_TOKEN)")
	fs.StringVar(&c.backend, "backend", cfg.Sandbox.Backend, "sandbox backend: local (bubblewrap)")
	fs.StringVar(&c.image, "image", cfg.Sandbox.Image, `OCI image the sandbox runs on, e.g. pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime, ./img.tar or an OCI layout directory; pulled once with your Docker credentials ("mlagent image --help"); "" = the host's /usr (config sandbox.image)`)
	fs.StringVar(&c.dashboard, "dashboard-listen", cfg.Dashboard.Listen, `live dashboard address (loopback); "off" disables it`)
	c.limits.register(fs, cfg)
	fs.StringVar(&c.permMode, "permission-mode", firstNonEmpty(cfg.Run.PermissionMode, "default"), "default (ask before Hub writes and git pushes), ask-all (and before each command) or bypass (never ask) (env MLAGENT_PERMISSION_MODE)")
	c.allow = append(c.allow, cfg.Run.Allow...)
	fs.Var(&c.mounts, "mount", "your directory inside, as Claude Code works in yours: . or SRC[:DEST][:rw] (read-only unless :rw; DEST defaults to /workspace/NAME; repeatable, again on resume)")
	fs.BoolVar(&c.detach, "detach", false, "start the session, send PROMPT, and leave it running without a chat (mlagent attach, mlagent logs)")
	fs.Var(&c.allow, "allow", `allow without asking (repeatable): "hub:push you/*", "git:push", "bash(python3 *)"`)
	if withSandbox {
		fs.Var(&c.gpu, "gpu", "use the host's NVIDIA GPUs: --gpu (required) or --gpu=optional")
		fs.Var(&c.volumes, "volume", "extra volume NAME:PATH (repeatable); data and trackio are always mounted")
	}
}

// allowFlags collects --allow rules (checked when the policy is made,
// with the config file's).
type allowFlags []string

func (a *allowFlags) String() string { return strings.Join(*a, ", ") }

func (a *allowFlags) Set(s string) error {
	if _, err := permission.ParseRule(s); err != nil {
		return err
	}
	*a = append(*a, s)
	return nil
}

// policy is the chat's permission mode and allow-rules.
func (c *chatFlags) policy() (*permission.Policy, error) {
	mode, err := permission.ParseMode(c.permMode)
	if err != nil {
		return nil, err
	}
	var rules []permission.Rule
	for _, s := range c.allow {
		r, err := permission.ParseRule(s)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return permission.NewPolicy(mode, rules), nil
}

// volumeFlags collects --volume NAME:PATH.
type volumeFlags []sandbox.Mount

func (v *volumeFlags) String() string {
	var s []string
	for _, m := range *v {
		s = append(s, m.Volume+":"+m.Path)
	}
	return strings.Join(s, ",")
}

func (v *volumeFlags) Set(s string) error {
	name, path, ok := strings.Cut(s, ":")
	if !ok || name == "" || !strings.HasPrefix(path, "/") {
		return fmt.Errorf("want NAME:/absolute/path, got %q", s)
	}
	*v = append(*v, sandbox.Mount{Volume: name, Path: filepath.Clean(path)})
	return nil
}

// parseInterleaved parses flags that may come before or after the
// positional arguments (mlagent run "prompt" -p).
func parseInterleaved(fs *flag.FlagSet, args []string, env *Env) (positional []string, code int) {
	for {
		if code := parseFlags(fs, args, env); code >= 0 {
			return nil, code
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, -1
		}
		if len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return append(positional, rest...), -1
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func runRun(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "run", "run [flags] [PROMPT]", runHelp)
	var cf chatFlags
	cf.register(fs, env.Config, true)
	cont := fs.Bool("continue", false, "continue the most recent session (as mlagent resume latest)")
	fs.BoolVar(cont, "c", false, "same as --continue")
	pos, code := parseInterleaved(fs, args, env)
	if code >= 0 {
		return code
	}
	if *cont {
		s, code := sessionToResume(ctx, env, "run", fs, &cf, "")
		if code >= 0 {
			return code
		}
		return runChat(ctx, env, "run", &cf, chatSession{Session: s, Prompt: strings.Join(pos, " "), Resume: true})
	}
	mounts := sandbox.DefaultMounts()
	for _, m := range cf.volumes {
		for _, d := range mounts {
			if d.Path == m.Path || d.Volume == m.Volume {
				fmt.Fprintf(env.Stderr, "mlagent run: --volume %s:%s clashes with the default %s:%s\n", m.Volume, m.Path, d.Volume, d.Path)
				return ExitUsage
			}
		}
	}
	mounts = append(mounts, cf.volumes...)
	if code := createMissingVolumes(ctx, env, cf.backend, "run", cf.volumes); code >= 0 {
		return code
	}
	now := time.Now()
	return runChat(ctx, env, "run", &cf, chatSession{
		Session: sessions.Session{ID: sessions.NewID(now), Title: strings.Join(pos, " "), Model: cf.model, Volumes: mounts, GPU: cf.gpu.String(), Image: cf.image},
		Prompt:  strings.Join(pos, " "),
	})
}

// maxStdinPrompt bounds a prompt read from stdin.
const maxStdinPrompt = 4 << 20

// chatSession is the session a chat runs: new (run), reopened (resume),
// or scripted (demo).
type chatSession struct {
	sessions.Session
	Prompt string
	Resume bool

	// A scripted chat (the demo) brings its own upstreams, their keys
	// (the person's own are not used) and its user.
	Upstream, HFUpstream, ModelKey, HFToken string
	In                                      io.Reader         // the user's lines; nil: env.Stdin
	Answers                                 chat.AnswerSource // before asking the person
	OnTurn                                  func(chat.Turn)
	// Done runs after the sandbox has ended and may replace the exit code.
	Done func(host *launch.Host, sb *launch.Sandbox, res chat.Result, code int) int
}

// noKeyHelp is the one message a person without a model key gets.
const noKeyHelp = `mlagent %s: no model key found.

Save your Anthropic API key in mlagent's secret store (it never enters a sandbox):
  mlagent secret set anthropic ANTHROPIC_API_KEY=sk-ant-...
or export it for this shell:
  export ANTHROPIC_API_KEY=sk-ant-...

Or point mlagent at an Anthropic-compatible local server, which needs no key:
  mlagent %s --base-url http://localhost:11434 --model qwen3-coder ...   (Ollama ≥ 0.14)
  mlagent %s --base-url http://localhost:8080 ...                        (llama.cpp's llama-server)
`

// runChat is run, resume and demo after their flags: it starts the host
// and the agent (internal/launch) and renders the conversation
// (internal/chat).
func runChat(ctx context.Context, env *Env, name string, cf *chatFlags, cs chatSession) int {
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(env.Stderr, "mlagent "+name+": "+format+"\n", a...)
		return code
	}
	if cf.print && cs.In == nil && env.Stdin != nil && !readerIsTerminal(env.Stdin) {
		// echo … | mlagent run -p: the piped text is the prompt, or comes
		// after the prompt's words.
		b, err := io.ReadAll(io.LimitReader(env.Stdin, maxStdinPrompt+1))
		if err != nil {
			return fail(ExitFailure, "reading the prompt from stdin: %v", err)
		}
		if len(b) > maxStdinPrompt {
			return fail(ExitUsage, "the prompt on stdin is over %d MiB", maxStdinPrompt>>20)
		}
		if piped := strings.TrimSpace(string(b)); piped != "" {
			cs.Prompt = strings.TrimSpace(cs.Prompt + "\n\n" + piped)
			if cs.Title == "" {
				cs.Title = cs.Prompt
			}
		}
	}
	if cf.print && strings.TrimSpace(cs.Prompt) == "" {
		return fail(ExitUsage, "-p needs a prompt (as arguments, or on stdin)")
	}
	format := cf.outputFormat
	switch format {
	case "":
		format = chat.FormatChat
		if cf.print {
			format = chat.FormatText
		}
	case chat.FormatText, chat.FormatStreamJSON, chat.FormatJSON:
		if !cf.print {
			return fail(ExitUsage, "--output-format %s needs -p", format)
		}
	case chat.FormatChat:
	default:
		return fail(ExitUsage, "--output-format %q: want text, json, stream-json or chat", format)
	}
	answers := cs.Answers
	if cf.answers != "" {
		a, err := chat.LoadAnswers(cf.answers)
		if err != nil {
			return fail(ExitUsage, "%v", err)
		}
		answers = a
	}
	if cs.Resume && sessionhost.Running(env.Config, cs.ID) {
		return fail(ExitFailure, "session %s is already running: mlagent attach %s", cs.ID, cs.ID)
	}
	if cf.detach && cf.print {
		return fail(ExitUsage, "--detach and -p do not go together: -p waits for the answer, --detach does not")
	}
	if (cf.gateway == "") != (cf.gatewayAdmin == "") {
		return fail(ExitUsage, "--gateway and --gateway-admin go together")
	}
	cpus, memory, err := cf.limits.values()
	if err != nil {
		return fail(ExitUsage, "%v", err)
	}
	pids, err := cf.limits.pidsLimit()
	if err != nil {
		return fail(ExitUsage, "%v", err)
	}
	perm, err := cf.policy()
	if err != nil {
		return fail(ExitUsage, "%v", err)
	}
	binds, err := cf.mounts.binds(env)
	if err != nil {
		return fail(ExitUsage, "%v", err)
	}

	// The model key, before anything is created.
	keys, err := launch.ResolveKeys(env.Config, env.Getenv)
	if err != nil {
		return fail(ExitFailure, "%v", err)
	}
	switch {
	case cf.gateway != "":
		if keys.Admin == "" {
			return fail(ExitUsage, "--gateway needs the shared gateway's admin token: mlagent secret set gateway-admin MLAGENT_ADMIN_TOKEN=...")
		}
	case cs.ModelKey != "":
		keys = launch.Keys{Model: cs.ModelKey, HF: cs.HFToken}
	case keys.Model == "" && cf.baseURL == "":
		fmt.Fprintf(env.Stderr, noKeyHelp, name, name, name)
		return ExitUsage
	}
	for _, n := range keys.Notes {
		fmt.Fprintf(env.Stderr, "mlagent %s: %s\n", name, n)
	}
	if cf.baseURL != "" && cs.Upstream == "" && cf.gateway == "" {
		if err := probeBaseURL(ctx, cf.baseURL, keys.Model); err != nil {
			return fail(ExitFailure, "%v", err)
		}
	}
	log := env.Log.With("cmd", name, "session", cs.ID)
	cs.Model = cf.model
	spec := sessionhost.Spec{
		Cmd: name, Session: cs.Session, Resume: cs.Resume, MaxTurns: cf.maxTurns,
		BudgetUSD: cf.budgetUSD, CPUs: cpus, MemoryBytes: memory, Pids: pids,
		BaseURL: cf.baseURL, Gateway: cf.gateway, GatewayAdmin: cf.gatewayAdmin, Backend: cf.backend,
		AskBeforeBash: perm.AsksBash(), ModelFromSession: cf.sessionModel, Binds: binds,
	}
	// The gateway holds this sandbox's writes until the chat decides;
	// bypass holds nothing, and a shared gateway cannot hold.
	switch {
	case perm.Mode() == permission.Bypass:
	case cf.gateway == "":
		spec.HoldWrites = true
	default:
		fmt.Fprintf(env.Stderr, "mlagent %s: a shared gateway does not hold Hub writes or git pushes for approval; they go ahead\n", name)
	}

	// A conversation runs in a session host, so that it can be left
	// running (detached) and attached to again; -p and the scripted demo
	// run in this process.
	hosted := format == chat.FormatChat && cs.In == nil && cs.Upstream == "" || cf.detach
	var link *chatLink
	if hosted {
		link, err = startHostedLink(ctx, env, spec)
	} else {
		spec.BaseURL, spec.HFUpstream = firstNonEmpty(cs.Upstream, spec.BaseURL), cs.HFUpstream
		link, err = startLocalLink(ctx, env, spec, keys, log)
	}
	if err != nil {
		return fail(ExitFailure, "%s", sanitize.Text(err.Error()))
	}
	for _, w := range link.warnings {
		fmt.Fprintf(env.Stderr, "mlagent %s: %s\n", name, w)
	}
	cf.model = link.model
	if cs.Resume && !link.resumed {
		// Killed before the first model request: nothing to reload.
		fmt.Fprintf(env.Stderr, "mlagent %s: session %s has no transcript yet; starting it afresh\n", name, cs.ID)
	}
	if cf.detach {
		return detachNow(env, link, cs)
	}

	dashURL := ""
	if format == chat.FormatChat {
		url, stop := chatDashboard(env, cf.dashboard, log)
		defer stop()
		dashURL = url
	}

	interrupts, stopInterrupts := ctrlC()
	defer stopInterrupts()

	out := env.Stdout
	tty := writerIsTerminal(out)
	in := cs.In
	if in == nil {
		in = env.Stdin
	}
	// The line editor needs the terminal on both sides; a scripted or
	// piped chat reads lines.
	editor := tty && cs.In == nil && readerIsTerminal(in)
	header := ""
	if format == chat.FormatChat {
		verb := "new session"
		if link.resumed {
			verb = "resuming session"
		}
		header = fmt.Sprintf("mlagent · %s %s · model %s · sandbox %s", verb, cs.ID, cf.model, link.sandbox)
		if dashURL != "" {
			header += " · live metrics: " + dashURL
		}
		if cs.In == nil {
			header += " · /help"
		}
	}
	res, err := chat.Run(ctx, chat.Options{
		AgentIn: link.in, AgentOut: link.out, CanDetach: hosted,
		In: in, Out: out, Err: env.Stderr, TTY: tty,
		Editor: editor, HistoryPath: env.Config.HistoryPath(),
		NoColor: env.Getenv("NO_COLOR") != "", Header: header,
		Permissions: perm, KeySource: keys.ModelSource,
		PriorCostUSD: cs.CostUSD, BudgetUSD: cf.budgetUSD, AttachDir: cwd(),
		Print: cf.print, OutputFormat: format, Answers: answers,
		FirstPrompt: cs.Prompt, DashboardURL: dashURL, Interrupt: interrupts,
		OnUserMessage: func(text string) {
			if format == chat.FormatChat && (!tty || cs.In != nil) {
				// Piped or scripted input is not echoed; show what was sent.
				fmt.Fprintf(out, "> %s\n", strings.Join(strings.Fields(text), " "))
			}
		},
		OnTurn: cs.OnTurn,
	})

	xerr := link.end(res.Detached, errors.Is(err, protocol.ErrViolation))
	if format == chat.FormatChat {
		if res.Detached {
			fmt.Fprintf(out, "session %s left running · mlagent attach %s · mlagent logs %s\n", cs.ID, cs.ID, cs.ID)
		} else {
			fmt.Fprintf(out, "session %s saved · mlagent resume %s\n", cs.ID, cs.ID)
		}
	}
	code := chatExitCode(cf, res, err, xerr, fail)
	if cs.Done != nil {
		code = cs.Done(link.host, link.sb, res, code)
	}
	return code
}

// chatExitCode maps how a chat ended to the process exit code.
func chatExitCode(cf *chatFlags, res chat.Result, err, xerr error, fail func(int, string, ...any) int) int {
	switch {
	case errors.Is(err, chat.ErrInterrupted):
		return ExitInterrupted
	case errors.Is(err, chat.ErrTurnFailed) && res.Failure != "":
		return ExitFailure // the chat has said why, once
	case err != nil:
		// Either may quote what the sandbox wrote.
		if errors.Is(err, chat.ErrAgentExited) && xerr != nil {
			return fail(ExitFailure, "%s", sanitize.Text(xerr.Error()))
		}
		return fail(ExitFailure, "%s", sanitize.Text(err.Error()))
	case cf.print && res.StopReason != "end_turn":
		return ExitFailure
	}
	return ExitOK
}

// cwd is the directory @path attachments are read from; "" (none) when
// it cannot be told.
func cwd() string {
	d, err := os.Getwd()
	if err != nil {
		return ""
	}
	return d
}
