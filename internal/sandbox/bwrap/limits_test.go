package bwrap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/cgroup"
	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
)

// TestLimits: a sandbox with CPU and memory limits has all its processes
// in its cgroup, a command that outgrows the memory limit is killed while
// the sandbox lives on, and the group is gone after Terminate.
func TestLimits(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	requirePython(t)
	if err := cgroup.Available(cgroup.Limits{CPUs: 1, MemoryBytes: 64 << 20}); errors.Is(err, cgroup.ErrUnavailable) {
		t.Skipf("this host gives no cgroup to limit (needs root or a delegated cgroup v2 subtree): %v", err)
	} else if err != nil {
		t.Fatal(err)
	}

	b := newTestEnv(t).backend(t)
	sb, err := b.Create(context.Background(), sandbox.Spec{CPUs: 1, MemoryBytes: 96 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Terminate(context.Background())
	s := sb.(*Sandbox)
	if notes := strings.Join(s.Info().Notes, "; "); !strings.Contains(notes, "limits: 1 CPUs, 96 MiB memory, 1024 tasks (cgroup v") {
		t.Errorf("notes %q; want the limits and where they are enforced", notes)
	}
	dirs := s.cg.Dirs()
	for _, pid := range []int{s.cmd.Process.Pid, s.rec.Pid} {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "/mlagent-"+sb.Name()+"-") {
			t.Errorf("pid %d is in\n%s; want the sandbox's group", pid, data)
		}
	}

	out, code := run(t, sb, python, "-c", "b = b'x' * (400 << 20); print(len(b))")
	if code == 0 {
		t.Fatalf("allocating 400 MiB under a 96 MiB limit succeeded: %q", out)
	}
	if out, code := run(t, sb, "sh", "-c", "echo alive"); code != 0 || out != "alive\n" {
		t.Fatalf("after the OOM kill: %d %q; want the sandbox still serving", code, out)
	}
	if n := s.Info().OOMKills; n < 1 {
		t.Errorf("Info().OOMKills = %d; want the kernel's kill counted", n)
	}

	if err := sb.Terminate(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s still there after Terminate (%v)", d, err)
		}
	}
	if _, err := os.Stat(filepath.Join(s.rec.StateDir, "cgroup")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup file left in the state dir: %v", err)
	}
}

// TestPidsFallback: without a pids cgroup, a sandbox of a user other than
// root gets RLIMIT_NPROC on its init (inherited by every command); root,
// whose processes RLIMIT_NPROC exempts, is refused with what to do.
func TestPidsFallback(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	noCgroup := func(name string, l cgroup.Limits) (*cgroup.Group, error) {
		return nil, fmt.Errorf("%w: cgroupfs is read-only here", cgroup.ErrUnavailable)
	}
	defer func(f func(string, cgroup.Limits) (*cgroup.Group, error), g func() int) { newCgroup, geteuid = f, g }(newCgroup, geteuid)
	newCgroup = noCgroup
	b := newTestEnv(t).backend(t)

	geteuid = func() int { return 0 }
	_, err := b.Create(context.Background(), sandbox.Spec{})
	if !errors.Is(err, ErrPidsUnbounded) || !strings.Contains(err.Error(), "sandbox.pids = 0") || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("root without a pids cgroup: got %v; want ErrPidsUnbounded saying why and what to do", err)
	}
	if sb, err := b.Create(context.Background(), sandbox.Spec{Pids: sandbox.NoPidsLimit}); err != nil {
		t.Errorf("root, no limit asked: %v", err)
	} else {
		sb.Terminate(context.Background())
	}

	geteuid = func() int { return 1000 }
	sb, err := b.Create(context.Background(), sandbox.Spec{Pids: 77})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Terminate(context.Background())
	if notes := strings.Join(sb.(*Sandbox).Info().Notes, "; "); !strings.Contains(notes, "77 tasks (RLIMIT_NPROC") {
		t.Errorf("notes %q; want the RLIMIT_NPROC fallback named", notes)
	}
	// Inherited by what runs inside. (That the kernel enforces it for a
	// user other than root: cli's TestSandboxPidsAsUser.)
	out, code := run(t, sb, "bash", "-c", "ulimit -u")
	if code != 0 || strings.TrimSpace(out) != "77" {
		t.Errorf("ulimit -u inside: got %d %q; want 77", code, out)
	}
}
