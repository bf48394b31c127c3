package sessionhost

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
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mlagent/mlagent/internal/config"
	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sessions"
)

// Spec is what a session host is asked to run; a front end that runs the
// session in its own process (-p, the demo) starts it the same way
// (Launch).
type Spec struct {
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
	// HFUpstream is the Hub the gateway forwards to ("" = the real one):
	// the demo's fake.
	HFUpstream string `json:"hf_upstream,omitempty"`
}

// Hello is the host's first line to the front end that started it.
type Hello struct {
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

// Launch starts what spec runs: a host (its gateway, or a shared one's
// admin client) and the agent in the session's sandbox. An ErrExists
// from it means the session's sandbox is running already.
func Launch(ctx context.Context, cfg *config.Config, log *slog.Logger, keys launch.Keys, spec Spec, progress io.Writer) (*launch.Host, *launch.AgentSession, error) {
	c := *cfg
	if spec.Backend != "" {
		c.Sandbox.Backend = spec.Backend
	}
	opts := keys.Options(&c, log, spec.BaseURL)
	opts.HFUpstream = spec.HFUpstream
	opts.RemoteGateway, opts.AdminURL = spec.Gateway, spec.GatewayAdmin
	host, err := launch.Start(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	agent, err := host.StartAgent(ctx, launch.AgentRequest{
		Session: spec.Session, Resume: spec.Resume, MaxTurns: spec.MaxTurns,
		BudgetUSD: spec.BudgetUSD, CPUs: spec.CPUs, MemoryBytes: spec.MemoryBytes, Pids: spec.Pids,
		HoldWrites: spec.HoldWrites, AskBeforeBash: spec.AskBeforeBash,
		Progress: progress, ModelFromSession: spec.ModelFromSession, Binds: spec.Binds,
	})
	if err != nil {
		host.Close()
		return nil, nil, err
	}
	return host, agent, nil
}

// Options is what a session host process is given.
type Options struct {
	Config *config.Config
	Getenv func(string) string
	Log    *slog.Logger
	// Front is the front end that started the host: it sends the Spec,
	// gets a Hello, then speaks the agent's protocol.
	Front *net.UnixConn
	// Progress is where pulling an image draws until the session runs
	// (the chat's terminal); Run closes it.
	Progress *os.File
}

// Run is a session host: it starts the session the front end asks for,
// serves it to that front end and to those that attach later through the
// session's socket, and ends the sandbox when the agent ends. Its error
// has been logged and, where the front end can still hear it, told.
func Run(ctx context.Context, o Options) error {
	o.Front.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(o.Front).ReadSlice('\n')
	o.Front.SetReadDeadline(time.Time{})
	var spec Spec
	if err == nil {
		err = json.Unmarshal(line, &spec)
	}
	if err != nil {
		o.Progress.Close()
		o.Log.Error("session host: reading the session to run", "err", err)
		return fmt.Errorf("reading the session to run: %w", err)
	}
	hello := func(h Hello) {
		h.Type = "hosted"
		b, _ := json.Marshal(h)
		o.Front.Write(append(b, '\n'))
	}
	log := o.Log.With("session", spec.Session.ID)
	if err := host(ctx, o, spec, log, hello); err != nil {
		log.Error("session host", "err", err)
		hello(Hello{Error: err.Error(), Exists: errors.Is(err, sandbox.ErrExists)})
		return err
	}
	return nil
}

func host(ctx context.Context, o Options, spec Spec, log *slog.Logger, hello func(Hello)) error {
	keys, err := launch.ResolveKeys(o.Config, o.Getenv)
	if err != nil {
		o.Progress.Close()
		return err
	}
	h, agent, err := Launch(ctx, o.Config, log, keys, spec, o.Progress)
	o.Progress.Close()
	if err != nil {
		if errors.Is(err, sandbox.ErrExists) {
			err = fmt.Errorf("session %s is already running: mlagent attach %s (%w)", spec.Session.ID, spec.Session.ID, sandbox.ErrExists)
		}
		return err
	}
	defer h.Close()
	defer agent.Terminate(context.WithoutCancel(ctx))

	sock := o.Config.SessionSocket(spec.Session.ID)
	ln, unlock, err := listenPrivate(sock, lockPath(o.Config, spec.Session.ID))
	if err != nil {
		return err
	}
	defer unlock()
	defer os.Remove(sock)
	defer ln.Close()
	hello(Hello{Session: spec.Session.ID, Sandbox: agent.Sandbox.Name(), Resumed: agent.Resumed,
		Model: agent.Session.Model, Warnings: agent.ModelWarnings})
	log.Info("session hosted", "sandbox", agent.Sandbox.Name(), "socket", sock)

	srv := New(agent, spec.Session.ID, agent.Session.Model, log)
	if err := srv.Serve(ctx, ln, o.Front); err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("serving the session", "err", err)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := agent.Wait(wctx); err != nil {
		log.Warn("agent", "err", err)
	}
	// The sandbox goes before the lock: whoever sees the session ended
	// finds nothing of it running.
	if err := agent.Terminate(context.WithoutCancel(ctx)); err != nil {
		log.Warn("terminate", "err", err)
	}
	log.Info("session ended")
	return nil
}

// listenPrivate listens on a Unix socket only its owner can reach, in a
// directory only its owner can enter, holding lock for as long as the
// host lives: the lock says the socket is served (Running), and a socket
// left by a killed host, whose lock went with it, is replaced.
func listenPrivate(path, lock string) (net.Listener, func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, err
	}
	lf, err := os.OpenFile(lock, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, nil, err
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		return nil, nil, fmt.Errorf("%s: another host serves it (%w)", path, sandbox.ErrExists)
	}
	os.Remove(path)
	old := syscall.Umask(0o077)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		lf.Close()
		return nil, nil, err
	}
	return ln, func() { os.Remove(lock); lf.Close() }, nil
}

func lockPath(cfg *config.Config, id string) string {
	return strings.TrimSuffix(cfg.SessionSocket(id), ".sock") + ".lock"
}

// Running reports whether the session has a host: it holds the session's
// lock for as long as it serves the session's socket.
func Running(cfg *config.Config, id string) bool {
	f, err := os.OpenFile(lockPath(cfg, id), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// Dial connects to a running session's host.
func Dial(cfg *config.Config, id string) (*net.UnixConn, error) {
	c, err := net.DialTimeout("unix", cfg.SessionSocket(id), 5*time.Second)
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}
