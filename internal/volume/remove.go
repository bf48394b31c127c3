package volume

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// A sandbox may be running while the host removes what it wrote, and it
// can swap any directory for a symlink at any moment (renameat2
// RENAME_EXCHANGE). So removal never goes by path: every directory is
// opened relative to its parent's descriptor with O_NOFOLLOW, its mode is
// changed through that descriptor (a sandbox may leave directories we
// cannot write to), and entries are unlinked relative to it; unlink never
// follows a symlink. The worst a swap can do is make an entry move within
// the volume.

// maxOpenDepth bounds the directories held open at once; deeper ones are
// moved up to the top of the tree (a rename, which follows nothing) and
// removed from there, so that any depth can go.
const maxOpenDepth = 256

// removeTree removes the directory name of parent and all it holds.
func removeTree(parent int, name string) error {
	top, err := openDir(parent, name)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return unlinkEntry(parent, name) // not a directory: just the entry
	}
	if err != nil {
		return err
	}
	r := &remover{top: top}
	err = r.empty(top, 0)
	if err == nil {
		err = r.drain()
	}
	unix.Close(top)
	if err != nil {
		return err
	}
	for try := 0; ; try++ {
		err := unix.Unlinkat(parent, name, unix.AT_REMOVEDIR)
		switch {
		case err == nil || errors.Is(err, unix.ENOENT):
			return nil
		case try < maxRetries && errors.Is(err, unix.ENOTEMPTY):
			// Written to meanwhile: empty it again.
			if err := removeContents(parent, name); err != nil {
				return err
			}
		default:
			return &os.PathError{Op: "remove", Path: name, Err: err}
		}
	}
}

// removeContents empties the directory name of parent.
func removeContents(parent int, name string) error {
	top, err := openDir(parent, name)
	if err != nil {
		return err
	}
	defer unix.Close(top)
	r := &remover{top: top}
	if err := r.empty(top, 0); err != nil {
		return err
	}
	return r.drain()
}

// drain removes the directories moved up to the top.
func (r *remover) drain() error {
	for len(r.moved) > 0 {
		n := r.moved[len(r.moved)-1]
		r.moved = r.moved[:len(r.moved)-1]
		if err := r.removeAt(r.top, n, 1); err != nil {
			return err
		}
	}
	return nil
}

type remover struct {
	top   int
	moved []string // directories moved up to top, still to remove
	seq   int
}

// maxRetries bounds the attempts at an entry that keeps changing kind
// (a sandbox swapping it) or filling up while it is removed.
const maxRetries = 100

// removeAt removes the entry name of the open directory dir, again when
// it changed under us.
func (r *remover) removeAt(dir int, name string, depth int) error {
	for try := 0; ; try++ {
		err := r.removeOnce(dir, name, depth)
		if err == nil || try == maxRetries || !changedUnderUs(err) {
			return err
		}
	}
}

func changedUnderUs(err error) bool {
	return errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.ELOOP)
}

func (r *remover) removeOnce(dir int, name string, depth int) error {
	err := unix.Unlinkat(dir, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return &os.PathError{Op: "remove", Path: name, Err: err}
	}
	if depth >= maxOpenDepth {
		for {
			r.seq++
			to := ".mlagent-rm-" + strconv.Itoa(r.seq)
			err := unix.Renameat2(dir, name, r.top, to, unix.RENAME_NOREPLACE)
			if errors.Is(err, unix.EEXIST) {
				continue // a name the sandbox took: the next one
			}
			if err != nil {
				return &os.PathError{Op: "remove", Path: name, Err: err}
			}
			r.moved = append(r.moved, to)
			return nil
		}
	}
	fd, err := openDir(dir, name)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return unlinkEntry(dir, name) // swapped for a link or a file meanwhile
	}
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	err = r.empty(fd, depth)
	unix.Close(fd)
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(dir, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: name, Err: err}
	}
	return nil
}

// empty removes everything in the open directory fd.
func (r *remover) empty(fd, depth int) error {
	for {
		names, err := readNames(fd)
		if err != nil {
			return err
		}
		if len(names) == 0 {
			return nil
		}
		for _, n := range names {
			if err := r.removeAt(fd, n, depth+1); err != nil {
				return err
			}
		}
	}
}

// readNames lists up to 1024 entries of the open directory fd, from its
// start (what was removed is gone, so each call sees what is left).
func readNames(fd int) ([]string, error) {
	if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
		return nil, err
	}
	// A duplicate: os.File closes its descriptor when collected.
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	names, err := f.Readdirnames(1024)
	if err == io.EOF {
		err = nil
	}
	return names, err
}

// openDir opens the directory name of dir without following a symlink,
// and makes it writable and searchable by its owner (us) through the
// descriptor, never by path. One we cannot even read is opened O_PATH
// and changed through /proc/self/fd, which refers to the same inode.
func openDir(dir int, name string) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(dir, name, flags, 0)
	if errors.Is(err, unix.EACCES) {
		p, perr := unix.Openat(dir, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if perr != nil {
			return -1, &os.PathError{Op: "open", Path: name, Err: perr}
		}
		err = unix.Chmod("/proc/self/fd/"+strconv.Itoa(p), 0o700)
		if err == nil {
			fd, err = unix.Openat(p, ".", flags, 0)
		}
		unix.Close(p)
	}
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: name, Err: err}
	}
	if err := unix.Fchmod(fd, 0o700); err != nil {
		unix.Close(fd)
		return -1, &os.PathError{Op: "chmod", Path: name, Err: err}
	}
	return fd, nil
}

func unlinkEntry(dir int, name string) error {
	if err := unix.Unlinkat(dir, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: name, Err: err}
	}
	return nil
}

// RemoveTree removes the directory dir and everything in it the same
// way: by descriptor, never following a link, changing modes only
// through descriptors. For other trees a sandbox wrote (a workspace).
func RemoveTree(dir string) error {
	dir = filepath.Clean(dir)
	parent, err := unix.Open(filepath.Dir(dir), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "remove", Path: dir, Err: err}
	}
	defer unix.Close(parent)
	return removeTree(parent, filepath.Base(dir))
}

// Remove deletes a volume and everything in it. It is safe against a
// sandbox changing the volume while it runs.
func (s *Store) Remove(name string) error {
	if _, err := s.Path(name); err != nil {
		return err
	}
	parent, err := unix.Open(s.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	defer unix.Close(parent)
	var st unix.Stat_t
	if err := unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err := removeTree(parent, name); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	return nil
}
