// Package volume keeps named volumes: directories under
// $MLAGENT_HOME/volumes that sandboxes mount and that outlive them. Files
// move in and out through os.Root, because a sandbox may have left
// symlinks that point at the host.
package volume

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// The volumes every chat mounts (sandbox.DefaultMounts).
const (
	// Data holds datasets, the Hugging Face cache, runs, transcripts and
	// user skills.
	Data = "data"
	// Trackio holds Trackio's databases, which the dashboard and the
	// syncer read.
	Trackio = "trackio"
)

// ErrInvalidName is returned for a name that cannot be a volume.
var ErrInvalidName = errors.New("invalid volume name: want 1-63 characters of a-z, A-Z, 0-9, '.', '_' and '-', not starting with '.'")

// ValidName checks a volume name; it becomes a directory name on the
// host, so it can hold no separator and cannot be "." or "..".
func ValidName(name string) error {
	if name == "" || len(name) > 63 || name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: %q", ErrInvalidName, name)
		}
	}
	return nil
}

// Store is the set of volumes under one directory. Safe for concurrent use.
type Store struct {
	Dir string
}

// New returns the store under dir.
func New(dir string) *Store { return &Store{Dir: dir} }

// Info describes one volume.
type Info struct {
	Name  string
	Path  string
	Files int
	Bytes int64
}

// ErrNotFound is returned for a volume that does not exist.
var ErrNotFound = errors.New("volume not found")

// Path returns the host directory of a volume, without creating it.
func (s *Store) Path(name string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	return filepath.Join(s.Dir, name), nil
}

// Ensure creates the volume if needed and returns its directory.
func (s *Store) Ensure(name string) (string, error) {
	p, err := s.Path(name)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return "", fmt.Errorf("volume %s: %w", name, err)
	}
	return p, nil
}

// List returns every volume with its file count and size.
func (s *Store) List() ([]Info, error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	var out []Info
	for _, e := range entries {
		if !e.IsDir() || ValidName(e.Name()) != nil {
			continue
		}
		info := Info{Name: e.Name(), Path: filepath.Join(s.Dir, e.Name())}
		filepath.WalkDir(info.Path, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					info.Files++
					info.Bytes += fi.Size()
				}
			}
			return nil
		})
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Remove deletes a volume and everything in it.
func (s *Store) Remove(name string) error {
	p, err := s.Path(name)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(p); err != nil {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	// Sandboxes may leave read-only directories behind.
	filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(q, 0o755)
		}
		return nil
	})
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	return nil
}

// CleanRel checks a path inside a volume: relative, no "..", no NUL.
func CleanRel(rel string) (string, error) {
	if rel == "" || strings.ContainsRune(rel, 0) {
		return "", fmt.Errorf("path %q: want a relative path inside the volume", rel)
	}
	c := path.Clean(strings.TrimLeft(filepath.ToSlash(rel), "/"))
	if c == "." || c == ".." || strings.HasPrefix(c, "../") || !filepath.IsLocal(c) {
		return "", fmt.Errorf("path %q leaves the volume", rel)
	}
	return c, nil
}

// Put copies a host file or directory tree src to rel inside the volume.
func (s *Store) Put(name, src, rel string) (int, error) {
	rel, err := CleanRel(rel)
	if err != nil {
		return 0, err
	}
	dir, err := s.Ensure(name)
	if err != nil {
		return 0, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	n := 0
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
			if err := copyIn(root, p, dst); err != nil {
				return err
			}
			n++
		}
		return nil // symlinks and devices are not copied
	})
	if err != nil {
		return n, fmt.Errorf("put %s into volume %s: %w", src, name, err)
	}
	return n, nil
}

func copyIn(root *os.Root, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := root.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm()|0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Get copies rel (a file or a tree) out of the volume to the host path
// dst. Symlinks inside the volume are never followed out of it.
func (s *Store) Get(name, rel, dst string) (int, error) {
	rel, err := CleanRel(rel)
	if err != nil {
		return 0, err
	}
	dir, err := s.Path(name)
	if err != nil {
		return 0, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		return 0, err
	}
	defer root.Close()
	n := 0
	err = fs.WalkDir(root.FS(), rel, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		sub := strings.TrimPrefix(strings.TrimPrefix(p, rel), "/")
		out := filepath.Join(dst, filepath.FromSlash(sub))
		switch {
		case d.IsDir():
			return os.MkdirAll(out, 0o755)
		case d.Type().IsRegular():
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return err
			}
			if err := copyOut(root, p, out); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("get %s from volume %s: %w", rel, name, err)
	}
	return n, nil
}

func copyOut(root *os.Root, src, dst string) error {
	in, err := root.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
