package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Kind is where an image comes from.
type Kind string

const (
	Registry      Kind = "registry"       // a registry reference: python:3.12, ghcr.io/…
	Layout        Kind = "oci"            // an OCI image layout directory
	OCIArchive    Kind = "oci-archive"    // a tar of an OCI image layout
	DockerArchive Kind = "docker-archive" // `docker save` output (manifest.json)
)

// Ref is a parsed image reference.
type Ref struct {
	Kind Kind
	// Path is the absolute path of a layout directory or archive.
	Path string
	// Tag picks one image of a layout or archive holding several (the
	// org.opencontainers.image.ref.name annotation, or a docker tag).
	Tag string
	reg name.Reference
}

// String is the canonical form, which names the image in the cache:
// index.docker.io/library/python:3.12, oci:/abs/dir, oci-archive:/abs/f.tar:tag.
func (r Ref) String() string {
	if r.Kind == Registry {
		return r.reg.Name()
	}
	s := string(r.Kind) + ":" + r.Path
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	return s
}

// Registry is the registry host of a registry reference ("" otherwise).
func (r Ref) Registry() string {
	if r.Kind != Registry {
		return ""
	}
	return r.reg.Context().RegistryStr()
}

// ParseRef reads an image reference as the --image flag takes it:
//   - a registry reference: pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime,
//     ghcr.io/org/img@sha256:…, 127.0.0.1:5000/test/py:1
//   - a path (absolute, or starting with ./ or ../) to an OCI layout
//     directory, an OCI archive or a `docker save` archive, told apart by
//     what they hold
//   - the same with an explicit kind and an optional tag:
//     oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:TAG]
func ParseRef(s string) (Ref, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Ref{}, errors.New("empty image reference")
	}
	if strings.ContainsAny(s, "\x00\n") {
		return Ref{}, fmt.Errorf("image reference %q: invalid characters", s)
	}
	for _, k := range []Kind{Layout, OCIArchive, DockerArchive} {
		if rest, ok := strings.CutPrefix(s, string(k)+":"); ok {
			p, tag := splitPathTag(rest)
			return localRef(k, p, tag)
		}
	}
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") || s == "." || s == ".." {
		return localRef("", s, "")
	}
	ref, err := name.ParseReference(s)
	if err != nil {
		if _, serr := os.Stat(s); serr == nil {
			return Ref{}, fmt.Errorf("image reference %q: not a registry reference; for the file or directory of that name write ./%s", s, s)
		}
		return Ref{}, fmt.Errorf("image reference %q: %w", s, err)
	}
	return Ref{Kind: Registry, reg: ref}, nil
}

// splitPathTag splits FILE:TAG at the first colon where FILE exists (a
// docker tag has a colon of its own, a path may too).
func splitPathTag(s string) (string, string) {
	if _, err := os.Stat(s); err == nil {
		return s, ""
	}
	for i := 0; i < len(s); i++ {
		if s[i] != ':' {
			continue
		}
		if _, err := os.Stat(s[:i]); err == nil {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// localRef checks a local path and, when kind is "", tells its kind from
// what it holds.
func localRef(kind Kind, p, tag string) (Ref, error) {
	if p == "" {
		return Ref{}, errors.New("image reference: empty path")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return Ref{}, fmt.Errorf("image %s: %w", p, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return Ref{}, fmt.Errorf("image %s: %w", p, unknownLocal(err))
	}
	detected := Layout
	if !fi.IsDir() {
		if detected, err = archiveKind(abs); err != nil {
			return Ref{}, fmt.Errorf("image %s: %w", p, err)
		}
	} else if _, err := os.Stat(filepath.Join(abs, "index.json")); err != nil {
		return Ref{}, fmt.Errorf("image %s: %w: a directory without index.json is not an OCI image layout", p, ErrCorrupt)
	}
	switch {
	case kind == "":
		kind = detected
	case kind == Layout && detected != Layout:
		return Ref{}, fmt.Errorf("image %s: oci: wants a layout directory; this is a file (use oci-archive: or docker-archive:)", p)
	case kind != Layout && detected == Layout:
		return Ref{}, fmt.Errorf("image %s: %s: wants an archive file; this is a directory (use oci:)", p, kind)
	}
	return Ref{Kind: kind, Path: abs, Tag: tag}, nil
}

func unknownLocal(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: no such file or directory", ErrUnknown)
	}
	return err
}

// archiveKind reads the tar's member names: a `docker save` archive has
// manifest.json (Docker ≥ 25 writes an OCI layout beside it, which the
// docker reader handles as well), an OCI archive index.json.
func archiveKind(p string) (Kind, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var magic [4]byte
	if n, _ := f.ReadAt(magic[:], 0); n >= 2 && compressedMagic(magic[:n]) {
		return "", fmt.Errorf("%w: a compressed archive; decompress it first (gunzip, zstd -d)", ErrCorrupt)
	}
	var index, manifest bool
	// On a file, the tar reader seeks past the members' data.
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("%w: not a readable tar archive (%v)", ErrCorrupt, err)
		}
		switch strings.TrimPrefix(h.Name, "./") {
		case "manifest.json":
			manifest = true
		case "index.json":
			index = true
		}
	}
	switch {
	case manifest:
		return DockerArchive, nil
	case index:
		return OCIArchive, nil
	}
	return "", fmt.Errorf("%w: a tar archive with neither manifest.json (docker save) nor index.json (OCI)", ErrCorrupt)
}
