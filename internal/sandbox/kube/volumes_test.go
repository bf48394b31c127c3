package kube_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/volume"
)

// TestVolumesOnClaims: `mlagent volume` on the kubernetes backend works
// on the claims, through a helper pod, with the local store's rules
// against what a sandbox left there: a symlink to / is listed but never
// followed, a 1 TiB sparse file is measured and copied as its data, a
// tree 600 levels deep is refused, and nothing is written outside the
// destination.
func TestVolumesOnClaims(t *testing.T) {
	e := newEnv(t)
	e.c.Volume(t, e.ns, "mlagent-vt", "1Gi")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	mlagent, home := e.cliIn(t, "")

	// The CLI: create, put, ls, get, as locally.
	src := filepath.Join(t.TempDir(), "ds")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub", "a.txt"), []byte("alpha"), 0o644)
	run := func(args ...string) string {
		t.Helper()
		out, err := mlagent(ctx, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("mlagent %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run("volume", "create", "vt"); !strings.Contains(out, "created volume vt") {
		t.Errorf("volume create: got %q", out)
	}
	if out := run("volume", "put", "vt", src, "/in/"); !strings.Contains(out, "copied 1 file") {
		t.Errorf("volume put: got %q", out)
	}
	if out := run("volume", "ls"); !strings.Contains(out, "vt") || !strings.Contains(out, "pvc/mlagent-vt") {
		t.Errorf("volume ls: got %q; want the claim", out)
	}
	if out := run("volume", "ls", "vt", "in/ds/sub"); !strings.Contains(out, "in/ds/sub/a.txt") {
		t.Errorf("volume ls vt in/ds/sub: got %q", out)
	}
	dst := t.TempDir()
	run("volume", "get", "vt", "in/ds", dst)
	if b, err := os.ReadFile(filepath.Join(dst, "ds", "sub", "a.txt")); string(b) != "alpha" {
		t.Errorf("volume get: got %q, %v; want alpha", b, err)
	}
	if _, err := os.Stat(filepath.Join(home, "volumes", "vt")); err == nil {
		t.Error("a local volume directory was made for a cluster's volume")
	}

	// A sandbox leaves hostile things on the claim.
	b := e.backend(t, nil)
	sb, err := b.Create(ctx, sandbox.Spec{Volumes: []sandbox.Mount{{Volume: "vt", Path: "/data"}}})
	if err != nil {
		t.Fatal(err)
	}
	var errb syncBuf
	code, err := sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{"sh", "-c", `set -e; cd /data
ln -s / root
printf data > huge; truncate -s 1099511627776 huge
mkdir deep && cd deep && i=0; while [ $i -lt 600 ]; do mkdir d; cd d; i=$((i+1)); done`}, Stderr: &errb})
	if err != nil || code != 0 {
		t.Fatalf("planting: %d %v %s", code, err, errb.String())
	}
	sb.Terminate(ctx)

	vols := b.Volumes()
	defer vols.Close()
	entries, _, err := vols.ReadDir(ctx, "vt", "/")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, en := range entries {
		switch {
		case en.Mode&fs.ModeSymlink != 0:
			kinds[en.Name] = "link->" + en.Target
		case en.Mode.IsDir():
			kinds[en.Name] = "dir"
		default:
			kinds[en.Name] = "file"
		}
	}
	if kinds["root"] != "link->/" || kinds["huge"] != "file" || kinds["deep"] != "dir" || kinds["in"] != "dir" {
		t.Errorf("ReadDir: got %v", kinds)
	}

	u, err := vols.Measure(ctx, "vt", "huge")
	if err != nil || u.Apparent != 1<<40 || u.Data > 1<<20 {
		t.Fatalf("Measure huge: got %+v, %v; want 1 TiB apparent, its data small", u, err)
	}
	out := t.TempDir()
	c, err := vols.Get(ctx, "vt", "huge", out)
	if err != nil || c.Files != 1 {
		t.Fatalf("Get huge: got %+v, %v", c, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(out, "huge"), &st); err != nil || st.Size != 1<<40 || st.Blocks*512 > 1<<20 {
		t.Errorf("the copy of huge: size %d, %d bytes allocated, %v; want 1 TiB with its holes", st.Size, st.Blocks*512, err)
	}

	// Copying the whole volume stops at the deep tree.
	if _, err := vols.Get(ctx, "vt", "/", t.TempDir()); err == nil || !strings.Contains(err.Error(), "nested more than 512") {
		t.Errorf("Get of a 600-deep tree: got %v; want it refused", err)
	}
	if err := vols.RemovePath(ctx, "vt", "deep", false); err == nil {
		t.Error("RemovePath of a directory without -r: got nil")
	}
	if err := vols.RemovePath(ctx, "vt", "deep", true); err != nil {
		t.Fatalf("RemovePath deep: %v", err)
	}
	if err := vols.RemovePath(ctx, "vt", "huge", false); err != nil {
		t.Fatalf("RemovePath huge: %v", err)
	}

	// Now all of it: the link is skipped, not followed.
	out = t.TempDir()
	c, err = vols.Get(ctx, "vt", "/", out)
	if err != nil || c.Files != 1 || c.Skipped != 1 {
		t.Fatalf("Get /: got %+v, %v; want 1 file, the link skipped", c, err)
	}
	if _, err := os.Lstat(filepath.Join(out, "vt", "root")); err == nil {
		t.Error("the symlink to / crossed")
	}
	var cat strings.Builder
	if n, err := vols.Cat(ctx, "vt", "in/ds/sub/a.txt", &cat); err != nil || n != 5 || cat.String() != "alpha" {
		t.Errorf("Cat: got %d %q %v", n, cat.String(), err)
	}
	if _, err := vols.Measure(ctx, "vt", "no/such"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Measure of a missing path: got %v; want fs.ErrNotExist", err)
	}
	if _, _, err := vols.ReadDir(ctx, "nope", "/"); !errors.Is(err, volume.ErrNotFound) {
		t.Errorf("ReadDir of a missing volume: got %v; want volume.ErrNotFound", err)
	}
	if err := vols.Close(); err != nil {
		t.Fatal(err)
	}

	// rm: the claim goes; the helper pods are gone.
	if out := run("volume", "rm", "--yes", "vt"); !strings.Contains(out, "removed volume vt") {
		t.Errorf("volume rm: got %q", out)
	}
	if ok, err := vols.Exists(ctx, "vt"); ok || err != nil {
		t.Errorf("Exists after rm: got %v, %v", ok, err)
	}
	if infos, err := b.List(ctx); err != nil || len(infos) != 0 {
		t.Errorf("pods left: %+v, %v", infos, err)
	}
}
