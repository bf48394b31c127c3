package cli_test

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
	"github.com/mlagent/mlagent/internal/syncbuf"
)

// stuckGet starts `mlagent volume get data /big.bin -` writing to a pipe
// nobody reads once its first bytes came: the command sits in write(2),
// which no context cancels, as a copy to a full disk or a hung network
// file system would.
func stuckGet(t *testing.T, e *cliEnv, extraEnv ...string) (*exec.Cmd, *syncbuf.Buffer, <-chan struct{}) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "big.bin")
	if err := os.WriteFile(src, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := e.run(t, "volume", "put", "data", src, "/big.bin"); code != 0 {
		t.Fatalf("volume put: exit %d: %s", code, errOut)
	}
	cmd := exec.Command(binary, "volume", "get", "data", "/big.bin", "-")
	cmd.Env = append(append([]string{}, e.env...), extraEnv...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb syncbuf.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); out.Close() })
	// Its first bytes: it has set up its signals and is copying.
	if _, err := io.ReadFull(out, make([]byte, 1)); err != nil {
		t.Fatalf("volume get: %v (stderr %q)", err, errb.String())
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	return cmd, &errb, exited
}

// wantExit waits at most d for the command to exit, and wants it to exit
// 143 with want as its last words.
func wantExit(t *testing.T, cmd *exec.Cmd, errb *syncbuf.Buffer, exited <-chan struct{}, d time.Duration, want string) {
	t.Helper()
	select {
	case <-exited:
	case <-time.After(d):
		t.Fatalf("still running %v after the signal (stderr %q)", d, errb.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 143 || !strings.HasSuffix(errb.String(), want) {
		t.Errorf("got exit %d, stderr %q; want 143 and %q", code, errb.String(), want)
	}
}

func TestStopOnSignal(t *testing.T) {
	t.Run("stuck command, grace over", func(t *testing.T) {
		e := newCLIEnv(t)
		cmd, errb, exited := stuckGet(t, e, "MLAGENT_STOP_GRACE=1s")
		cmd.Process.Signal(syscall.SIGTERM)
		wantExit(t, cmd, errb, exited, 60*time.Second, "mlagent volume: SIGTERM: not stopped after 1s: exiting without cleaning up\n")
	})
	t.Run("stuck command, second signal", func(t *testing.T) {
		e := newCLIEnv(t)
		cmd, errb, exited := stuckGet(t, e)
		cmd.Process.Signal(syscall.SIGTERM)
		// The first is taken (a second sent at once could merge with it).
		hint := "mlagent volume: stopping (SIGTERM); a second signal ends it at once\n"
		for deadline := time.Now().Add(60 * time.Second); !strings.Contains(errb.String(), hint); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q 60s after SIGTERM (stderr %q)", hint, errb.String())
			}
		}
		cmd.Process.Signal(syscall.SIGINT)
		// Well inside the default grace of 30s.
		wantExit(t, cmd, errb, exited, 20*time.Second, "mlagent volume: SIGINT again: exiting without cleaning up\n")
	})
	t.Run("sandbox run cleans up", func(t *testing.T) {
		sandboxtest.RequireBwrap(t)
		e := newCLIEnv(t, "ANTHROPIC_API_KEY=sk-ant-stop-test")
		cmd := exec.Command(binary, "sandbox", "run", "--", "sh", "-c", "echo up; exec sleep 300")
		cmd.Env = e.env
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var errb syncbuf.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		if _, err := io.ReadFull(out, make([]byte, 3)); err != nil {
			t.Fatalf("sandbox run: %v (stderr %q)", err, errb.String())
		}
		cmd.Process.Signal(syscall.SIGTERM)
		io.Copy(io.Discard, out)
		cmd.Wait()
		want := "mlagent sandbox: stopped (SIGTERM)\n"
		if code := cmd.ProcessState.ExitCode(); code != 143 || !strings.HasSuffix(errb.String(), want) {
			t.Errorf("got exit %d, stderr %q; want 143 and %q", code, errb.String(), want)
		}
		// The sandbox was torn down before the exit, not left behind.
		if procs := processesMentioning(e.home); len(procs) > 0 {
			t.Errorf("processes still running after exit: %q", procs)
		}
		if out, _, _ := e.run(t, "sandbox", "ls"); strings.Contains(out, "running") {
			t.Errorf("sandbox ls after exit: %q; want no running sandbox", out)
		}
	})
}
