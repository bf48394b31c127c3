package volume

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Files cross between the host and a volume the way cp -r copies them:
// into a destination directory that exists under the source's own name,
// else to the destination's name. Only regular files and directories
// cross: symlinks, FIFOs and sockets are skipped (reported in Copied),
// and a symlink inside the volume is never followed out of it (os.Root).
// Modes keep their permission bits but never setuid, setgid or sticky.
// Holes in sparse files stay holes (SEEK_DATA/SEEK_HOLE), so a file a
// sandbox made with `truncate -s 16T` costs its data, not 16 TiB.

// Copied says what a copy did.
type Copied struct {
	Files   int
	Bytes   int64 // data written (holes not counted)
	Skipped int   // symlinks and special files left out
	Dest    string
}

// add books the outcome of one file's copy: n bytes written, and the
// file copied, skipped (not a regular file after all), or failed.
func (c *Copied) add(n int64, err error) error {
	c.Bytes += n
	switch {
	case errors.Is(err, errSkipped):
		c.Skipped++
	case err != nil:
		return err
	default:
		c.Files++
	}
	return nil
}

// Usage is what copying a tree out of a volume would write.
type Usage struct {
	Files    int
	Data     int64 // allocated bytes: what the copy writes
	Apparent int64 // sizes as ls shows them, holes included
}

// MaxDepth is how deep a tree a copy out of a volume walks. A sandbox can
// nest directories without end (mkdir a; cd a, in a loop): walking 20,000
// levels took `volume get` 12 minutes and 900 MB before it had written
// anything, and no host path can be that long anyway (PATH_MAX is 4096).
const MaxDepth = 512

// ErrTooDeep is returned for a tree nested deeper than MaxDepth.
var ErrTooDeep = fmt.Errorf("directories nested more than %d deep", MaxDepth)

// tooDeep says whether the walk of rel reached a directory p below MaxDepth.
func tooDeep(rel, p string, d fs.DirEntry) error {
	if !d.IsDir() {
		return nil
	}
	if rel != "." {
		p = strings.TrimPrefix(strings.TrimPrefix(p, rel), "/")
	}
	if p != "." && p != "" && strings.Count(p, "/")+1 > MaxDepth {
		return fmt.Errorf("%w: %s…", ErrTooDeep, p[:min(len(p), 64)])
	}
	return nil
}

// permOf is the mode a copy gets: permission bits only.
func permOf(m fs.FileMode) fs.FileMode { return m.Perm() }

// openVolume opens the root of an existing volume.
func (s *Store) openVolume(name string) (*os.Root, error) {
	dir, err := s.Path(name)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return root, err
}

// openRel opens an existing volume and cleans rel, a path in it ("",
// "." and "/" being its root).
func (s *Store) openRel(name, rel string) (*os.Root, string, error) {
	rel, err := cleanOrRoot(rel)
	if err != nil {
		return nil, "", err
	}
	root, err := s.openVolume(name)
	return root, rel, err
}

// Measure walks rel in the volume and says what Get would write.
func (s *Store) Measure(name, rel string) (Usage, error) {
	root, rel, err := s.openRel(name, rel)
	if err != nil {
		return Usage{}, err
	}
	defer root.Close()
	var u Usage
	err = fs.WalkDir(root.FS(), rel, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			err = tooDeep(rel, p, d)
		}
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		u.Files++
		u.Apparent += fi.Size()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			u.Data += min(st.Blocks*512, fi.Size())
		} else {
			u.Data += fi.Size()
		}
		return nil
	})
	if err != nil {
		return u, fmt.Errorf("volume %s: %w", name, err)
	}
	return u, nil
}

// cleanOrRoot is CleanRel, with "", "." and "/" naming the volume's root.
func cleanOrRoot(rel string) (string, error) {
	if t := strings.Trim(filepath.ToSlash(rel), "/"); t == "" || t == "." {
		return ".", nil
	}
	return CleanRel(rel)
}

// Get copies rel (a file or a tree) out of the volume to the host path
// dst, with cp's rules: into dst when it is a directory, else as dst.
func (s *Store) Get(name, rel, dst string) (Copied, error) {
	root, rel, err := s.openRel(name, rel)
	if err != nil {
		return Copied{}, err
	}
	defer root.Close()
	if _, err := root.Lstat(rel); err != nil {
		return Copied{}, fmt.Errorf("volume %s: %w", name, err)
	}
	if dst, err = GetDest(name, rel, dst); err != nil {
		return Copied{}, err
	}
	c := Copied{Dest: dst}
	err = fs.WalkDir(root.FS(), rel, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			err = tooDeep(rel, p, d)
		}
		if err != nil {
			return err
		}
		sub := strings.TrimPrefix(strings.TrimPrefix(p, rel), "/")
		if rel == "." {
			sub = p
			if p == "." {
				sub = ""
			}
		}
		out := filepath.Join(dst, filepath.FromSlash(sub))
		switch {
		case d.IsDir():
			return os.MkdirAll(out, 0o755)
		case d.Type().IsRegular():
			return c.add(copyOut(root, p, out))
		default:
			c.Skipped++
		}
		return nil
	})
	if err != nil {
		return c, fmt.Errorf("get %s from volume %s: %w", rel, name, err)
	}
	return c, nil
}

// GetDest applies cp's rules to a copy of rel (cleaned; "." is the
// volume's root, named after the volume) out to the host path dst: into
// dst when it is a directory (made first when it ends in a separator),
// else as dst.
func GetDest(name, rel, dst string) (string, error) {
	if strings.HasSuffix(dst, string(filepath.Separator)) {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return "", err
		}
	}
	if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
		base := path.Base(rel)
		if rel == "." {
			base = name
		}
		dst = filepath.Join(dst, base)
	}
	return dst, nil
}

// Cat writes the file rel of the volume to w (`volume get VOL PATH -`),
// holes as the zeros they read as.
func (s *Store) Cat(name, rel string, w io.Writer) (int64, error) {
	rel, err := CleanRel(rel)
	if err != nil {
		return 0, err
	}
	root, err := s.openVolume(name)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	in, size, err := openRegular(root, rel)
	if err != nil {
		return 0, fmt.Errorf("volume %s: %w", name, err)
	}
	defer in.Close()
	// Only what the file held when it was opened: a sandbox may grow it.
	return io.Copy(w, io.NewSectionReader(in, 0, size))
}

var errSkipped = errors.New("not a regular file")

// openRegular opens a regular file of the volume for reading, and its
// size then. A FIFO swapped in meanwhile must not block the open, hence
// O_NONBLOCK, and the type is checked after it.
func openRegular(root *os.Root, rel string) (*os.File, int64, error) {
	in, err := root.OpenFile(rel, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, 0, fmt.Errorf("%s: %w", rel, errSkipped)
	}
	if err != nil {
		return nil, 0, err
	}
	fi, err := in.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s: %w", rel, errSkipped)
	}
	if err != nil {
		in.Close()
		return nil, 0, err
	}
	return in, fi.Size(), nil
}

// copyOut copies the volume's file src to the host path dst, holes kept.
func copyOut(root *os.Root, src, dst string) (int64, error) {
	in, size, err := openRegular(root, src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	fi, _ := in.Stat()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, permOf(fi.Mode()))
	if err != nil {
		return 0, err
	}
	n, err := copySparse(out, in, size)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// copySparse copies the first size bytes of in to out, writing only its
// data segments and leaving the holes between them as holes; out ends at
// size. It returns the data bytes written.
func copySparse(out, in *os.File, size int64) (int64, error) {
	var written int64
	err := dataSegments(in, size, func(off, n int64) error {
		k, err := io.Copy(io.NewOffsetWriter(out, off), io.NewSectionReader(in, off, n))
		written += k
		return err
	})
	if err != nil {
		return written, err
	}
	return written, out.Truncate(size)
}

// dataSegments calls fn for each data segment of the first size bytes of
// in, skipping holes (SEEK_DATA/SEEK_HOLE); where the filesystem cannot
// tell, the rest is one segment.
func dataSegments(in *os.File, size int64, fn func(off, n int64) error) error {
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		}
		if err != nil {
			return fn(off, size-off)
		}
		if data >= size {
			return nil
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil || hole > size {
			hole = size
		}
		if err := fn(data, hole-data); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// nonblockNofollow opens without waiting on a FIFO or following a
// symlink a sandbox left where a file is written.
const nonblockNofollow = unix.O_NONBLOCK | unix.O_NOFOLLOW

// Put copies a host file or directory tree src into the volume at rel,
// with cp's rules: into rel when it is a directory of the volume, else as
// rel. The volume must exist (Create, or Ensure).
func (s *Store) Put(name, src, rel string) (Copied, error) {
	intoDir := strings.HasSuffix(rel, "/")
	root, rel, err := s.openRel(name, rel)
	if err != nil {
		return Copied{}, err
	}
	defer root.Close()
	top, err := os.Stat(src)
	if err != nil {
		return Copied{}, err
	}
	if rel, err = putDest(root, rel, intoDir, filepath.Base(filepath.Clean(src)), top.IsDir()); err != nil {
		return Copied{}, fmt.Errorf("put into volume %s: %w", name, err)
	}
	c := Copied{Dest: rel}
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		sub, _ := filepath.Rel(src, p)
		dst := path.Join(rel, filepath.ToSlash(sub))
		switch {
		case d.IsDir():
			return root.MkdirAll(dst, 0o755)
		case d.Type().IsRegular():
			if err := root.MkdirAll(path.Dir(dst), 0o755); err != nil {
				return err
			}
			return c.add(copyIn(root, p, dst))
		default:
			c.Skipped++
		}
		return nil
	})
	if err != nil {
		return c, fmt.Errorf("put %s into volume %s: %w", src, name, err)
	}
	return c, nil
}

// putDest applies cp's rules to a copy of base (a directory when
// topIsDir) into the volume at rel: into rel when it is a directory (made
// first when intoDir: DEST/), else as rel.
func putDest(root *os.Root, rel string, intoDir bool, base string, topIsDir bool) (string, error) {
	if intoDir {
		if err := root.MkdirAll(rel, 0o755); err != nil {
			return "", err
		}
	}
	if fi, err := root.Stat(rel); err == nil && fi.IsDir() {
		return path.Join(rel, base), nil
	} else if rel == "." && !topIsDir {
		return base, nil
	}
	return rel, nil
}

func copyIn(root *os.Root, src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return 0, err
	}
	// O_NONBLOCK|O_NOFOLLOW: a FIFO or symlink the sandbox put at dst
	// must neither block the open nor be written through.
	out, err := root.OpenFile(dst, os.O_WRONLY|os.O_CREATE|unix.O_NONBLOCK|unix.O_NOFOLLOW, permOf(fi.Mode())|0o600)
	if err != nil {
		return 0, err
	}
	if ofi, err := out.Stat(); err != nil || !ofi.Mode().IsRegular() {
		out.Close()
		return 0, fmt.Errorf("%s in the volume: %w", dst, errSkipped)
	}
	if err := out.Truncate(0); err != nil {
		out.Close()
		return 0, err
	}
	n, err := copySparse(out, in, fi.Size())
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}
