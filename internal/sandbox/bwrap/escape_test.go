package bwrap

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/cgroup"
	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
	"github.com/mlagent/mlagent/internal/secrets"
)

const python = "/usr/bin/python3"

func requirePython(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(python); err != nil {
		t.Skip("/usr/bin/python3 is not installed; `apt-get install python3` to run this test")
	}
}

// run runs a shell script inside and returns stdout+stderr and the code.
func run(t *testing.T, sb sandbox.Sandbox, argv ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	code, err := sb.Exec(context.Background(), sandbox.ExecRequest{Argv: argv, Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatalf("Exec %q: %v", argv, err)
	}
	return out.String(), code
}

func newSandbox(t *testing.T, b *Backend, spec sandbox.Spec) sandbox.Sandbox {
	t.Helper()
	sb, err := b.Create(context.Background(), spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { sb.Terminate(context.Background()) })
	return sb
}

// TestEscape tries, from inside, the ways out that are bubblewrap's own
// (the host's files, its /etc, namespaces, the host's /dev and /sys) on
// each kind of root, and checks that each fails for the right reason.
// The promises every backend makes (identity, read-only system, network,
// secrets, processes, Terminate) are the conformance suite's
// (sandboxtest), which TestConformance and TestPromisesOnImage run.
func TestEscape(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	eachRoot(t, testEscape)
}

func testEscape(t *testing.T, env *testEnv, b *Backend, image string) {
	hostHome := t.TempDir()
	if err := os.WriteFile(filepath.Join(hostHome, "id_rsa"), []byte("host-private-key"), 0o600); err != nil {
		t.Fatal(err)
	}
	st := secrets.Open(filepath.Join(env.home, "secrets.json"))
	if err := st.Set("anthropic", map[string]string{"ANTHROPIC_API_KEY": "sk-ant-escape"}); err != nil {
		t.Fatal(err)
	}
	sb := newSandbox(t, b, sandbox.Spec{Volumes: sandbox.DefaultMounts(), Image: image})
	mountRefused := "must be superuser" // util-linux
	if image != "" {
		mountRefused = "permission denied" // busybox
	}
	cases := []struct {
		name string
		argv []string
		want string // in the combined output; the command must also fail
	}{
		{"read host home", []string{"cat", filepath.Join(hostHome, "id_rsa")}, "No such file or directory"},
		{"read root home", []string{"ls", "/root"}, "No such file or directory"},
		{"read secret store", []string{"cat", st.Path()}, "No such file or directory"},
		{"read mlagent home", []string{"ls", env.home}, "No such file or directory"},
		{"replace /etc/hosts", []string{"sh", "-c", "rm -f /etc/hosts; echo x > /etc/hosts"}, "Read-only file system"},
		{"write copied /etc file", []string{"sh", "-c", "echo x >> /etc/nsswitch.conf"}, "Read-only file system"},
		// --disable-userns sets user.max_user_namespaces to 0 inside: ENOSPC.
		{"new user namespace (root inside)", []string{"/usr/bin/unshare", "-r", "true"}, "No space left on device"},
		{"mount", []string{"mount", "-t", "tmpfs", "x", "/tmp"}, mountRefused},
		{"host /dev", []string{"ls", "/dev/sda", "/dev/mem", "/dev/kmsg"}, "No such file or directory"},
		{"host /sys", []string{"ls", "/sys/class"}, "No such file or directory"},
	}
	for _, c := range cases {
		if image != "" && c.name == "read root home" {
			continue // the image's own /root, not the host's
		}
		t.Run(c.name, func(t *testing.T) {
			out, code := run(t, sb, c.argv...)
			if code == 0 || !strings.Contains(out, c.want) {
				t.Errorf("got exit %d, output %q; want a failure containing %q", code, out, c.want)
			}
		})
	}
	t.Run("only init and the command", func(t *testing.T) {
		out, _ := run(t, sb, "sh", "-c", `for p in /proc/[0-9]*; do tr '\0' ' ' < $p/cmdline; echo; done`)
		if n := strings.Count(out, "\n"); n > 5 {
			t.Errorf("got %d processes inside; want only init and the command: %q", n, out)
		}
	})
}

// serveUnixHTTP serves h on a new Unix socket and returns its path.
func serveUnixHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gw")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "gw.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); os.RemoveAll(dir) })
	return sock
}

// TestGatewayBridgePython checks that the host's Python reaches the
// gateway on the host Unix socket through the bridge, request body
// intact, and that git goes there too (the environment contract itself
// is the conformance suite's).
func TestGatewayBridgePython(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	requirePython(t)
	const token = "tok-bridge-42"
	sock := serveUnixHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s key=%s body=%s", r.Method, r.URL.Path, r.Header.Get("X-Api-Key"), body)
	}))
	b := newTestEnv(t).backend(t)
	sb := newSandbox(t, b, sandbox.Spec{Gateway: sandbox.UnixGateway(sock, token)})

	out, code := run(t, sb, python, "-c", `
import os, urllib.request
req = urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages", data=b"hello", headers={"x-api-key": os.environ["ANTHROPIC_API_KEY"]})
print(urllib.request.urlopen(req, timeout=10).read().decode())`)
	if want := "POST /v1/messages key=" + token + " body=hello"; code != 0 || !strings.Contains(out, want) {
		t.Errorf("got %d %q; want %q", code, out, want)
	}
	if _, err := os.Stat("/usr/bin/git"); err == nil {
		out, _ := run(t, sb, "git", "config", "--global", "--get-regexp", ".*")
		for _, want := range []string{
			"url.http://127.0.0.1:8790/git/github.com/.insteadof https://github.com/",
			"http.extraheader Authorization: Bearer " + token,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("git config: got %q; want %q", out, want)
			}
		}
	}
}

func TestPythonTorchInside(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	requirePython(t)
	b := newTestEnv(t).backend(t)
	sb := newSandbox(t, b, sandbox.Spec{})
	out, code := run(t, sb, python, "-c", "print(1)")
	if code != 0 || out != "1\n" {
		t.Fatalf("python3: got %d %q; want 1", code, out)
	}
	if out, _ := run(t, sb, python, "-c", "import torch"); strings.Contains(out, "No module named 'torch'") {
		t.Skip("torch is not installed on the host (python3-torch)")
	}
	out, code = run(t, sb, python, "-c", "import torch; print(torch.ones(2).sum().item())")
	if code != 0 || out != "2.0\n" {
		t.Errorf("torch: got %d %q; want 2.0", code, out)
	}
}

func TestGPU(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	env := newTestEnv(t)
	b := env.backend(t)
	b.opts.DevDir = t.TempDir() // a host without NVIDIA devices
	_, err := b.Create(context.Background(), sandbox.Spec{GPU: sandbox.GPURequired})
	if err == nil || !strings.Contains(err.Error(), sandbox.ErrNoGPU.Error()) {
		t.Errorf("GPU required on a host without one: got %v; want ErrNoGPU", err)
	}
	sb := newSandbox(t, b, sandbox.Spec{GPU: sandbox.GPUOptional})
	info := sb.(*Sandbox).Info()
	if info.GPU || len(info.Notes) == 0 {
		t.Errorf("optional GPU on a host without one: got %+v; want no GPU and a note", info)
	}
	if _, err := os.Stat("/dev/nvidia0"); err != nil {
		return
	}
	b2 := newTestEnv(t).backend(t)
	sb2 := newSandbox(t, b2, sandbox.Spec{GPU: sandbox.GPURequired})
	if out, code := run(t, sb2, "nvidia-smi", "-L"); code != 0 || !strings.Contains(out, "GPU 0") {
		t.Errorf("nvidia-smi inside: got %d %q", code, out)
	}
}

// TestControlSocketOutOfReach checks that code inside cannot reach the
// host's control channel: no socket anywhere in its filesystem, init's
// descriptors closed to it, and sockets it binds wherever it can write
// do not intercept a later host exec.
func TestControlSocketOutOfReach(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	requirePython(t)
	eachRoot(t, testControlSocketOutOfReach)
}

func testControlSocketOutOfReach(t *testing.T, _ *testEnv, b *Backend, image string) {
	sb := newSandbox(t, b, sandbox.Spec{Volumes: sandbox.DefaultMounts(), Image: image})

	t.Run("no socket in the filesystem", func(t *testing.T) {
		out, code := run(t, sb, python, "-c", `
import os, stat
for top, dirs, files in os.walk("/", onerror=lambda e: None):
    if top == "/" :
        dirs[:] = [d for d in dirs if d not in ("proc", "sys")]
    for n in dirs + files:
        p = os.path.join(top, n)
        try:
            if stat.S_ISSOCK(os.lstat(p).st_mode):
                print("socket", p)
        except OSError:
            pass
print("walked")`)
		if code != 0 || out != "walked\n" {
			t.Errorf("got exit %d, output %q; want no socket found", code, out)
		}
	})

	t.Run("init's descriptors", func(t *testing.T) {
		// Not dumpable: neither /proc/1/fd nor ptrace reaches init.
		out, code := run(t, sb, python, "-c", `
import os, ctypes
fds = os.listdir("/proc/1/fd")
for fd in fds:
    try:
        os.readlink("/proc/1/fd/" + fd); print("readlink", fd)
    except PermissionError:
        pass
    try:
        os.close(os.open("/proc/1/fd/" + fd, os.O_RDONLY)); print("opened", fd)
    except OSError as e:
        pass
print("fds:", len(fds))
print("own:", sorted(int(fd) for fd in os.listdir("/proc/self/fd")))
libc = ctypes.CDLL(None, use_errno=True)
# PTRACE_SEIZE does not stop init; our exit detaches.
if libc.ptrace(0x4206, 1, 0, 0) == 0:
    print("attached to init")
else:
    print("ptrace: errno", ctypes.get_errno())`)
		if code != 0 || !strings.HasPrefix(out, "fds: ") || !strings.HasSuffix(out, "own: [0, 1, 2, 3]\nptrace: errno 1\n") {
			t.Errorf("got exit %d, output %q; want no descriptor of init opened or read, only stdio (and the listing) in a command, ptrace EPERM", code, out)
		}
	})

	t.Run("impostor sockets", func(t *testing.T) {
		// Bind a listener at every plausible place the sandbox can write
		// and record any connection it gets.
		script := `
import os, socket, sys, threading
got = open("/tmp/intercepted", "a")
lns = []
for d in ["/run/mlagent", "/run", "/workspace", "/workspace/run", "/tmp", os.environ["HOME"], "/data"]:
    for name in ["ctl", "control.sock"]:
        try:
            os.makedirs(d, exist_ok=True)
            p = os.path.join(d, name)
            if os.path.exists(p): os.unlink(p)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.bind(p); s.listen(8); lns.append(s)
        except OSError:
            pass
def serve(s):
    while True:
        c, _ = s.accept()
        got.write("intercepted\n"); got.flush()
for s in lns:
    threading.Thread(target=serve, args=(s,), daemon=True).start()
open("/tmp/impostor.tmp", "w").write(str(len(lns)))
os.rename("/tmp/impostor.tmp", "/tmp/impostor-ready")
sys.stdout.close(); os.close(1); os.close(2)
threading.Event().wait()`
		// The impostor runs in the background (setsid forks it off) for
		// the rest of the test, and says when it listens in a file: its
		// stdout may be cut off before a loaded machine runs it.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if _, err := sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{"setsid", python, "-c", script}}); err != nil {
			t.Fatalf("impostor: %v", err)
		}
		var n string
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			out, code := run(t, sb, "cat", "/tmp/impostor-ready")
			if code == 0 {
				n = strings.TrimSpace(out)
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the impostor never said it listens")
			}
		}
		if n == "" || n == "0" {
			t.Fatalf("impostor bound %q sockets; want some", n)
		}
		got, code := run(t, sb, "echo", "host exec")
		if code != 0 || got != "host exec\n" {
			t.Errorf("host exec: got exit %d, output %q; want 0, %q", code, got, "host exec\n")
		}
		// A second process, as `mlagent sandbox exec` from another terminal.
		sb2, err := b.Get(context.Background(), sb.Name())
		if err != nil {
			t.Fatal(err)
		}
		got, code = run(t, sb2, "cat", "/tmp/intercepted")
		if code != 0 || got != "" {
			t.Errorf("interceptions: got exit %d, %q; want none", code, got)
		}
	})
}

// TestAgentDescriptorsOutOfReach: commands inside run as the agent's user,
// and the agent's stdout is the host's end of the protocol. The agent is
// not dumpable, so no command can open its descriptors through /proc
// (to write events of its own into the CLI), read its environment, or
// ptrace it.
func TestAgentDescriptorsOutOfReach(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	requirePython(t)
	env := newTestEnv(t)
	b := env.backend(t)
	sb := newSandbox(t, b, sandbox.Spec{})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	agentDone := make(chan error, 1)
	go func() {
		_, err := sb.Exec(ctx, sandbox.ExecRequest{
			Argv:  []string{sandbox.BinaryPath, "agent", "--session", "s-1", "--sessions-dir", "/tmp/sessions", "--skills-dir", "/tmp/none"},
			Env:   map[string]string{"ANTHROPIC_API_KEY": "x"},
			Stdin: inR, Stdout: outW, Stderr: io.Discard,
		})
		outW.Close()
		agentDone <- err
	}()
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	if first := <-lines; !strings.Contains(first, `"type":"ready"`) {
		t.Fatalf("agent's first line: got %q; want ready", first)
	}

	out, code := run(t, sb, python, "-c", sandboxtest.AttackAgent)
	if code != 0 || out != sandboxtest.AttackAgentRefused {
		t.Errorf("attack on the agent: got exit %d, output\n%s\nwant\n%s", code, out, sandboxtest.AttackAgentRefused)
	}
	inW.Close() // the agent exits at the end of its input
	for l := range lines {
		if strings.Contains(l, "INJECTED") {
			t.Errorf("the agent's stdout carried a line written from inside: %q", l)
		}
	}
	if err := <-agentDone; err != nil {
		t.Errorf("agent: %v", err)
	}
}

// TestForkBombBounded: every sandbox has a process limit by default; a
// real fork bomb inside stays under it while the sandbox still serves,
// and Terminate ends it all. (The bomb has a depth, about 2,000 shells
// unbounded, so that a broken limit could not take this shared host's PID
// table; the limit is checked in place before it runs.)
func TestForkBombBounded(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	if err := cgroup.Available(cgroup.Limits{Pids: 64}); errors.Is(err, cgroup.ErrUnavailable) {
		t.Skipf("this host gives no pids cgroup (TestPidsFallback covers the rest): %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	b := newTestEnv(t).backend(t)
	sb, err := b.Create(context.Background(), sandbox.Spec{Pids: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Terminate(context.Background())
	s := sb.(*Sandbox)
	if notes := strings.Join(s.Info().Notes, "; "); !strings.Contains(notes, "64 tasks (cgroup v") {
		t.Errorf("notes %q; want the process limit and where it is enforced", notes)
	}
	if n, _ := s.cg.Tasks(); n < 1 || n > 64 {
		t.Fatalf("tasks in the sandbox's group before the bomb: %d; want its init there, under the limit (not running the bomb)", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{"sh", "-c", `b() { [ "$1" -gt 0 ] && { b $(($1-1)) & b $(($1-1)) & }; sleep 30; }; b 10`}})
	var peak, refused int64
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		n, r := s.cg.Tasks()
		peak, refused = max(peak, n), r
	}
	if peak > 64 || refused < 1 {
		t.Errorf("fork bomb: peak %d tasks, %d forks refused; want at most 64 and refusals", peak, refused)
	}
	t.Logf("fork bomb under a 64-task limit: peak %d tasks, %d forks refused", peak, refused)
	if err := sb.Terminate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := sandboxtest.HostProcesses(s.rec.StateDir); n > 0 {
		t.Errorf("%d processes left after Terminate", n)
	}
}

// TestNoSetuidFiles: no setuid or setgid file can be made inside (on a
// volume it would be a setuid program of the host user's outside), the
// volumes are mounted nosuid, and what the filter cannot inspect fails
// with ENOSYS so that programs fall back to calls it can.
func TestNoSetuidFiles(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	requirePython(t)
	env := newTestEnv(t)
	b := env.backend(t)
	sb := newSandbox(t, b, sandbox.Spec{Volumes: sandbox.DefaultMounts()})
	out, code := run(t, sb, python, "-c", `
import ctypes, os, stat
libc = ctypes.CDLL(None, use_errno=True)
def try_(name, f):
    try:
        f(); print(name, "ok")
    except OSError as e:
        print(name, e.strerror)
open("/data/f", "w").close()
os.mkdir("/data/d")
try_("chmod 4755", lambda: os.chmod("/data/f", 0o4755))
try_("chmod 2755", lambda: os.chmod("/data/f", 0o2755))
try_("chmod 0755", lambda: os.chmod("/data/f", 0o755))
fd = os.open("/data/f", os.O_RDONLY)
try_("fchmod 6755", lambda: os.fchmod(fd, 0o6755))
try_("chmod dir g+s", lambda: os.chmod("/data/d", 0o2755))
try_("open O_CREAT 4755", lambda: os.close(os.open("/data/g", os.O_CREAT | os.O_WRONLY, 0o4755)))
try_("mknod 4755", lambda: os.mknod("/data/h", stat.S_IFREG | 0o4755))
try_("mkdir 2775", lambda: os.mkdir("/data/e", 0o2775))
r = libc.syscall(437, -100, b"/data/x", 0, 0)  # openat2
print("openat2 errno", ctypes.get_errno())
r = libc.syscall(425, 1, 0)  # io_uring_setup
print("io_uring_setup errno", ctypes.get_errno())
print("mode", oct(os.stat("/data/f").st_mode & 0o7777))
for line in open("/proc/self/mountinfo"):
    f = line.split()
    if f[4] == "/data":
        print("/data nosuid", "nosuid" in f[5].split(","))
`)
	want := "chmod 4755 Operation not permitted\nchmod 2755 Operation not permitted\nchmod 0755 ok\nfchmod 6755 Operation not permitted\n" +
		"chmod dir g+s Operation not permitted\nopen O_CREAT 4755 Operation not permitted\nmknod 4755 Operation not permitted\n" +
		"mkdir 2775 Operation not permitted\nopenat2 errno 38\nio_uring_setup errno 38\nmode 0o755\n/data nosuid True\n"
	if code != 0 || out != want {
		t.Errorf("got exit %d, output\n%s\nwant\n%s", code, out, want)
	}
	// And on the host: nothing on the volume carries the bits.
	dir, _ := b.opts.Volumes.Path("data")
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			t.Errorf("%s on the host has mode %v", p, fi.Mode())
		}
		return nil
	})
}

// TestVolumeFromHostileSandbox: what a running sandbox does to its volume
// while the host copies it out or removes it. A 15 TiB sparse file costs
// the host its data; a FIFO blocks nothing; a symlink to a host path is
// never followed; and a directory swapped for such a symlink over and
// over (renameat2 RENAME_EXCHANGE) while the host removes the volume
// changes nothing outside it.
func TestVolumeFromHostileSandbox(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	requirePython(t)
	env := newTestEnv(t)
	b := env.backend(t)
	victim := t.TempDir()
	os.WriteFile(filepath.Join(victim, "keep"), []byte("host file"), 0o600)
	os.Chmod(victim, 0o700)
	sb := newSandbox(t, b, sandbox.Spec{Volumes: sandbox.DefaultMounts()})
	script := fmt.Sprintf(`
import os
f = open("/data/sparse", "wb"); f.write(b"data"); f.truncate(15 << 40); f.close()
os.mkfifo("/data/fifo")
os.symlink(%q, "/data/host-link")
for i in range(30):
    os.makedirs("/data/a/%%d/x" %% i)
os.symlink(%q, "/data/b")
print("ready")`, victim, victim)
	if out, code := run(t, sb, python, "-c", script); code != 0 || out != "ready\n" {
		t.Fatalf("setup inside: %d %q", code, out)
	}
	vols := b.opts.Volumes
	done := make(chan struct{})
	go func() {
		defer close(done)
		out := t.TempDir()
		c, err := vols.Get("data", "/", out)
		if err != nil {
			t.Errorf("Get: %v", err)
			return
		}
		var st syscall.Stat_t
		syscall.Stat(filepath.Join(out, "data", "sparse"), &st)
		if st.Size != 15<<40 || st.Blocks*512 > 1<<20 || c.Skipped < 3 {
			t.Errorf("Get: %+v; the sparse file is %d bytes with %d allocated; want 15 TiB with under 1 MiB, and the FIFO and links skipped", c, st.Size, st.Blocks*512)
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("volume get of a hostile volume did not finish")
	}

	// The swapper runs inside for the rest of the test.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{python, "-c", `
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
while True:
    libc.renameat2(-100, b"/data/a", -100, b"/data/b", 2)  # RENAME_EXCHANGE
`}})
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	err := vols.Remove("data")
	t.Logf("Remove took %v", time.Since(start))
	if err != nil {
		t.Logf("Remove while the sandbox writes: %v", err) // it may refuse; it must not escape
	}
	if fi, err := os.Stat(victim); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("a host directory a swapped link pointed at: mode %v, %v; want it untouched (0700)", fi.Mode(), err)
	}
	if b, err := os.ReadFile(filepath.Join(victim, "keep")); err != nil || string(b) != "host file" {
		t.Errorf("a host file a swapped link pointed at: %q, %v", b, err)
	}
}
