// Package bwrap is the local sandbox backend: each sandbox is a
// bubblewrap process tree with its own user (non-root inside, no
// capabilities), PID, IPC, UTS and network namespaces, the host's /usr
// read-only, and `mlagent init` as PID 1. Nothing else of the host is
// visible, and the only way out is the gateway's Unix socket.
package bwrap

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mlagent/mlagent/internal/initproc"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/store"
	"github.com/mlagent/mlagent/internal/volume"
)

var _ sandbox.Backend = (*Backend)(nil)
var _ sandbox.Remover = (*Backend)(nil)
var _ sandbox.Sandbox = (*Sandbox)(nil)

// Options configure the backend.
type Options struct {
	// Bwrap is the bubblewrap binary; "" finds bwrap on $PATH.
	Bwrap string
	// Binary is the mlagent executable bound into every sandbox as PID 1
	// (and for `mlagent agent`); "" is os.Executable().
	Binary string
	// StateDir holds one directory per sandbox (workspace, control
	// socket, generated /etc files): $MLAGENT_HOME/sandboxes.
	StateDir string
	// Volumes are the named volumes (usually $MLAGENT_HOME/volumes).
	Volumes *volume.Store
	DB      *store.DB
	Log     *slog.Logger
	// DevDir is where GPU device nodes are looked for; "" is /dev.
	DevDir string
}

// Backend creates bubblewrap sandboxes. Safe for concurrent use.
type Backend struct {
	opts  Options
	bwrap string
	db    *store.DB
	log   *slog.Logger

	checkOnce sync.Once
	checkErr  error
}

// New checks that bubblewrap is installed and prepares the store.
func New(ctx context.Context, opts Options) (*Backend, error) {
	if opts.DB == nil || opts.StateDir == "" || opts.Volumes == nil {
		return nil, errors.New("bwrap backend: DB, StateDir and Volumes are required")
	}
	bw, err := findBwrap(opts.Bwrap)
	if err != nil {
		return nil, err
	}
	if opts.Binary == "" {
		if opts.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("bwrap backend: find the mlagent binary: %w", err)
		}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.DevDir == "" {
		opts.DevDir = "/dev"
	}
	if err := opts.DB.Migrate(ctx, migrations...); err != nil {
		return nil, fmt.Errorf("bwrap backend: %w", err)
	}
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("bwrap backend: %w", err)
	}
	return &Backend{opts: opts, bwrap: bw, db: opts.DB, log: opts.Log}, nil
}

// Sandbox is a handle on one bubblewrap sandbox: the creating process owns
// the bubblewrap process; any other process attaches through Get.
type Sandbox struct {
	b      *Backend
	rec    *record
	client *initproc.Client
	log    *slog.Logger

	// Set in the creating process only.
	cmd    *exec.Cmd
	exited chan struct{}

	termOnce sync.Once
	termErr  error
}

func (s *Sandbox) Name() string { return s.rec.Name }

// Info describes the sandbox as List would.
func (s *Sandbox) Info() sandbox.Info { return s.rec.info() }

func workspaceDir(stateDir string) string { return filepath.Join(stateDir, "workspace") }

// controlPath is the control socket, beside (not in) the directories bound
// into the sandbox: only the host reaches it; init inherits the listening
// descriptor.
func controlPath(stateDir string) string { return filepath.Join(stateDir, "ctl") }

// maxSocketPath is the limit of sun_path (108 bytes with the NUL).
const maxSocketPath = 107

// Create starts a sandbox and returns once its init serves.
func (b *Backend) Create(ctx context.Context, spec sandbox.Spec) (_ sandbox.Sandbox, err error) {
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("create sandbox: %w", err)
	}
	if b.checkOnce.Do(func() { b.checkErr = Check(ctx, b.bwrap) }); b.checkErr != nil {
		return nil, b.checkErr
	}
	if spec.Name == "" {
		spec.Name = randomName()
	}
	gpus, err := b.gpuDevices(spec.GPU)
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", spec.Name, err)
	}
	rec := &record{
		Name: spec.Name, StateDir: filepath.Join(b.opts.StateDir, spec.Name),
		Labels: spec.Labels, GPU: len(gpus) > 0, Created: time.Now(),
	}
	if rec.Labels == nil {
		rec.Labels = map[string]string{}
	}
	if spec.CPUs > 0 || spec.MemoryBytes > 0 {
		// bubblewrap has no cgroup support; delegating cgroups is left to a
		// later change rather than half-enforced with rlimits.
		rec.Notes = append(rec.Notes, "cpu/memory limits not enforced by the local backend")
		b.log.Warn("sandbox limits not enforced by the local backend", "sandbox", spec.Name,
			"cpus", spec.CPUs, "memory_bytes", spec.MemoryBytes)
	}
	if spec.GPU == sandbox.GPUOptional && len(gpus) == 0 {
		rec.Notes = append(rec.Notes, "no GPU on this host; running without one")
		b.log.Warn("GPU requested as optional but none found; running on the CPU", "sandbox", spec.Name)
	}
	if n := len(controlPath(rec.StateDir)); n > maxSocketPath {
		return nil, fmt.Errorf("create sandbox %s: state directory %s is too long for a Unix socket (%d > %d bytes); set a shorter MLAGENT_HOME", spec.Name, rec.StateDir, n, maxSocketPath)
	}
	if err := b.claim(ctx, rec); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", spec.Name, err)
	}
	defer func() {
		if err != nil {
			b.forget(context.WithoutCancel(ctx), rec.Name)
			os.Remove(controlPath(rec.StateDir))
			os.RemoveAll(filepath.Join(rec.StateDir, "etc"))
		}
	}()
	s := &Sandbox{b: b, rec: rec, client: &initproc.Client{Socket: controlPath(rec.StateDir)},
		log: b.log.With("sandbox", rec.Name), exited: make(chan struct{})}
	args, err := b.prepare(spec, rec, gpus)
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", spec.Name, err)
	}
	if err := s.start(ctx, args); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", spec.Name, err)
	}
	s.log.Debug("sandbox created", "pid", rec.Pid)
	return s, nil
}

// prepare makes the sandbox's directories and files and returns the
// bubblewrap arguments.
func (b *Backend) prepare(spec sandbox.Spec, rec *record, gpus []string) ([]string, error) {
	etc := filepath.Join(rec.StateDir, "etc")
	for _, d := range []string{workspaceDir(rec.StateDir), etc} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	files := map[string][]byte{
		"passwd": fmt.Appendf(nil, "%s:x:%d:%d:mlagent sandbox:%s:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
			sandbox.SandboxUser, sandbox.SandboxUID, sandbox.SandboxGID, sandbox.Home),
		"group": fmt.Appendf(nil, "%s:x:%d:\nnogroup:x:65534:\n", sandbox.SandboxUser, sandbox.SandboxGID),
		"hosts": fmt.Appendf(nil, "127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost\n", rec.Name),
	}
	env := []map[string]string{sandbox.BaseEnv(spec), spec.Env}
	if spec.Gateway != nil {
		files["gitconfig"] = sandbox.GitConfigFile(spec.Gateway.Token)
		env = append(env, sandbox.GatewayEnv(spec.Gateway.Token))
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(etc, name), data, 0o644); err != nil {
			return nil, err
		}
	}

	a := []string{
		"--unshare-user", "--uid", strconv.Itoa(sandbox.SandboxUID), "--gid", strconv.Itoa(sandbox.SandboxGID),
		"--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--unshare-cgroup-try",
		"--disable-userns", "--hostname", rec.Name,
		"--die-with-parent", "--new-session", "--as-pid-1", "--cap-drop", "ALL",
		"--clearenv",
	}
	for _, kv := range sandbox.Environ(env...) {
		k, v, _ := strings.Cut(kv, "=")
		a = append(a, "--setenv", k, v)
	}
	a = append(a, "--ro-bind", "/usr", "/usr")
	// Merged-/usr systems have /bin → usr/bin links; others real dirs.
	for _, d := range []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"} {
		fi, err := os.Lstat(d)
		switch {
		case err != nil:
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(d)
			if err == nil {
				a = append(a, "--symlink", target, d)
			}
		case fi.IsDir():
			a = append(a, "--ro-bind", d, d)
		}
	}
	for _, p := range hostEtc {
		a = append(a, "--ro-bind-try", p, p)
	}
	for _, name := range []string{"passwd", "group", "hosts"} {
		a = append(a, "--ro-bind", filepath.Join(etc, name), "/etc/"+name)
	}
	if spec.Gateway != nil {
		a = append(a, "--ro-bind", filepath.Join(etc, "gitconfig"), sandbox.GitConfig,
			"--bind", spec.Gateway.Socket, gatewaySocket)
	}
	a = append(a,
		"--proc", "/proc",
		"--dev", "/dev",
		"--tmpfs", "/tmp",
		"--tmpfs", sandbox.Home,
		"--bind", workspaceDir(rec.StateDir), sandbox.Workspace,
		"--ro-bind", b.opts.Binary, sandbox.BinaryPath,
	)
	for _, m := range spec.Volumes {
		dir, err := b.opts.Volumes.Ensure(m.Volume)
		if err != nil {
			return nil, err
		}
		a = append(a, "--bind", dir, m.Path)
	}
	for _, dev := range gpus {
		a = append(a, "--dev-bind", dev, "/dev/"+filepath.Base(dev))
	}
	a = append(a, "--chdir", sandbox.Workspace, "--info-fd", "3")
	// The command itself must follow on bwrap's command line: --args
	// takes options only.
	a = append(a, "--", sandbox.BinaryPath, "init", "--control-fd", "6", "--ready-fd", "4",
		"--dir", sandbox.Workspace)
	if spec.Gateway != nil {
		a = append(a, "--gateway-socket", gatewaySocket, "--bridge-listen", sandbox.GatewayAddr)
	}
	if spec.Timeout > 0 {
		a = append(a, "--timeout", spec.Timeout.String())
	}
	if spec.IdleTimeout > 0 {
		a = append(a, "--idle-timeout", spec.IdleTimeout.String())
	}
	return a, nil
}

const gatewaySocket = "/run/gateway.sock"

// hostEtc is all of the host's /etc a sandbox sees: what TLS, the dynamic
// linker, Debian's alternatives and Python need.
var hostEtc = []string{
	"/etc/ssl", "/etc/ca-certificates", "/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf",
	"/etc/ld.so.conf.d", "/etc/localtime", "/etc/nsswitch.conf", "/etc/mime.types",
	"/etc/python3", "/etc/python3.11", "/etc/python3.12", "/etc/python3.13",
}

// start runs bubblewrap and waits for init's "ok".
func (s *Sandbox) start(ctx context.Context, args []string) error {
	// Arguments go through a pipe (--args) so that the sandbox's token is
	// not in the host's view of bwrap's command line.
	argR, argW, err := os.Pipe()
	if err != nil {
		return err
	}
	infoR, infoW, err := os.Pipe()
	if err != nil {
		return err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	ctl, err := initproc.Listen(controlPath(s.rec.StateDir))
	if err != nil {
		return err
	}
	defer func() {
		for _, f := range []*os.File{argR, argW, infoR, infoW, readyR, readyW, ctl} {
			f.Close()
		}
	}()
	var stderr strings.Builder
	split := slices.Index(args, "--")
	opts, command := args[:split], args[split:]
	cmd := exec.Command(s.b.bwrap, append([]string{"--args", "5"}, command...)...)
	// bwrap passes on the descriptors it does not use itself: the control
	// listener reaches init as fd 6.
	cmd.ExtraFiles = []*os.File{infoW, readyW, argR, ctl} // fds 3, 4, 5, 6
	cmd.Stdin = nil
	cmd.Stderr = &limitedWriter{w: &stderr, n: 4096}
	cmd.Env = []string{} // bwrap itself needs nothing of ours
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	go func() {
		for _, a := range opts {
			io.WriteString(argW, a+"\x00")
		}
		argW.Close()
	}()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start bwrap: %w", err)
	}
	infoW.Close()
	readyW.Close()
	argR.Close()
	ctl.Close()
	s.cmd = cmd
	go func() {
		cmd.Wait()
		close(s.exited)
	}()

	type result struct {
		pid   int
		ready string
		err   error
	}
	done := make(chan result, 1)
	go func() {
		var info struct {
			ChildPid int `json:"child-pid"`
		}
		err := json.NewDecoder(infoR).Decode(&info)
		line, _ := bufio.NewReader(readyR).ReadString('\n')
		done <- result{info.ChildPid, strings.TrimSpace(line), err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		s.kill()
		return ctx.Err()
	}
	if r.ready != "ok" {
		s.kill()
		<-s.exited
		msg := strings.TrimSpace(stderr.String())
		if r.ready != "" {
			msg = strings.TrimSpace(strings.TrimPrefix(r.ready, "error:") + "\n" + msg)
		}
		return fmt.Errorf("sandbox did not start: %s", explainBwrapError(msg))
	}
	start, err := procStartTime(r.pid)
	if err != nil {
		s.kill()
		return fmt.Errorf("sandbox init (pid %d): %w", r.pid, err)
	}
	s.rec.Pid, s.rec.StartTime = r.pid, start
	return s.b.setPid(ctx, s.rec.Name, r.pid, start)
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		q := p[:min(len(p), l.n)]
		l.n -= len(q)
		l.w.Write(q)
	}
	return len(p), nil
}

// kill ends every process of the sandbox: killing its PID 1 makes the
// kernel kill the rest of the PID namespace.
func (s *Sandbox) kill() {
	if s.rec.Pid > 0 {
		if alive(s.rec.Pid, s.rec.StartTime) {
			syscall.Kill(s.rec.Pid, syscall.SIGKILL)
		}
		// bwrap itself exits once its child is gone; killing it first
		// would orphan PID 1 while the kernel is still emptying the
		// namespace.
		return
	}
	if s.cmd != nil && s.cmd.Process != nil {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// Exec runs a command inside; see sandbox.Sandbox.
func (s *Sandbox) Exec(ctx context.Context, req sandbox.ExecRequest) (int, error) {
	if err := s.running(); err != nil {
		return -1, err
	}
	code, err := s.client.Exec(ctx, req.Argv, sandbox.Environ(req.Env), req.Dir, req.Stdin, req.Stdout, req.Stderr)
	if err != nil && ctx.Err() != nil {
		return code, ctx.Err()
	}
	if err != nil && s.running() != nil {
		return code, fmt.Errorf("%w: %s (%v)", sandbox.ErrNotRunning, s.rec.Name, err)
	}
	return code, err
}

func (s *Sandbox) running() error {
	if s.cmd != nil {
		select {
		case <-s.exited:
			return fmt.Errorf("%w: %s", sandbox.ErrNotRunning, s.rec.Name)
		default:
		}
	}
	// Another process may have terminated it.
	if !alive(s.rec.Pid, s.rec.StartTime) {
		return fmt.Errorf("%w: %s", sandbox.ErrNotRunning, s.rec.Name)
	}
	return nil
}

func (s *Sandbox) ReadFile(ctx context.Context, path string) ([]byte, error) {
	if err := s.running(); err != nil {
		return nil, err
	}
	return s.client.ReadFile(ctx, path)
}

func (s *Sandbox) WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode) error {
	if err := s.running(); err != nil {
		return err
	}
	return s.client.WriteFile(ctx, path, data, mode)
}

// Terminate kills the sandbox, waits until none of its processes is left,
// and forgets it. Its workspace stays until Backend.Remove.
func (s *Sandbox) Terminate(ctx context.Context) error {
	s.termOnce.Do(func() { s.termErr = s.terminate(ctx) })
	return s.termErr
}

func (s *Sandbox) terminate(ctx context.Context) error {
	s.kill()
	if s.cmd != nil && s.rec.Pid <= 0 {
		select {
		case <-s.exited:
		case <-ctx.Done():
			return fmt.Errorf("terminate %s: %w", s.rec.Name, ctx.Err())
		}
	}
	// PID 1 turns zombie only after the kernel has killed and reaped every
	// other process of its namespace; bwrap itself exits a little later,
	// and its own goroutine reaps it.
	if err := waitGone(ctx, s.rec.Pid, s.rec.StartTime); err != nil {
		return fmt.Errorf("terminate %s: %w", s.rec.Name, err)
	}
	os.Remove(controlPath(s.rec.StateDir))
	os.RemoveAll(filepath.Join(s.rec.StateDir, "etc"))
	return s.b.forget(context.WithoutCancel(ctx), s.rec.Name)
}

// waitGone waits for a process that is not our child to disappear. Its
// parent (the creator's bwrap) reaps it; when the PID 1 of a namespace is
// gone, so is every process in it.
func waitGone(ctx context.Context, pid int, start uint64) error {
	if pid <= 0 {
		return nil
	}
	// A pidfd becomes readable when the process exits (turns zombie).
	if fd, err := unix.PidfdOpen(pid, 0); err == nil {
		defer unix.Close(fd)
		// Opened after a possible reuse of pid: check it is still ours.
		for alive(pid, start) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, 50); err != nil && err != unix.EINTR {
				break // fall back to polling /proc
			}
		}
	}
	for delay := time.Millisecond; alive(pid, start); delay = min(2*delay, 50*time.Millisecond) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
	return nil
}

// Get attaches to a running sandbox.
func (b *Backend) Get(ctx context.Context, name string) (sandbox.Sandbox, error) {
	rec, err := b.lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	s := &Sandbox{b: b, rec: rec, client: &initproc.Client{Socket: controlPath(rec.StateDir)},
		log: b.log.With("sandbox", name)}
	if !alive(rec.Pid, rec.StartTime) {
		return s, fmt.Errorf("%w: %s", sandbox.ErrNotRunning, name)
	}
	return s, nil
}

// List returns every recorded sandbox, noticing dead ones.
func (b *Backend) List(ctx context.Context) ([]sandbox.Info, error) {
	rows, err := b.db.QueryContext(ctx, selectRecord+` ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	defer rows.Close()
	var out []sandbox.Info
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("list sandboxes: %w", err)
		}
		out = append(out, r.info())
	}
	return out, rows.Err()
}

// Remove deletes the persisted workspace of a sandbox that is not running,
// and its record if a dead one is left.
func (b *Backend) Remove(ctx context.Context, name string) error {
	if err := sandbox.ValidName(name); err != nil {
		return err
	}
	if rec, err := b.lookup(ctx, name); err == nil {
		if alive(rec.Pid, rec.StartTime) {
			return fmt.Errorf("remove %s: %w", name, errors.New("sandbox is running; kill it first"))
		}
		if err := b.forget(ctx, name); err != nil {
			return err
		}
	}
	dir := filepath.Join(b.opts.StateDir, name)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("remove %s: %w", name, sandbox.ErrNotFound)
	}
	// Files made inside may be read-only to us; make them writable first.
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// gpuDevices lists the NVIDIA device nodes to bind for mode.
func (b *Backend) gpuDevices(mode sandbox.GPUMode) ([]string, error) {
	if mode == sandbox.GPUNone {
		return nil, nil
	}
	matches, _ := filepath.Glob(filepath.Join(b.opts.DevDir, "nvidia*"))
	var devs []string
	var haveGPU bool
	for _, m := range matches {
		fi, err := os.Stat(m)
		if err != nil || fi.Mode()&fs.ModeDevice == 0 {
			continue
		}
		base := filepath.Base(m)
		if strings.TrimLeft(base[len("nvidia"):], "0123456789") == "" && base != "nvidia" {
			haveGPU = true
		}
		devs = append(devs, m)
	}
	if !haveGPU {
		if mode == sandbox.GPURequired {
			return nil, sandbox.ErrNoGPU
		}
		return nil, nil
	}
	return devs, nil
}

func randomName() string {
	var b [4]byte
	rand.Read(b[:])
	return "sb-" + hex.EncodeToString(b[:])
}
