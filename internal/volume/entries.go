package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// ErrExists is returned by Create for a volume that exists.
var ErrExists = errors.New("volume exists")

// Exists reports whether the volume is there.
func (s *Store) Exists(name string) bool {
	p, err := s.Path(name)
	if err != nil {
		return false
	}
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

// Create makes a new, empty volume; ErrExists if it is there.
func (s *Store) Create(name string) error {
	p, err := s.Path(name)
	if err != nil {
		return err
	}
	if err := s.mkdirStore(); err != nil {
		return err
	}
	if err := os.Mkdir(p, 0o755); errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %s", ErrExists, name)
	} else if err != nil {
		return fmt.Errorf("create volume %s: %w", name, err)
	}
	return nil
}

// mkdirStore makes the directory of volumes, private to this user: a
// volume holds what sandboxes wrote.
func (s *Store) mkdirStore() error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("volumes: %w", err)
	}
	return nil
}

// Entry is one file of a volume, as `volume ls` shows it.
type Entry struct {
	Name    string // relative to the volume's root
	Size    int64
	Mode    fs.FileMode
	ModTime time.Time
	Target  string // a symlink's, as written (never followed)
}

// maxEntries bounds a listing: a sandbox can make millions of files.
const maxEntries = 100000

// ReadDir lists rel in the volume ("" or "/" is its root): a directory's
// entries, sorted by name, or the one entry of a file. truncated says
// more than maxEntries were left out.
func (s *Store) ReadDir(name, rel string) (_ []Entry, truncated bool, _ error) {
	root, rel, err := s.openRel(name, rel)
	if err != nil {
		return nil, false, err
	}
	defer root.Close()
	fi, err := root.Lstat(rel)
	if err != nil {
		return nil, false, fmt.Errorf("volume %s: %w", name, err)
	}
	entry := func(p string, fi fs.FileInfo) Entry {
		e := Entry{Name: p, Size: fi.Size(), Mode: fi.Mode(), ModTime: fi.ModTime()}
		if fi.Mode()&fs.ModeSymlink != 0 {
			e.Target, _ = root.Readlink(p)
		}
		return e
	}
	if !fi.IsDir() {
		return []Entry{entry(rel, fi)}, false, nil
	}
	// O_NOFOLLOW|O_NONBLOCK: rel was a directory a moment ago; a link or
	// FIFO swapped in is not followed or waited on.
	d, err := root.OpenFile(rel, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, false, fmt.Errorf("volume %s: %w", name, err)
	}
	defer d.Close()
	names, err := d.Readdirnames(maxEntries + 1)
	if err != nil && len(names) == 0 {
		return nil, false, fmt.Errorf("volume %s: %w", name, err)
	}
	if len(names) > maxEntries {
		names, truncated = names[:maxEntries], true
	}
	sort.Strings(names)
	out := make([]Entry, 0, len(names))
	for _, n := range names {
		p := path.Join(rel, n)
		fi, err := root.Lstat(p)
		if err != nil {
			continue // gone meanwhile
		}
		out = append(out, entry(p, fi))
	}
	return out, truncated, nil
}

// RemovePath removes rel from the volume: a file or a symlink, or, with
// recursive, a directory and all it holds; never the volume's root (that
// is Remove). Safe against a sandbox changing the volume meanwhile.
func (s *Store) RemovePath(name, rel string, recursive bool) error {
	rel, err := CleanRel(rel)
	if err != nil {
		return err
	}
	root, err := s.openVolume(name)
	if err != nil {
		return err
	}
	defer root.Close()
	fi, err := root.Lstat(rel)
	if err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	if !fi.IsDir() {
		return root.Remove(rel)
	}
	if !recursive {
		return fmt.Errorf("volume %s: %s is a directory (remove it with -r)", name, rel)
	}
	// The parent, opened inside the root (no symlink out of it), then the
	// entry relative to it.
	parent, err := root.OpenFile(path.Dir(rel), os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	defer parent.Close()
	if err := removeTree(int(parent.Fd()), path.Base(rel)); err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	return nil
}
