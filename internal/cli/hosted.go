package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sessions"
)

// A chat's session runs in a host process of its own (`mlagent
// session-host`, internal/sessionhost) when the chat can leave it
// running: the front end starts it, hands it the session to run over a
// socket pair, and then speaks the agent's protocol over that socket;
// `mlagent attach` reaches it later through the session's socket.

// hostSpec is what a session host is asked to run.
type hostSpec struct {
	Cmd           string           `json:"cmd"` // run or resume, for messages
	Session       sessions.Session `json:"session"`
	Resume        bool             `json:"resume"`
	MaxTurns      int              `json:"max_turns"`
	BudgetUSD     float64          `json:"budget_usd"`
	CPUs          float64          `json:"cpus"`
	MemoryBytes   int64            `json:"memory_bytes"`
	Pids          int              `json:"pids"`
	BaseURL       string           `json:"base_url,omitempty"`
	Gateway       string           `json:"gateway,omitempty"`
	GatewayAdmin  string           `json:"gateway_admin,omitempty"`
	Backend       string           `json:"backend,omitempty"`
	HoldWrites    bool             `json:"hold_writes"`
	AskBeforeBash bool             `json:"ask_before_bash"`
	// ModelFromSession: Session.Model is the resumed session's, which
	// may be replaced (launch.AgentRequest.ModelFromSession).
	ModelFromSession bool `json:"model_from_session,omitempty"`
	// Binds are the user's directories to mount (--mount).
	Binds []sandbox.Bind `json:"binds,omitempty"`
}

// hostHello is the host's first line to the front end that started it.
type hostHello struct {
	Type    string `json:"type"` // "hosted"
	Session string `json:"session,omitempty"`
	Sandbox string `json:"sandbox,omitempty"`
	Resumed bool   `json:"resumed,omitempty"`
	// Model is the model the agent runs; Warnings are about it.
	Model    string   `json:"model,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	Error    string   `json:"error,omitempty"`
	// Exists: the session's sandbox is already running (detached).
	Exists bool `json:"exists,omitempty"`
}

// hostedSession is the front end's end of a session host.
type hostedSession struct {
	conn    *net.UnixConn
	events  *bufio.Reader // the conn, past the hello
	proc    *os.Process
	exited  chan struct{}
	hello   hostHello
	logPath string
}

// errSessionRunning: the session is already running in a host (detached).
var errSessionRunning = errors.New("the session is already running")

// startHosted starts a session host for spec and waits until its agent
// runs (or it says why not).
func startHosted(ctx context.Context, env *Env, spec hostSpec) (*hostedSession, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("session host: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "session"), os.NewFile(uintptr(fds[1]), "session-host")
	defer theirs.Close()
	c, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		return nil, fmt.Errorf("session host: %w", err)
	}
	conn := c.(*net.UnixConn)
	logDir := env.Config.LogsDir()
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		conn.Close()
		return nil, fmt.Errorf("session host: %w", err)
	}
	logPath := filepath.Join(logDir, "session-"+spec.Session.ID+".log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("session host log: %w", err)
	}
	defer logf.Close()
	self, err := os.Executable()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("session host: %w", err)
	}
	cmd := exec.Command(self, "session-host")
	cmd.Stdout, cmd.Stderr = logf, logf
	// fd 3: the session's protocol; fd 4: where the host draws progress
	// (an image pull) until the session runs: the chat's terminal.
	progress := progressFile(env)
	if progress != env.Stderr {
		defer progress.Close()
	}
	cmd.ExtraFiles = []*os.File{theirs, progress}
	// Its own session: the terminal's Ctrl-C and hangup are the chat's,
	// and the host outlives the chat when it detaches.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("session host: %w", err)
	}
	h := &hostedSession{conn: conn, proc: cmd.Process, exited: make(chan struct{}), logPath: logPath}
	go func() {
		cmd.Wait()
		close(h.exited)
	}()
	b, _ := json.Marshal(spec)
	if _, err := conn.Write(append(b, '\n')); err != nil {
		h.kill()
		return nil, fmt.Errorf("session host: %w", err)
	}
	h.events = bufio.NewReaderSize(conn, 64<<10)
	type result struct {
		line []byte
		err  error
	}
	got := make(chan result, 1)
	go func() {
		line, err := h.events.ReadSlice('\n')
		got <- result{append([]byte(nil), line...), err}
	}()
	var r result
	select {
	case r = <-got:
	case <-ctx.Done():
		h.kill()
		return nil, ctx.Err()
	}
	if r.err != nil || json.Unmarshal(r.line, &h.hello) != nil || h.hello.Type != "hosted" {
		h.kill()
		return nil, fmt.Errorf("the session host did not start (its log: %s)", logPath)
	}
	if h.hello.Error != "" {
		<-h.exited
		conn.Close()
		if h.hello.Exists {
			return nil, fmt.Errorf("%w: %s", errSessionRunning, h.hello.Error)
		}
		return nil, errors.New(h.hello.Error)
	}
	return h, nil
}

// progressFile is the front end's stderr when it is a file (a terminal),
// else /dev/null.
func progressFile(env *Env) *os.File {
	if f, ok := env.Stderr.(*os.File); ok {
		return f
	}
	f, _ := os.Open(os.DevNull)
	return f
}

// input is the agent's input: closing it ends only the sending half, so
// what the agent still says on its way out is read.
func (h *hostedSession) input() io.WriteCloser { return halfCloser{h.conn} }

type halfCloser struct{ c *net.UnixConn }

func (w halfCloser) Write(p []byte) (int, error) { return w.c.Write(p) }
func (w halfCloser) Close() error                { return w.c.CloseWrite() }

// finish ends the front end's side: a detached session is left to its
// host; otherwise the host is waited for (it ends the sandbox), at most
// wait, then stopped.
func (h *hostedSession) finish(detached bool, wait time.Duration) {
	h.conn.Close()
	if detached {
		h.proc.Release()
		return
	}
	select {
	case <-h.exited:
	case <-time.After(wait):
		h.proc.Signal(syscall.SIGTERM)
		select {
		case <-h.exited:
		case <-time.After(10 * time.Second):
			h.kill()
		}
	}
}

func (h *hostedSession) kill() {
	h.conn.Close()
	h.proc.Kill()
	<-h.exited
}

// dialSession connects to a running session's host.
func dialSession(env *Env, id string) (*net.UnixConn, error) {
	c, err := net.DialTimeout("unix", env.Config.SessionSocket(id), 5*time.Second)
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

// chatLink is a chat's agent, in a session host or in this process.
type chatLink struct {
	in       io.WriteCloser
	out      io.Reader
	sandbox  string
	resumed  bool
	model    string   // the model the agent runs
	warnings []string // about the model, for the user
	// end waits (bounded) for the agent to exit and ends the sandbox,
	// or leaves a detached session to its host; it says how the agent
	// ended. violated: the agent broke the protocol, so it is not waited
	// for.
	end func(detached, violated bool) error
	// In this process only (the demo's Done looks at them).
	host *launch.Host
	sb   *launch.Sandbox
}

func startHostedLink(ctx context.Context, env *Env, spec hostSpec) (*chatLink, error) {
	h, err := startHosted(ctx, env, spec)
	if err != nil {
		return nil, err
	}
	return &chatLink{
		in: h.input(), out: h.events, sandbox: h.hello.Sandbox, resumed: h.hello.Resumed,
		model: h.hello.Model, warnings: h.hello.Warnings,
		end: func(detached, violated bool) error {
			wait := 20 * time.Second
			if violated {
				wait = 0
			}
			h.finish(detached, wait)
			return nil
		},
	}, nil
}

func startLocalLink(ctx context.Context, env *Env, spec hostSpec, keys launch.Keys, cs chatSession, log *slog.Logger) (*chatLink, error) {
	cfg := *env.Config
	cfg.Sandbox.Backend = spec.Backend
	host, err := launch.Start(ctx, launch.Options{
		Config: &cfg, Log: log,
		Upstream: firstNonEmpty(cs.Upstream, spec.BaseURL), HFUpstream: cs.HFUpstream,
		ModelKey: keys.Model, HFToken: keys.HF, GitHubToken: keys.GitHub,
		RemoteGateway: spec.Gateway, AdminURL: spec.GatewayAdmin, AdminToken: keys.Admin,
	})
	if err != nil {
		return nil, err
	}
	agent, err := host.StartAgent(ctx, launch.AgentRequest{
		Session: spec.Session, Resume: spec.Resume, MaxTurns: spec.MaxTurns,
		BudgetUSD: spec.BudgetUSD, CPUs: spec.CPUs, MemoryBytes: spec.MemoryBytes, Pids: spec.Pids,
		HoldWrites: spec.HoldWrites, AskBeforeBash: spec.AskBeforeBash,
		Progress: env.Stderr, ModelFromSession: spec.ModelFromSession, Binds: spec.Binds,
	})
	if err != nil {
		host.Close()
		if errors.Is(err, sandbox.ErrExists) {
			return nil, fmt.Errorf("session %s is already running: mlagent attach %s", spec.Session.ID, spec.Session.ID)
		}
		return nil, err
	}
	bg := context.WithoutCancel(ctx)
	return &chatLink{
		in: agent.Input(), out: agent.Events(), sandbox: agent.Sandbox.Name(), resumed: agent.Resumed,
		model: agent.Session.Model, warnings: agent.ModelWarnings,
		host: host, sb: agent.Sandbox,
		end: func(_, violated bool) error {
			if violated {
				agent.Terminate(bg)
			}
			wctx, cancel := context.WithTimeout(bg, 15*time.Second)
			xerr := agent.Wait(wctx)
			cancel()
			if err := agent.Terminate(bg); err != nil {
				fmt.Fprintf(env.Stderr, "mlagent %s: terminate sandbox %s: %v\n", spec.Cmd, agent.Sandbox.Name(), err)
			}
			host.Close()
			return xerr
		},
	}, nil
}

// detachNow is run --detach: the first prompt is sent and the session is
// left to its host at once.
func detachNow(env *Env, link *chatLink, cs chatSession) int {
	if p := strings.TrimSpace(cs.Prompt); p != "" {
		b, _ := protocol.MarshalInput(protocol.Input{Type: protocol.InputUserMessage, Text: p})
		link.in.Write(b)
	}
	b, _ := protocol.MarshalInput(protocol.Input{Type: protocol.InputDetach})
	link.in.Write(b)
	link.end(true, false)
	fmt.Fprintf(env.Stdout, "session %s running detached · mlagent attach %s · mlagent logs %s\n", cs.ID, cs.ID, cs.ID)
	return ExitOK
}
