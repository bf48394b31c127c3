package image

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/mlagent/mlagent/internal/image/imagetest"
)

type E = imagetest.Entry

// baseEntries is a first layer with one of each thing extraction must
// get right.
var baseEntries = []E{
	{Name: "etc/", Type: tar.TypeDir},
	{Name: "etc/os-release", Body: "ID=test\n"},
	{Name: "etc/passwd", Body: "root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000::/home/old:/bin/false\nsvc:x:999:999::/:/bin/false\n"},
	{Name: "usr/bin/tool", Body: "#!/bin/sh\n", Mode: 0o4755},
	{Name: "usr/bin/gtool", Body: "#!/bin/sh\n", Mode: 0o2755},
	{Name: "usr/lib/libx.so.1", Body: "ELF?"},
	{Name: "usr/lib/libx.so", Type: tar.TypeSymlink, Linkname: "libx.so.1"},
	{Name: "usr/lib/libx-hard.so", Type: tar.TypeLink, Linkname: "usr/lib/libx.so.1"},
	{Name: "lib", Type: tar.TypeSymlink, Linkname: "usr/lib"},
	{Name: "abs-link", Type: tar.TypeSymlink, Linkname: "/etc/shadow"},
	{Name: "opt/keep/a", Body: "a\n"},
	{Name: "opq/old", Body: "hidden by layer 2\n"},
	{Name: "del/me", Body: "deleted by layer 2\n"},
	{Name: "del/stay", Body: "stays\n"},
	{Name: "dev/evil", Type: tar.TypeChar},
	{Name: "ro/", Type: tar.TypeDir, Mode: 0o555},
	{Name: "ro/file", Body: "in a read-only dir\n", Mode: 0o444},
	{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
	{Name: "run", Type: tar.TypeSymlink, Linkname: "/var/run"},
}

var topEntries = []E{
	{Name: "del/.wh.me"},
	{Name: "opq/.wh..wh..opq"},
	{Name: "opq/new", Body: "new\n"},
	{Name: "etc/os-release", Body: "ID=test2\n"},
	{Name: "opt/keep/a-link", Type: tar.TypeLink, Linkname: "opt/keep/a"}, // to a lower layer's file
	{Name: "../../escaped", Body: "cleaned into the root\n"},
	{Name: ".wh..wh.plnk/x"},
}

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "images"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func twoLayerImage(t *testing.T) v1.Image {
	return imagetest.Image(t, imagetest.Config{Env: []string{"PATH=/usr/bin", "A=1"}, WorkingDir: "/opt/keep"},
		imagetest.Layer(t, imagetest.LayerTar(t, baseEntries)), imagetest.Layer(t, imagetest.LayerTar(t, topEntries)))
}

func readRoot(t *testing.T, root, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

func TestPullFlattens(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	ref := reg.Push(t, "test/flat:1", twoLayerImage(t))
	s := openStore(t)
	img, err := s.Pull(context.Background(), ref, PullOptions{})
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	root := img.Root
	for _, c := range []struct{ path, want string }{
		{"etc/os-release", "ID=test2\n"},
		{"opq/new", "new\n"},
		{"opq/old", "<open " + filepath.Join(root, "opq/old") + ": no such file or directory>"},
		{"del/me", "<open " + filepath.Join(root, "del/me") + ": no such file or directory>"},
		{"del/stay", "stays\n"},
		{"opt/keep/a-link", "a\n"},
		{"escaped", "cleaned into the root\n"},
		{"ro/file", "in a read-only dir\n"},
	} {
		if got := readRoot(t, root, c.path); got != c.want {
			t.Errorf("%s: got %q; want %q", c.path, got, c.want)
		}
	}
	for p, want := range map[string]string{"usr/lib/libx.so": "libx.so.1", "lib": "usr/lib", "abs-link": "/etc/shadow"} {
		if got, err := os.Readlink(filepath.Join(root, p)); err != nil || got != want {
			t.Errorf("symlink %s: got %q, %v; want %q", p, got, err, want)
		}
	}
	for p, want := range map[string]fs.FileMode{"usr/bin/tool": 0o755, "usr/bin/gtool": 0o755, "ro/file": 0o444} {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil || fi.Mode() != want {
			t.Errorf("%s: got mode %v, %v; want %v (setuid and setgid dropped)", p, fi.Mode(), err, want)
		}
	}
	if fi, err := os.Lstat(filepath.Join(root, "tmp")); err != nil || fi.Mode()&fs.ModeSticky == 0 {
		t.Errorf("tmp: got %v, %v; want the sticky bit kept", fi.Mode(), err)
	}
	if fi, err := os.Lstat(filepath.Join(root, "ro/file")); err == nil && !fi.ModTime().Equal(imagetest.Epoch) {
		t.Errorf("ro/file: mtime %v; want the layer's %v", fi.ModTime(), imagetest.Epoch)
	}
	if _, err := os.Lstat(filepath.Join(root, "dev/evil")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("device node: got %v; want it skipped", err)
	}
	ino := func(p string) uint64 {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	if ino("usr/lib/libx-hard.so") != ino("usr/lib/libx.so.1") {
		t.Errorf("hard link in a layer: different inodes")
	}
	if ino("opt/keep/a-link") != ino("opt/keep/a") {
		t.Errorf("hard link to a lower layer: different inodes")
	}
	// Mount points: the image's /run symlink became a directory.
	for _, d := range []string{"proc", "dev", "tmp", "run", "data", "workspace", "home/agent", "opt/mlagent"} {
		if fi, err := os.Lstat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			t.Errorf("mount point %s: got %v, %v; want a directory", d, fi, err)
		}
	}
	for p, want := range map[string]string{"etc/hosts": "../opt/mlagent/etc/hosts", "etc/mlagent": "../opt/mlagent/etc"} {
		if got, err := os.Readlink(filepath.Join(root, p)); err != nil || got != want {
			t.Errorf("%s: got %q, %v; want a link to %s", p, got, err, want)
		}
	}
	passwd := readRoot(t, root, "etc/passwd")
	for _, want := range []string{"root:x:0:0:", "svc:x:999:", "agent:x:1000:1000:mlagent sandbox:/home/agent:/bin/sh"} {
		if !strings.Contains(passwd, want) {
			t.Errorf("/etc/passwd %q: want %q", passwd, want)
		}
	}
	if strings.Contains(passwd, "/home/old") {
		t.Errorf("/etc/passwd %q: the image's own uid 1000 should be replaced", passwd)
	}
	if img.Config.WorkingDir != "/opt/keep" || !strings.Contains(strings.Join(img.Config.Env, " "), "A=1") {
		t.Errorf("config: got %+v", img.Config)
	}
	if img.Size <= 0 || img.Platform == "" || !strings.HasPrefix(img.ID, "sha256:") || !strings.HasPrefix(img.Digest, "sha256:") {
		t.Errorf("image: got %+v", img)
	}
	// The layer store did not change: /etc/passwd was written anew, not
	// through the hard link.
	for _, l := range img.Layers {
		p := filepath.Join(s.layerDir(l), "fs/etc/passwd")
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), "mlagent sandbox") {
			t.Errorf("layer file %s was changed: %q", p, b)
		}
	}
	assertClean(t, s)
}

// assertClean checks that no work directory is left behind.
func assertClean(t *testing.T, s *Store) {
	t.Helper()
	es, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp"))
	if len(es) != 0 {
		t.Errorf("tmp/ holds %d entries after the pull; want none", len(es))
	}
}

func TestExtractionNeverEscapes(t *testing.T) {
	outside := t.TempDir()
	for _, c := range []struct {
		name    string
		entries []E
	}{
		{"through an absolute symlink", []E{{Name: "esc", Type: tar.TypeSymlink, Linkname: outside}, {Name: "esc/pwned", Body: "x"}}},
		{"through a relative symlink", []E{{Name: "a/up", Type: tar.TypeSymlink, Linkname: "../../../../../../../../" + outside}, {Name: "a/up/pwned", Body: "x"}}},
		{"hard link to an outside file", []E{{Name: "esc", Type: tar.TypeSymlink, Linkname: outside}, {Name: "h", Type: tar.TypeLink, Linkname: "esc/target"}}},
		{"symlink then a file through it", []E{{Name: "d", Type: tar.TypeSymlink, Linkname: "/"}, {Name: "d" + outside + "/pwned", Body: "x"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			os.WriteFile(filepath.Join(outside, "target"), []byte("outside"), 0o644)
			dir := t.TempDir()
			_, err := extractLayer(strings.NewReader(string(imagetest.LayerTar(t, c.entries))), dir)
			if _, serr := os.Lstat(filepath.Join(outside, "pwned")); serr == nil {
				t.Fatalf("a file was written outside the layer (err %v)", err)
			}
			if fi, serr := os.Lstat(filepath.Join(dir, "h")); serr == nil && fi.Mode().IsRegular() {
				t.Errorf("a hard link to a file outside the layer was made")
			}
			if err == nil {
				t.Errorf("got no error; want the entry refused")
			}
			t.Logf("refused: %v", err)
		})
	}
}

func TestPullOnceUseTwice(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	ref := reg.Push(t, "test/twice:1", twoLayerImage(t))
	s := openStore(t)
	ctx := context.Background()
	before := reg.Requests()
	img1, pulled, err := s.Ensure(ctx, ref, PullOptions{})
	if err != nil || !pulled {
		t.Fatalf("first Ensure: %v, pulled %v", err, pulled)
	}
	if reg.Requests() == before {
		t.Fatalf("the first Ensure made no request: the test is not testing anything")
	}
	after := reg.Requests()
	img2, pulled, err := s.Ensure(ctx, ref, PullOptions{})
	if err != nil || pulled {
		t.Fatalf("second Ensure: %v, pulled %v; want the cache", err, pulled)
	}
	if n := reg.Requests() - after; n != 0 {
		t.Errorf("second Ensure made %d registry requests; want 0", n)
	}
	if img1.ID != img2.ID || img1.Root != img2.Root {
		t.Errorf("got %s %s, then %s %s", img1.ID, img1.Root, img2.ID, img2.Root)
	}
	used, err := s.Use(ref)
	if err != nil || used.LastUsed.IsZero() {
		t.Errorf("Use: %v, last used %v", err, used.LastUsed)
	}
	if list, _ := s.List(); len(list) != 1 || list[0].LastUsed.IsZero() {
		t.Errorf("List: got %+v; want one image with its last use", list)
	}
}

func TestLayersShared(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	base := imagetest.Layer(t, imagetest.LayerTar(t, baseEntries))
	refA := reg.Push(t, "test/a:1", imagetest.Image(t, imagetest.Config{}, base, imagetest.Layer(t, imagetest.LayerTar(t, []E{{Name: "only-a", Body: "a"}}))))
	refB := reg.Push(t, "test/b:1", imagetest.Image(t, imagetest.Config{}, base, imagetest.Layer(t, imagetest.LayerTar(t, []E{{Name: "only-b", Body: "b"}}))))
	s := openStore(t)
	ctx := context.Background()
	var cached []int
	pull := func(ref string) *Image {
		img, err := s.Pull(ctx, ref, PullOptions{Progress: func(p Progress) {
			if p.Phase == "done" {
				cached = append(cached, p.Cached)
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	a, b := pull(refA), pull(refB)
	if len(cached) != 2 || cached[0] != 0 || cached[1] != 1 {
		t.Errorf("cached layers at each pull: got %v; want [0 1]", cached)
	}
	layers, _ := os.ReadDir(filepath.Join(s.Dir(), "layers"))
	if len(layers) != 3 {
		t.Errorf("got %d layers in the cache; want 3 (one shared)", len(layers))
	}
	fa, _ := os.Stat(filepath.Join(a.Root, "etc/os-release"))
	fb, _ := os.Stat(filepath.Join(b.Root, "etc/os-release"))
	if !os.SameFile(fa, fb) {
		t.Errorf("a file of the shared layer is two files on disk; want one, hard-linked")
	}
	// rm: the shared layer stays until its last image goes.
	if _, err := s.Remove(refA, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a.Root); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("root of the removed image: %v; want it gone", err)
	}
	if got := readRoot(t, b.Root, "only-b"); got != "b" {
		t.Errorf("the other image: got %q", got)
	}
	if layers, _ := os.ReadDir(filepath.Join(s.Dir(), "layers")); len(layers) != 2 {
		t.Errorf("after rm a: %d layers; want 2", len(layers))
	}
	if _, err := s.Remove(refB, func(string) bool { return true }); !errors.Is(err, ErrInUse) {
		t.Errorf("rm of an image in use: got %v; want ErrInUse", err)
	}
	if _, err := s.Remove(b.ID[:19], nil); err != nil {
		t.Errorf("rm by id prefix: %v", err)
	}
	for _, d := range []string{"layers", "roots", "refs"} {
		if es, _ := os.ReadDir(filepath.Join(s.Dir(), d)); len(es) != 0 {
			t.Errorf("%s/ holds %d entries after removing every image", d, len(es))
		}
	}
}

func TestLocalSources(t *testing.T) {
	img := twoLayerImage(t)
	dir := t.TempDir()
	reg := imagetest.NewRegistry(t)
	sources := map[string]string{
		"registry":       reg.Push(t, "test/src:1", img),
		"layout":         imagetest.WriteLayout(t, filepath.Join(dir, "layout"), img, "v1"),
		"oci archive":    imagetest.WriteOCIArchive(t, filepath.Join(dir, "img.oci.tar"), img, "v1"),
		"docker archive": imagetest.WriteDockerArchive(t, filepath.Join(dir, "img.docker.tar"), img, "example.com/test/src:v1"),
	}
	want, _ := img.ConfigName()
	for kind, ref := range sources {
		t.Run(kind, func(t *testing.T) {
			s := openStore(t)
			got, err := s.Pull(context.Background(), ref, PullOptions{})
			if err != nil {
				t.Fatalf("Pull %s: %v", ref, err)
			}
			if got.ID != want.String() {
				t.Errorf("id %s; want %s", got.ID, want)
			}
			if c := readRoot(t, got.Root, "opq/new"); c != "new\n" {
				t.Errorf("opq/new: %q", c)
			}
			if _, err := s.Lookup(ref); err != nil {
				t.Errorf("Lookup after Pull: %v", err)
			}
		})
	}
	// Explicit kinds and tags.
	s := openStore(t)
	for _, ref := range []string{"oci:" + sources["layout"] + ":v1", "oci-archive:" + sources["oci archive"] + ":v1", "docker-archive:" + sources["docker archive"]} {
		if _, err := s.Pull(context.Background(), ref, PullOptions{}); err != nil {
			t.Errorf("Pull %s: %v", ref, err)
		}
	}
	if _, err := s.Pull(context.Background(), "oci:"+sources["layout"]+":nope", PullOptions{}); !errors.Is(err, ErrUnknown) {
		t.Errorf("unknown tag in a layout: got %v; want ErrUnknown", err)
	}
}

func TestPlatform(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	other := "arm64"
	if v1Arch() == "arm64" {
		other = "amd64"
	}
	l := imagetest.Layer(t, imagetest.LayerTar(t, []E{{Name: "f", Body: "x"}}))
	single := reg.Push(t, "test/arm:1", imagetest.Image(t, imagetest.Config{Arch: other}, l))
	s := openStore(t)
	_, err := s.Pull(context.Background(), single, PullOptions{})
	if !errors.Is(err, ErrPlatform) || !strings.Contains(err.Error(), "linux/"+other) || !strings.Contains(err.Error(), "linux/"+v1Arch()) {
		t.Errorf("single-platform image for %s: got %v; want ErrPlatform naming both", other, err)
	}
	idx := imagetest.Index(t, imagetest.Image(t, imagetest.Config{Arch: other}, l), v1.Platform{OS: "linux", Architecture: other})
	multi := reg.PushIndex(t, "test/arm-index:1", idx)
	_, err = s.Pull(context.Background(), multi, PullOptions{})
	if !errors.Is(err, ErrPlatform) || !strings.Contains(err.Error(), "it has linux/"+other) {
		t.Errorf("index without this platform: got %v; want ErrPlatform listing linux/%s", err, other)
	}
	if es, _ := os.ReadDir(filepath.Join(s.Dir(), "layers")); len(es) != 0 {
		t.Errorf("a refused image left %d layers in the cache", len(es))
	}
}

func TestRegistryErrors(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	s := openStore(t)
	_, err := s.Pull(context.Background(), reg.Host+"/test/missing:1", PullOptions{})
	if !errors.Is(err, ErrUnknown) {
		t.Errorf("missing image: got %v; want ErrUnknown", err)
	}
	t.Logf("missing: %v", err)
	_, err = s.Pull(context.Background(), "127.0.0.1:1/test/x:1", PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "cannot reach registry 127.0.0.1:1") {
		t.Errorf("closed port: got %v; want cannot reach", err)
	}
	if _, err := s.Lookup(reg.Host + "/test/missing:1"); !errors.Is(err, ErrNotPulled) {
		t.Errorf("Lookup: got %v; want ErrNotPulled", err)
	}
}

func TestParseRef(t *testing.T) {
	dir := t.TempDir()
	img := twoLayerImage(t)
	layoutDir := imagetest.WriteLayout(t, filepath.Join(dir, "lay"), img, "v1")
	oci := imagetest.WriteOCIArchive(t, filepath.Join(dir, "o.tar"), img, "v1")
	dock := imagetest.WriteDockerArchive(t, filepath.Join(dir, "d.tar"), img, "x/y:z")
	os.WriteFile(filepath.Join(dir, "junk.tar"), []byte("not a tar at all, clearly"), 0o644)
	for _, c := range []struct {
		in, want, err string
	}{
		{in: "python:3.12", want: "index.docker.io/library/python:3.12"},
		{in: "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime", want: "index.docker.io/pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"},
		{in: "127.0.0.1:5000/test/py:1", want: "127.0.0.1:5000/test/py:1"},
		{in: "ghcr.io/org/img", want: "ghcr.io/org/img:latest"},
		{in: layoutDir, want: "oci:" + layoutDir},
		{in: "oci:" + layoutDir + ":v1", want: "oci:" + layoutDir + ":v1"},
		{in: oci, want: "oci-archive:" + oci},
		{in: dock, want: "docker-archive:" + dock},
		{in: "docker-archive:" + dock + ":x/y:z", want: "docker-archive:" + dock + ":x/y:z"},
		{in: "oci:" + oci, err: "wants a layout directory"},
		{in: filepath.Join(dir, "junk.tar"), err: "corrupt image"},
		{in: filepath.Join(dir, "nope"), err: "image not found"},
		{in: "UPPER/case", err: "could not parse"},
		{in: "", err: "empty"},
	} {
		r, err := ParseRef(c.in)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("ParseRef(%q): got %v; want an error with %q", c.in, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("ParseRef(%q): %v", c.in, err)
		case c.err == "" && r.String() != c.want:
			t.Errorf("ParseRef(%q) = %q; want %q", c.in, r.String(), c.want)
		}
	}
}

func TestRedact(t *testing.T) {
	auth := authn.FromConfig(authn.AuthConfig{Username: "me", Password: "hunter2-secret", IdentityToken: "idtok-123456"})
	msg := "denied: me:hunter2-secret bWU6aHVudGVyMi1zZWNyZXQ= idtok-123456 Bearer abcdefghijkl eyJhbGciOiJI.eyJzdWIiOiIx.SflKxwRJSMeKK sha256:" + strings.Repeat("a", 64) + "\x1b[31m"
	got := redact(msg, auth)
	for _, bad := range []string{"hunter2-secret", "bWU6aHVudGVyMi1zZWNyZXQ=", "idtok-123456", "abcdefghijkl", "eyJhbGciOiJI", "\x1b"} {
		if strings.Contains(got, bad) {
			t.Errorf("redact: %q still holds %q", got, bad)
		}
	}
	if !strings.Contains(got, "sha256:"+strings.Repeat("a", 64)) {
		t.Errorf("redact: %q lost the digest", got)
	}
}

func v1Arch() string { return runtime.GOARCH }

func TestMain(m *testing.M) {
	// Keep the tests' registry credentials lookups away from the real
	// user's Docker config.
	dir, _ := os.MkdirTemp("", "dockercfg")
	os.Setenv("DOCKER_CONFIG", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestAuthFailureLeaksNoCredentials(t *testing.T) {
	const user, goodPW, badPW = "alice", "good-registry-pw-4711", "wrong-registry-pw-0815"
	reg := imagetest.NewRegistry(t)
	ref := reg.Push(t, "private/img:1", twoLayerImage(t))
	// A hostile (or careless) registry that quotes what it got.
	reg.Wrap = func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if ok && u == user && p == goodPW {
				h.ServeHTTP(w, r)
				return
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials %q (%s:%s)"}]}`, r.Header.Get("Authorization"), u, p)
		})
	}
	dockerConfig := func(pw string) {
		dir := t.TempDir()
		auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pw))
		os.WriteFile(filepath.Join(dir, "config.json"), fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`, reg.Host, auth), 0o600)
		t.Setenv("DOCKER_CONFIG", dir)
	}
	s := openStore(t)
	for _, c := range []struct {
		name string
		pw   string
	}{{"no credentials", ""}, {"wrong credentials", badPW}} {
		t.Run(c.name, func(t *testing.T) {
			if c.pw != "" {
				dockerConfig(c.pw)
			}
			_, err := s.Pull(context.Background(), ref, PullOptions{})
			if !errors.Is(err, ErrAuth) {
				t.Fatalf("got %v; want ErrAuth", err)
			}
			msg := err.Error()
			for _, secret := range []string{badPW, goodPW, base64.StdEncoding.EncodeToString([]byte(user + ":" + badPW))} {
				if strings.Contains(msg, secret) {
					t.Errorf("the error quotes a credential (%q): %s", secret, msg)
				}
			}
			if !strings.Contains(msg, "docker login "+reg.Host) {
				t.Errorf("got %q; want advice to docker login", msg)
			}
			t.Logf("message: %s", msg)
		})
	}
	dockerConfig(goodPW)
	if _, err := s.Pull(context.Background(), ref, PullOptions{}); err != nil {
		t.Errorf("with the right credentials: %v", err)
	}
}

func TestCorruptSourcesLeaveNothing(t *testing.T) {
	img := twoLayerImage(t)
	dir := t.TempDir()
	// A layout whose biggest blob (a layer) has a byte changed.
	lay := imagetest.WriteLayout(t, filepath.Join(dir, "bad-layout"), img, "v1")
	var biggest string
	var size int64
	filepath.WalkDir(filepath.Join(lay, "blobs"), func(p string, d fs.DirEntry, err error) error {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Size() > size {
			biggest, size = p, fi.Size()
		}
		return nil
	})
	b, _ := os.ReadFile(biggest)
	b[len(b)/2] ^= 0xff
	os.WriteFile(biggest, b, 0o644)
	// Archives cut short.
	truncated := func(src, name string) string {
		b, _ := os.ReadFile(src)
		p := filepath.Join(dir, name)
		os.WriteFile(p, b[:len(b)*2/3], 0o644)
		return p
	}
	oci := truncated(imagetest.WriteOCIArchive(t, filepath.Join(dir, "o.tar"), img, "v1"), "o-cut.tar")
	dock := truncated(imagetest.WriteDockerArchive(t, filepath.Join(dir, "d.tar"), img, "x/y:z"), "d-cut.tar")
	for _, ref := range []string{lay, "oci-archive:" + oci, "docker-archive:" + dock} {
		t.Run(filepath.Base(ref), func(t *testing.T) {
			s := openStore(t)
			_, err := s.Pull(context.Background(), ref, PullOptions{})
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %v; want ErrCorrupt", err)
			}
			t.Logf("message: %v", err)
			for _, d := range []string{"layers", "roots", "refs", "tmp"} {
				es, _ := os.ReadDir(filepath.Join(s.Dir(), d))
				// A layer that was whole may stay (it is complete and checked).
				if len(es) != 0 && d != "layers" {
					t.Errorf("%s/ holds %d entries after a failed pull", d, len(es))
				}
			}
		})
	}
}

func TestFullDiskLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (%v); run as root", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	big := make([]byte, 3<<20)
	rand.Read(big) // incompressible
	img := imagetest.Image(t, imagetest.Config{},
		imagetest.Layer(t, imagetest.LayerTar(t, []E{{Name: "small", Body: "x"}})),
		imagetest.Layer(t, imagetest.LayerTar(t, []E{{Name: "big", Body: string(big)}})))
	src := imagetest.WriteLayout(t, filepath.Join(t.TempDir(), "lay"), img, "v1")
	s, err := Open(filepath.Join(dir, "images"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Pull(context.Background(), src, PullOptions{Jobs: 1})
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("got %v; want ErrNoSpace", err)
	}
	t.Logf("message: %v", err)
	for _, d := range []string{"roots", "refs", "tmp"} {
		if es, _ := os.ReadDir(filepath.Join(s.Dir(), d)); len(es) != 0 {
			t.Errorf("%s/ holds %d entries after a full disk", d, len(es))
		}
	}
	layers, _ := os.ReadDir(filepath.Join(s.Dir(), "layers"))
	for _, l := range layers {
		if _, err := os.Stat(filepath.Join(s.Dir(), "layers", l.Name(), "layer.json")); err != nil {
			t.Errorf("layer %s is in the cache without its metadata: half-written", l.Name())
		}
	}
	if _, err := s.Lookup(src); !errors.Is(err, ErrNotPulled) {
		t.Errorf("Lookup after the failed pull: got %v; want ErrNotPulled", err)
	}
}

func TestLocalSourceGoneStaysUsable(t *testing.T) {
	img := twoLayerImage(t)
	file := imagetest.WriteOCIArchive(t, filepath.Join(t.TempDir(), "img.tar"), img, "v1")
	s := openStore(t)
	pulled, err := s.Pull(context.Background(), file, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(file)
	if got, err := s.Lookup(file); err != nil || got.ID != pulled.ID {
		t.Errorf("Lookup of a pulled archive since deleted: got %v, %v; want the cached image", got, err)
	}
	// Two names for one root: removing one keeps the root, and the
	// in-use check is not even asked.
	reg := imagetest.NewRegistry(t)
	ref := reg.Push(t, "test/same:1", img)
	if _, err := s.Pull(context.Background(), ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove("oci-archive:"+file, func(string) bool { return true }); err != nil {
		t.Errorf("rm of one of two names for an image in use: %v; want it removed (the root stays)", err)
	}
	if got, err := s.Lookup(ref); err != nil || got.ID != pulled.ID {
		t.Errorf("the other name: %v, %v", got, err)
	}
	if _, err := os.Stat(pulled.Root); err != nil {
		t.Errorf("the shared root: %v; want it kept", err)
	}
}

func TestStaleRootComposedAgain(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	ref := reg.Push(t, "test/stale:1", twoLayerImage(t))
	s := openStore(t)
	img, err := s.Pull(context.Background(), ref, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// As an older mlagent would have left it.
	meta := filepath.Join(s.rootDir(img.ID), "image.json")
	b, _ := os.ReadFile(meta)
	os.WriteFile(meta, []byte(strings.Replace(string(b), `"layout": 2`, `"layout": 1`, 1)), 0o600)
	if _, err := s.Lookup(ref); !errors.Is(err, ErrNotPulled) {
		t.Fatalf("Lookup of a stale root: got %v; want ErrNotPulled", err)
	}
	var cached int
	again, pulled, err := s.Ensure(context.Background(), ref, PullOptions{Progress: func(p Progress) { cached = p.Cached }})
	if err != nil || !pulled || cached != 2 || again.Root != img.Root {
		t.Fatalf("Ensure: %v, pulled %v, %d layers cached; want the root composed again from the cached layers", err, pulled, cached)
	}
	if _, err := s.Lookup(ref); err != nil {
		t.Errorf("Lookup after: %v", err)
	}
}
