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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

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
	type dirAttr struct {
		mode  fs.FileMode
		mtime time.Time
	}
	dirs := map[string]dirAttr{}
	for i, l := range layers {
		m := metas[i]
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
		src := filepath.Join(l, "fs")
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			if rel == "." {
				return nil
			}
			to := filepath.Join(dst, rel)
			fi, lerr := os.Lstat(to)
			if d.IsDir() {
				if lerr == nil && !fi.IsDir() {
					if err := os.Remove(to); err != nil {
						return err
					}
					lerr = fs.ErrNotExist
				}
				if lerr != nil {
					if err := os.Mkdir(to, 0o700); err != nil {
						return err
					}
				}
				if info, err := d.Info(); err == nil {
					dirs[rel] = dirAttr{info.Mode() & (fs.ModePerm | fs.ModeSticky), info.ModTime()}
				}
				return nil
			}
			if lerr == nil {
				if err := os.RemoveAll(to); err != nil {
					return err
				}
			}
			// link(2) does not follow a symlink: links stay links.
			return os.Link(p, to)
		})
		if err != nil {
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
	// Directory modes last, deepest first, as in extractLayer.
	names := make([]string, 0, len(dirs))
	for n := range dirs {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		return strings.Count(b, string(filepath.Separator)) - strings.Count(a, string(filepath.Separator))
	})
	for _, n := range names {
		p := filepath.Join(dst, n)
		if fi, err := os.Lstat(p); err != nil || !fi.IsDir() {
			continue
		}
		a := dirs[n]
		if err := os.Chmod(p, a.mode|0o700); err != nil {
			return 0, err
		}
		os.Chtimes(p, a.mtime, a.mtime)
	}
	if err := os.Chmod(dst, 0o755); err != nil {
		return 0, err
	}
	return treeSize(dst)
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
	strings.TrimPrefix(sandbox.Home, "/"), "opt/mlagent", "etc/mlagent",
}

// MountFiles are the files the sandbox binds over (its own /etc/hosts).
var mountFiles = []string{"etc/hosts"}

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
	for _, f := range mountFiles {
		if err := realMkdirAll(root, path.Dir(f)); err != nil {
			return err
		}
		p := filepath.Join(root, f)
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
			continue
		}
		os.RemoveAll(p)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
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

// treeSize adds up the regular files under dir, each inode once.
func treeSize(dir string) (int64, error) {
	seen := map[uint64]bool{}
	var size int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		size += fi.Size()
		return nil
	})
	return size, err
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
