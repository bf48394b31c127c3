package sandbox

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"syscall"

	"github.com/mlagent/mlagent/internal/volume"
)

var (
	ErrNotFound     = errors.New("sandbox not found")
	ErrNotRunning   = errors.New("sandbox is not running")
	ErrExists       = errors.New("sandbox already exists")
	ErrNoGPU        = errors.New("a GPU was requested but this host has none (no /dev/nvidia* device); use --gpu=optional to run without one")
	ErrInvalidName  = errors.New("invalid sandbox name: want 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit")
	ErrInvalidMount = errors.New("invalid mount")
	// ErrTimedOut matches the error of a command that the sandbox's time
	// limit (Spec.Timeout, Spec.IdleTimeout) cut short.
	ErrTimedOut error = syscall.ETIME
)

// ValidName checks a sandbox name: a DNS label, so that the same name works
// as a Kubernetes pod name.
func ValidName(name string) error {
	if name == "" || len(name) > maxNameLen || name[0] == '-' || name[len(name)-1] == '-' {
		return fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("%w: %q", ErrInvalidName, name)
		}
	}
	return nil
}

// reservedMountRoots are paths a volume may not cover: the sandbox's own
// system directories.
var reservedMountRoots = []string{"/usr", "/bin", "/lib", "/lib64", "/sbin", "/etc", "/proc", "/dev", "/sys", "/run", path.Dir(BinDir), "/tmp"}

// ValidMount checks that m names a valid volume and an absolute, clean path
// that neither is nor lies under a system directory of the sandbox.
func ValidMount(m Mount) error {
	if err := volume.ValidName(m.Volume); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidMount, err)
	}
	p := m.Path
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "/" || strings.ContainsAny(p, "\x00\n") {
		return fmt.Errorf("%w: path %q must be absolute and clean, not /", ErrInvalidMount, p)
	}
	for _, r := range reservedMountRoots {
		if p == r || strings.HasPrefix(p, r+"/") {
			return fmt.Errorf("%w: path %q is inside the sandbox's system directory %s", ErrInvalidMount, p, r)
		}
	}
	if p == Home || p == Workspace {
		return fmt.Errorf("%w: path %q would hide the sandbox's %s", ErrInvalidMount, p, p)
	}
	return nil
}

// ValidBind checks a bind: an absolute, clean source, and a path inside
// that may be /workspace's subdirectory or any non-system path, but not
// the workspace or home themselves.
func ValidBind(b Bind) error {
	if !strings.HasPrefix(b.Source, "/") || path.Clean(b.Source) != b.Source || strings.ContainsAny(b.Source, "\x00\n") {
		return fmt.Errorf("%w: host path %q must be absolute and clean", ErrInvalidMount, b.Source)
	}
	return ValidMount(Mount{Volume: "bind", Path: b.Path})
}

// Validate checks a spec before any work is done.
func (s *Spec) Validate() error {
	if s.Name != "" {
		if err := ValidName(s.Name); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for _, m := range s.Volumes {
		if err := ValidMount(m); err != nil {
			return err
		}
		if seen[m.Path] {
			return fmt.Errorf("%w: two volumes at %s", ErrInvalidMount, m.Path)
		}
		seen[m.Path] = true
	}
	for _, b := range s.Binds {
		if err := ValidBind(b); err != nil {
			return err
		}
		if seen[b.Path] {
			return fmt.Errorf("%w: two mounts at %s", ErrInvalidMount, b.Path)
		}
		seen[b.Path] = true
	}
	for k := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("invalid environment variable name %q", k)
		}
	}
	if g := s.Gateway; g != nil {
		if g.Network != "unix" && g.Network != "tcp" || g.Address == "" || g.Token == "" {
			return errors.New("gateway access needs a network (unix or tcp), an address and a token")
		}
	}
	if s.CPUs < 0 || s.MemoryBytes < 0 || s.Timeout < 0 || s.IdleTimeout < 0 {
		return errors.New("limits and timeouts cannot be negative")
	}
	return nil
}
