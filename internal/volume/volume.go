// Package volume keeps named volumes: directories under
// $MLAGENT_HOME/volumes that sandboxes mount and that outlive them. Files
// move in and out through os.Root, because a sandbox may have left
// symlinks that point at the host.
package volume

import (
	"errors"
	"fmt"
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
	if err := s.mkdirStore(); err != nil {
		return "", err
	}
	if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
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
