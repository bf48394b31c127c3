package image

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"golang.org/x/sys/unix"

	"github.com/mlagent/mlagent/internal/image/imagetest"
)

// extractTo extracts a layer of entries into dir/fs, as the cache keeps
// layers, and returns its metadata.
func extractTo(t *testing.T, dir string, entries []E) (*layerMeta, error) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "fs"), 0o755); err != nil {
		t.Fatal(err)
	}
	return extractLayer(strings.NewReader(string(imagetest.LayerTar(t, entries))), filepath.Join(dir, "fs"))
}

// A whiteout of ".", ".." or "" names the directory holding it or the one
// above: at the top of a layer, what holds the root being composed. It
// must be refused, and nothing outside the root may go.
func TestWhiteoutsStayInTheRoot(t *testing.T) {
	lower := []E{{Name: "a/", Type: tar.TypeDir}, {Name: "a/file", Body: "x"}, {Name: "top", Body: "y"}}
	for _, name := range []string{".wh...", ".wh..", ".wh.", "a/.wh...", "a/.wh.."} {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			work := filepath.Join(base, "work")
			dst := filepath.Join(work, "rootfs")
			os.MkdirAll(dst, 0o700)
			sentinel := filepath.Join(work, "sentinel")
			os.WriteFile(sentinel, []byte("beside the root"), 0o600)
			l1, l2 := filepath.Join(base, "l1"), filepath.Join(base, "l2")
			m1, err := extractTo(t, l1, lower)
			if err != nil {
				t.Fatal(err)
			}
			m2, err := extractTo(t, l2, []E{{Name: "a/", Type: tar.TypeDir}, {Name: name}})
			if err == nil {
				_, err = composeRoot(dst, []string{l1, l2}, []*layerMeta{m1, m2})
			}
			if _, serr := os.Stat(sentinel); serr != nil {
				t.Fatalf("a file beside the root was deleted (%v); the pull said %v", serr, err)
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %v; want ErrCorrupt", err)
			}
		})
	}
	// layer.json is read back from the cache: composing checks it too.
	for _, m := range []*layerMeta{
		{Whiteouts: []string{".."}}, {Whiteouts: []string{"."}}, {Whiteouts: []string{"/etc"}},
		{Opaque: []string{"../x"}}, {Links: [][2]string{{"a", "../../x"}}},
	} {
		base := t.TempDir()
		dst := filepath.Join(base, "work", "rootfs")
		os.MkdirAll(dst, 0o700)
		sentinel := filepath.Join(base, "work", "sentinel")
		os.WriteFile(sentinel, nil, 0o600)
		l := filepath.Join(base, "l")
		os.MkdirAll(filepath.Join(l, "fs"), 0o755)
		_, err := composeRoot(dst, []string{l}, []*layerMeta{m})
		if _, serr := os.Stat(sentinel); serr != nil || !errors.Is(err, ErrCorrupt) {
			t.Errorf("compose with %+v: got %v, sentinel %v; want ErrCorrupt and the sentinel kept", m, err, serr)
		}
	}
}

// Names no filesystem holds are refused, and the names a layer keeps in
// memory without writing anything (whiteouts, links to lower layers) are
// bounded: a small compressed layer must not make the host keep gigabytes.
func TestLayerNamesBounded(t *testing.T) {
	deep := strings.Repeat("d/", 2100) + "f" // 4201 bytes, each part short
	cases := []struct {
		name    string
		entries []E
	}{
		{"path over PATH_MAX", []E{{Name: deep, Body: "x"}}},
		{"whiteout over PATH_MAX", []E{{Name: strings.Repeat("d/", 2100) + ".wh.f"}}},
		{"component over NAME_MAX", []E{{Name: ".wh." + strings.Repeat("n", 300)}}},
		{"hard link to a name over PATH_MAX", []E{{Name: "h", Type: tar.TypeLink, Linkname: deep}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := extractTo(t, t.TempDir(), c.entries)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %v; want ErrCorrupt", err)
			}
		})
	}
	t.Run("too many whiteouts", func(t *testing.T) {
		defer func(n int) { maxLayerMeta = n }(maxLayerMeta)
		maxLayerMeta = 4 << 10
		var es []E
		for i := range 200 {
			es = append(es, E{Name: ".wh.file-" + strings.Repeat("x", 20) + string(rune('a'+i%26)) + string(rune('a'+i/26))})
		}
		if _, err := extractTo(t, t.TempDir(), es); !errors.Is(err, ErrCorrupt) {
			t.Errorf("200 whiteouts of ~30 bytes under a 4 KiB bound: got %v; want ErrCorrupt", err)
		}
		if _, err := extractTo(t, t.TempDir(), es[:50]); err != nil {
			t.Errorf("50 whiteouts under a 4 KiB bound: %v", err)
		}
	})
}

// Text an image chose (its platform, its entries' names, what its index
// lists) reaches the user's terminal through Pull's errors and Image: no
// escape sequence may survive.
func TestImageTextIsSanitized(t *testing.T) {
	const evil = "\x1b]0;pwned\a\x1b[2J\u009b31m"
	bad := func(s string) bool { return strings.ContainsAny(s, "\x1b\a\u009b") }
	ctx := context.Background()
	layer := imagetest.Layer(t, imagetest.LayerTar(t, []E{{Name: "f", Body: "x"}}))

	withConfig := func(t *testing.T, f func(*v1.ConfigFile)) v1.Image {
		img := imagetest.Image(t, imagetest.Config{}, layer)
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		f(cf)
		img, err = mutate.ConfigFile(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}

	t.Run("variant", func(t *testing.T) {
		img := withConfig(t, func(c *v1.ConfigFile) { c.Variant = evil })
		dir := imagetest.WriteLayout(t, filepath.Join(t.TempDir(), "l"), img, "1")
		got, err := openStore(t).Pull(ctx, dir, PullOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if bad(got.Platform) {
			t.Errorf("Platform %q holds escapes", got.Platform)
		}
	})
	t.Run("architecture", func(t *testing.T) {
		img := withConfig(t, func(c *v1.ConfigFile) { c.Architecture = "amd64" + evil })
		dir := imagetest.WriteLayout(t, filepath.Join(t.TempDir(), "l"), img, "1")
		_, err := openStore(t).Pull(ctx, dir, PullOptions{})
		if !errors.Is(err, ErrPlatform) || bad(err.Error()) {
			t.Errorf("got %q; want ErrPlatform without escapes", err)
		}
	})
	t.Run("index platforms", func(t *testing.T) {
		img := imagetest.Image(t, imagetest.Config{Arch: "s390x"}, layer)
		idx := imagetest.Index(t, img, v1.Platform{OS: "linux", Architecture: "s390x", Variant: evil})
		reg := imagetest.NewRegistry(t)
		ref := reg.PushIndex(t, "test/idx:1", idx)
		_, err := openStore(t).Pull(ctx, ref, PullOptions{})
		if !errors.Is(err, ErrPlatform) || bad(err.Error()) {
			t.Errorf("got %q; want ErrPlatform without escapes", err)
		}
	})
	t.Run("entry name", func(t *testing.T) {
		l := imagetest.Layer(t, imagetest.LayerTar(t, []E{
			{Name: "d/", Type: tar.TypeDir}, {Name: "x" + evil, Type: tar.TypeLink, Linkname: "d"}}))
		img := imagetest.Image(t, imagetest.Config{}, l)
		dir := imagetest.WriteLayout(t, filepath.Join(t.TempDir(), "l"), img, "1")
		_, err := openStore(t).Pull(ctx, dir, PullOptions{})
		if !errors.Is(err, ErrCorrupt) || bad(err.Error()) {
			t.Errorf("got %q; want ErrCorrupt without escapes", err)
		}
	})
}

// zeros counts what is read of an endless stream of zero bytes.
type zeros struct{ n atomic.Int64 }

func (z *zeros) Read(b []byte) (int, error) {
	clear(b)
	z.n.Add(int64(len(b)))
	return len(b), nil
}

// streamLayer writes a layer tar of files with the given sizes (zero
// bytes, as a decompression bomb is) to a pipe, as extraction reads it.
func streamLayer(sizes []int64, body *zeros) *io.PipeReader {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		for i, n := range sizes {
			if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("f%d", i), Mode: 0o644, Size: n, Typeflag: tar.TypeReg}); err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := io.CopyN(tw, body, n); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(tw.Close())
	}()
	return pr
}

// A layer is untrusted input that may stand for far more than its size
// (a few kB of zstd for gigabytes): extraction keeps a reserve free on
// the cache's filesystem rather than filling it, and refuses an entry
// too large for the disk before writing any of it.
func TestLayerCannotFillTheDisk(t *testing.T) {
	mount := func(t *testing.T) string {
		dir := t.TempDir()
		if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64m"); err != nil {
			t.Skipf("cannot mount a small tmpfs to fill (%v); run as root", err)
		}
		t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
		return dir
	}
	avail := func(dir string) int64 {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		return int64(st.Bavail) * int64(st.Bsize)
	}
	t.Run("one huge entry", func(t *testing.T) {
		dir := mount(t)
		body := &zeros{}
		pr := streamLayer([]int64{1 << 40}, body)
		defer pr.Close()
		_, err := extractLayer(pr, dir)
		if !errors.Is(err, ErrNoSpace) {
			t.Errorf("got %v; want ErrNoSpace", err)
		}
		if n := body.n.Load(); n > 1<<20 {
			t.Errorf("read %s of the entry before refusing it; want it refused from its header", FormatBytes(n))
		}
	})
	t.Run("many entries", func(t *testing.T) {
		dir := mount(t)
		sizes := make([]int64, 40)
		for i := range sizes {
			sizes[i] = 4 << 20 // 160 MiB in all, on 64 MiB
		}
		pr := streamLayer(sizes, &zeros{})
		defer pr.Close()
		_, err := extractLayer(pr, dir)
		if !errors.Is(err, ErrNoSpace) {
			t.Errorf("got %v; want ErrNoSpace", err)
		}
		// The reserve of a 64 MiB filesystem is 5%: 3.2 MiB.
		if a := avail(dir); a < 3<<20 {
			t.Errorf("extraction left %s free of 64 MiB; want the reserve kept", FormatBytes(a))
		}
	})
}

// A registry states a config's size in the manifest and the client reads
// that much into memory: a hostile one could ask for gigabytes. The
// config is refused from its descriptor, before a byte of it is fetched.
func TestHugeConfigRefused(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	img := imagetest.Image(t, imagetest.Config{}, imagetest.Layer(t, imagetest.LayerTar(t, []E{{Name: "f", Body: "x"}})))
	ref := reg.Push(t, "test/huge:1", img)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	m = m.DeepCopy()
	const claimed = 256 << 20
	m.Config.Size = claimed
	m.Config.Digest = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	var served atomic.Int64
	reg.Wrap = func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.HasSuffix(r.URL.Path, "/manifests/1"):
				w.Header().Set("Content-Type", string(m.MediaType))
				w.Header().Set("Docker-Content-Digest", "sha256:"+hex.EncodeToString(sum[:]))
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				if r.Method != http.MethodHead {
					w.Write(body)
				}
			case strings.HasSuffix(r.URL.Path, "/blobs/"+m.Config.Digest.String()):
				w.Header().Set("Content-Length", strconv.Itoa(claimed))
				buf := make([]byte, 1<<20)
				for i := 0; i < claimed>>20; i++ {
					n, err := w.Write(buf)
					served.Add(int64(n))
					if err != nil {
						return
					}
				}
			default:
				h.ServeHTTP(w, r)
			}
		})
	}
	_, err = openStore(t).Pull(context.Background(), ref, PullOptions{})
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("got %v; want ErrCorrupt", err)
	}
	if n := served.Load(); n > 0 {
		t.Errorf("the registry served %s of a config claiming %s; want it refused from the manifest", FormatBytes(n), FormatBytes(claimed))
	}
}
