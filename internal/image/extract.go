package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// layerMeta is what a layer says beyond its files, kept beside its
// extracted tree (layer.json) and applied when a root is composed.
type layerMeta struct {
	DiffID string `json:"diff_id"`
	// Whiteouts are paths the layer deletes from the layers below
	// (.wh.NAME), Opaque directories whose lower contents it hides
	// (.wh..wh..opq).
	Whiteouts []string `json:"whiteouts,omitempty"`
	Opaque    []string `json:"opaque,omitempty"`
	// Links are hard links to files of lower layers: [new, old].
	Links [][2]string `json:"links,omitempty"`
	// Skipped counts entries not extracted: device nodes, FIFOs.
	Skipped int `json:"skipped,omitempty"`
	// Size is the bytes of its regular files.
	Size int64 `json:"size"`
}

// check refuses metadata naming anything but a path strictly inside the
// root (the root itself only for an opaque marker): layer.json is read
// back when a root is composed, and a whiteout of ".." there would
// delete what holds the root.
func (m *layerMeta) check() error {
	inside := func(p string) bool { return p != "." && p == path.Clean(p) && filepath.IsLocal(p) }
	for _, p := range m.Opaque {
		if p != "." && !inside(p) {
			return fmt.Errorf("%w: opaque directory %q", ErrCorrupt, p)
		}
	}
	for _, p := range m.Whiteouts {
		if !inside(p) {
			return fmt.Errorf("%w: whiteout of %q", ErrCorrupt, p)
		}
	}
	for _, l := range m.Links {
		if !inside(l[0]) || !inside(l[1]) {
			return fmt.Errorf("%w: hard link %q to %q", ErrCorrupt, l[0], l[1])
		}
	}
	return nil
}

const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// Limits on what a layer may ask of the host beyond its bytes on disk.
// A name longer than PATH_MAX (or a component longer than NAME_MAX) is
// not a file any Linux tool made. Whiteouts, opaque markers and links to
// lower layers cost no disk here, only memory (and layer.json): a few
// megabytes of compressed tar could otherwise list gigabytes of them.
const (
	maxEntryName = 4096
	maxNameComp  = 255
)

// maxLayerMeta bounds the bytes of names a layer's whiteouts, opaque
// directories and links to lower layers add up to (a variable for tests).
var maxLayerMeta = 64 << 20

// extractLayer writes the layer tar read from r into dir (which must
// exist and be empty) and returns its metadata. Every path is resolved
// inside dir by os.Root, so no entry, symlink or hard link reaches
// outside it; setuid and setgid bits are dropped; device nodes are
// skipped; files keep their mode bits and modification times but belong
// to whoever extracts them (the sandbox maps that user to its own).
func extractLayer(r io.Reader, dir string) (_ *layerMeta, err error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	x := &extractor{root: root, made: map[string]bool{}}
	defer x.closeParent()
	meta := &layerMeta{}
	type dirAttr struct {
		mode  fs.FileMode
		mtime time.Time
	}
	dirs := map[string]dirAttr{}
	metaBytes := 0
	space := &spaceGuard{dir: dir}
	buf := make([]byte, 1<<20)
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: layer tar: %v", ErrCorrupt, err)
		}
		if strings.ContainsRune(h.Name, 0) || strings.ContainsRune(h.Linkname, 0) {
			return nil, fmt.Errorf("%w: layer entry name with a NUL byte", ErrCorrupt)
		}
		// Clean against "/" so that ../ cannot climb out.
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if name == "" {
			continue // the layer's root directory itself
		}
		if err := checkName(name); err != nil {
			return nil, err
		}
		dirName, base := path.Split(name)
		dirName = strings.TrimSuffix(dirName, "/")
		if dirName == "" {
			dirName = "."
		}
		if strings.HasPrefix(base, whiteoutPrefix) {
			switch target := base[len(whiteoutPrefix):]; {
			case base == opaqueMarker:
				meta.Opaque = append(meta.Opaque, dirName)
				metaBytes += len(dirName)
			case strings.HasPrefix(base, whiteoutPrefix+whiteoutPrefix):
				// Other AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not content.
				continue
			case target == "" || target == "." || target == "..":
				// ".wh.." would delete its own directory, ".wh..." the one
				// above it: at the top, whatever holds the root.
				return nil, fmt.Errorf("%w: layer entry %s: a whiteout of %q", ErrCorrupt, name, target)
			default:
				meta.Whiteouts = append(meta.Whiteouts, path.Join(dirName, target))
				metaBytes += len(name)
			}
			if metaBytes > maxLayerMeta {
				return nil, errTooManyNames()
			}
			// The directory holding a whiteout is part of the layer, as
			// in an overlay upper directory.
			if _, err := x.parent(dirName); err != nil {
				return nil, entryErr(name, err, dir)
			}
			continue
		}
		// The header says how much the entry will write: one too large
		// for the disk is refused before a byte of it is written.
		if err := space.take(h.Size); err != nil {
			return nil, err
		}
		// Entries come grouped by directory: the parent is opened once
		// for all of them, and names inside it are single components.
		pd, err := x.parent(dirName)
		if err != nil {
			return nil, entryErr(name, err, dir)
		}
		mode := fs.FileMode(h.Mode) & (fs.ModePerm | 0o1000) // drop setuid/setgid
		if h.Mode&0o1000 != 0 {
			mode = mode&fs.ModePerm | fs.ModeSticky
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if fi, err := pd.Lstat(base); err == nil && !fi.IsDir() {
				if err := x.remove(pd, base); err != nil {
					return nil, entryErr(name, err, dir)
				}
			}
			if err := pd.Mkdir(base, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return nil, entryErr(name, err, dir)
			}
			dirs[name] = dirAttr{mode, h.ModTime}
		case tar.TypeReg: // archive/tar reads the legacy TypeRegA as TypeReg or TypeDir
			if err := x.replace(pd, base); err != nil {
				return nil, entryErr(name, err, dir)
			}
			n, err := writeFile(pd, base, tr, mode&fs.ModePerm, h.ModTime, buf)
			if err != nil {
				return nil, entryErr(name, err, dir)
			}
			if n != h.Size {
				return nil, fmt.Errorf("%w: layer entry %s: %d bytes, header says %d", ErrCorrupt, name, n, h.Size)
			}
			meta.Size += n
		case tar.TypeSymlink:
			if err := x.replace(pd, base); err != nil {
				return nil, entryErr(name, err, dir)
			}
			// The target is stored as written and never followed here.
			if err := pd.Symlink(h.Linkname, base); err != nil {
				return nil, entryErr(name, err, dir)
			}
		case tar.TypeLink:
			old := strings.TrimPrefix(path.Clean("/"+h.Linkname), "/")
			if old == "" {
				return nil, fmt.Errorf("%w: layer entry %s: hard link to the root", ErrCorrupt, name)
			}
			if err := checkName(old); err != nil {
				return nil, err
			}
			if err := x.replace(pd, base); err != nil {
				return nil, entryErr(name, err, dir)
			}
			fi, err := root.Lstat(old)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				// Not in this layer: a file of a lower one, linked when
				// the root is composed.
				meta.Links = append(meta.Links, [2]string{name, old})
				if metaBytes += len(name) + len(old); metaBytes > maxLayerMeta {
					return nil, errTooManyNames()
				}
			case err != nil:
				return nil, entryErr(name, err, dir)
			case fi.IsDir():
				return nil, fmt.Errorf("%w: layer entry %s: hard link to directory %s", ErrCorrupt, name, old)
			default:
				if err := root.Link(old, name); err != nil {
					return nil, entryErr(name, err, dir)
				}
			}
		default:
			// Device nodes would be host devices outside the sandbox's
			// /dev; FIFOs and the rest are not worth the risk.
			meta.Skipped++
		}
	}
	x.closeParent()
	// Directory modes last, deepest first: a read-only directory must not
	// stop its own entries from being written.
	names := make([]string, 0, len(dirs))
	for n := range dirs {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, n := range names {
		fi, err := root.Lstat(n)
		if err != nil || !fi.IsDir() {
			continue // replaced by a later entry
		}
		a := dirs[n]
		if err := root.Chmod(n, a.mode|0o700); err != nil {
			return nil, entryErr(n, err, dir)
		}
		root.Chtimes(n, a.mtime, a.mtime)
	}
	return meta, nil
}

// A pull keeps some of the cache's filesystem free: a layer is untrusted
// input, and a few kilobytes of zstd can stand for hundreds of gigabytes
// (32,000:1 for repeated bytes), which would otherwise fill the user's
// disk, and the gateway's journal beside the cache, before failing.
const (
	reserveBytes  = 1 << 30 // at most; 5% on a smaller filesystem
	reserveInodes = 100_000 // at most; 5% of a smaller inode table
	// recheckBytes and recheckEntries are how much extraction writes
	// before it asks the filesystem again.
	recheckBytes   = 64 << 20
	recheckEntries = 10_000
)

// spaceGuard keeps extraction from eating into the reserve, asking the
// filesystem (statfs, cheap) only every recheckBytes or recheckEntries.
type spaceGuard struct {
	dir          string
	bytes, files int64 // what may be written before looking again
}

// take accounts for an entry of n bytes, refusing it with ErrNoSpace when
// it would leave less than the reserve free.
func (g *spaceGuard) take(n int64) error {
	need := (max(n, 0) + 4095) &^ 4095
	if need == 0 {
		need = 4096 // a directory's block, a symlink or an empty file's inode
	}
	g.bytes -= need
	g.files--
	if g.bytes >= 0 && g.files >= 0 {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(g.dir, &st); err != nil {
		return nil // nothing to go by: ENOSPC will tell
	}
	bsize := int64(st.Bsize)
	room := int64(st.Bavail)*bsize - min(reserveBytes, int64(st.Blocks)*bsize/20)
	if need > room {
		return fmt.Errorf("%w: a layer entry of %s would leave less than %s free; free some space (`mlagent image rm` unused images) or set MLAGENT_HOME on a larger disk; nothing half-written was kept",
			ErrNoSpace, FormatBytes(n), FormatBytes(min(reserveBytes, int64(st.Blocks)*bsize/20)))
	}
	g.bytes = min(room-need, recheckBytes)
	g.files = recheckEntries
	if st.Files > 0 { // filesystems without a fixed inode table report 0
		files := int64(st.Ffree) - min(reserveInodes, int64(st.Files)/20)
		if files < 1 {
			return fmt.Errorf("%w: no inodes (files) left but the filesystem's reserve; nothing half-written was kept", ErrNoSpace)
		}
		g.files = min(files-1, recheckEntries)
	}
	return nil
}

// checkName refuses an entry name no filesystem holds.
func checkName(name string) error {
	if len(name) > maxEntryName {
		return fmt.Errorf("%w: a layer entry's name is %d bytes long, more than the %d a path may have", ErrCorrupt, len(name), maxEntryName)
	}
	for c := range strings.SplitSeq(name, "/") {
		if len(c) > maxNameComp {
			return fmt.Errorf("%w: layer entry %s: a name of %d bytes, more than the %d a file name may have", ErrCorrupt, name, len(c), maxNameComp)
		}
	}
	return nil
}

func errTooManyNames() error {
	return fmt.Errorf("%w: a layer lists more than %s of names of whiteouts and links", ErrCorrupt, FormatBytes(int64(maxLayerMeta)))
}

// extractor keeps the directory the last entries went to open, as a
// Root of its own inside the layer's: names in it are single components,
// so each entry costs a few system calls instead of a walk from the top.
type extractor struct {
	root *os.Root
	cur  string
	sub  *os.Root
	// made are the directories known to exist (no MkdirAll needed).
	made map[string]bool
}

func (x *extractor) parent(dir string) (*os.Root, error) {
	if x.sub != nil && dir == x.cur {
		return x.sub, nil
	}
	x.closeParent()
	if dir == "." {
		x.cur, x.sub = dir, nil
		return x.root, nil
	}
	if !x.made[dir] {
		if err := x.root.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		x.made[dir] = true
	}
	sub, err := x.root.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	x.cur, x.sub = dir, sub
	return sub, nil
}

func (x *extractor) closeParent() {
	if x.sub != nil {
		x.sub.Close()
	}
	x.cur, x.sub = "", nil
}

// replace removes whatever a later entry of the same name replaces.
func (x *extractor) replace(pd *os.Root, base string) error {
	if _, err := pd.Lstat(base); err == nil {
		return x.remove(pd, base)
	}
	return nil
}

// remove deletes base; directories known to exist may go with it.
func (x *extractor) remove(pd *os.Root, base string) error {
	clear(x.made)
	return pd.RemoveAll(base)
}

// writeFile creates name (which must not exist) with the entry's bytes,
// mode and modification time.
func writeFile(root *os.Root, name string, r io.Reader, mode fs.FileMode, mtime time.Time, buf []byte) (int64, error) {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.CopyBuffer(onlyWriter{f}, r, buf)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil && !mtime.IsZero() {
		// Python compares a module's mtime with its .pyc's: a changed
		// time would make every import recompile.
		tv := unix.NsecToTimeval(mtime.UnixNano())
		err = unix.Futimes(int(f.Fd()), []unix.Timeval{tv, tv})
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// onlyWriter hides ReadFrom, so CopyBuffer uses our buffer.
type onlyWriter struct{ io.Writer }

func entryErr(name string, err error, dir string) error {
	if e := noSpace(err, dir); e != err {
		return e
	}
	return fmt.Errorf("layer entry %s: %w", name, err)
}
