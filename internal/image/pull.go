package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"

	"github.com/mlagent/mlagent/internal/sanitize"
)

// PullOptions configure a pull.
type PullOptions struct {
	// Keychain finds registry credentials; nil is the user's Docker
	// config (~/.docker/config.json, $DOCKER_CONFIG, credential helpers).
	Keychain authn.Keychain
	// Platform is the one to pull; zero is this host's (linux/GOARCH).
	Platform v1.Platform
	// Progress, when set, is called as the pull goes (at most about ten
	// times a second, and at each phase), never concurrently.
	Progress func(Progress)
	// Jobs is how many layers are fetched and extracted at once (0: 3).
	Jobs int
	// Transport carries registry requests (nil: the default).
	Transport http.RoundTripper
}

// Progress is the state of a pull.
type Progress struct {
	Ref   string
	Phase string // "resolve", "download", "flatten", "done"
	// Layers is the image's layer count; Cached how many were already in
	// the cache; Done how many are extracted.
	Layers, Cached, Done int
	// Bytes read of the layers being fetched, of Total (0: unknown, as
	// for `docker save` archives).
	Bytes, Total int64
}

// Ensure returns the image from the cache, pulling it only when the
// cache does not have it; pulled says which.
func (s *Store) Ensure(ctx context.Context, ref string, o PullOptions) (img *Image, pulled bool, err error) {
	img, err = s.Lookup(ref)
	if err == nil || !errors.Is(err, ErrNotPulled) {
		return img, false, err
	}
	img, err = s.Pull(ctx, ref, o)
	return img, err == nil, err
}

// Pull fetches the image a reference names (again, for a registry tag
// that may have moved), extracts the layers the cache lacks, flattens
// the root if the cache lacks it, and points the reference at it.
func (s *Store) Pull(ctx context.Context, ref string, o PullOptions) (_ *Image, err error) {
	defer func() { err = untrusted(err) }()
	r, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	if o.Platform.OS == "" {
		o.Platform = v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	}
	if o.Keychain == nil {
		o.Keychain = authn.DefaultKeychain
	}
	if o.Jobs <= 0 {
		o.Jobs = 3
	}
	pr := &progress{fn: o.Progress, p: Progress{Ref: r.String(), Phase: "resolve"}}
	pr.report(true)
	s.clearStale()
	unlock, err := s.lock(false)
	if err != nil {
		return nil, err
	}
	defer unlock()

	src, err := s.open(ctx, r, o)
	if err != nil {
		return nil, err
	}
	defer src.close()
	img, err := src.fetch(ctx)
	if err != nil {
		return nil, err
	}

	if root, err := s.loadRoot(img.id); err == nil {
		// The root is cached (another reference, or this one before).
		root.Ref, root.Digest, root.Pulled = r.String(), img.digest, time.Now().UTC()
		pr.p.Layers, pr.p.Cached, pr.p.Done = len(img.diffIDs), len(img.diffIDs), len(img.diffIDs)
		if err := s.writeRef(root); err != nil {
			return nil, err
		}
		pr.p.Phase = "done"
		pr.report(true)
		return root, nil
	}

	// Layers: fetch and extract the ones the cache lacks, a few at once.
	pr.p.Phase, pr.p.Layers = "download", len(img.diffIDs)
	var missing []int
	for i, d := range img.diffIDs {
		if _, err := os.Stat(filepath.Join(s.layerDir(d.String()), "layer.json")); err == nil {
			pr.p.Cached++
			continue
		}
		missing = append(missing, i)
		pr.p.Total += img.sizes[i]
	}
	pr.p.Done = pr.p.Cached
	pr.report(true)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Jobs)
	for _, i := range missing {
		g.Go(func() error {
			if err := s.fetchLayer(gctx, src, img, i, pr); err != nil {
				return err
			}
			pr.layerDone()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	// The root: composed in tmp/, renamed into place.
	pr.p.Phase = "flatten"
	pr.report(true)
	root, err := s.compose(r, img)
	if err != nil {
		return nil, err
	}
	if err := s.writeRef(root); err != nil {
		return nil, err
	}
	pr.p.Phase = "done"
	pr.report(true)
	return root, nil
}

// source is one opened image source; close releases it.
type source struct {
	ref      Ref
	opts     PullOptions
	auth     authn.Authenticator
	v1img    func() (v1.Image, string, error) // the chosen image and its manifest digest
	closeFns []func()
}

func (s *source) close() {
	for _, f := range s.closeFns {
		f()
	}
}

func (s *Store) open(ctx context.Context, r Ref, o PullOptions) (*source, error) {
	src := &source{ref: r, opts: o}
	switch r.Kind {
	case Registry:
		reg, err := name.NewRegistry(r.Registry())
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", r, err)
		}
		auth, err := o.Keychain.Resolve(reg)
		if err != nil {
			// The keychain's own error (a broken config file, a failing
			// credential helper) may quote what it read.
			return nil, fmt.Errorf("image %s: read registry credentials for %s: %s", r, r.Registry(), redact(err.Error(), nil))
		}
		src.auth = auth
		ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth), remote.WithUserAgent("mlagent"),
			remote.WithPlatform(o.Platform)}
		if o.Transport != nil {
			ropts = append(ropts, remote.WithTransport(o.Transport))
		}
		src.v1img = func() (v1.Image, string, error) {
			desc, err := remote.Get(r.reg, ropts...)
			if err != nil {
				return nil, "", registryError(r, err, auth)
			}
			var img v1.Image
			switch {
			case desc.MediaType.IsIndex():
				idx, err := desc.ImageIndex()
				if err != nil {
					return nil, "", registryError(r, err, auth)
				}
				img, err = choose(v1Index{idx}, "", o.Platform, r)
				if err != nil {
					return nil, "", err
				}
			case desc.MediaType.IsImage():
				if img, err = desc.Image(); err != nil {
					return nil, "", registryError(r, err, auth)
				}
			default:
				return nil, "", fmt.Errorf("image %s: unsupported manifest type %s (schema 1 and other legacy formats cannot be pulled)", r, desc.MediaType)
			}
			d, err := img.Digest()
			if err != nil {
				return nil, "", registryError(r, err, auth)
			}
			return img, d.String(), nil
		}
	case Layout:
		src.v1img = func() (v1.Image, string, error) {
			idx, err := layout.ImageIndexFromPath(r.Path)
			if err != nil {
				return nil, "", fmt.Errorf("%w: %s: %v", ErrCorrupt, r, err)
			}
			return chooseLocal(v1Index{idx}, r, o.Platform)
		}
	case OCIArchive:
		a, err := openOCIArchive(r.Path)
		if err != nil {
			return nil, err
		}
		src.closeFns = append(src.closeFns, func() { a.Close() })
		src.v1img = func() (v1.Image, string, error) {
			idx, err := a.index()
			if err != nil {
				return nil, "", err
			}
			return chooseLocal(idx, r, o.Platform)
		}
	case DockerArchive:
		src.v1img = func() (v1.Image, string, error) {
			var tag *name.Tag
			if r.Tag != "" {
				t, err := name.NewTag(r.Tag)
				if err != nil {
					return nil, "", fmt.Errorf("image %s: tag %q: %w", r, r.Tag, err)
				}
				tag = &t
			}
			img, err := tarball.ImageFromPath(r.Path, tag)
			if err != nil {
				return nil, "", fmt.Errorf("%w: %s: %v", ErrCorrupt, r, err)
			}
			// No manifest digest: computing one would compress every layer.
			return img, "", nil
		}
	default:
		return nil, fmt.Errorf("image %s: unknown kind", r)
	}
	return src, nil
}

// fetched is an image whose config has been read and checked.
type fetched struct {
	img     v1.Image
	id      string // sha256 of the config
	digest  string
	config  *v1.ConfigFile
	diffIDs []v1.Hash
	sizes   []int64 // compressed, where known
}

func (s *source) fetch(ctx context.Context) (*fetched, error) {
	img, digest, err := s.v1img()
	if err != nil {
		return nil, err
	}
	r := s.ref
	var m *v1.Manifest
	if r.Kind != DockerArchive {
		if m, err = img.Manifest(); err != nil {
			return nil, s.err(err)
		}
		// The config is read whole into memory, as much as the manifest
		// says: a hostile registry could say gigabytes.
		if m.Config.Size > maxMetaBlob {
			return nil, fmt.Errorf("%w: %s: its config is %d bytes, more than a config should be", ErrCorrupt, r, m.Config.Size)
		}
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, s.err(err)
	}
	sum := sha256.Sum256(raw)
	f := &fetched{img: img, id: "sha256:" + hex.EncodeToString(sum[:]), digest: digest}
	if m != nil {
		// A layout's files are read as they are: check the config
		// against the manifest, as the layers against the config below.
		if m.Config.Digest.String() != f.id {
			return nil, fmt.Errorf("%w: %s: the config's digest is %s, its manifest says %s", ErrCorrupt, r, f.id, m.Config.Digest)
		}
		for _, l := range m.Layers {
			f.sizes = append(f.sizes, l.Size)
		}
	}
	if f.config, err = v1.ParseConfigFile(bytes.NewReader(raw)); err != nil {
		return nil, fmt.Errorf("%w: %s: config: %v", ErrCorrupt, r, err)
	}
	want := s.opts.Platform
	if c := f.config; c.OS != "" && c.OS != want.OS || c.Architecture != "" && c.Architecture != want.Architecture {
		return nil, fmt.Errorf("%w: %s is for %s/%s, and this host runs %s/%s", ErrPlatform, r, c.OS, c.Architecture, want.OS, want.Architecture)
	}
	f.diffIDs = f.config.RootFS.DiffIDs
	if len(f.diffIDs) == 0 {
		return nil, fmt.Errorf("%w: %s has no layers", ErrCorrupt, r)
	}
	if f.sizes != nil && len(f.sizes) != len(f.diffIDs) {
		return nil, fmt.Errorf("%w: %s: the manifest lists %d layers, the config %d", ErrCorrupt, r, len(f.sizes), len(f.diffIDs))
	}
	if f.sizes == nil {
		f.sizes = make([]int64, len(f.diffIDs))
	}
	return f, nil
}

// err explains an error from reading the source.
func (s *source) err(err error) error {
	if s.ref.Kind == Registry {
		return registryError(s.ref, err, s.auth)
	}
	if errors.Is(err, ErrCorrupt) {
		return err
	}
	return fmt.Errorf("%w: %s: %v", ErrCorrupt, s.ref, err)
}

// choose picks the image for platform (and tag, in a layout or archive)
// from an index, following nested indexes.
func choose(idx index, tag string, platform v1.Platform, r Ref) (v1.Image, error) {
	type cand struct {
		idx index
		d   v1.Descriptor
	}
	var found []cand
	var seen []string
	var walk func(idx index, depth int, tagged bool) error
	walk = func(idx index, depth int, tagged bool) error {
		if depth > 4 {
			return fmt.Errorf("%w: %s: indexes nested too deep", ErrCorrupt, r)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return err
		}
		for _, d := range m.Manifests {
			if tag != "" && !tagged && !tagMatches(d.Annotations, tag) {
				continue
			}
			if d.MediaType.IsIndex() {
				c, err := idx.child(d.Digest)
				if err != nil {
					return err
				}
				if err := walk(c, depth+1, true); err != nil {
					return err
				}
				continue
			}
			if !d.MediaType.IsImage() {
				continue
			}
			if p := d.Platform; p != nil {
				if p.OS == "unknown" { // build attestations
					continue
				}
				seen = append(seen, p.OS+"/"+p.Architecture+variant(p.Variant))
				if p.OS != platform.OS || p.Architecture != platform.Architecture {
					continue
				}
			}
			found = append(found, cand{idx, d})
		}
		return nil
	}
	if err := walk(idx, 0, false); err != nil {
		return nil, err
	}
	switch {
	case len(found) == 0 && len(seen) > 0:
		slices.Sort(seen)
		return nil, fmt.Errorf("%w: %s has no %s/%s image (it has %s)", ErrPlatform, r, platform.OS, platform.Architecture, strings.Join(slices.Compact(seen), ", "))
	case len(found) == 0 && tag != "":
		return nil, fmt.Errorf("%w: %s: no image tagged %q", ErrUnknown, r, tag)
	case len(found) == 0:
		return nil, fmt.Errorf("%w: %s holds no image", ErrUnknown, r)
	case len(found) > 1 && r.Kind != Registry:
		var tags []string
		for _, c := range found {
			if t := c.d.Annotations[v1RefName]; t != "" {
				tags = append(tags, t)
			}
		}
		if found[0].d.Digest != found[len(found)-1].d.Digest {
			return nil, fmt.Errorf("%s holds %d images for this platform; name one as %s:%s:TAG (tags: %s)", r, len(found), r.Kind, r.Path, strings.Join(tags, ", "))
		}
	}
	return found[0].idx.image(found[0].d.Digest)
}

// chooseLocal is choose for a layout or an archive, with the manifest
// digest of the image chosen.
func chooseLocal(idx index, r Ref, platform v1.Platform) (v1.Image, string, error) {
	img, err := choose(idx, r.Tag, platform, r)
	if err != nil {
		return nil, "", err
	}
	d, err := img.Digest()
	if err != nil {
		return nil, "", fmt.Errorf("%w: %s: %v", ErrCorrupt, r, err)
	}
	return img, d.String(), nil
}

const v1RefName = "org.opencontainers.image.ref.name"

func tagMatches(ann map[string]string, tag string) bool {
	for _, k := range []string{v1RefName, "io.containerd.image.name"} {
		v := ann[k]
		if v != "" && (v == tag || strings.HasSuffix(v, ":"+tag)) {
			return true
		}
	}
	return false
}

func variant(v string) string {
	if v == "" {
		return ""
	}
	return "/" + v
}

// fetchLayer reads layer i, checks its diff id while extracting it into
// a work directory, and renames that into the cache.
func (s *Store) fetchLayer(ctx context.Context, src *source, f *fetched, i int, pr *progress) (err error) {
	r := src.ref
	diff := f.diffIDs[i]
	final := s.layerDir(diff.String())
	tmp, err := s.tempDir("layer")
	if err != nil {
		return noSpace(err, s.dir)
	}
	defer func() {
		if err != nil {
			removeTree(tmp)
		}
	}()
	l, err := f.img.LayerByDiffID(diff)
	if err != nil {
		return fmt.Errorf("layer %d: %w", i+1, src.err(err))
	}
	var rc io.ReadCloser
	if r.Kind == DockerArchive {
		// `docker save` layers are plain tars; Compressed() would gzip them.
		rc, err = l.Uncompressed()
	} else {
		rc, err = l.Compressed()
	}
	if err != nil {
		return fmt.Errorf("layer %d: %w", i+1, src.err(err))
	}
	defer rc.Close()
	counted := &countingReader{r: rc, ctx: ctx, pr: pr}
	tarStream, closeDec, err := decompress(counted)
	if err != nil {
		return fmt.Errorf("%w: layer %d of %s: %v", ErrCorrupt, i+1, r, err)
	}
	defer closeDec()
	h := sha256.New()
	tee := io.TeeReader(tarStream, h)
	if err := os.Mkdir(filepath.Join(tmp, "fs"), 0o755); err != nil {
		return noSpace(err, s.dir)
	}
	meta, err := extractLayer(tee, filepath.Join(tmp, "fs"))
	if err == nil {
		// The tar's end may leave padding unread: it counts in the digest.
		_, err = io.Copy(h, tarStream)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrNoSpace) || errors.Is(err, ErrCorrupt) {
			return fmt.Errorf("layer %d of %s: %w", i+1, r, err)
		}
		if r.Kind == Registry && !isLocalFSError(err) {
			return fmt.Errorf("layer %d: %w", i+1, registryError(r, err, src.auth))
		}
		return fmt.Errorf("layer %d of %s: %w", i+1, r, noSpace(corruptIfData(err), s.dir))
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diff.String() {
		return fmt.Errorf("%w: layer %d of %s has content %s, its config says %s", ErrCorrupt, i+1, r, got, diff)
	}
	meta.DiffID = diff.String()
	if err := writeJSON(filepath.Join(tmp, "layer.json"), meta); err != nil {
		return noSpace(err, s.dir)
	}
	if err := os.Rename(tmp, final); err != nil {
		if _, serr := os.Stat(filepath.Join(final, "layer.json")); serr == nil {
			removeTree(tmp) // another pull extracted it meanwhile
			return nil
		}
		return err
	}
	return nil
}

// isLocalFSError tells a failure to write the cache from one reading the
// source.
func isLocalFSError(err error) bool {
	var pe *fs.PathError
	var le *os.LinkError
	return errors.As(err, &pe) || errors.As(err, &le)
}

// corruptIfData marks errors of the compressed stream as corruption.
func corruptIfData(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return err
}

// decompress returns the tar stream of a layer blob: gzip, zstd or none.
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, err := br.Peek(4)
	if err != nil && len(magic) == 0 {
		return nil, nil, fmt.Errorf("empty layer blob (%v)", err)
	}
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return z, func() { z.Close() }, nil
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		z, err := zstd.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return z, z.Close, nil
	}
	return br, func() {}, nil
}

func compressedMagic(b []byte) bool {
	return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b || len(b) >= 4 && bytes.Equal(b[:4], []byte{0x28, 0xb5, 0x2f, 0xfd})
}

// compose flattens the image's cached layers into a new root, renamed
// into roots/ once complete.
func (s *Store) compose(r Ref, f *fetched) (_ *Image, err error) {
	tmp, err := s.tempDir("root")
	if err != nil {
		return nil, noSpace(err, s.dir)
	}
	defer func() {
		if err != nil {
			removeTree(tmp)
		}
	}()
	var dirs []string
	var metas []*layerMeta
	var layers []string
	for _, d := range f.diffIDs {
		dir := s.layerDir(d.String())
		var m layerMeta
		if err := readJSON(filepath.Join(dir, "layer.json"), &m); err != nil {
			return nil, fmt.Errorf("layer %s: %w", d, err)
		}
		dirs, metas, layers = append(dirs, dir), append(metas, &m), append(layers, d.String())
	}
	rootfs := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(rootfs, 0o700); err != nil {
		return nil, noSpace(err, s.dir)
	}
	size, err := composeRoot(rootfs, dirs, metas)
	if err != nil {
		return nil, err
	}
	c := f.config
	img := &Image{
		Ref: r.String(), ID: f.id, Digest: f.digest, Root: filepath.Join(s.rootDir(f.id), "rootfs"),
		Platform: sanitize.Line(c.OS+"/"+c.Architecture+variant(c.Variant), 64), Size: size, Layers: layers, Layout: rootLayout,
		Config: Config{Env: c.Config.Env, WorkingDir: c.Config.WorkingDir, User: c.Config.User,
			Entrypoint: c.Config.Entrypoint, Cmd: c.Config.Cmd, Labels: c.Config.Labels},
		Created: c.Created.Time.UTC(), Pulled: time.Now().UTC(),
	}
	if c.OS == "" {
		img.Platform = ""
	}
	if err := writeJSON(filepath.Join(tmp, "image.json"), img); err != nil {
		return nil, noSpace(err, s.dir)
	}
	if _, err := os.Stat(s.rootDir(f.id)); err == nil {
		if _, err := s.loadRoot(f.id); err != nil {
			// A stale root (another layout): replaced by this one.
			removeTree(s.rootDir(f.id))
		}
	}
	if err := os.Rename(tmp, s.rootDir(f.id)); err != nil {
		if _, serr := s.loadRoot(f.id); serr == nil {
			removeTree(tmp) // composed by another pull meanwhile
			return img, nil
		}
		return nil, err
	}
	return img, nil
}

func (s *Store) writeRef(img *Image) error {
	return noSpace(writeJSON(s.refPath(img.Ref), refFile{Ref: img.Ref, ID: img.ID, Digest: img.Digest, Pulled: img.Pulled}), s.dir)
}

// progress throttles Progress calls and serializes them.
type progress struct {
	fn   func(Progress)
	mu   sync.Mutex
	p    Progress
	last time.Time
	read atomic.Int64
}

func (p *progress) report(force bool) {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if !force && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	p.p.Bytes = p.read.Load()
	p.fn(p.p)
}

func (p *progress) layerDone() {
	p.mu.Lock()
	p.p.Done++
	p.mu.Unlock()
	p.report(true)
}

// countingReader counts bytes for the progress and stops on cancel.
type countingReader struct {
	r   io.Reader
	ctx context.Context
	pr  *progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(b)
	c.pr.read.Add(int64(n))
	c.pr.report(false)
	return n, err
}
