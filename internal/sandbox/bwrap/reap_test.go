package bwrap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
)

// A sandbox whose creator was killed (kill -9: init is killed with it)
// is dead; Reap forgets it and frees its cgroup and state directory, but
// keeps a workspace with files in it, and any workspace of a session.
func TestReapDead(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	env := newTestEnv(t)
	b := env.backend(t)
	ctx := context.Background()
	cases := []struct {
		name, file string
		labels     map[string]string
		keepDir    bool
	}{
		{"sb-empty", "", nil, false},
		{"sb-files", "result.txt", nil, true},
		{"sb-session", "", map[string]string{sandbox.SessionLabel: "s-1"}, true},
	}
	var cgroups []string
	for _, c := range cases {
		sb, err := b.Create(ctx, sandbox.Spec{Name: c.name, Labels: c.labels})
		if err != nil {
			t.Fatal(err)
		}
		s := sb.(*Sandbox)
		if s.cg != nil {
			cgroups = append(cgroups, s.cg.Dirs()...)
		}
		if c.file != "" {
			if _, code := run(t, sb, "touch", c.file); code != 0 {
				t.Fatal("touch")
			}
		}
		// What a kill -9 of the CLI leaves: init killed, nothing cleaned.
		syscall.Kill(s.rec.Pid, syscall.SIGKILL)
		waitGone(ctx, s.rec.Pid, s.rec.StartTime)
	}
	// The next command: another backend on the same store.
	b2 := env.backend(t)
	infos, err := b2.List(ctx)
	if err != nil || len(infos) != 3 {
		t.Fatalf("List before reaping: %+v, %v; want the 3 dead sandboxes", infos, err)
	}
	var names []string
	for _, in := range infos {
		if in.State != sandbox.StateDead {
			t.Errorf("%s: state %s; want dead", in.Name, in.State)
		}
		names = append(names, in.Name)
	}
	if err := b2.Reap(ctx, names); err != nil {
		t.Fatal(err)
	}
	if infos, _ := b2.List(ctx); len(infos) != 0 {
		t.Errorf("List after reaping: %+v; want none", infos)
	}
	for _, c := range cases {
		dir := filepath.Join(env.home, "sandboxes", c.name)
		_, err := os.Stat(workspaceDir(dir))
		if c.keepDir != (err == nil) {
			t.Errorf("%s: workspace there = %v; want %v", c.name, err == nil, c.keepDir)
		}
		if _, err := os.Stat(controlPath(dir)); err == nil {
			t.Errorf("%s: control socket left", c.name)
		}
	}
	for _, d := range cgroups {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left (%v)", d, err)
		}
	}
}

// A sandbox ended cleanly leaves no empty workspace behind, unless a
// session owns it; one with files keeps them for `sandbox rm`.
func TestTerminateDropsEmptyWorkspace(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	env := newTestEnv(t)
	b := env.backend(t)
	ctx := context.Background()
	for _, c := range []struct {
		labels map[string]string
		file   bool
		keep   bool
	}{{nil, false, false}, {nil, true, true}, {map[string]string{sandbox.SessionLabel: "s-2"}, false, true}} {
		sb, err := b.Create(ctx, sandbox.Spec{Labels: c.labels})
		if err != nil {
			t.Fatal(err)
		}
		if c.file {
			run(t, sb, "touch", "f")
		}
		if err := sb.Terminate(ctx); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(env.home, "sandboxes", sb.Name())
		if _, err := os.Stat(dir); (err == nil) != c.keep {
			t.Errorf("labels %v, file %v: state dir there = %v; want %v", c.labels, c.file, err == nil, c.keep)
		}
	}
}

// A record without a pid is a sandbox another process is creating: not
// dead (its token must not be revoked) until it is older than startGrace.
func TestStartingIsNotDead(t *testing.T) {
	r := &record{Name: "x", Created: time.Now()}
	if st := r.info().State; st != sandbox.StateStarting {
		t.Errorf("fresh record without a pid: %s; want starting", st)
	}
	r.Created = time.Now().Add(-startGrace - time.Second)
	if st := r.info().State; st != sandbox.StateDead {
		t.Errorf("old record without a pid: %s; want dead", st)
	}
}
