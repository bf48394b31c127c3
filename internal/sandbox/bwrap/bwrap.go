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

	"github.com/mlagent/mlagent/internal/image"
	"github.com/mlagent/mlagent/internal/initproc"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/cgroup"
	"github.com/mlagent/mlagent/internal/store"
	"github.com/mlagent/mlagent/internal/volume"
)

var _ sandbox.Backend = (*Backend)(nil)
var _ sandbox.Remover = (*Backend)(nil)
var _ sandbox.Reaper = (*Backend)(nil)
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
	// Images is the image cache sandboxes with Spec.Image run from; nil:
	// such sandboxes are refused.
	Images *image.Store
	// HostRoot and LDConfig are where the GPU driver's libraries are
	// looked for (see package nvidia); tests fake them.
	HostRoot string
	LDConfig func() ([]byte, error)
}

// Backend creates bubblewrap sandboxes. Safe for concurrent use.
type Backend struct {
	opts  Options
	bwrap string
	db    *store.DB
	log   *slog.Logger

	rootOnce sync.Once
	rootArgs []string
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
	// Groups of sandboxes whose CLI was killed and whose home is gone
	// (nobody reaps those by name).
	if n := cgroup.Sweep(10 * time.Minute); n > 0 {
		opts.Log.Info("removed empty sandbox cgroups left behind", "groups", n)
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
	cg     *cgroup.Group // nil without limits
	nproc  int           // RLIMIT_NPROC for init, where no pids cgroup bounds the tasks

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
	if spec.Gateway != nil && spec.Gateway.Network != "unix" {
		return nil, fmt.Errorf("create sandbox: a bubblewrap sandbox reaches the gateway through a host Unix socket, not %s %s", spec.Gateway.Network, spec.Gateway.Address)
	}
	// No separate bubblewrap run checks the namespaces first (it cost as
	// much as the sandbox itself): a start that fails for them says so
	// (bwrapError wraps ErrNamespaces) from bubblewrap's own message.
	if spec.Name == "" {
		spec.Name = randomName()
	}
	gpus, err := b.gpuDevices(spec.GPU)
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", spec.Name, err)
	}
	var root *imageRoot
	if spec.Image != "" {
		if root, err = b.openImage(spec, gpus); err != nil {
			return nil, fmt.Errorf("create sandbox %s: %w", spec.Name, err)
		}
		if root.noGPU {
			gpus = nil
		}
	}
	rec := &record{
		Name: spec.Name, StateDir: filepath.Join(b.opts.StateDir, spec.Name),
		Labels: spec.Labels, GPU: len(gpus) > 0, Created: time.Now(), Volumes: spec.Volumes,
	}
	if root != nil {
		rec.Image, rec.ImageID = root.img.Ref, root.img.ID
		rec.Notes = append(rec.Notes, root.notes...)
	}
	if rec.Labels == nil {
		rec.Labels = map[string]string{}
	}
	if spec.GPU == sandbox.GPUOptional && len(gpus) == 0 {
		rec.Notes = append(rec.Notes, "no GPU on this host; running without one")
		b.log.Warn("GPU requested as optional but none found; running on the CPU", "sandbox", spec.Name)
	}
	if n := len(controlPath(rec.StateDir)); n > maxSocketPath {
		return nil, fmt.Errorf("create sandbox %s: state directory %s is too long for a Unix socket (%d > %d bytes); set a shorter MLAGENT_HOME", spec.Name, rec.StateDir, n, maxSocketPath)
	}
	cg, nproc, err := b.limits(spec, rec)
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", spec.Name, err)
	}
	if err := b.claim(ctx, rec); err != nil {
		if cg != nil {
			cg.Remove()
		}
		return nil, fmt.Errorf("create sandbox %s: %w", spec.Name, err)
	}
	s := &Sandbox{b: b, rec: rec, client: &initproc.Client{Socket: controlPath(rec.StateDir)},
		log: b.log.With("sandbox", rec.Name), exited: make(chan struct{}), cg: cg, nproc: nproc}
	defer func() {
		if err != nil {
			b.forget(context.WithoutCancel(ctx), rec.Name)
			os.Remove(controlPath(rec.StateDir))
			if s.cg != nil && s.cg.Remove() == nil {
				os.Remove(cgroupPath(rec.StateDir))
			}
		}
	}()
	args, files, err := b.prepare(spec, rec, gpus, root)
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", spec.Name, err)
	}
	if err := s.start(ctx, args, files); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", spec.Name, err)
	}
	s.log.Debug("sandbox created", "pid", rec.Pid)
	return s, nil
}

// prepare makes the sandbox's workspace and returns the bubblewrap
// arguments, with the descriptors they name (fds firstFileFD, …) that the
// caller passes to bubblewrap and closes once it has started. The root
// is the host's /usr (hostRootArgs) or an image's (root.args).
func (b *Backend) prepare(spec sandbox.Spec, rec *record, gpus []string, root *imageRoot) (_ []string, files []*os.File, err error) {
	defer func() {
		if err != nil {
			closeFiles(files)
			files = nil
		}
	}()
	if err := os.MkdirAll(workspaceDir(rec.StateDir), 0o700); err != nil {
		return nil, nil, err
	}
	env := []map[string]string{sandbox.BaseEnv(spec), spec.Env}
	if root != nil {
		// The image's environment under the sandbox's own (HOME, USER,
		// HF_HOME…), except PATH, LANG and what the image adds.
		env = []map[string]string{root.env, spec.Env}
	}
	if spec.Gateway != nil {
		env = append(env, sandbox.GatewayEnv(spec.Gateway.Token))
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
	// fd passes f to bubblewrap and returns the descriptor's number there.
	fd := func(f *os.File) string {
		files = append(files, f)
		return strconv.Itoa(firstFileFD + len(files) - 1)
	}
	// file adds f as a file at dest in /etc (read-only: /etc is).
	file := func(f *os.File, dest string, perm fs.FileMode) {
		a = append(a, "--perms", fmt.Sprintf("%04o", perm), "--file", fd(f), dest)
	}
	// data adds a file with the given content: bubblewrap reads it from a
	// pipe, so it never touches the host's disk.
	data := func(dest string, content []byte) error {
		f, err := dataFile(content)
		if err != nil {
			return err
		}
		file(f, dest, 0o644)
		return nil
	}
	workdir := sandbox.Workspace
	if root != nil {
		err = root.args(&a, spec, rec, data)
		workdir = root.workdir
	} else {
		err = b.hostRootArgs(&a, spec, rec, file, data)
	}
	if err != nil {
		return nil, files, err
	}
	a = append(a,
		"--proc", "/proc",
		"--dev", "/dev",
		"--tmpfs", "/tmp",
		"--tmpfs", sandbox.Home,
		"--bind", workspaceDir(rec.StateDir), sandbox.Workspace,
	)
	for _, m := range spec.Volumes {
		dir, err := b.opts.Volumes.Ensure(m.Volume)
		if err != nil {
			return nil, files, err
		}
		a = append(a, "--bind", dir, m.Path)
	}
	for _, m := range spec.Binds {
		if m.Writable {
			a = append(a, "--bind", m.Source, m.Path)
		} else {
			a = append(a, "--ro-bind", m.Source, m.Path)
		}
	}
	for _, dev := range gpus {
		a = append(a, "--dev-bind", dev, "/dev/"+filepath.Base(dev))
	}
	// No setuid or setgid file can be made inside (seccomp.go).
	if prog := seccompFilter(hostABIs()); prog != nil {
		f, err := dataFile(prog)
		if err != nil {
			return nil, files, err
		}
		a = append(a, "--seccomp", fd(f))
	}
	a = append(a, "--chdir", workdir, "--info-fd", "3")
	// The command itself must follow on bwrap's command line: --args
	// takes options only.
	a = append(a, "--", sandbox.BinaryPath, "init", "--control-fd", "6", "--ready-fd", "4",
		"--dir", workdir)
	if spec.Gateway != nil {
		a = append(a, "--gateway-socket", gatewaySocket, "--bridge-listen", sandbox.GatewayAddr)
	}
	if spec.Timeout > 0 {
		a = append(a, "--timeout", spec.Timeout.String())
	}
	if spec.IdleTimeout > 0 {
		a = append(a, "--idle-timeout", spec.IdleTimeout.String())
	}
	return a, files, nil
}

// hostRootArgs adds the filesystem of a sandbox on the host's /usr.
//
// /etc is a tmpfs of its own, remounted read-only once filled: the
// generated files (never written to the host's disk), and the host's
// files and small directories, are copied into it by bubblewrap (--file
// from a descriptor), which is much cheaper than a bind mount each
// (bubblewrap reads the whole mount table for every bind); only the
// host's larger directories are bound.
func (b *Backend) hostRootArgs(a *[]string, spec sandbox.Spec, rec *record, file func(*os.File, string, fs.FileMode), data func(string, []byte) error) error {
	*a = append(*a, "--ro-bind", "/usr", "/usr")
	*a = append(*a, b.rootLinks()...)
	*a = append(*a, "--perms", "0755", "--tmpfs", "/etc")
	for _, p := range hostEtc {
		es, ok := hostEntries(p)
		if !ok {
			*a = append(*a, "--ro-bind-try", p, p)
			continue
		}
		for _, e := range es {
			switch {
			case e.f != nil:
				file(e.f, e.dest, e.perm)
			case e.dir:
				*a = append(*a, "--perms", fmt.Sprintf("%04o", e.perm), "--dir", e.dest)
			default:
				*a = append(*a, "--symlink", e.target, e.dest)
			}
		}
	}
	for _, f := range []struct {
		dest    string
		content []byte
	}{
		{"/etc/passwd", fmt.Appendf(nil, "%s:x:%d:%d:mlagent sandbox:%s:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
			sandbox.SandboxUser, sandbox.SandboxUID, sandbox.SandboxGID, sandbox.Home)},
		{"/etc/group", fmt.Appendf(nil, "%s:x:%d:\nnogroup:x:65534:\n", sandbox.SandboxUser, sandbox.SandboxGID)},
		{"/etc/hosts", hostsFile(rec.Name)},
	} {
		if err := data(f.dest, f.content); err != nil {
			return err
		}
	}
	if spec.Gateway != nil {
		*a = append(*a, "--perms", "0755", "--dir", filepath.Dir(sandbox.GitConfig))
		if err := data(sandbox.GitConfig, sandbox.GitConfigFile(spec.Gateway.Token)); err != nil {
			return err
		}
	}
	// Non-recursive: the binds inside stay as they are (read-only).
	*a = append(*a, "--remount-ro", "/etc")
	if spec.Gateway != nil {
		*a = append(*a, "--bind", spec.Gateway.Address, gatewaySocket)
	}
	*a = append(*a, "--ro-bind", b.opts.Binary, sandbox.BinaryPath)
	return nil
}

// firstFileFD is where the descriptors of --file arguments start in
// bubblewrap: 3 to 6 are the info, ready, args and control descriptors.
const firstFileFD = 7

// rootLinks returns the arguments for the host's /bin, /lib, … : merged-/usr
// systems have /bin → usr/bin links, others real directories. The layout
// is read once per backend.
func (b *Backend) rootLinks() []string {
	b.rootOnce.Do(func() {
		for _, d := range []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"} {
			fi, err := os.Lstat(d)
			switch {
			case err != nil:
			case fi.Mode()&fs.ModeSymlink != 0:
				target, err := os.Readlink(d)
				if err == nil {
					b.rootArgs = append(b.rootArgs, "--symlink", target, d)
				}
			case fi.IsDir():
				b.rootArgs = append(b.rootArgs, "--ro-bind", d, d)
			}
		}
	})
	return b.rootArgs
}

// maxHostFile bounds the host files copied into /etc; a larger one (or
// anything but a regular file) is bound instead.
const maxHostFile = 4 << 20

// maxCopied bounds the entries of a host directory copied into /etc;
// a larger one is bound.
const maxCopied = 16

// etcEntry is one file, directory or link copied from the host's /etc.
type etcEntry struct {
	dest   string
	perm   fs.FileMode
	f      *os.File // a file's content
	dir    bool
	target string // a link's
}

// hostEntries returns what copies the host's p into the sandbox: a file,
// or a small directory of files, directories and links, all of them
// readable by anyone (what is not would look different bound). ok is
// false where p must be bound instead; where p is missing, there is
// nothing to copy.
func hostEntries(p string) (es []etcEntry, ok bool) {
	var walk func(src string, top bool) bool
	walk = func(src string, top bool) bool {
		var st unix.Stat_t
		var err error
		if top {
			err = unix.Stat(src, &st) // follows a link, as a bind would
		} else {
			err = unix.Lstat(src, &st)
		}
		if err != nil {
			return top && errors.Is(err, unix.ENOENT)
		}
		if len(es) >= maxCopied {
			return false
		}
		perm := fs.FileMode(st.Mode & 0o777)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			f := openHostFile(src)
			if f == nil || perm&0o004 == 0 {
				if f != nil {
					f.Close()
				}
				return false
			}
			es = append(es, etcEntry{dest: src, perm: perm, f: f})
		case unix.S_IFLNK:
			target, err := os.Readlink(src)
			if err != nil {
				return false
			}
			es = append(es, etcEntry{dest: src, target: target})
		case unix.S_IFDIR:
			if perm&0o005 != 0o005 {
				return false
			}
			d, err := os.Open(src)
			if err != nil {
				return false
			}
			names, err := d.Readdirnames(maxCopied + 1)
			d.Close()
			if err != nil && err != io.EOF || len(es)+1+len(names) > maxCopied {
				return false
			}
			es = append(es, etcEntry{dest: src, perm: perm, dir: true})
			slices.Sort(names)
			for _, n := range names {
				if !walk(src+"/"+n, false) {
					return false
				}
			}
		default:
			return false
		}
		return true
	}
	if !walk(p, true) {
		for _, e := range es {
			if e.f != nil {
				e.f.Close()
			}
		}
		return nil, false
	}
	return es, true
}

// openHostFile opens the host's file at p for bubblewrap to copy, or
// returns nil where p is not a regular file. (Plain system calls: these
// descriptors are only passed on, never read here.)
func openHostFile(p string) *os.File {
	// O_NONBLOCK: a FIFO planted there must not block the open.
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0) // follows a link, as a bind would
	if err != nil {
		return nil
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > maxHostFile {
		unix.Close(fd)
		return nil
	}
	return os.NewFile(uintptr(fd), p)
}

// dataFile returns the read end of a pipe that holds content and then
// ends.
func dataFile(content []byte) (*os.File, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("pipe: %w", err)
	}
	r, w := os.NewFile(uintptr(p[0]), "|0"), os.NewFile(uintptr(p[1]), "|1")
	if len(content) > 4096 { // more than a pipe surely holds at once
		go func() {
			w.Write(content)
			w.Close()
		}()
		return r, nil
	}
	_, err := w.Write(content)
	w.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

const gatewaySocket = "/run/gateway.sock"

// hostEtc is all of the host's /etc a sandbox sees: what TLS, the dynamic
// linker, Debian's alternatives and Python need. Files and small
// directories are copied as they are when the sandbox starts; larger
// directories are bound.
var hostEtc = []string{
	"/etc/ssl", "/etc/ca-certificates", "/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf",
	"/etc/ld.so.conf.d", "/etc/localtime", "/etc/nsswitch.conf", "/etc/mime.types",
	"/etc/python3", "/etc/python3.11", "/etc/python3.12", "/etc/python3.13",
}

// start runs bubblewrap, with files as its descriptors firstFileFD, …,
// and waits for init's "ok". It closes files.
func (s *Sandbox) start(ctx context.Context, args []string, files []*os.File) error {
	defer closeFiles(files)
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
	cmd.ExtraFiles = append([]*os.File{infoW, readyW, argR, ctl}, files...) // fds 3, 4, 5, 6, 7…
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
		return fmt.Errorf("sandbox did not start: %w", bwrapError(msg))
	}
	if s.cg != nil {
		// bubblewrap may have forked init before it joined the group; no
		// command has run yet, and everything init starts is born inside.
		err := s.cg.Add(cmd.Process.Pid)
		if err == nil {
			err = s.cg.Add(r.pid)
		}
		if err == nil {
			err = s.cg.Save(cgroupPath(s.rec.StateDir))
		}
		if err != nil {
			s.kill()
			<-s.exited
			return fmt.Errorf("apply limits: %w", err)
		}
	}
	if s.nproc > 0 {
		// Before any command: everything init starts inherits it.
		lim := unix.Rlimit{Cur: uint64(s.nproc), Max: uint64(s.nproc)}
		if err := unix.Prlimit(r.pid, unix.RLIMIT_NPROC, &lim, nil); err != nil {
			s.kill()
			<-s.exited
			return fmt.Errorf("apply the process limit (RLIMIT_NPROC): %w", err)
		}
	}
	start, err := procStartTime(r.pid)
	if err != nil {
		s.kill()
		<-s.exited
		return fmt.Errorf("sandbox init (pid %d): %w", r.pid, err)
	}
	s.rec.Pid, s.rec.StartTime = r.pid, start
	if err := s.b.setPid(ctx, s.rec.Name, r.pid, start); err != nil {
		// Unrecorded, nobody could find it to kill it: end it now.
		s.kill()
		<-s.exited
		return err
	}
	return nil
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
	// A command its time limit cut short says so, though the sandbox has
	// ended by the time we look: that limit is what the caller must hear.
	if err != nil && !errors.Is(err, sandbox.ErrTimedOut) && s.running() != nil {
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
	if s.cmd != nil && s.cg != nil {
		// bwrap is in the group too: once it is reaped, the group is
		// empty and goes at the first rmdir, without polling.
		select {
		case <-s.exited:
		case <-ctx.Done():
		}
	}
	if err := removeCgroup(s.rec.StateDir); err != nil {
		s.log.Warn("remove the sandbox's cgroup", "err", err)
	}
	// Sandboxes made by earlier versions had their /etc files (the
	// gitconfig holds the token) on disk here.
	os.RemoveAll(filepath.Join(s.rec.StateDir, "etc"))
	if err := s.b.forget(context.WithoutCancel(ctx), s.rec.Name); err != nil {
		return err
	}
	dropIfEmpty(s.rec)
	return nil
}

// dropIfEmpty removes the state directory of an ended sandbox when its
// workspace holds nothing, unless a chat session owns it (resume may
// mount it again). os.Remove only ever removes an empty directory.
func dropIfEmpty(rec *record) {
	if rec.Labels[sandbox.SessionLabel] != "" {
		return
	}
	if os.Remove(workspaceDir(rec.StateDir)) == nil || errors.Is(statErr(workspaceDir(rec.StateDir)), fs.ErrNotExist) {
		os.Remove(rec.StateDir)
	}
}

func statErr(p string) error {
	_, err := os.Lstat(p)
	return err
}

// startGrace is how long a sandbox may be recorded without a pid before
// it counts as dead: Create records it first and starts it within this.
const startGrace = 2 * time.Minute

// Reap frees what dead sandboxes left: see sandbox.Reaper. Their tokens
// are the caller's to revoke first.
func (b *Backend) Reap(ctx context.Context, names []string) error {
	var errs []error
	for _, name := range names {
		rec, err := b.lookup(ctx, name)
		if err != nil || rec.info().State != sandbox.StateDead {
			continue
		}
		os.Remove(controlPath(rec.StateDir))
		if err := removeCgroup(rec.StateDir); err != nil {
			b.log.Warn("remove a dead sandbox's cgroup", "sandbox", name, "err", err)
		}
		os.RemoveAll(filepath.Join(rec.StateDir, "etc"))
		// Only this dead record: the name may have been taken again.
		if _, err := b.db.ExecContext(ctx, `DELETE FROM sandboxes WHERE name = ? AND pid = ? AND start_time = ?`,
			rec.Name, rec.Pid, int64(rec.StartTime)); err != nil {
			errs = append(errs, fmt.Errorf("reap sandbox %s: %w", name, err))
			continue
		}
		dropIfEmpty(rec)
		b.log.Info("reaped a dead sandbox", "sandbox", name)
	}
	return errors.Join(errs...)
}

// ErrPidsUnbounded: a sandbox's processes could not be bounded, and the
// backend refuses to run it without a bound.
var ErrPidsUnbounded = errors.New("cannot bound the sandbox's processes")

// Overridden by tests: the cgroup factory and the user we run as.
var (
	newCgroup = cgroup.New
	geteuid   = os.Geteuid
)

// limits makes the sandbox's cgroup (bubblewrap has no cgroup support of
// its own: its processes are moved into the group as they start). CPU and
// memory limits are best effort: a note says when they are not enforced.
// The process limit is not, since a fork bomb takes the host's whole PID
// table: without a pids cgroup it falls back to RLIMIT_NPROC on init
// (nproc), which the kernel counts per user namespace; but it exempts
// root's processes, and sandboxes of root are the host's uid 0 outside,
// so for root Create refuses instead.
func (b *Backend) limits(spec sandbox.Spec, rec *record) (_ *cgroup.Group, nproc int, _ error) {
	pids := int64(spec.Pids)
	switch {
	case spec.Pids == 0:
		pids = sandbox.DefaultPids
	case spec.Pids < 0:
		pids = 0
	}
	want := cgroup.Limits{CPUs: spec.CPUs, MemoryBytes: spec.MemoryBytes, Pids: pids}
	if want == (cgroup.Limits{}) {
		return nil, 0, nil
	}
	g, err := newCgroup(rec.Name, want)
	if err == nil {
		rec.Notes = append(rec.Notes, limitsNote(want, g))
		return g, 0, nil
	}
	if want.CPUs > 0 || want.MemoryBytes > 0 {
		rec.Notes = append(rec.Notes, "cpu/memory limits not enforced: "+err.Error())
		b.log.Warn("sandbox limits not enforced", "sandbox", rec.Name,
			"cpus", spec.CPUs, "memory_bytes", spec.MemoryBytes, "reason", err)
		if pids > 0 {
			only := cgroup.Limits{Pids: pids}
			if g, err2 := newCgroup(rec.Name, only); err2 == nil {
				rec.Notes = append(rec.Notes, limitsNote(only, g))
				return g, 0, nil
			}
		}
	}
	if pids == 0 {
		return nil, 0, nil
	}
	if geteuid() == 0 {
		return nil, 0, fmt.Errorf("%w: %v; as root mlagent needs a writable pids cgroup (the v1 pids hierarchy, or cgroup v2 with the pids controller), "+
			"since RLIMIT_NPROC does not apply to root; or set sandbox.pids = 0 in config.toml (--pids 0) to run without a process limit", ErrPidsUnbounded, err)
	}
	rec.Notes = append(rec.Notes, fmt.Sprintf("limits: %d tasks (RLIMIT_NPROC; no pids cgroup: %v)", pids, err))
	return nil, int(pids), nil
}

// limitsNote says which limits a sandbox has and how they are enforced,
// e.g. "limits: 1.5 CPUs, 8 GiB memory, 1024 tasks (cgroup v1)".
func limitsNote(l cgroup.Limits, g *cgroup.Group) string {
	var parts []string
	if l.CPUs > 0 {
		parts = append(parts, strconv.FormatFloat(l.CPUs, 'g', -1, 64)+" CPUs")
	}
	if m := l.MemoryBytes; m > 0 {
		unit, v := "MiB", float64(m)/(1<<20)
		if m >= 1<<30 {
			unit, v = "GiB", float64(m)/(1<<30)
		}
		parts = append(parts, strconv.FormatFloat(v, 'f', -1, 64)+" "+unit+" memory")
	}
	if l.Pids > 0 {
		parts = append(parts, strconv.FormatInt(l.Pids, 10)+" tasks")
	}
	version := "cgroup v1"
	if g.V2 {
		version = "cgroup v2"
	}
	return "limits: " + strings.Join(parts, ", ") + " (" + version + ")"
}

// cgroupPath is the file that names a sandbox's cgroup directories.
func cgroupPath(stateDir string) string { return filepath.Join(stateDir, "cgroup") }

// removeCgroup removes the cgroup of a sandbox whose processes are gone
// (bubblewrap's own may take a moment to leave).
func removeCgroup(stateDir string) error {
	g, err := cgroup.Load(cgroupPath(stateDir))
	if err != nil {
		return err
	}
	if err := g.Remove(); err != nil {
		return err
	}
	os.Remove(cgroupPath(stateDir))
	return nil
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
	if err := removeCgroup(dir); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	// By descriptor, never following a link a sandbox left; files made
	// inside may be read-only to us.
	if err := volume.RemoveTree(dir); err != nil {
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
