package launch

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mlagent/mlagent/internal/models"
	"github.com/mlagent/mlagent/internal/permission"
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sanitize"
	"github.com/mlagent/mlagent/internal/sessions"
	"github.com/mlagent/mlagent/internal/volume"
)

// AgentRequest describes a chat's agent and the sandbox it runs in.
type AgentRequest struct {
	// Session is the session's row in the index: its ID, Model, Volumes
	// and GPU make the sandbox and the agent. A new session is recorded
	// (with Title, if any); a resumed one is touched (its model updated).
	Session sessions.Session
	// Resume continues the session's transcript; when the session never
	// reached its first model request there is none, and the agent starts
	// afresh (AgentSession.Resumed says which).
	Resume   bool
	MaxTurns int
	// BudgetUSD bounds what the sandbox's token may spend; 0: no limit.
	BudgetUSD float64
	// CPUs and MemoryBytes limit the sandbox where the backend can.
	CPUs        float64
	MemoryBytes int64
	// Pids bounds its tasks: 0 is config sandbox.pids, sandbox.NoPidsLimit none.
	Pids int
	// HoldWrites makes the gateway hold the sandbox's writes (Hub writes,
	// git pushes) until the front end approves them: they arrive among
	// the events as approval events named "gateway", answered with
	// approval inputs like the agent's own. Only the in-process gateway
	// holds.
	HoldWrites bool
	// AskBeforeBash makes the agent ask before each command (ask-all).
	AskBeforeBash bool
	// Binds are the user's directories mounted inside (run --mount); the
	// agent learns them from $MLAGENT_MOUNTS, to say so in its prompt and
	// to read their AGENTS.md or MLAGENT.md.
	Binds []sandbox.Bind
	// Progress is where pulling the session's image (Session.Image) draws.
	Progress io.Writer
	// ModelFromSession says Session.Model is a resumed session's, not the
	// user's choice: it is replaced when the key can no longer use it.
	// An empty Session.Model is the newest Sonnet-class model the key can
	// use (internal/models).
	ModelFromSession bool
}

// AgentSession is `mlagent agent` running in its own sandbox. A front end
// (the terminal chat, a bot serving many threads) writes protocol inputs
// with Send or Input, reads events from Events, and ends it with
// Terminate. The session's index row is kept current from what passes:
// the title from the first user message, turns and cost from the events.
// Send, Input and Terminate are safe for concurrent use; Events has one
// reader.
type AgentSession struct {
	Sandbox *Sandbox
	// Resumed: the agent reloaded the session's transcript.
	Resumed bool
	// Session is the session's row as recorded, with the model chosen.
	Session sessions.Session
	// ModelWarnings are for the user: the model is deprecated, or not
	// among those the key can use, or no list could be had.
	ModelWarnings []string

	id     string
	host   *Host
	in     *inputWriter
	events *io.PipeReader
	exited chan struct{}

	evMu   sync.Mutex // one writer of whole lines at a time on evW
	evW    *io.PipeWriter
	heldMu sync.Mutex
	held   map[string]chan protocol.Input // gateway approvals waiting, by id
	err    error                          // how the agent exited; set before exited closes

	// Models the front end asked for (set_model) that the agent has not
	// yet said it uses: a model event must name one.
	modelMu    sync.Mutex
	wantModels []string

	// The agent's questions (ask_user, approvals) not yet answered, this
	// turn: a bound on them bounds what front ends keep and show.
	askMu sync.Mutex
	asks  map[string]bool

	// What book has counted: the cost the agent reported (each turn's
	// clamped to >= 0) and the cost recorded in the index, this process.
	reported, recorded float64
}

// StartAgent creates a sandbox for the session (with a token carrying the
// budget), records the session in the index before the first turn (so a
// killed front end leaves a session that resume finds), and starts the
// agent inside with its stdio piped to the returned session. ctx bounds
// the agent's life.
func (h *Host) StartAgent(ctx context.Context, r AgentRequest) (_ *AgentSession, err error) {
	s := r.Session
	gpu, err := sandbox.ParseGPU(s.GPU)
	if err != nil {
		return nil, err
	}
	req := SandboxRequest{
		Name:    SandboxName(s, r.Resume),
		Volumes: s.Volumes, GPU: gpu.Mode, GPUCount: gpu.Count, GPUType: gpu.Type, BudgetUSD: r.BudgetUSD,
		Labels: map[string]string{"mlagent.session": s.ID},
		CPUs:   r.CPUs, MemoryBytes: r.MemoryBytes, Pids: r.Pids,
		Image: s.Image, Progress: r.Progress,
		Binds: r.Binds,
	}
	if len(r.Binds) > 0 {
		req.Env = map[string]string{sandbox.MountsEnv: sandbox.FormatBinds(r.Binds)}
	}
	sb, err := h.NewSandbox(ctx, req)
	// The session's sandbox of a run that just died (a killed CLI) may be
	// on its way out: its processes end with their parent, within moments.
	for deadline := time.Now().Add(5 * time.Second); errors.Is(err, sandbox.ErrExists) && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		sb, err = h.NewSandbox(ctx, req)
	}
	if err != nil {
		return nil, fmt.Errorf("create sandbox: %w", err)
	}
	defer func() {
		if err != nil {
			sb.Terminate(context.WithoutCancel(ctx))
		}
	}()
	if s.Image != "" {
		// The agent's shell tool runs bash; many small images lack it.
		if code, xerr := sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{"sh", "-c", "command -v bash"}}); xerr != nil || code != 0 {
			return nil, fmt.Errorf("image %s has no bash, which the agent's shell tool runs: use an image that has it (most Debian- and Ubuntu-based ones do: python:3.12-slim, pytorch/pytorch:…)", s.Image)
		}
	}
	// The model: the one named, or the newest Sonnet-class one the key
	// can use, listed through the gateway (cached for a day).
	choice := (&models.Resolver{List: sb.ListModels, CachePath: filepath.Join(h.opts.Config.Home, "models.json"),
		Key: h.ModelsCacheKey()}).Choose(ctx, s.Model, !r.ModelFromSession)
	s.Model = choice.Model
	if r.Resume {
		if err = h.sessions.Touch(ctx, s.ID, sb.Name(), s.Model); err == nil {
			err = h.sessions.SetImage(ctx, s.ID, s.Image)
		}
	} else {
		s.Sandbox = sb.Name()
		err = h.sessions.Create(ctx, s)
	}
	if err != nil {
		return nil, err
	}

	a := &AgentSession{Sandbox: sb, Session: s, ModelWarnings: choice.Warnings, id: s.ID, host: h, exited: make(chan struct{})}
	if r.HoldWrites {
		if h.gw == nil {
			return nil, errors.New("a shared gateway (--gateway) cannot hold writes for approval; use --permission-mode bypass with it")
		}
		h.gw.SetApprover(sb.TokenID, a)
	}
	a.Resumed = r.Resume && h.transcriptExists(s)
	argv := []string{"mlagent", "agent", "--session", s.ID, "--model", s.Model, "--max-turns", strconv.Itoa(r.MaxTurns)}
	if a.Resumed {
		argv = append(argv, "--resume")
	}
	if r.AskBeforeBash {
		argv = append(argv, "--permission-mode", "ask-all")
	}
	bg := context.WithoutCancel(ctx)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	evR, evW := io.Pipe()
	a.in = &inputWriter{w: inW, onInput: func(in protocol.Input) bool {
		switch in.Type {
		case protocol.InputApproval:
			if a.decide(in) {
				return true
			}
			a.answered(in.ID)
		case protocol.InputAnswer:
			a.answered(in.ID)
		case protocol.InputSetModel:
			a.modelMu.Lock()
			if len(a.wantModels) < 64 {
				a.wantModels = append(a.wantModels, strings.TrimSpace(in.Text))
			}
			a.modelMu.Unlock()
		case protocol.InputUserMessage:
			if err := h.sessions.SetTitle(bg, s.ID, in.Text); err != nil {
				h.log.Warn("session title", "session", s.ID, "err", err)
			}
		}
		return false
	}}
	a.events, a.evW = evR, evW
	go a.book(bg, outR, evW)
	go func() {
		stderr := &tailBuffer{max: 64 << 10}
		code, err := sb.Exec(ctx, sandbox.ExecRequest{Argv: argv, Stdin: inR, Stdout: outW, Stderr: stderr})
		if err == nil && code != 0 {
			err = agentExited(code, stderr.String())
		}
		inR.Close()
		outW.CloseWithError(io.EOF)
		a.err = err
		close(a.exited)
	}()
	return a, nil
}

// SandboxName is the sandbox a session runs in. A session keeps one name,
// so that resuming it mounts the same /workspace (the backend keeps a
// sandbox's workspace by name); a session from before sandboxes were
// named this way resumes in the one it last ran in, where its files are.
func SandboxName(s sessions.Session, resume bool) string {
	if resume && s.Sandbox != "" && sandbox.ValidName(s.Sandbox) == nil {
		return s.Sandbox
	}
	if name := "mlagent-" + s.ID; sandbox.ValidName(name) == nil {
		return name
	}
	return "" // an id that makes no name: a random one
}

// SessionOfSandbox is the id of the session SandboxName named
// sandboxName after, or "" for a sandbox named otherwise. The caller
// checks that such a session exists.
func SessionOfSandbox(sandboxName string) string {
	if id, ok := strings.CutPrefix(sandboxName, "mlagent-"); ok {
		return id
	}
	return ""
}

// ID is the session's id.
func (a *AgentSession) ID() string { return a.id }

// Events is the agent's event stream, one JSON line each (read it with
// protocol.NewEventReader); it ends when the agent exits.
func (a *AgentSession) Events() io.Reader { return a.events }

// Input is the agent's stdin: protocol inputs, one JSON line each.
// Closing it ends the agent's input (it finishes its turn and exits).
func (a *AgentSession) Input() io.WriteCloser { return a.in }

// Send writes one input to the agent.
func (a *AgentSession) Send(in protocol.Input) error {
	b, err := protocol.MarshalInput(in)
	if err != nil {
		return err
	}
	_, err = a.in.Write(b)
	return err
}

// Wait waits for the agent to exit, at most until ctx is done, and says
// how it ended: nil for a clean exit, else the exit code and the tail of
// its stderr.
func (a *AgentSession) Wait(ctx context.Context) error {
	select {
	case <-a.exited:
		return a.err
	case <-ctx.Done():
		return fmt.Errorf("the agent did not exit: %w", ctx.Err())
	}
}

// Terminate ends the sandbox (and the agent with it) and revokes its
// token. Later calls return the first result.
func (a *AgentSession) Terminate(ctx context.Context) error {
	err := a.Sandbox.Terminate(ctx)
	// A reader that stopped reading must not keep the copy blocked.
	a.events.CloseWithError(io.EOF)
	return err
}

// book passes the agent's events to Events and keeps the index current:
// each finished turn is counted with its cost.
//
// The agent runs in the sandbox, so its events are untrusted: what only
// the host may say (a gateway approval, a session host's greeting or
// notice) is dropped, the session id is the host's, and the cost shown
// and booked is the host's count (see settle), never the agent's word.
func (a *AgentSession) book(ctx context.Context, agentOut io.Reader, events *io.PipeWriter) {
	r := protocol.NewEventReader(agentOut)
	var cost float64
	settled := false             // this turn's cost is counted
	running := map[string]bool{} // jobs the front ends were told run
	for {
		ev, raw, err := r.Next()
		if err != nil {
			if errors.Is(err, protocol.ErrViolation) {
				// Cut off: the writer fails rather than blocks.
				if c, ok := agentOut.(io.Closer); ok {
					c.Close()
				}
			}
			if errors.Is(err, io.EOF) {
				err = nil
			}
			events.CloseWithError(err)
			return
		}
		if why := impersonates(ev); why != "" {
			a.host.log.Warn("dropped an event from the sandbox's agent", "session", a.id, "type", sanitize.Line(ev.Type, 40), "why", why)
			continue
		}
		switch ev.Type {
		case protocol.EventReady:
			// The agent was started with the host's session and model.
			if ev.Session != a.id || ev.Model != a.Session.Model {
				ev.Session, ev.Model = a.id, a.Session.Model
				raw = marshalEvent(ev)
			}
		case protocol.EventAskUser, protocol.EventApproval:
			if !a.asked(ev) {
				a.host.log.Warn("dropped an event from the sandbox's agent", "session", a.id, "type", ev.Type, "why", "too many questions at once")
				continue
			}
		case protocol.EventModel:
			if !a.modelAsked(ev.Model) {
				a.host.log.Warn("dropped an event from the sandbox's agent", "session", a.id, "type", ev.Type, "why", "a model nobody asked for")
				continue
			}
		case protocol.EventUsage:
			u := protocol.Usage{}
			if ev.Usage != nil {
				u = *ev.Usage
			}
			cost = a.settle(ctx, u.CostUSD)
			settled = true
			u.CostUSD, u.SessionCostUSD = cost, a.recorded
			u.InputTokens, u.OutputTokens = max(u.InputTokens, 0), max(u.OutputTokens, 0)
			u.CacheCreationInputTokens, u.CacheReadInputTokens = max(u.CacheCreationInputTokens, 0), max(u.CacheReadInputTokens, 0)
			u.Requests = max(u.Requests, 0)
			if !(u.SessionCacheReadRatio >= 0 && u.SessionCacheReadRatio <= 1) {
				u.SessionCacheReadRatio = 0
			}
			ev.Usage = &u
			raw = marshalEvent(ev)
		case protocol.EventJob:
			// Front ends keep each running job until it ends: a bound on
			// how many, and on what each says, bounds what they keep.
			j := ev.Job
			switch {
			case j == nil || j.ID == "" || len(j.ID) > maxJobID:
				continue
			case !j.Running():
				delete(running, j.ID)
			case !running[j.ID] && len(running) >= MaxRunningJobs:
				a.host.log.Warn("dropped a job event from the sandbox's agent", "session", a.id, "why", "too many running jobs")
				continue
			default:
				running[j.ID] = true
			}
			if len(j.Command) > maxJobText || len(j.Status) > maxJobText { // bytes ≥ runes
				c := *j
				c.Command, c.Status = sanitize.Truncate(c.Command, maxJobText), sanitize.Truncate(c.Status, maxJobText)
				ev.Job = &c
				raw = marshalEvent(ev)
			}
		case protocol.EventTurnEnd:
			if !settled {
				cost = a.settle(ctx, 0)
			}
			a.askMu.Lock()
			clear(a.asks) // the agent's questions end with its turn
			a.askMu.Unlock()
			if err := a.host.sessions.RecordTurn(ctx, a.id, cost); err != nil {
				a.host.log.Warn("record turn", "session", a.id, "err", err)
			}
			cost, settled = 0, false
		}
		if err := a.emitLine(raw); err != nil {
			// Nobody reads any more: drain, so the agent is not blocked.
			io.Copy(io.Discard, agentOut)
			return
		}
	}
}

// MaxAgentQuestions is how many of the agent's questions may wait for
// the user at once; with MaxHeldWrites it stays below what the chat
// takes (32).
const MaxAgentQuestions = 16

// asked records a question of the agent's (or its withdrawal); false
// means it is one too many and must not pass.
func (a *AgentSession) asked(ev protocol.Event) bool {
	a.askMu.Lock()
	defer a.askMu.Unlock()
	if ev.Withdrawn {
		delete(a.asks, ev.ID)
		return true
	}
	if !a.asks[ev.ID] && len(a.asks) >= MaxAgentQuestions {
		return false
	}
	if a.asks == nil {
		a.asks = map[string]bool{}
	}
	a.asks[ev.ID] = true
	return true
}

// answered forgets a question the front end answered.
func (a *AgentSession) answered(id string) {
	a.askMu.Lock()
	delete(a.asks, id)
	a.askMu.Unlock()
}

// modelAsked reports whether the front end asked for model (and the
// agent has not yet said so), forgetting the requests up to it.
func (a *AgentSession) modelAsked(model string) bool {
	a.modelMu.Lock()
	defer a.modelMu.Unlock()
	for i, m := range a.wantModels {
		if m == model {
			a.wantModels = a.wantModels[i+1:]
			return true
		}
	}
	return false
}

// Bounds on the job events passed to the front ends.
const (
	// MaxRunningJobs is how many running jobs the front ends are told
	// of at once; a new one beyond is not shown.
	MaxRunningJobs = 256
	maxJobID       = 64
	maxJobText     = 2048 // runes of a job's command or status
)

// impersonates says why an event from the agent must not pass, or "":
// it says what only the host says. A gateway approval (the gateway's
// own, or a withdrawal of one) would let the sandbox disguise a held
// write as something harmless, or hide it; the session host's greeting
// and its "detached" notice would mislead a front end. The agent asks
// approval only for commands (ask-all): an approval of another kind
// would make "always" rules for the gateway's kinds.
func impersonates(ev protocol.Event) string {
	switch {
	case protocol.IsGatewayApproval(ev):
		return "a gateway approval"
	case ev.Type == protocol.EventApproval && !ev.Withdrawn && (ev.Action == nil || ev.Action.Kind != permission.KindBash):
		return "an approval of something other than a command"
	case ev.Type == protocol.EventApproval && ev.Action != nil && ev.Action.Request != nil:
		return "an approval carrying a held request"
	case ev.Type == protocol.EventAttached:
		return "a session host's greeting"
	case ev.Type == protocol.EventError && ev.Kind == "detached":
		return "a session host's notice"
	}
	return ""
}

// settle counts a turn's cost: what the agent reported (untrusted: below
// zero or not a number counts 0) or, where the host's own gateway booked
// more for the sandbox's token, the ledger's count. It returns what is
// newly due, so that the session's total is never less than either.
func (a *AgentSession) settle(ctx context.Context, reported float64) float64 {
	if reported > 0 && !math.IsInf(reported, 0) {
		a.reported += reported
	}
	total := a.reported
	if l, err := a.host.Ledger(ctx); err != nil {
		a.host.log.Warn("read the gateway's ledger", "session", a.id, "err", err)
	} else {
		total = max(total, l.ByToken[a.Sandbox.TokenID])
	}
	due := max(total-a.recorded, 0)
	a.recorded += due
	return due
}

func marshalEvent(ev protocol.Event) []byte {
	ev.V = protocol.Version
	b, err := json.Marshal(ev)
	if err != nil {
		return nil
	}
	return append(b, '\n')
}

// emitLine writes one whole event line to Events.
func (a *AgentSession) emitLine(line []byte) error {
	a.evMu.Lock()
	defer a.evMu.Unlock()
	_, err := a.evW.Write(line)
	return err
}

func (a *AgentSession) emit(ev protocol.Event) {
	if b := marshalEvent(ev); b != nil {
		a.emitLine(b)
	}
}

// MaxHeldWrites is how many of the sandbox's writes may wait for the
// user at once: each is a question on the user's screen, and a sandbox
// sending thousands at once would bury them (the chat gives up on more
// than 32 questions at once).
const MaxHeldWrites = 8

// Approve is the gateway's Approver for the session's sandbox: a held
// write becomes an approval event named "gateway" in Events, and waits
// for the front end's approval input with its id (or for the sandbox to
// give up on the request, which withdraws the question). The id is
// random: the sandbox, which cannot see Events, cannot name it, and book
// drops the agent's events that claim to be the gateway's.
func (a *AgentSession) Approve(ctx context.Context, act protocol.Action) error {
	ch := make(chan protocol.Input, 1)
	id := protocol.GatewayIDPrefix + rand.Text()
	a.heldMu.Lock()
	if len(a.held) >= MaxHeldWrites {
		a.heldMu.Unlock()
		return fmt.Errorf("%d writes already wait for the user's approval; send this one again when they are answered", MaxHeldWrites)
	}
	if a.held == nil {
		a.held = map[string]chan protocol.Input{}
	}
	a.held[id] = ch
	a.heldMu.Unlock()
	forget := func() {
		a.heldMu.Lock()
		delete(a.held, id)
		a.heldMu.Unlock()
	}
	a.emit(protocol.Event{Type: protocol.EventApproval, ID: id, Name: protocol.GatewayName, Action: &act})
	select {
	case in := <-ch:
		if in.Decision == protocol.DecisionDeny {
			if in.Text == "" {
				in.Text = "the user said no"
			}
			return errors.New(in.Text)
		}
		return nil
	case <-ctx.Done():
		forget()
		a.emit(protocol.Event{Type: protocol.EventApproval, ID: id, Name: protocol.GatewayName, Withdrawn: true})
		return ctx.Err()
	case <-a.exited:
		forget()
		return errors.New("the session has ended, so nobody can approve it")
	}
}

// decide takes an approval input meant for a held write; false means it
// is the agent's. An answer with a gateway id that is not waiting (given
// up, answered already, or never issued) is taken and dropped: it is
// nobody's, and the agent must not learn gateway ids from its inputs.
func (a *AgentSession) decide(in protocol.Input) bool {
	a.heldMu.Lock()
	defer a.heldMu.Unlock()
	ch, ok := a.held[in.ID]
	if ok {
		ch <- in
		delete(a.held, in.ID)
		return true
	}
	if strings.HasPrefix(in.ID, protocol.GatewayIDPrefix) {
		a.host.log.Info("an answer to a gateway approval that is not waiting", "session", a.id)
		return true
	}
	return false
}

// inputWriter passes input lines to the agent, each whole line shown to
// onInput first, which may take it (an approval of a held write is the
// session's, not the agent's). Safe for concurrent use.
type inputWriter struct {
	mu      sync.Mutex
	w       io.WriteCloser
	partial []byte
	onInput func(protocol.Input) (taken bool)
}

func (w *inputWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := w.partial[:i+1]
		w.partial = w.partial[i+1:]
		if in, perr := protocol.ParseInput(line[:i]); perr == nil && w.onInput(in) {
			continue
		}
		if _, err := w.w.Write(line); err != nil {
			return 0, err
		}
	}
	if len(w.partial) > protocol.MaxLine {
		// The agent refuses such a line too; let it say so.
		_, err := w.w.Write(w.partial)
		w.partial = nil
		if err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (w *inputWriter) Close() error { return w.w.Close() }

// transcriptExists reports whether the session's transcript is on its
// data volume; true when that cannot be told from here (the agent then
// says what is wrong).
func (h *Host) transcriptExists(s sessions.Session) bool {
	for _, m := range s.Volumes {
		if m.Path != sandbox.DataMount {
			continue
		}
		dir, err := volume.New(h.opts.Config.VolumesDir()).Path(m.Volume)
		if err != nil {
			return true
		}
		_, err = os.Stat(filepath.Join(dir, sandbox.SessionsSubdir, s.ID+".jsonl"))
		return !errors.Is(err, fs.ErrNotExist)
	}
	return true
}

// agentExited says that the agent failed, quoting the last lines of its
// stderr: sanitized, because the sandbox could have written anything there.
func agentExited(code int, stderr string) error {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return fmt.Errorf("agent exited with code %d: %s", code, sanitize.Text(strings.Join(lines, "\n")))
}

// tailBuffer keeps the last max bytes written to it: the end of a stream
// says why it ended. Safe for concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
