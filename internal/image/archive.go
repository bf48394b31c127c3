package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ociArchive reads an OCI image layout packed in a tar (what `docker
// buildx --output type=oci`, skopeo's oci-archive: and buildah write) in
// place: the member offsets are read once, and blobs are read as
// sections of the file, so nothing is unpacked first.
type ociArchive struct {
	f       *os.File
	members map[string]section
}

type section struct{ off, size int64 }

// maxMetaBlob bounds the index, manifests and configs read into memory.
const maxMetaBlob = 8 << 20

func openOCIArchive(p string) (*ociArchive, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	a := &ociArchive{f: f, members: map[string]section{}}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, p, err)
		}
		if h.Typeflag != tar.TypeReg { // archive/tar reads the legacy TypeRegA as TypeReg
			continue
		}
		// The tar reader has read exactly the header blocks: the file's
		// position is where the member's bytes start.
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			f.Close()
			return nil, err
		}
		a.members[strings.TrimPrefix(h.Name, "./")] = section{off, h.Size}
	}
	return a, nil
}

func (a *ociArchive) Close() error { return a.f.Close() }

func (a *ociArchive) open(name string) (*io.SectionReader, error) {
	s, ok := a.members[name]
	if !ok {
		return nil, fmt.Errorf("%w: the archive has no %s", ErrCorrupt, name)
	}
	return io.NewSectionReader(a.f, s.off, s.size), nil
}

func (a *ociArchive) read(name string) ([]byte, error) {
	r, err := a.open(name)
	if err != nil {
		return nil, err
	}
	if r.Size() > maxMetaBlob {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than an index, manifest or config should be", ErrCorrupt, name, r.Size())
	}
	return io.ReadAll(r)
}

func blobName(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// readBlob reads a small blob and checks its digest.
func (a *ociArchive) readBlob(h v1.Hash) ([]byte, error) {
	b, err := a.read(blobName(h))
	if err != nil {
		return nil, err
	}
	got, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	if got != h {
		return nil, fmt.Errorf("%w: blob %s has digest %s", ErrCorrupt, h, got)
	}
	return b, nil
}

// index is what choosing an image from an index needs: the layout and
// remote indexes of the library (through v1Index) and archiveIndex.
type index interface {
	IndexManifest() (*v1.IndexManifest, error)
	image(h v1.Hash) (v1.Image, error)
	child(h v1.Hash) (index, error)
}

type v1Index struct{ v1.ImageIndex }

func (i v1Index) image(h v1.Hash) (v1.Image, error) { return i.Image(h) }
func (i v1Index) child(h v1.Hash) (index, error) {
	c, err := i.ImageIndex.ImageIndex(h)
	if err != nil {
		return nil, err
	}
	return v1Index{c}, nil
}

type archiveIndex struct {
	a   *ociArchive
	raw []byte
}

func (a *ociArchive) index() (*archiveIndex, error) {
	raw, err := a.read("index.json")
	if err != nil {
		return nil, err
	}
	return &archiveIndex{a: a, raw: raw}, nil
}

func (i *archiveIndex) IndexManifest() (*v1.IndexManifest, error) {
	m, err := v1.ParseIndexManifest(bytes.NewReader(i.raw))
	if err != nil {
		return nil, fmt.Errorf("%w: index: %v", ErrCorrupt, err)
	}
	return m, nil
}

func (i *archiveIndex) child(h v1.Hash) (index, error) {
	raw, err := i.a.readBlob(h)
	if err != nil {
		return nil, err
	}
	return &archiveIndex{a: i.a, raw: raw}, nil
}

func (i *archiveIndex) image(h v1.Hash) (v1.Image, error) {
	raw, err := i.a.readBlob(h)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: manifest %s: %v", ErrCorrupt, h, err)
	}
	return partial.CompressedToImage(&archiveImage{a: i.a, raw: raw, m: m})
}

// archiveImage is the minimum partial.CompressedToImage needs.
type archiveImage struct {
	a   *ociArchive
	raw []byte
	m   *v1.Manifest
}

func (i *archiveImage) RawConfigFile() ([]byte, error) { return i.a.readBlob(i.m.Config.Digest) }
func (i *archiveImage) RawManifest() ([]byte, error)   { return i.raw, nil }
func (i *archiveImage) MediaType() (types.MediaType, error) {
	if i.m.MediaType != "" {
		return i.m.MediaType, nil
	}
	return types.OCIManifestSchema1, nil
}

func (i *archiveImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, d := range append([]v1.Descriptor{i.m.Config}, i.m.Layers...) {
		if d.Digest == h {
			return &archiveLayer{a: i.a, d: d}, nil
		}
	}
	return nil, fmt.Errorf("%w: manifest has no layer %s", ErrCorrupt, h)
}

type archiveLayer struct {
	a *ociArchive
	d v1.Descriptor
}

func (l *archiveLayer) Digest() (v1.Hash, error)            { return l.d.Digest, nil }
func (l *archiveLayer) Size() (int64, error)                { return l.d.Size, nil }
func (l *archiveLayer) MediaType() (types.MediaType, error) { return l.d.MediaType, nil }
func (l *archiveLayer) Compressed() (io.ReadCloser, error) {
	r, err := l.a.open(blobName(l.d.Digest))
	if err != nil {
		return nil, err
	}
	return io.NopCloser(r), nil
}
