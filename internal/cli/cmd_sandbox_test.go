package cli_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/sandbox/cgroup"
	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
	"github.com/mlagent/mlagent/internal/syncbuf"
)

// cliEnv is a temporary MLAGENT_HOME for running the real binary.
type cliEnv struct {
	home string
	env  []string
}

func newCLIEnv(t *testing.T, extra ...string) *cliEnv {
	t.Helper()
	// Short: socket paths live under it.
	root, err := os.MkdirTemp("", "mlc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	e := &cliEnv{home: filepath.Join(root, "home")}
	e.env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + root,
		"MLAGENT_HOME=" + e.home,
		"XDG_CONFIG_HOME=" + filepath.Join(root, "config"),
		"XDG_DATA_HOME=" + filepath.Join(root, "data"),
	}, extra...)
	return e
}

// run runs mlagent with args and returns stdout, stderr and the exit code.
func (e *cliEnv) run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = e.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("mlagent %q: %v", args, err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

func TestSandboxRunCLI(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	const secret = "sk-ant-cli-REAL-key-stays-outside"
	e := newCLIEnv(t, "ANTHROPIC_API_KEY="+secret, "HF_TOKEN=hf_cli_REAL_token")
	cases := []struct {
		name     string
		args     []string
		wantOut  string
		wantCode int
	}{
		{"gateway prints 1", []string{"sandbox", "run", "--", "sh", "-c", "echo 1"}, "1\n", 0},
		{"gateway exit code", []string{"sandbox", "run", "--", "sh", "-c", "exit 7"}, "", 7},
		{"no gateway prints 1", []string{"sandbox", "run", "--no-gateway", "--", "sh", "-c", "echo 1"}, "1\n", 0},
		{"no gateway exit code", []string{"sandbox", "run", "--no-gateway", "--", "false"}, "", 1},
		{"gateway env", []string{"sandbox", "run", "--", "sh", "-c", `test -n "$ANTHROPIC_BASE_URL" && test -n "$HTTPS_PROXY" && echo ok`}, "ok\n", 0},
		{"no gateway env", []string{"sandbox", "run", "--no-gateway", "--", "sh", "-c", `test -z "$ANTHROPIC_BASE_URL$HTTPS_PROXY" && echo ok`}, "ok\n", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := e.run(t, c.args...)
			if out != c.wantOut || code != c.wantCode {
				t.Errorf("got exit %d, stdout %q (stderr %q); want %d, %q", code, out, errOut, c.wantCode, c.wantOut)
			}
		})
	}
	t.Run("timeout behind the gateway", func(t *testing.T) {
		start := time.Now()
		_, errOut, code := e.run(t, "sandbox", "run", "--timeout", "1s", "--", "sleep", "30")
		if code != 124 || time.Since(start) > 10*time.Second || !strings.Contains(errOut, "sleep was stopped: exec sleep: sandbox shutting down: wall-clock timeout of 1s reached") {
			t.Errorf("got exit %d after %v (stderr %q); want 124 within seconds, naming the timeout", code, time.Since(start), errOut)
		}
	})
	t.Run("killed from another terminal", func(t *testing.T) {
		cmd := exec.Command(binary, "sandbox", "run", "--name", "victim", "--", "sh", "-c", "echo up; sleep 60")
		cmd.Env = e.env
		out, _ := cmd.StdoutPipe()
		var errb syncbuf.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 3)
		if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "up\n" {
			t.Fatalf("sandbox run: %q, %v (stderr %q)", buf, err, errb.String())
		}
		if _, errOut, code := e.run(t, "sandbox", "kill", "victim"); code != 0 {
			t.Fatalf("kill: exit %d: %s", code, errOut)
		}
		io.Copy(io.Discard, out)
		cmd.Wait()
		if code := cmd.ProcessState.ExitCode(); code != 137 || errb.String() != "mlagent sandbox run: sandbox victim was killed (mlagent sandbox kill) while sh ran\n" {
			t.Errorf("got exit %d, stderr %q; want 137 and the kill named", code, errb.String())
		}
	})
	t.Run("memory limit", func(t *testing.T) {
		if err := cgroup.Available(cgroup.Limits{MemoryBytes: 64 << 20}); err != nil {
			t.Skipf("this host gives no cgroup to limit (needs root or a delegated cgroup v2 subtree): %v", err)
		}
		if _, err := os.Stat("/usr/bin/python3"); err != nil {
			t.Skip("/usr/bin/python3 is not installed")
		}
		_, errOut, code := e.run(t, "sandbox", "run", "--memory", "64M", "--", "/usr/bin/python3", "-c", "b = b'x' * (300 << 20)")
		if code != 137 || !strings.Contains(errOut, "more memory than the sandbox's limit") {
			t.Errorf("got exit %d, stderr %q; want 137 and the memory limit named", code, errOut)
		}
	})
	t.Run("no secret inside", func(t *testing.T) {
		out, errOut, code := e.run(t, "sandbox", "run", "--", "sh", "-c",
			"env; cat /proc/1/environ /proc/self/environ 2>/dev/null | tr '\\0' '\\n'; cat ~/.gitconfig /etc/gitconfig 2>/dev/null; true")
		if code != 0 {
			t.Fatalf("got exit %d (stderr %q); want 0", code, errOut)
		}
		if !strings.Contains(out, "ANTHROPIC_API_KEY=") || !strings.Contains(out, "HF_TOKEN=") {
			t.Errorf("got %q; want the sandbox's own token in ANTHROPIC_API_KEY and HF_TOKEN", out)
		}
		for _, s := range []string{secret, "hf_cli_REAL_token"} {
			if strings.Contains(out, s) || strings.Contains(errOut, s) {
				t.Errorf("secret %q visible inside: %q", s, out)
			}
		}
	})
	t.Run("tokens revoked", func(t *testing.T) {
		out, _, code := e.run(t, "usage")
		if code != 0 || strings.Count(out, "revoked") < 4 || strings.Contains(out, "active") {
			t.Errorf("got exit %d, usage %q; want every sandbox token revoked", code, out)
		}
	})
}

// TestSandboxExecFromAnotherProcess drives a running sandbox from other
// mlagent processes, as from another terminal.
func TestSandboxExecFromAnotherProcess(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	e := newCLIEnv(t)
	runCmd := exec.Command(binary, "sandbox", "run", "--no-gateway", "--name", "w1", "--", "sleep", "300")
	runCmd.Env = e.env
	var runErr syncbuf.Buffer
	runCmd.Stderr = &runErr
	if err := runCmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan int, 1)
	go func() { runCmd.Wait(); exited <- runCmd.ProcessState.ExitCode() }()
	t.Cleanup(func() { runCmd.Process.Kill() })
	// Wait (not timed: bounded only so a broken run does not hang) until
	// the sandbox serves.
	for i := 0; ; i++ {
		_, errOut, code := e.run(t, "sandbox", "exec", "w1", "--", "true")
		if code == 0 {
			break
		}
		select {
		case c := <-exited:
			t.Fatalf("sandbox run exited with %d before serving: %q", c, runErr.String())
		default:
		}
		if i == 3000 {
			t.Fatalf("sandbox w1 never served: %q", errOut)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, _, code := e.run(t, "sandbox", "ls")
	if code != 0 || !strings.Contains(out, "w1") || !strings.Contains(out, "running") {
		t.Errorf("ls: got exit %d, %q; want w1 running", code, out)
	}
	out, errOut, code := e.run(t, "sandbox", "exec", "--env", "X=42", "w1", "--", "sh", "-c", "echo $X; pwd; touch kept; exit 4")
	if code != 4 || out != "42\n/workspace\n" {
		t.Errorf("exec: got exit %d, %q (stderr %q); want 4, %q", code, out, errOut, "42\n/workspace\n")
	}
	out, errOut, code = e.run(t, "sandbox", "kill", "w1")
	if code != 0 || out != "terminated w1\n" {
		t.Errorf("kill: got exit %d, %q (stderr %q); want 0, terminated w1", code, out, errOut)
	}
	if got := <-exited; got == 0 {
		t.Errorf("run of a killed sandbox: got exit 0; want a failure")
	}
	if _, _, code := e.run(t, "sandbox", "exec", "w1", "--", "true"); code == 0 {
		t.Errorf("exec after kill: got exit 0; want a failure")
	}
	out, errOut, code = e.run(t, "sandbox", "rm", "w1")
	if code != 0 || out != "removed w1\n" {
		t.Errorf("rm: got exit %d, %q (stderr %q); want 0, removed w1", code, out, errOut)
	}
	if out, _, _ := e.run(t, "sandbox", "ls"); out != "no sandboxes\n" {
		t.Errorf("ls after rm: got %q; want no sandboxes", out)
	}
}

// TestSandboxPidsAsUser: run by a user other than root, who can write no
// cgroup here, `mlagent sandbox run` still bounds the sandbox's processes
// (RLIMIT_NPROC on its init, which the kernel enforces per user
// namespace): a loop of forks stops short of --pids.
func TestSandboxPidsAsUser(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	setpriv, err := exec.LookPath("setpriv")
	if os.Geteuid() != 0 || err != nil {
		t.Skip("needs root and setpriv (util-linux) to run the CLI as another user")
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("/usr/bin/python3 is not installed")
	}
	// Somewhere nobody (65534) can run the binary and own a home.
	root, err := os.MkdirTemp("", "mlu")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	os.Chmod(root, 0o755)
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "mlagent")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(root, "home")
	os.Mkdir(home, 0o700)
	os.Chown(home, 65534, 65534)

	forks := `import os, time
ok = failed = 0
for i in range(100):
    try:
        pid = os.fork()
    except OSError:
        failed += 1
        continue
    if pid == 0:
        time.sleep(10)
        os._exit(0)
    ok += 1
print(ok, failed)`
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--",
		bin, "sandbox", "run", "--pids", "32", "--", "/usr/bin/python3", "-c", forks)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "MLAGENT_HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, "config"), "MLAGENT_LOG_LEVEL=error"}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("sandbox run as nobody: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	t.Logf("forks under --pids 32 as nobody (started, refused): %s", out)
	var ok, failed int
	if _, err := fmt.Sscan(string(out), &ok, &failed); err != nil || ok == 0 || ok >= 32 || failed == 0 {
		t.Errorf("forks under --pids 32 as nobody: got %q; want some started, fewer than 32, and the rest refused", out)
	}
}

// TestKilledCLILeavesNoDebris: after kill -9 of `mlagent sandbox run`, the
// next command that opens the store forgets the dead sandbox, removes its
// cgroups and its empty workspace, and revokes its token; `sandbox ls`
// shows nothing.
func TestKilledCLILeavesNoDebris(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	e := newCLIEnv(t)
	name := fmt.Sprintf("doomed-%d", os.Getpid())
	cmd := exec.Command(binary, "sandbox", "run", "--name", name, "--", "sh", "-c", "echo up; sleep 60")
	cmd.Env = e.env
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3)
	if _, err := out.Read(buf); err != nil || string(buf) != "up\n" {
		t.Fatalf("sandbox run: %q, %v", buf, err)
	}
	groups, _ := filepath.Glob("/sys/fs/cgroup/*/mlagent-" + name + "-*")
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	// The sandbox dies with its CLI (parent-death signal); wait for its
	// processes to leave their groups.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		busy := false
		for _, g := range groups {
			if b, err := os.ReadFile(filepath.Join(g, "cgroup.procs")); err == nil && len(strings.TrimSpace(string(b))) > 0 {
				busy = true
			}
		}
		if !busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sandbox outlived its killed CLI")
		}
	}
	stdout, stderr, code := e.run(t, "sandbox", "ls")
	if code != 0 || strings.TrimSpace(stdout) != "no sandboxes" {
		t.Errorf("sandbox ls after kill -9: exit %d, %q, %q; want no sandboxes", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(e.home, "sandboxes", name)); !os.IsNotExist(err) {
		t.Errorf("the dead sandbox's state directory: %v; want it gone", err)
	}
	if len(groups) == 0 {
		t.Log("the sandbox had no cgroup of its own here; not checked")
	}
	for _, g := range groups {
		if _, err := os.Stat(g); !os.IsNotExist(err) {
			t.Errorf("cgroup %s left after kill -9 (%v)", g, err)
		}
	}
}

// TestLogsGoToTheLogFile: what is logged while a command runs goes to
// $MLAGENT_HOME/logs/mlagent.log, not among the command's output; a
// warning is said once, in words.
func TestLogsGoToTheLogFile(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	e := newCLIEnv(t, "ANTHROPIC_API_KEY=sk-ant-test")
	out, errOut, code := e.run(t, "sandbox", "run", "--", "echo", "hi")
	if code != 0 || out != "hi\n" {
		t.Fatalf("got exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if strings.Contains(errOut, "level=") {
		t.Errorf("log lines on stderr: %q", errOut)
	}
	log, err := os.ReadFile(filepath.Join(e.home, "logs", "mlagent.log"))
	if err != nil || !strings.Contains(string(log), `msg="token issued"`) {
		t.Errorf("log file: %v: %q; want the token issued", err, log)
	}
	if fi, err := os.Stat(filepath.Join(e.home, "logs", "mlagent.log")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("log file mode: %v, %v; want 0600", fi, err)
	}
}
