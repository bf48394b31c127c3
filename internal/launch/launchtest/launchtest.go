// Package launchtest plays `mlagent agent` in sandboxes that are only
// goroutines, so that launch and the front ends built on it (the chat,
// the Slack bot) are tested through launch's real plumbing (the event
// bookkeeping, the gateway's approvals) without bubblewrap. The play
// function stands for the agent process; a hostile one writes what a
// compromised agent could.
package launchtest

import (
	"context"
	"io"
	"os"
	"sync"
	"testing"

	"github.com/mlagent/mlagent/internal/config"
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/sandbox"
)

// Play stands for `mlagent agent`: it reads the agent's stdin from in,
// writes its events to out, and returns its exit code.
type Play func(argv []string, in io.Reader, out, stderr io.Writer) int

// ReadInputs passes each input the agent reads from r to f until a
// shutdown or the end of its input, and returns 0: the agent's exit code
// then. f may be nil.
func ReadInputs(r *protocol.Reader, f func(protocol.Input)) int {
	for {
		in, err := r.Next()
		if err != nil || in.Type == protocol.InputShutdown {
			return 0
		}
		if f != nil {
			f(in)
		}
	}
}

// Config is the default config with a temporary home (removed after the
// test), short because Unix socket paths live under it.
func Config(t testing.TB) *config.Config {
	t.Helper()
	home, err := os.MkdirTemp("", "mlh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	cfg := config.Defaults()
	cfg.Home = home
	return cfg
}

// AgentBackend is a sandbox.Backend whose sandboxes run Play for every
// Exec. Safe for concurrent use.
type AgentBackend struct {
	Play Play

	mu   sync.Mutex
	argv [][]string
	gw   *sandbox.GatewayAccess
}

// Create makes a sandbox; the spec's way to the gateway is kept.
func (b *AgentBackend) Create(_ context.Context, s sandbox.Spec) (sandbox.Sandbox, error) {
	b.mu.Lock()
	b.gw = s.Gateway
	b.mu.Unlock()
	return &agentSandbox{b: b, name: s.Name, done: make(chan struct{})}, nil
}

// Get finds nothing: the sandboxes are not recorded.
func (b *AgentBackend) Get(context.Context, string) (sandbox.Sandbox, error) {
	return nil, sandbox.ErrNotFound
}

// List lists nothing.
func (b *AgentBackend) List(context.Context) ([]sandbox.Info, error) { return nil, nil }

// Argv is every Exec's argv so far.
func (b *AgentBackend) Argv() [][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][]string(nil), b.argv...)
}

// Gateway is how the last sandbox created reaches the gateway: the
// address and the sandbox's token, as the agent inside would use them.
func (b *AgentBackend) Gateway() *sandbox.GatewayAccess {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gw
}

type agentSandbox struct {
	sandbox.Sandbox
	b    *AgentBackend
	name string
	once sync.Once
	done chan struct{}
}

func (s *agentSandbox) Name() string { return s.name }

func (s *agentSandbox) Exec(_ context.Context, r sandbox.ExecRequest) (int, error) {
	s.b.mu.Lock()
	s.b.argv = append(s.b.argv, r.Argv)
	s.b.mu.Unlock()
	code := make(chan int, 1)
	go func() { code <- s.b.Play(r.Argv, r.Stdin, r.Stdout, r.Stderr) }()
	select {
	case c := <-code:
		return c, nil
	case <-s.done:
		return 137, nil
	}
}

func (s *agentSandbox) Terminate(context.Context) error {
	s.once.Do(func() { close(s.done) })
	return nil
}
