// Package imagetest builds OCI images in tests, offline: layers from
// listed entries or from this machine's files (a busybox and python3 root
// taken from the host), served by go-containerregistry's in-memory
// registry on loopback, or written as an OCI layout, an OCI archive or a
// `docker save` archive.
package imagetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Entry is one member of a test layer.
type Entry struct {
	Name     string
	Type     byte // tar.TypeReg (default), TypeDir, TypeSymlink, TypeLink, TypeChar…
	Body     string
	Mode     int64 // default 0644 for files, 0755 for directories
	Linkname string
	ModTime  time.Time
}

// Epoch is the modification time of entries that give none.
var Epoch = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// LayerTar returns the bytes of an uncompressed layer tar.
func LayerTar(t testing.TB, entries []Entry) []byte {
	t.Helper()
	tb := &treeBuilder{seen: map[string]bool{}}
	for _, e := range entries {
		tb.seen[e.Name] = false // the same name twice is a test's choice
		tb.add(e)
	}
	b, err := tb.bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Layer is a gzip-compressed layer of the tar bytes.
func Layer(t testing.TB, tarBytes []byte) v1.Layer {
	t.Helper()
	l, err := layer(tarBytes)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func layer(tarBytes []byte) (v1.Layer, error) {
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes)), nil
	}, tarball.WithCompressionLevel(gzip.BestSpeed), tarball.WithCompressedCaching)
}

// Config is what a test image's config sets.
type Config struct {
	Env        []string
	WorkingDir string
	// Arch is the config's architecture; "" is this machine's.
	Arch string
}

// Image stacks layers (bottom first) on an empty image.
func Image(t testing.TB, c Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := image(c, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func image(c Config, layers ...v1.Layer) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", c.Arch
	if cf.Architecture == "" {
		cf.Architecture = runtime.GOARCH
	}
	cf.Config.Env, cf.Config.WorkingDir = c.Env, c.WorkingDir
	cf.Created = v1.Time{Time: Epoch}
	return mutate.ConfigFile(img, cf)
}

// Index is an index holding img for platform.
func Index(t testing.TB, img v1.Image, platform v1.Platform) v1.ImageIndex {
	t.Helper()
	return mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &platform}})
}

// Registry is go-containerregistry's in-memory registry served on
// loopback, counting the requests it gets.
type Registry struct {
	// Host is 127.0.0.1:PORT.
	Host     string
	requests atomic.Int64
	// Wrap, when set, sees every request before the registry.
	Wrap func(http.Handler) http.Handler
}

// NewRegistry starts a registry for the test.
func NewRegistry(t testing.TB) *Registry {
	t.Helper()
	r := &Registry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		h := reg
		if r.Wrap != nil {
			h = r.Wrap(reg)
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.Host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// Requests is how many requests the registry has served.
func (r *Registry) Requests() int64 { return r.requests.Load() }

// Push puts img at repo:tag (e.g. "test/py:1") and returns the reference.
func (r *Registry) Push(t testing.TB, repoTag string, img v1.Image) string {
	t.Helper()
	ref := r.Host + "/" + repoTag
	tag, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	w := r.Wrap
	r.Wrap = nil // pushing is the test's own business
	defer func() { r.Wrap = w }()
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// PushIndex puts an index at repo:tag and returns the reference.
func (r *Registry) PushIndex(t testing.TB, repoTag string, idx v1.ImageIndex) string {
	t.Helper()
	ref := r.Host + "/" + repoTag
	tag, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(tag, idx); err != nil {
		t.Fatal(err)
	}
	return ref
}

// WriteLayout writes img into a new OCI layout directory, annotated with
// tag, and returns the directory.
func WriteLayout(t testing.TB, dir string, img v1.Image, tag string) string {
	t.Helper()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		t.Fatal(err)
	}
	return dir
}

// WriteOCIArchive writes img as a tar of an OCI layout.
func WriteOCIArchive(t testing.TB, file string, img v1.Image, tag string) string {
	t.Helper()
	dir := WriteLayout(t, t.TempDir(), img, tag)
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return file
}

// WriteDockerArchive writes img as `docker save` does (manifest.json,
// uncompressed layers), tagged tag.
func WriteDockerArchive(t testing.TB, file string, img v1.Image, tag string) string {
	t.Helper()
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(file, ref, img); err != nil {
		t.Fatal(err)
	}
	return file
}

var (
	pyOnce sync.Once
	pyImg  v1.Image
	pyErr  string
)

// Marker files of PythonImage: the first layer has both, the second
// deletes Removed with a whiteout and adds Added.
const (
	Removed = "/etc/removed-by-whiteout"
	Added   = "/etc/added-by-layer-2"
)

// PythonImage is a small image made of this machine's files: busybox
// (busybox-static: a static binary, its applets as links in /usr/bin),
// bash, and /usr/bin/python3 with the libraries it loads and its standard
// library, in a merged-/usr layout; a second layer carries a whiteout.
// Its config sets ENV (IMAGE_VAR=from-image, and SECRET_TOKEN, which a
// sandbox must not pass on) and WORKDIR /srv/app. It skips the test
// when the machine lacks busybox or python3.
func PythonImage(t testing.TB) v1.Image {
	t.Helper()
	pyOnce.Do(func() { pyImg, pyErr = buildPythonImage() })
	if pyErr != "" {
		t.Skip(pyErr)
	}
	return pyImg
}

func buildPythonImage() (v1.Image, string) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return nil, "busybox is not installed; `apt-get install busybox-static` to run this test"
	}
	if f, err := elf.Open(bb); err != nil {
		return nil, "busybox: " + err.Error()
	} else {
		interp := false
		for _, p := range f.Progs {
			interp = interp || p.Type == elf.PT_INTERP
		}
		f.Close()
		if interp {
			return nil, "busybox is dynamically linked; `apt-get install busybox-static` to run this test"
		}
	}
	py, err := filepath.EvalSymlinks("/usr/bin/python3")
	if err != nil {
		return nil, "/usr/bin/python3 is not installed"
	}
	stdlib := "/usr/lib/" + filepath.Base(py) // /usr/lib/python3.11
	if _, err := os.Stat(stdlib); err != nil {
		return nil, "no standard library at " + stdlib
	}
	tb := &treeBuilder{seen: map[string]bool{}}
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
		tb.add(Entry{Name: d, Type: tar.TypeSymlink, Linkname: "usr/" + d})
	}
	for _, d := range []string{"usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc", "srv/app", "root", "var/tmp"} {
		tb.dir(d, 0o755)
	}
	tb.add(Entry{Name: "root", Type: tar.TypeDir, Mode: 0o700})
	tb.file(bb, "usr/bin/busybox")
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return nil, "busybox --list: " + err.Error()
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" && !strings.HasPrefix(applet, "python") {
			tb.add(Entry{Name: "usr/bin/" + applet, Type: tar.TypeSymlink, Linkname: "busybox"})
		}
	}
	tb.file(py, "usr/bin/"+filepath.Base(py))
	// bash, which the agent's shell tool runs.
	bash, err := filepath.EvalSymlinks("/bin/bash")
	if err != nil {
		return nil, "bash is not installed"
	}
	tb.file(bash, "usr/bin/bash")
	tb.add(Entry{Name: "usr/bin/python3", Type: tar.TypeSymlink, Linkname: filepath.Base(py)})
	// The standard library, less what no test needs.
	skip := map[string]bool{"test": true, "idlelib": true, "tkinter": true, "ensurepip": true, "lib2to3": true, "pydoc_data": true, "turtledemo": true, "dist-packages": true, "site-packages": true}
	var elves []string
	filepath.WalkDir(stdlib, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel("/", p)
		if d.IsDir() {
			if p != stdlib && (skip[d.Name()] || strings.HasPrefix(d.Name(), "config-")) {
				return filepath.SkipDir
			}
			tb.dir(rel, 0o755)
			return nil
		}
		if d.Type().IsRegular() {
			tb.file(p, rel)
			if strings.HasSuffix(p, ".so") {
				elves = append(elves, p)
			}
		}
		return nil
	})
	// The libraries python and its extension modules load, found the way
	// the dynamic linker would, copied to the same paths.
	libs := map[string]bool{}
	var need func(p string)
	need = func(p string) {
		f, err := elf.Open(p)
		if err != nil {
			return
		}
		names, _ := f.ImportedLibraries()
		for _, pr := range f.Progs {
			if pr.Type == elf.PT_INTERP {
				b, _ := io.ReadAll(pr.Open())
				interp := strings.TrimRight(string(b), "\x00")
				if real, err := filepath.EvalSymlinks(interp); err == nil {
					libs[interp], libs[real] = true, true
				}
			}
		}
		f.Close()
		for _, n := range names {
			for _, dir := range []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"} {
				cand := filepath.Join(dir, n)
				if _, err := os.Stat(cand); err == nil {
					real, _ := filepath.EvalSymlinks(cand)
					if !libs[cand] {
						libs[cand] = true
						libs[real] = true
						need(real)
					}
					break
				}
			}
		}
	}
	need(py)
	need(bash)
	for _, p := range elves {
		need(p)
	}
	var paths []string
	for p := range libs {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		// Under /usr: in the image /lib is a link to usr/lib.
		dest := strings.TrimPrefix(p, "/")
		if !strings.HasPrefix(dest, "usr/") {
			dest = "usr/" + dest
		}
		tb.dir(filepath.Dir(dest), 0o755)
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			tb.add(Entry{Name: dest, Type: tar.TypeSymlink, Linkname: target})
			real, _ := filepath.EvalSymlinks(p)
			rdest := strings.TrimPrefix(real, "/")
			if !strings.HasPrefix(rdest, "usr/") {
				rdest = "usr/" + rdest
			}
			tb.dir(filepath.Dir(rdest), 0o755)
			tb.file(real, rdest)
			continue
		}
		tb.file(p, dest)
	}
	tb.add(Entry{Name: strings.TrimPrefix(Removed, "/"), Body: "layer 1\n"})
	tb.add(Entry{Name: "srv/app/hello.txt", Body: "hello from the image\n"})
	b1, err := tb.bytes()
	if err != nil {
		return nil, "build the python image: " + err.Error()
	}
	l1, err := layer(b1)
	if err != nil {
		return nil, err.Error()
	}
	tb2 := &treeBuilder{seen: map[string]bool{}}
	tb2.add(Entry{Name: filepath.Dir(strings.TrimPrefix(Removed, "/")) + "/.wh." + filepath.Base(Removed)})
	tb2.add(Entry{Name: strings.TrimPrefix(Added, "/"), Body: "layer 2\n"})
	b2, err := tb2.bytes()
	if err != nil {
		return nil, err.Error()
	}
	l2, err := layer(b2)
	if err != nil {
		return nil, err.Error()
	}
	img, err := image(Config{
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "IMAGE_VAR=from-image", "SECRET_TOKEN=image-secret-value", "LANG=C.UTF-8"},
		WorkingDir: "/srv/app",
	}, l1, l2)
	if err != nil {
		return nil, err.Error()
	}
	return img, ""
}

// treeBuilder writes a layer tar from host files, each path once.
type treeBuilder struct {
	buf  bytes.Buffer
	tw   *tar.Writer
	seen map[string]bool
	err  error
}

func (b *treeBuilder) writer() *tar.Writer {
	if b.tw == nil {
		b.tw = tar.NewWriter(&b.buf)
	}
	return b.tw
}

// bytes ends the tar and returns it.
func (b *treeBuilder) bytes() ([]byte, error) {
	if b.err == nil {
		b.err = b.writer().Close()
	}
	return b.buf.Bytes(), b.err
}

func (b *treeBuilder) add(e Entry) {
	if b.err != nil || b.seen[e.Name] {
		return
	}
	b.seen[e.Name] = true
	h := &tar.Header{Name: e.Name, Typeflag: e.Type, Mode: e.Mode, Linkname: e.Linkname, ModTime: e.ModTime, Size: int64(len(e.Body)), Format: tar.FormatPAX}
	if h.ModTime.IsZero() {
		h.ModTime = Epoch
	}
	if h.Typeflag == 0 {
		h.Typeflag = tar.TypeReg
	}
	if h.Mode == 0 {
		h.Mode = 0o644
		if h.Typeflag == tar.TypeDir {
			h.Mode = 0o755
		}
	}
	if h.Typeflag != tar.TypeReg {
		h.Size = 0
	}
	if b.err = b.writer().WriteHeader(h); b.err == nil && h.Size > 0 {
		_, b.err = io.WriteString(b.tw, e.Body)
	}
}

func (b *treeBuilder) dir(rel string, mode int64) {
	if rel == "." || rel == "" || b.seen[rel] {
		return
	}
	b.dir(filepath.Dir(rel), 0o755)
	b.add(Entry{Name: rel, Type: tar.TypeDir, Mode: mode})
}

// file copies a host file, keeping its mode and time.
func (b *treeBuilder) file(src, rel string) {
	if b.err != nil || b.seen[rel] {
		return
	}
	b.dir(filepath.Dir(rel), 0o755)
	fi, err := os.Stat(src)
	if err != nil {
		b.err = err
		return
	}
	f, err := os.Open(src)
	if err != nil {
		b.err = err
		return
	}
	defer f.Close()
	b.seen[rel] = true
	h := &tar.Header{Name: rel, Typeflag: tar.TypeReg, Mode: int64(fi.Mode().Perm()), ModTime: fi.ModTime(), Size: fi.Size()}
	if b.err = b.writer().WriteHeader(h); b.err == nil {
		_, b.err = io.Copy(b.tw, f)
	}
}
