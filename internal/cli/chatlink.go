package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sessionhost"
)

// A chat's session runs in a host process of its own (`mlagent
// session-host`, internal/sessionhost) when the chat can leave it
// running: the front end starts it, hands it the session to run, and
// then speaks the agent's protocol to it; `mlagent attach` reaches it
// later through the session's socket. -p and the demo run the session in
// this process instead.

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

func startHostedLink(ctx context.Context, env *Env, spec sessionhost.Spec) (*chatLink, error) {
	progress := progressFile(env)
	if progress != env.Stderr {
		defer progress.Close()
	}
	h, err := sessionhost.Start(ctx, env.Config, spec, progress)
	if err != nil {
		return nil, err
	}
	hello := h.Hello()
	return &chatLink{
		in: h.Input(), out: h.Events(), sandbox: hello.Sandbox, resumed: hello.Resumed,
		model: hello.Model, warnings: hello.Warnings,
		end: func(detached, violated bool) error {
			wait := 20 * time.Second
			if violated {
				wait = 0
			}
			h.Finish(detached, wait)
			return nil
		},
	}, nil
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

func startLocalLink(ctx context.Context, env *Env, spec sessionhost.Spec, keys launch.Keys, log *slog.Logger) (*chatLink, error) {
	host, agent, err := sessionhost.Launch(ctx, env.Config, log, keys, spec, env.Stderr)
	if err != nil {
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
