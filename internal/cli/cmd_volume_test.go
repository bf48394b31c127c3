package cli_test

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
)

func TestVolumeCLIRoundTrip(t *testing.T) {
	e := newCLIEnv(t)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("alpha"), 0o644)
	os.MkdirAll(filepath.Join(src, "dir", "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "dir", "sub", "b.txt"), []byte("beta"), 0o644)
	out := t.TempDir()

	steps := []struct {
		name     string
		args     []string
		wantOut  string // substring of stdout
		wantErr  string // substring of stderr
		wantCode int
	}{
		{"ls empty", []string{"volume", "ls"}, "no volumes", "", 0},
		{"put creates the volume and says so", []string{"volume", "put", "data", filepath.Join(src, "a.txt"), "in/a.txt"}, "copied 1 file (5 B) to data:/in/a.txt", "created volume data", 0},
		{"put dir", []string{"volume", "put", "data", filepath.Join(src, "dir"), "tree"}, "copied 1 file (4 B) to data:/tree", "", 0},
		{"put dir into an existing dir", []string{"volume", "put", "data", filepath.Join(src, "dir"), "tree"}, "to data:/tree/dir", "", 0},
		{"put with a sandbox path", []string{"volume", "put", "data", filepath.Join(src, "a.txt"), "/data/datasets/a.txt"}, "to data:/datasets/a.txt", "", 0},
		{"ls", []string{"volume", "ls"}, "data  4      18 B", "", 0},
		{"ls a volume", []string{"volume", "ls", "data"}, "dir   -     ", "", 0},
		{"ls a path as the sandbox sees it", []string{"volume", "ls", "data", "/data/datasets"}, "file  5 B", "", 0},
		{"put escapes with ..", []string{"volume", "put", "data", filepath.Join(src, "a.txt"), "../escape.txt"}, "", "leaves the volume", 1},
		{"put escapes deeper", []string{"volume", "put", "data", filepath.Join(src, "a.txt"), "in/../../escape.txt"}, "", "leaves the volume", 1},
		{"get escapes", []string{"volume", "get", "data", "../../mlagent.db", filepath.Join(src, "stolen")}, "", "leaves the volume", 1},
		{"bad volume name", []string{"volume", "put", "../x", filepath.Join(src, "a.txt"), "a.txt"}, "", "invalid volume name", 1},
		{"get file", []string{"volume", "get", "data", "in/a.txt", filepath.Join(out, "out-a.txt")}, "copied 1 file (5 B)", "", 0},
		{"get dir", []string{"volume", "get", "data", "tree", filepath.Join(out, "out-tree")}, "copied 2 files (8 B)", "", 0},
		{"get into a dir", []string{"volume", "get", "data", "/data/datasets", out}, "to " + filepath.Join(out, "datasets"), "", 0},
		{"get to stdout", []string{"volume", "get", "data", "in/a.txt", "-"}, "alpha", "", 0},
		{"get a missing file", []string{"volume", "get", "data", "nope", out}, "", "no such file", 1},
		{"flags after the arguments", []string{"volume", "get", "data", "in/a.txt", "-", "--max-size", "1"}, "", "pass --yes", 2},
		{"usage", []string{"volume", "put", "data"}, "", "usage", 2},
		{"create", []string{"volume", "create", "models"}, "created volume models", "", 0},
		{"create twice", []string{"volume", "create", "models"}, "", "volume exists", 1},
		{"rm a directory needs -r", []string{"volume", "rm", "data", "tree"}, "", "-r", 1},
		{"rm a directory", []string{"volume", "rm", "-r", "data", "tree"}, "removed data:/tree", "", 0},
		{"rm a file", []string{"volume", "rm", "data", "/data/in/a.txt"}, "removed data:/in/a.txt", "", 0},
		{"rm asks (no terminal: refused)", []string{"volume", "rm", "data"}, "", "pass --yes", 2},
		{"rm --yes", []string{"volume", "rm", "--yes", "data"}, "removed volume data", "", 0},
		{"rm a missing volume", []string{"volume", "rm", "--yes", "data"}, "", "volume not found", 1},
		{"ls after rm", []string{"volume", "ls"}, "models", "", 0},
	}
	for _, s := range steps {
		stdout, stderr, code := e.run(t, s.args...)
		if code != s.wantCode || !strings.Contains(stdout, s.wantOut) || !strings.Contains(strings.ToLower(stderr), strings.ToLower(s.wantErr)) {
			t.Errorf("%s: got exit %d, stdout %q, stderr %q; want %d, %q and %q", s.name, code, stdout, stderr, s.wantCode, s.wantOut, s.wantErr)
		}
	}
	for path, want := range map[string]string{"out-a.txt": "alpha", "out-tree/sub/b.txt": "beta", "datasets/a.txt": "alpha"} {
		if got, err := os.ReadFile(filepath.Join(out, path)); err != nil || string(got) != want {
			t.Errorf("%s: got %q, %v; want %q", path, got, err, want)
		}
	}
	for _, p := range []string{filepath.Join(e.home, "volumes", "escape.txt"), filepath.Join(e.home, "escape.txt"), filepath.Join(src, "stolen")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s exists; want every ../ path rejected", p)
		}
	}
}

// With the kubernetes backend, volume commands go to the cluster: with
// none configured they say so and touch no local volume (they used to
// create and list directories under $MLAGENT_HOME/volumes).
func TestVolumeKubernetesBackend(t *testing.T) {
	e := newCLIEnv(t)
	for _, args := range [][]string{
		{"volume", "--backend", "kubernetes", "ls"},
		{"volume", "create", "data", "--backend", "kubernetes"},
		{"volume", "--backend", "kubernetes", "put", "data", e.home, "x"},
	} {
		_, stderr, code := e.run(t, args...)
		if code != 1 || !strings.Contains(stderr, "no Kubernetes cluster configured") {
			t.Errorf("mlagent %s: got exit %d, %q; want 1 and the missing cluster named", strings.Join(args, " "), code, stderr)
		}
	}
	// A misspelt backend is a usage error, not the local volumes.
	if _, stderr, code := e.run(t, "volume", "--backend", "kubernets", "create", "data"); code != 2 || !strings.Contains(stderr, `sandbox backend "kubernets": unknown`) {
		t.Errorf("volume --backend kubernets: got exit %d, %q; want 2 naming the unknown backend", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(e.home, "volumes")); err == nil {
		t.Error("a local volume directory was made for the kubernetes backend")
	}
	// The syncer (and dashboard) still read the local Trackio volume: with
	// sandboxes in a cluster, they say that the runs are not there.
	k := newCLIEnv(t, "MLAGENT_SANDBOX_BACKEND=kubernetes")
	if _, stderr, _ := k.run(t, "syncer", "--once"); !strings.Contains(stderr, "keeps the Trackio volume in the cluster") {
		t.Errorf("syncer with the kubernetes backend: got %q; want the Trackio volume's place explained", stderr)
	}
	if _, stderr, _ := k.run(t, "syncer", "--once", "--dir", t.TempDir()); strings.Contains(stderr, "in the cluster") {
		t.Errorf("syncer --dir: got %q; want no note about the cluster", stderr)
	}
}

// What a sandbox left in a volume reaches the host safely: names are
// sanitized in listings, a 15 TiB sparse file costs its data, setuid
// bits are dropped, and a big copy is not started unasked.
func TestVolumeCLIHostileContent(t *testing.T) {
	e := newCLIEnv(t)
	if _, _, code := e.run(t, "volume", "create", "data"); code != 0 {
		t.Fatal("create")
	}
	dir := filepath.Join(e.home, "volumes", "data")
	os.WriteFile(filepath.Join(dir, "evil\x1b]0;pwned\x07\x1b[2K\rname"), []byte("x"), 0o644)
	f, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("data"), 0)
	if err := f.Truncate(15 << 40); err != nil {
		t.Skipf("no 15 TiB sparse file here: %v", err)
	}
	f.Close()
	os.WriteFile(filepath.Join(dir, "suid"), []byte("#!/bin/sh\n"), 0o755)
	os.Chmod(filepath.Join(dir, "suid"), 0o755|fs.ModeSetuid|fs.ModeSetgid)

	stdout, stderr, code := e.run(t, "volume", "ls", "data")
	if code != 0 || strings.ContainsAny(stdout+stderr, "\x1b\x07\r") || !strings.Contains(stdout, "evil]0;pwnedname") && !strings.Contains(stdout, "evilname") {
		t.Errorf("ls: exit %d, %q, %q; want the name without control characters", code, stdout, stderr)
	}
	out := t.TempDir()
	stdout, stderr, code = e.run(t, "volume", "get", "data", "sparse", out)
	if code != 0 || !strings.Contains(stdout, "sparse: 15 TiB with its holes") {
		t.Fatalf("get sparse: exit %d, %q, %q", code, stdout, stderr)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(out, "sparse"), &st); err != nil || st.Size != 15<<40 || st.Blocks*512 > 1<<20 {
		t.Errorf("the copy: size %d, %d bytes allocated, %v; want 15 TiB apparent, under 1 MiB on disk", st.Size, st.Blocks*512, err)
	}
	if _, stderr, code := e.run(t, "volume", "get", "data", "sparse", "-"); code != 2 || !strings.Contains(stderr, "pass --yes") {
		t.Errorf("get 15 TiB of zeros to stdout: exit %d, %q; want it refused", code, stderr)
	}
	if _, _, code := e.run(t, "volume", "get", "data", "suid", out); code != 0 {
		t.Fatal("get suid")
	}
	if fi, err := os.Stat(filepath.Join(out, "suid")); err != nil || fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
		t.Errorf("get suid: mode %v, %v; want no setuid or setgid bit", fi.Mode(), err)
	}
	// More data than --max-size: refused without a terminal to ask.
	os.WriteFile(filepath.Join(dir, "big"), make([]byte, 64<<10), 0o644)
	if _, stderr, code := e.run(t, "volume", "get", "--max-size", "32K", "data", "big", out); code != 2 || !strings.Contains(stderr, "pass --yes") {
		t.Errorf("get over --max-size: exit %d, %q; want it refused", code, stderr)
	}
	if _, _, code := e.run(t, "volume", "get", "--max-size", "32K", "--yes", "data", "big", out); code != 0 {
		t.Errorf("get over --max-size with --yes: exit %d", code)
	}
}

// `volume rm` refuses while a sandbox mounts the volume; --volume with a
// new name says it made the volume.
func TestVolumeInUse(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	e := newCLIEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "sandbox", "run", "--volume", "scratch:/scratch", "--", "sh", "-c", "echo up; sleep 60")
	cmd.Env = e.env
	pipe, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	buf := make([]byte, 3)
	if _, err := pipe.Read(buf); err != nil || string(buf) != "up\n" {
		t.Fatalf("sandbox run: %q, %v; stderr %s", buf, err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "created volume scratch (mounted at /scratch)") {
		t.Errorf("--volume of a new name: stderr %q; want it said", stderr.String())
	}
	_, errs, code := e.run(t, "volume", "rm", "--yes", "scratch")
	if code != 1 || !strings.Contains(errs, "in use by sandbox") {
		t.Errorf("rm while in use: exit %d, %q; want a refusal naming the sandbox", code, errs)
	}
	cancel() // kill -9 of the CLI: the sandbox follows it (parent-death signal)
	cmd.Wait()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, errs, code := e.run(t, "volume", "rm", "--yes", "scratch")
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rm after the sandbox ended: exit %d, %q", code, errs)
		}
	}
}
