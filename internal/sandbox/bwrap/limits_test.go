package bwrap

import (
	"context"
	"errors"
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
	if notes := strings.Join(s.Info().Notes, "; "); !strings.Contains(notes, "limits: 1 CPUs, 96 MiB memory (cgroup v") {
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
