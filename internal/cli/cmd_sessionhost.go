package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sessionhost"
)

func init() {
	register(&Command{
		Name:    "session-host",
		Service: true,
		Summary: "keep a chat's session running for its front ends (started by run and resume)",
		Hidden:  true,
		Run:     runSessionHost,
	})
}

// runSessionHost is a session's host process. The front end that started
// it is on descriptor 3: it sends the hostSpec, gets a hostHello, then
// speaks the agent's protocol; later front ends attach through the
// session's socket. It ends when the agent does, ending the sandbox.
func runSessionHost(ctx context.Context, env *Env, args []string) int {
	if len(args) > 0 {
		fmt.Fprintln(env.Stderr, "mlagent session-host: started by mlagent run and resume; takes no arguments")
		return ExitUsage
	}
	f := os.NewFile(3, "front-end")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent session-host: no front end on descriptor 3: %v\n", err)
		return ExitUsage
	}
	first := c.(*net.UnixConn)
	defer first.Close()
	first.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(first).ReadSlice('\n')
	first.SetReadDeadline(time.Time{})
	var spec hostSpec
	if err == nil {
		err = json.Unmarshal(line, &spec)
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent session-host: reading the session to run: %v\n", err)
		return ExitFailure
	}
	hello := func(h hostHello) {
		h.Type = "hosted"
		b, _ := json.Marshal(h)
		first.Write(append(b, '\n'))
	}
	log := env.Log.With("session", spec.Session.ID)
	code, err := hostSession(ctx, env, spec, first, hello)
	if err != nil {
		log.Error("session host", "err", err)
		hello(hostHello{Error: err.Error(), Exists: errors.Is(err, sandbox.ErrExists)})
	}
	return code
}

func hostSession(ctx context.Context, env *Env, spec hostSpec, first *net.UnixConn, hello func(hostHello)) (int, error) {
	keys, err := launch.ResolveKeys(env.Config, env.Getenv)
	if err != nil {
		return ExitFailure, err
	}
	cfg := *env.Config
	if spec.Backend != "" {
		cfg.Sandbox.Backend = spec.Backend
	}
	log := env.Log.With("session", spec.Session.ID)
	host, err := launch.Start(ctx, launch.Options{
		Config: &cfg, Log: log, Upstream: spec.BaseURL,
		ModelKey: keys.Model, HFToken: keys.HF, GitHubToken: keys.GitHub,
		RemoteGateway: spec.Gateway, AdminURL: spec.GatewayAdmin, AdminToken: keys.Admin,
	})
	if err != nil {
		return ExitFailure, err
	}
	defer host.Close()
	progress := os.NewFile(4, "progress") // the chat's terminal, until the session runs
	agent, err := host.StartAgent(ctx, launch.AgentRequest{
		Session: spec.Session, Resume: spec.Resume, MaxTurns: spec.MaxTurns,
		BudgetUSD: spec.BudgetUSD, CPUs: spec.CPUs, MemoryBytes: spec.MemoryBytes, Pids: spec.Pids,
		HoldWrites: spec.HoldWrites, AskBeforeBash: spec.AskBeforeBash,
		Progress: progress, ModelFromSession: spec.ModelFromSession, Binds: spec.Binds,
	})
	progress.Close()
	if err != nil {
		if errors.Is(err, sandbox.ErrExists) {
			err = fmt.Errorf("session %s is already running: mlagent attach %s (%w)", spec.Session.ID, spec.Session.ID, sandbox.ErrExists)
		}
		return ExitFailure, err
	}
	defer agent.Terminate(context.WithoutCancel(ctx))

	sock := env.Config.SessionSocket(spec.Session.ID)
	ln, unlock, err := listenPrivate(sock, sessionLockPath(env, spec.Session.ID))
	if err != nil {
		return ExitFailure, err
	}
	defer unlock()
	defer os.Remove(sock)
	defer ln.Close()
	hello(hostHello{Session: spec.Session.ID, Sandbox: agent.Sandbox.Name(), Resumed: agent.Resumed,
		Model: agent.Session.Model, Warnings: agent.ModelWarnings})
	log.Info("session hosted", "sandbox", agent.Sandbox.Name(), "socket", sock)

	srv := sessionhost.New(agent, spec.Session.ID, agent.Session.Model, log)
	if err := srv.Serve(ctx, ln, first); err != nil && !errors.Is(err, context.Canceled) {
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
	return ExitOK, nil
}

// listenPrivate listens on a Unix socket only its owner can reach, in a
// directory only its owner can enter, holding lock for as long as the
// host lives: the lock says the socket is served (sessionRunning), and a
// socket left by a killed host, whose lock went with it, is replaced.
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
