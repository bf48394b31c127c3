package volume

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStreamRoundTrip: a tree goes out of one volume as a stream and into
// another and onto the host with Get's and Put's rules: files, modes
// without setuid, holes kept, symlinks and FIFOs skipped, nothing
// followed.
func TestStreamRoundTrip(t *testing.T) {
	st, dir := newVolume(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "run/a/b"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "run/a/b/x.txt"), []byte("hello"), 0o4755))
	must(os.Symlink("/", filepath.Join(dir, "run/root")))
	f, err := os.Create(filepath.Join(dir, "run/sparse"))
	must(err)
	f.WriteAt([]byte("tail"), 200<<20)
	f.Close()

	var buf bytes.Buffer
	must(st.Pack("data", "/run", &buf))
	r := bufio.NewReader(&buf)
	h, err := ReadHeader(r)
	must(err)
	if h.Base != "run" || !h.Dir {
		t.Fatalf("got header %+v; want run, a directory", h)
	}
	out := filepath.Join(t.TempDir(), "got")
	c, err := Unpack(r, out, Usage{Files: 2, Apparent: 200<<20 + 4 + 5})
	must(err)
	if c.Files != 2 || c.Skipped != 1 || c.Bytes > 1<<20 {
		t.Errorf("got %+v; want 2 files, 1 skipped, only the data written", c)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "a/b/x.txt")); string(b) != "hello" {
		t.Errorf("got %q; want hello", b)
	}
	if fi, err := os.Stat(filepath.Join(out, "a/b/x.txt")); err != nil || fi.Mode()&os.ModeSetuid != 0 {
		t.Errorf("got %v, %v; want a file without setuid", fi, err)
	}
	if fi, err := os.Lstat(filepath.Join(out, "root")); err == nil {
		t.Errorf("the symlink crossed: %v", fi.Mode())
	}
	if a := allocated(t, filepath.Join(out, "sparse")); a > 1<<20 {
		t.Errorf("sparse file allocates %d bytes; want its data only", a)
	}

	// Host to volume, Put's rules: into an existing directory.
	buf.Reset()
	must(PackHost(out, &buf))
	c, err = st.UnpackInto("data", "run/", true, bufio.NewReader(&buf))
	must(err)
	if c.Dest != "run/got" || c.Files != 2 {
		t.Errorf("got %+v; want 2 files into run/got", c)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "run/got/a/b/x.txt")); string(b) != "hello" {
		t.Errorf("got %q; want hello", b)
	}
}

// hostile builds a tree stream record by record.
type hostile struct{ bytes.Buffer }

func (h *hostile) b(v byte) *hostile { h.WriteByte(v); return h }
func (h *hostile) n(v uint64) *hostile {
	h.Write(binary.BigEndian.AppendUint64(nil, v))
	return h
}
func (h *hostile) s(v string) *hostile {
	h.Write(binary.BigEndian.AppendUint16(nil, uint16(len(v))))
	h.WriteString(v)
	return h
}

// TestUnpackRefusesHostileStreams: what came out of a volume cannot write
// outside the destination, more than was measured, or deeper than
// MaxDepth, and a link planted at the destination is not written through.
func TestUnpackRefusesHostileStreams(t *testing.T) {
	deep := strings.Repeat("d/", MaxDepth) + "f"
	cases := []struct {
		name   string
		stream func() *hostile
		want   string
	}{
		{"parent path", func() *hostile {
			return new(hostile).b('d').s(".").b('f').s("../escape").n(0o644).n(1).b('e')
		}, "not a path inside"},
		{"absolute path", func() *hostile {
			return new(hostile).b('d').s(".").b('f').s("/etc/x").n(0o644).n(1).b('e')
		}, "not a path inside"},
		{"unclean path", func() *hostile {
			return new(hostile).b('d').s(".").b('f').s("a/../../x").n(0o644).n(1).b('e')
		}, "not a path inside"},
		{"top twice", func() *hostile { return new(hostile).b('d').s(".").b('d').s(".") }, "out of place"},
		{"too deep", func() *hostile { return new(hostile).b('d').s(".").b('d').s(deep) }, "nested more than"},
		{"over the measured size", func() *hostile {
			return new(hostile).b('d').s(".").b('f').s("big").n(0o644).n(15 << 40).b('e')
		}, "more than was measured"},
		{"over the measured files", func() *hostile {
			h := new(hostile).b('d').s(".")
			for _, n := range []string{"a", "b", "c"} {
				h.b('f').s(n).n(0o644).n(0).b('e')
			}
			return h
		}, "over 2 files"},
		{"segment past the end", func() *hostile {
			return new(hostile).b('d').s(".").b('f').s("f").n(0o644).n(4).b('s').n(2).n(4).s("xx")
		}, "segment"},
		{"segment rewritten", func() *hostile {
			return new(hostile).b('d').s(".").b('f').s("f").n(0o644).n(8).b('s').n(4).n(1).b('x').b('s').n(0).n(1).b('x')
		}, "segment"},
		{"cut short", func() *hostile { return new(hostile).b('d').s(".").b('f').s("f").n(0o644) }, "cut short"},
		{"error from the source", func() *hostile { return new(hostile).b('d').s(".").b('x').s("boom") }, "boom"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "in", "top")
			os.MkdirAll(filepath.Dir(dst), 0o755)
			_, err := Unpack(bufio.NewReader(c.stream()), dst, Usage{Files: 2, Apparent: 1 << 20})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v; want an error with %q", err, c.want)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(dst), "escape")); err == nil {
				t.Error("a file was written outside the destination")
			}
		})
	}

	// A symlink at the destination (the user's directory) is not
	// written through.
	dst := filepath.Join(t.TempDir(), "top")
	os.MkdirAll(dst, 0o755)
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("keep"), 0o644)
	os.Symlink(victim, filepath.Join(dst, "f"))
	s := new(hostile).b('d').s(".").b('f').s("f").n(0o644).n(4).b('s').n(0).n(4)
	s.WriteString("gone")
	s.b('e').b('z')
	_, err := Unpack(bufio.NewReader(s), dst, Usage{Files: 2, Apparent: 1 << 20})
	if b, _ := os.ReadFile(victim); string(b) != "keep" || err == nil {
		t.Errorf("got %q, %v; want the link's target untouched and an error", b, err)
	}
}
