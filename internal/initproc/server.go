package initproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mlagent/mlagent/internal/relay"
	"github.com/mlagent/mlagent/internal/sandbox"
)

// Options configure init.
type Options struct {
	// ControlListener is the control socket, made by the host in a
	// directory the sandbox cannot see and inherited as a descriptor: no
	// path inside leads to it, so code in the sandbox can neither replace
	// it nor take the stdio the host passes through it.
	ControlListener *net.UnixListener
	// Control, when ControlListener is nil, is a path where init creates
	// the control socket itself (mode 0600), or "@name" for an abstract
	// socket: in a Kubernetes pod, where no host directory can hold it,
	// an abstract name that init holds from its start cannot be replaced
	// by code inside, which can reach it anyway as the same user.
	Control string
	// Ready, when set, gets "ok\n" once init serves, or "error: …\n".
	Ready io.WriteCloser
	// GatewaySocket, when set, is the gateway's Unix socket; GatewayTCP,
	// otherwise, its host:port (a pod reaches the gateway's Service by
	// address). BridgeListen (default 127.0.0.1:8790) forwards to it.
	GatewaySocket string
	GatewayTCP    string
	BridgeListen  string
	// EnvFile, when set, holds NUL-separated KEY=VALUE entries added to
	// init's environment (and so every command's) at start: how a pod
	// gets its token without it being in the pod's spec.
	EnvFile string
	// PathPrepend is put in front of the PATH init inherited (the
	// image's), so that its own binary's directory comes first.
	PathPrepend string
	// Nproc, when positive, is the RLIMIT_NPROC init sets on itself
	// before any command: where the host gave it no pids cgroup (a pod).
	Nproc int
	// Timeout ends the sandbox after that long; IdleTimeout after that
	// long with no command running. 0 = never.
	Timeout, IdleTimeout time.Duration
	// DefaultDir is where commands run when the request names no dir.
	DefaultDir string
	Log        *slog.Logger
}

// server is the running init.
type server struct {
	opts   Options
	log    *slog.Logger
	reaper *reaper

	mu       sync.Mutex
	active   int
	lastIdle time.Time
}

// Run serves until ctx ends, a timeout fires, or SIGTERM arrives; then, as
// PID 1, it kills every process of the sandbox.
func Run(ctx context.Context, opts Options) (err error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ready := func(msg string) {
		if opts.Ready != nil {
			io.WriteString(opts.Ready, msg+"\n")
			opts.Ready.Close()
			opts.Ready = nil
		}
	}
	defer func() {
		if err != nil {
			ready("error: " + err.Error())
		}
	}()
	if os.Getpid() != 1 {
		// Outside a PID namespace, still adopt orphans so they are reaped.
		unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	}
	// Commands inside run as init's user. Not dumpable, init cannot be
	// ptraced, nor its descriptors (the control socket, the host's stdio
	// of running commands) taken through /proc/1/fd or pidfd_getfd, by a
	// process without CAP_SYS_PTRACE. Commands init starts are dumpable
	// again after execve.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("init: not dumpable: %w", err)
	}
	if err := loadEnv(opts.EnvFile, opts.PathPrepend); err != nil {
		return err
	}
	if opts.Nproc > 0 {
		lim := unix.Rlimit{Cur: uint64(opts.Nproc), Max: uint64(opts.Nproc)}
		if err := unix.Setrlimit(unix.RLIMIT_NPROC, &lim); err != nil {
			return fmt.Errorf("init: process limit: %w", err)
		}
	}
	s := &server{opts: opts, log: log, reaper: startReaper(), lastIdle: time.Now()}
	defer s.shutdown()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		select {
		case sig := <-sigs:
			log.Info("init: signal, shutting down", "signal", sig)
			cancel(fmt.Errorf("signal %v", sig))
		case <-ctx.Done():
		}
	}()

	ln := opts.ControlListener
	if ln == nil {
		if opts.Control == "" {
			return errors.New("init: no control socket")
		}
		abstract := strings.HasPrefix(opts.Control, "@")
		if !abstract {
			os.Remove(opts.Control)
		}
		if ln, err = net.ListenUnix("unixpacket", &net.UnixAddr{Name: opts.Control, Net: "unixpacket"}); err != nil {
			return fmt.Errorf("init: control socket: %w", err)
		}
		if !abstract {
			if err := os.Chmod(opts.Control, 0o600); err != nil {
				ln.Close()
				return fmt.Errorf("init: control socket: %w", err)
			}
		}
	}
	defer ln.Close()
	if opts.GatewaySocket != "" || opts.GatewayTCP != "" {
		network, target := "unix", opts.GatewaySocket
		if target == "" {
			network, target = "tcp", opts.GatewayTCP
		}
		addr := opts.BridgeListen
		if addr == "" {
			addr = sandbox.GatewayAddr
		}
		bl, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("init: gateway bridge: %w", err)
		}
		defer bl.Close()
		// Byte for byte to the gateway (its socket, or its address from a
		// pod): the sandbox has no other network, and the gateway sees
		// plain HTTP (and CONNECT) as if spoken to it directly.
		go relay.Serve(ctx, bl, network, target, log)
	}
	if opts.Timeout > 0 {
		t := time.AfterFunc(opts.Timeout, func() {
			log.Info("init: wall-clock timeout, shutting down", "timeout", opts.Timeout)
			cancel(timeLimit{fmt.Sprintf("wall-clock timeout of %v reached", opts.Timeout)})
		})
		defer t.Stop()
	}
	if opts.IdleTimeout > 0 {
		go s.watchIdle(ctx, cancel)
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	ready("ok")
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				s.drain(2 * time.Second)
				return nil
			}
			return fmt.Errorf("init: accept: %w", err)
		}
		go s.handle(ctx, conn)
	}
}

func (s *server) busy(delta int) {
	s.mu.Lock()
	s.active += delta
	if s.active == 0 {
		s.lastIdle = time.Now()
	}
	s.mu.Unlock()
}

// drain gives the requests in progress, whose commands the shutdown has
// killed, up to max to send their replies (which say why they ended)
// before init exits and takes their connections with it.
func (s *server) drain(max time.Duration) {
	for end := time.Now().Add(max); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		n := s.active
		s.mu.Unlock()
		if n == 0 {
			return
		}
	}
}

func (s *server) watchIdle(ctx context.Context, cancel context.CancelCauseFunc) {
	tick := min(s.opts.IdleTimeout/4, time.Second)
	t := time.NewTicker(max(tick, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.mu.Lock()
			idle := s.active == 0 && time.Since(s.lastIdle) >= s.opts.IdleTimeout
			s.mu.Unlock()
			if idle {
				s.log.Info("init: idle timeout, shutting down", "idle_timeout", s.opts.IdleTimeout)
				cancel(timeLimit{fmt.Sprintf("idle for %v", s.opts.IdleTimeout)})
				return
			}
		}
	}
}

// shutdown kills what is left. As PID 1 that is everything in the
// namespace (and the kernel would do it anyway once we exit); otherwise
// only the process groups init started.
func (s *server) shutdown() {
	if os.Getpid() == 1 {
		syscall.Kill(-1, syscall.SIGKILL)
		return
	}
	s.reaper.killAll()
}

func (s *server) handle(ctx context.Context, conn *net.UnixConn) {
	defer conn.Close()
	var req Request
	fds, err := recv(conn, &req)
	if err != nil {
		return
	}
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), fmt.Sprintf("fd%d", i))
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	s.busy(1)
	defer s.busy(-1)
	var rep Reply
	switch req.Op {
	case OpPing:
	case OpExec:
		if len(files) != 3 {
			rep.Error = "exec needs 3 descriptors"
			break
		}
		rep = s.exec(ctx, conn, &req, files)
	case OpRead:
		if len(files) != 1 {
			rep.Error = "read needs 1 descriptor"
			break
		}
		rep = readTo(s.path(req.Path), files[0])
	case OpWrite:
		if len(files) != 1 {
			rep.Error = "write needs 1 descriptor"
			break
		}
		rep = writeFrom(s.path(req.Path), os.FileMode(req.Mode), files[0])
	default:
		rep.Error = fmt.Sprintf("unknown operation %q", req.Op)
	}
	rep.Done = true
	send(conn, rep)
}

func (s *server) path(p string) string {
	if filepath.IsAbs(p) || s.opts.DefaultDir == "" {
		return p
	}
	return filepath.Join(s.opts.DefaultDir, p)
}

func errReply(err error) Reply {
	return Reply{Error: err.Error(), Errno: errnoName(err), Exit: -1}
}

func readTo(path string, w *os.File) Reply {
	f, err := os.Open(path)
	if err != nil {
		return errReply(err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return errReply(&os.PathError{Op: "read", Path: path, Err: syscall.EISDIR})
	}
	_, err = io.Copy(w, f)
	w.Close()
	if err != nil {
		return errReply(err)
	}
	return Reply{}
}

func writeFrom(path string, mode os.FileMode, r *os.File) Reply {
	if mode == 0 {
		mode = 0o644
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return errReply(err)
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errReply(err)
	}
	return Reply{}
}

func (s *server) exec(ctx context.Context, conn *net.UnixConn, req *Request, files []*os.File) Reply {
	env := mergeEnv(os.Environ(), req.Env)
	dir := req.Dir
	if dir == "" {
		dir = s.opts.DefaultDir
	}
	argv0, err := lookPath(req.Argv[0], env)
	if err != nil {
		return Reply{Error: err.Error(), Errno: errnoName(err), Exit: 127}
	}
	attr := &syscall.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: []uintptr{files[0].Fd(), files[1].Fd(), files[2].Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	pid, done, err := s.reaper.start(argv0, req.Argv, attr)
	if err != nil {
		return Reply{Error: fmt.Sprintf("exec %s: %v", req.Argv[0], err), Errno: errnoName(err), Exit: 126}
	}
	for _, f := range files {
		f.Close() // the child has them; EOF must reach the host when it exits
	}
	if err := send(conn, Reply{Pid: pid}); err != nil {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	// A kill request, or the client going away, kills the group while its
	// leader runs; after that the pid may belong to someone else.
	var exited atomic.Bool
	go func() {
		var r Request
		for {
			fds, err := recv(conn, &r)
			closeAll(fds)
			if err != nil || r.Op == OpKill {
				if !exited.Load() {
					syscall.Kill(-pid, syscall.SIGKILL)
				}
				return
			}
		}
	}()
	select {
	case st := <-done:
		exited.Store(true)
		return Reply{Exit: exitCode(st)}
	case <-ctx.Done():
		syscall.Kill(-pid, syscall.SIGKILL)
		return Reply{Exit: exitCode(<-done), Error: shuttingDown(ctx), Errno: errnoName(context.Cause(ctx))}
	}
}

// timeLimit is the cause of a shutdown by --timeout or --idle-timeout;
// the commands it cuts short reply with errno ETIME (sandbox.ErrTimedOut).
type timeLimit struct{ why string }

func (t timeLimit) Error() string { return t.why }
func (t timeLimit) Unwrap() error { return syscall.ETIME }

// shuttingDown says why a command was cut short by the sandbox ending.
func shuttingDown(ctx context.Context) string {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return "sandbox shutting down: " + c.Error()
	}
	return "sandbox shutting down"
}

func exitCode(st syscall.WaitStatus) int {
	switch {
	case st.Exited():
		return st.ExitStatus()
	case st.Signaled():
		return 128 + int(st.Signal())
	}
	return -1
}

func mergeEnv(base, extra []string) []string {
	idx := map[string]int{}
	out := make([]string, 0, len(base)+len(extra))
	for _, kv := range append(base, extra...) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// lookPath resolves name against the PATH of env, not of init.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &os.PathError{Op: "exec", Path: name, Err: errors.Join(errNotInPath, syscall.ENOENT)}
}

var errNotInPath = errors.New("executable file not found in $PATH")

// maxEnvFile bounds the environment file init reads.
const maxEnvFile = 1 << 20

// loadEnv adds the entries of an environment file to init's own, and
// puts prepend in front of PATH.
func loadEnv(file, prepend string) error {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("init: environment: %w", err)
		}
		if len(b) > maxEnvFile {
			return fmt.Errorf("init: environment file %s is over %d bytes", file, maxEnvFile)
		}
		for _, kv := range strings.Split(string(b), "\x00") {
			if kv == "" {
				continue
			}
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("init: environment file %s: bad entry %q", file, k)
			}
			if err := os.Setenv(k, v); err != nil {
				return fmt.Errorf("init: environment: %w", err)
			}
		}
	}
	if prepend != "" {
		p := os.Getenv("PATH")
		if p == "" {
			p = "/usr/local/bin:/usr/bin:/bin"
		}
		os.Setenv("PATH", prepend+":"+p)
	}
	return nil
}
