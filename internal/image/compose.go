package image

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mlagent/mlagent/internal/sandbox"
)

// composeRoot builds the flattened root at dst (which must exist, empty)
// from extracted layers, bottom first, with the semantics of an overlay
// mount (what Docker's overlay2 driver shows a container): a layer's
// opaque directories hide the lower contents, its whiteouts delete lower
// paths, a directory of a layer over a lower non-directory replaces it,
// and any non-directory replaces what was below. Files are hard links to
// the layers' files, so images that share layers share their bytes.
// Nothing in dst is ever followed through a symlink: every directory
// walked into is made a real directory first.
//
// It returns the root's size: the bytes of its distinct regular files.
func composeRoot(dst string, layers []string, metas []*layerMeta) (int64, error) {
	dirs := map[string]dirAttr{}
	for i, l := range layers {
		m := metas[i]
		if err := m.check(); err != nil {
			return 0, fmt.Errorf("layer %d: %w", i+1, err)
		}
		for _, p := range m.Opaque {
			if p == "." || realDir(dst, p) {
				if err := clearDir(filepath.Join(dst, p)); err != nil {
					return 0, noSpace(err, dst)
				}
			}
		}
		for _, p := range m.Whiteouts {
			if realDir(dst, path.Dir(p)) {
				if err := os.RemoveAll(filepath.Join(dst, p)); err != nil {
					return 0, err
				}
			}
		}
		if err := linkLayer(filepath.Join(l, "fs"), dst, dirs); err != nil {
			return 0, noSpace(fmt.Errorf("compose layer %d: %w", i+1, err), dst)
		}
		for _, ln := range m.Links {
			newp, old := ln[0], ln[1]
			fi, err := os.Lstat(filepath.Join(dst, old))
			if !realDir(dst, path.Dir(old)) || err != nil || !fi.Mode().IsRegular() {
				return 0, fmt.Errorf("%w: layer %d hard-links %s to %s, which no lower layer has", ErrCorrupt, i+1, newp, old)
			}
			if !realDir(dst, path.Dir(newp)) {
				continue
			}
			to := filepath.Join(dst, newp)
			if err := os.RemoveAll(to); err != nil {
				return 0, err
			}
			if err := os.Link(filepath.Join(dst, old), to); err != nil {
				return 0, noSpace(err, dst)
			}
		}
	}
	if err := prepareMountPoints(dst); err != nil {
		return 0, noSpace(err, dst)
	}
	size, err := finishRoot(dst, dirs)
	if err != nil {
		return 0, err
	}
	return size, os.Chmod(dst, 0o755)
}

// dirAttr is what a layer says of a directory: applied once the root is
// complete, so that a read-only directory never stops its own entries.
type dirAttr struct {
	mode  uint32
	mtime unix.Timespec
}

const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// linkLayer links a layer's tree into dst, directory by directory through
// descriptors (names are single components: no walk from the top per
// file, and O_NOFOLLOW on every directory entered, so nothing in dst is
// followed through a symlink). dirs gets each directory's attributes.
func linkLayer(src, dst string, dirs map[string]dirAttr) error {
	sfd, err := unix.Open(src, dirFlags, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: src, Err: err}
	}
	defer unix.Close(sfd)
	dfd, err := unix.Open(dst, dirFlags, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: dst, Err: err}
	}
	defer unix.Close(dfd)
	return linkDir(sfd, dfd, "", dst, dirs)
}

func linkDir(sfd, dfd int, rel, dst string, dirs map[string]dirAttr) error {
	es, err := readDirFD(sfd)
	if err != nil {
		return err
	}
	for _, e := range es {
		name := e.Name()
		r := path.Join(rel, name)
		pathErr := func(op string, err error) error {
			return &fs.PathError{Op: op, Path: filepath.Join(dst, r), Err: err}
		}
		if !e.IsDir() {
			// linkat(2) without AT_SYMLINK_FOLLOW: a symlink stays a link.
			err := unix.Linkat(sfd, name, dfd, name, 0)
			if err == unix.EEXIST {
				if err := removeAt(dfd, name, filepath.Join(dst, r)); err != nil {
					return err
				}
				err = unix.Linkat(sfd, name, dfd, name, 0)
			}
			if err != nil {
				return pathErr("link", err)
			}
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(sfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return pathErr("stat", err)
		}
		dirs[r] = dirAttr{st.Mode & 0o7777, st.Mtim}
		err := unix.Mkdirat(dfd, name, 0o700)
		if err == unix.EEXIST {
			var dt unix.Stat_t
			if err = unix.Fstatat(dfd, name, &dt, unix.AT_SYMLINK_NOFOLLOW); err == nil && dt.Mode&unix.S_IFMT != unix.S_IFDIR {
				// A lower non-directory: this layer's directory replaces it.
				if err = unix.Unlinkat(dfd, name, 0); err == nil {
					err = unix.Mkdirat(dfd, name, 0o700)
				}
			}
		}
		if err != nil {
			return pathErr("mkdir", err)
		}
		csfd, err := unix.Openat(sfd, name, dirFlags, 0)
		if err != nil {
			return pathErr("open", err)
		}
		cdfd, err := unix.Openat(dfd, name, dirFlags, 0)
		if err != nil {
			unix.Close(csfd)
			return pathErr("open", err)
		}
		err = linkDir(csfd, cdfd, r, dst, dirs)
		unix.Close(csfd)
		unix.Close(cdfd)
		if err != nil {
			return err
		}
	}
	return nil
}

// removeAt removes name in the directory dfd (p is its path, for a
// directory's contents).
func removeAt(dfd int, name, p string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return removeTree(p)
	}
	if err := unix.Unlinkat(dfd, name, 0); err != nil {
		return &fs.PathError{Op: "unlink", Path: p, Err: err}
	}
	return nil
}

// readDirFD lists a directory open at fd (the types come from getdents,
// without a stat per entry), leaving fd open.
func readDirFD(fd int) ([]fs.DirEntry, error) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	return f.ReadDir(-1)
}

// finishRoot applies the layers' directory modes and times, deepest
// first, and adds up the bytes of the root's distinct regular files.
func finishRoot(root string, dirs map[string]dirAttr) (int64, error) {
	fd, err := unix.Open(root, dirFlags, 0)
	if err != nil {
		return 0, &fs.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(fd)
	var size int64
	seen := map[uint64]bool{}
	var walk func(fd int, rel string) error
	walk = func(fd int, rel string) error {
		es, err := readDirFD(fd)
		if err != nil {
			return err
		}
		for _, e := range es {
			name := e.Name()
			r := path.Join(rel, name)
			switch {
			case e.Type().IsRegular():
				var st unix.Stat_t
				if unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && !seen[st.Ino] {
					seen[st.Ino] = true
					size += st.Size
				}
			case e.IsDir():
				cfd, err := unix.Openat(fd, name, dirFlags, 0)
				if err != nil {
					return &fs.PathError{Op: "open", Path: filepath.Join(root, r), Err: err}
				}
				err = walk(cfd, r)
				unix.Close(cfd)
				if err != nil {
					return err
				}
				if a, ok := dirs[r]; ok {
					if err := unix.Fchmodat(fd, name, a.mode|0o700, 0); err != nil {
						return &fs.PathError{Op: "chmod", Path: filepath.Join(root, r), Err: err}
					}
					unix.UtimesNanoAt(fd, name, []unix.Timespec{a.mtime, a.mtime}, unix.AT_SYMLINK_NOFOLLOW)
				}
			}
		}
		return nil
	}
	return size, walk(fd, "")
}

// realDir reports whether rel names a directory under root reached
// through directories only, never a symlink.
func realDir(root, rel string) bool { return DirIn(root, rel) }

// DirIn reports whether p (relative to root, or absolute within it)
// names a directory under root reached through directories only, never a
// symlink: what a bind mount onto p inside the root would land on.
func DirIn(root, p string) bool {
	cur := root
	for _, c := range strings.Split(strings.Trim(p, "/"), "/") {
		if c == "" || c == "." {
			continue
		}
		cur = filepath.Join(cur, c)
		fi, err := os.Lstat(cur)
		if err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

// clearDir removes a directory's entries, keeping the directory.
func clearDir(dir string) error {
	es, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range es {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// Mount points every sandbox on an image root uses: the root is bound
// read-only, so they must exist in it. Each is made a real directory (an
// image's symlink there is replaced).
var mountDirs = []string{
	"proc", "dev", "tmp", "run", "data", strings.TrimPrefix(sandbox.Workspace, "/"),
	strings.TrimPrefix(sandbox.Home, "/"), "opt/mlagent",
}

// SandboxEtc is where a sandbox on an image finds the files made for it
// (hosts, the gateway's git config): a directory of the tmpfs the backend
// mounts at /opt/mlagent. /etc/hosts and /etc/mlagent are links to it, so
// that the read-only root needs no bind mount per file.
const SandboxEtc = "/opt/mlagent/etc"

// sandboxLinks are the root's links into SandboxEtc.
var sandboxLinks = map[string]string{
	"etc/hosts":   "../opt/mlagent/etc/hosts",
	"etc/mlagent": "../opt/mlagent/etc",
}

// rootLayout is the version of what composeRoot adds to a root (mount
// points, links, users); a root of another version is composed again.
const rootLayout = 2

// prepareMountPoints creates the mount points and writes /etc/passwd and
// /etc/group with the sandbox's user added (the image's own users kept,
// so that `ls -l` names them), as new files: the image's are hard links
// shared with its layers, which must not change.
func prepareMountPoints(root string) error {
	for _, d := range mountDirs {
		if err := realMkdirAll(root, d); err != nil {
			return err
		}
	}
	for f, target := range sandboxLinks {
		if err := realMkdirAll(root, path.Dir(f)); err != nil {
			return err
		}
		p := filepath.Join(root, f)
		if err := os.RemoveAll(p); err != nil {
			return err
		}
		if err := os.Symlink(target, p); err != nil {
			return err
		}
	}
	user, uid, gid := sandbox.SandboxUser, strconv.Itoa(sandbox.SandboxUID), strconv.Itoa(sandbox.SandboxGID)
	passwd := keepLines(filepath.Join(root, "etc/passwd"), user, uid, 2)
	passwd = append(passwd, user+":x:"+uid+":"+gid+":mlagent sandbox:"+sandbox.Home+":/bin/sh")
	group := keepLines(filepath.Join(root, "etc/group"), user, gid, 2)
	group = append(group, user+":x:"+gid+":")
	for f, lines := range map[string][]string{"etc/passwd": passwd, "etc/group": group} {
		p := filepath.Join(root, f)
		os.RemoveAll(p)
		if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// keepLines returns the lines of an /etc/passwd-style file except those
// naming the sandbox's user or its id (field idField).
func keepLines(p, name, id string, idField int) []string {
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > 1<<20 {
		return nil
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Split(line, ":")
		if strings.TrimSpace(line) == "" || f[0] == name || len(f) > idField && f[idField] == id {
			continue
		}
		out = append(out, line)
	}
	return out
}

// realMkdirAll makes rel under root a directory reached through
// directories only, replacing any non-directory on the way.
func realMkdirAll(root, rel string) error {
	p := root
	for _, c := range strings.Split(rel, "/") {
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		if err == nil && fi.IsDir() {
			continue
		}
		if err == nil {
			if err := os.Remove(p); err != nil {
				return err
			}
		}
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// removeTree deletes a tree that may hold directories without write
// permission (an image's read-only directories).
func removeTree(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
