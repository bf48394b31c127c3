// Package image gives sandboxes their root filesystem from an OCI image: a
// registry reference (with the user's Docker credentials), an OCI layout
// directory, an OCI archive or a `docker save` archive is pulled once on
// the host, each layer extracted once into a content-addressed cache
// under $MLAGENT_HOME/images, and the image flattened from its layers
// into a read-only root that sandboxes bind. Credentials stay in this
// process: they are used for the registry and never written anywhere.
package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Store is the image cache in one directory:
//
//	layers/<diffid hex>/fs, layer.json   one extracted layer
//	roots/<image id hex>/rootfs, image.json, last-used
//	refs/<sha256 of the reference>.json  which image a reference names
//	tmp/                                 work in progress, renamed into place
//	lock                                 shared while pulling, exclusive to remove
//
// Everything appears by rename, so a crash, a full disk or a corrupt
// layer leaves nothing half-written in the cache. Safe for concurrent use
// by several processes.
type Store struct {
	dir string
	log *slog.Logger
}

// Open returns the store in dir, creating it (0700) if needed.
func Open(dir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{"", "layers", "roots", "refs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("image cache: %w", err)
		}
	}
	return &Store{dir: dir, log: log}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Image describes a pulled image.
type Image struct {
	// Ref is the reference it was pulled by (canonical form).
	Ref string `json:"ref"`
	// ID is the digest of its config (as `docker images --no-trunc`),
	// which names its root in the cache.
	ID string `json:"id"`
	// Digest is the manifest digest, where the source has one.
	Digest   string `json:"digest,omitempty"`
	Platform string `json:"platform"`
	// Root is the flattened root filesystem on the host.
	Root string `json:"root"`
	// Size is the bytes of the root's distinct files.
	Size int64 `json:"size"`
	// Layers are the diff ids, bottom first.
	Layers []string `json:"layers"`
	// Layout is the version of the root's own additions (rootLayout).
	Layout  int       `json:"layout"`
	Config  Config    `json:"config"`
	Created time.Time `json:"created,omitzero"`
	Pulled  time.Time `json:"pulled"`
	// LastUsed is when a sandbox last started on it (zero: never).
	LastUsed time.Time `json:"last_used,omitzero"`
}

// Config is the part of the image's config a sandbox honours.
type Config struct {
	Env        []string          `json:"env,omitempty"`
	WorkingDir string            `json:"working_dir,omitempty"`
	User       string            `json:"user,omitempty"`
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Cmd        []string          `json:"cmd,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
}

// refFile is what refs/<hash>.json holds.
type refFile struct {
	Ref    string    `json:"ref"`
	ID     string    `json:"id"`
	Digest string    `json:"digest,omitempty"`
	Pulled time.Time `json:"pulled"`
}

func hexOf(digest string) string {
	_, h, _ := strings.Cut(digest, ":")
	return h
}

func (s *Store) refPath(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return filepath.Join(s.dir, "refs", hex.EncodeToString(sum[:])+".json")
}

func (s *Store) rootDir(id string) string    { return filepath.Join(s.dir, "roots", hexOf(id)) }
func (s *Store) layerDir(diff string) string { return filepath.Join(s.dir, "layers", hexOf(diff)) }

// Lookup returns the pulled image a reference names, without any network
// access; ErrNotPulled when the cache does not have it.
func (s *Store) Lookup(ref string) (*Image, error) {
	r, err := ParseRef(ref)
	if err != nil {
		// A local image whose file or directory is gone is still in
		// the cache under its canonical name.
		for _, c := range localNames(ref) {
			if img, lerr := s.lookup(c); lerr == nil {
				return img, nil
			}
		}
		return nil, err
	}
	return s.lookup(r.String())
}

// localNames are the canonical names a local reference may have been
// pulled under, without looking at the file (which may be gone).
func localNames(ref string) []string {
	for _, k := range []Kind{Layout, OCIArchive, DockerArchive} {
		if strings.HasPrefix(ref, string(k)+":") {
			return []string{ref}
		}
	}
	if !strings.HasPrefix(ref, "/") && !strings.HasPrefix(ref, ".") {
		return nil
	}
	abs, err := filepath.Abs(ref)
	if err != nil {
		return nil
	}
	return []string{string(Layout) + ":" + abs, string(OCIArchive) + ":" + abs, string(DockerArchive) + ":" + abs}
}

func (s *Store) lookup(canon string) (*Image, error) {
	var rf refFile
	if err := readJSON(s.refPath(canon), &rf); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s (pull it with `mlagent image pull %s`)", ErrNotPulled, canon, canon)
		}
		return nil, err
	}
	img, err := s.loadRoot(rf.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: its root is gone from the cache (%v); pull it again", ErrNotPulled, canon, err)
	}
	img.Ref, img.Digest, img.Pulled = rf.Ref, rf.Digest, rf.Pulled
	return img, nil
}

func (s *Store) loadRoot(id string) (*Image, error) {
	dir := s.rootDir(id)
	var img Image
	if err := readJSON(filepath.Join(dir, "image.json"), &img); err != nil {
		return nil, err
	}
	img.Root = filepath.Join(dir, "rootfs")
	if fi, err := os.Lstat(img.Root); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("no root directory at %s", img.Root)
	}
	if img.Layout != rootLayout {
		return nil, fmt.Errorf("flattened by another version of mlagent (layout %d, want %d)", img.Layout, rootLayout)
	}
	if fi, err := os.Stat(filepath.Join(dir, "last-used")); err == nil {
		img.LastUsed = fi.ModTime()
	}
	return &img, nil
}

// Use is Lookup for a sandbox about to start on the image: it records the
// time as its last use.
func (s *Store) Use(ref string) (*Image, error) {
	img, err := s.Lookup(ref)
	if err != nil {
		return nil, err
	}
	p := filepath.Join(s.rootDir(img.ID), "last-used")
	now := time.Now()
	if err := os.Chtimes(p, now, now); errors.Is(err, fs.ErrNotExist) {
		os.WriteFile(p, nil, 0o600)
	}
	img.LastUsed = now
	return img, nil
}

// List returns every pulled reference, sorted.
func (s *Store) List() ([]*Image, error) {
	es, err := os.ReadDir(filepath.Join(s.dir, "refs"))
	if err != nil {
		return nil, err
	}
	var out []*Image
	for _, e := range es {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		var rf refFile
		if err := readJSON(filepath.Join(s.dir, "refs", e.Name()), &rf); err != nil {
			continue
		}
		img, err := s.lookup(rf.Ref)
		if err != nil {
			continue
		}
		out = append(out, img)
	}
	slices.SortFunc(out, func(a, b *Image) int { return strings.Compare(a.Ref, b.Ref) })
	return out, nil
}

// Remove forgets a reference (or every reference to an image id, given
// as sha256:… or a unique prefix of at least 12 hex digits), then deletes
// the roots no reference names and the layers no root uses. inUse, when
// set, is asked about each image id about to be deleted.
func (s *Store) Remove(refOrID string, inUse func(id string) bool) ([]string, error) {
	unlock, err := s.lock(true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	all, err := s.List()
	if err != nil {
		return nil, err
	}
	var match []*Image
	names := localNames(refOrID)
	if r, err := ParseRef(refOrID); err == nil {
		names = append(names, r.String())
	}
	for _, img := range all {
		if slices.Contains(names, img.Ref) {
			match = append(match, img)
		}
	}
	if h := strings.TrimPrefix(refOrID, "sha256:"); len(match) == 0 && len(h) >= 12 && isHex(h) {
		ids := map[string]bool{}
		for _, img := range all {
			if strings.HasPrefix(hexOf(img.ID), h) {
				match = append(match, img)
				ids[img.ID] = true
			}
		}
		if len(ids) > 1 {
			return nil, fmt.Errorf("image id prefix %s is ambiguous", refOrID)
		}
	}
	if len(match) == 0 {
		return nil, fmt.Errorf("%w: %s is not in the cache (`mlagent image ls`)", ErrUnknown, refOrID)
	}
	// Only a root no other reference names is deleted: only that one
	// must not be in use.
	kept := map[string]bool{}
	for _, img := range all {
		if !slices.Contains(match, img) {
			kept[img.ID] = true
		}
	}
	for _, img := range match {
		if !kept[img.ID] && inUse != nil && inUse(img.ID) {
			return nil, fmt.Errorf("%w: a running sandbox uses %s; kill it first (`mlagent sandbox ls`)", ErrInUse, img.Ref)
		}
	}
	var removed []string
	for _, img := range match {
		if err := os.Remove(s.refPath(img.Ref)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, err
		}
		removed = append(removed, img.Ref)
	}
	return removed, s.gc()
}

// gc deletes the roots no reference names and the layers no root uses.
// The caller holds the exclusive lock.
func (s *Store) gc() error {
	refs, _ := os.ReadDir(filepath.Join(s.dir, "refs"))
	usedRoots := map[string]bool{}
	for _, e := range refs {
		var rf refFile
		if readJSON(filepath.Join(s.dir, "refs", e.Name()), &rf) == nil {
			usedRoots[hexOf(rf.ID)] = true
		}
	}
	roots, _ := os.ReadDir(filepath.Join(s.dir, "roots"))
	usedLayers := map[string]bool{}
	var errs []error
	for _, e := range roots {
		if !usedRoots[e.Name()] {
			errs = append(errs, removeTree(filepath.Join(s.dir, "roots", e.Name())))
			continue
		}
		var img Image
		if readJSON(filepath.Join(s.dir, "roots", e.Name(), "image.json"), &img) == nil {
			for _, l := range img.Layers {
				usedLayers[hexOf(l)] = true
			}
		}
	}
	layers, _ := os.ReadDir(filepath.Join(s.dir, "layers"))
	for _, e := range layers {
		if !usedLayers[e.Name()] {
			errs = append(errs, removeTree(filepath.Join(s.dir, "layers", e.Name())))
		}
	}
	return errors.Join(errs...)
}

// lock takes the store's lock: shared while pulling (pulls may run
// together), exclusive while removing (no layer may vanish under a pull).
func (s *Store) lock(exclusive bool) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("image cache lock: %w", err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("image cache lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// tempDir makes a work directory under tmp/ named after this process, so
// that a later pull can clear what a dead one left.
func (s *Store) tempDir(kind string) (string, error) {
	return os.MkdirTemp(filepath.Join(s.dir, "tmp"), strconv.Itoa(os.Getpid())+"-"+kind+"-")
}

// clearStale removes work directories of processes that are gone.
func (s *Store) clearStale() {
	es, _ := os.ReadDir(filepath.Join(s.dir, "tmp"))
	for _, e := range es {
		pid, err := strconv.Atoi(strings.SplitN(e.Name(), "-", 2)[0])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			removeTree(filepath.Join(s.dir, "tmp", e.Name()))
		}
	}
}

func readJSON(p string, v any) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

// writeJSON writes v to p atomically (a temporary file renamed over it).
func writeJSON(p string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return s != ""
}
