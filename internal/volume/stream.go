package volume

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// A tree stream carries a file or a directory tree between a host and a
// volume it cannot open (a PersistentVolumeClaim that only a pod mounts),
// with the rules of Get and Put: regular files and directories only,
// permission bits only, holes kept as holes, MaxDepth levels at most.
//
// It is a header record ('h': the top's base name and whether it is a
// directory) and then one record per entry, in walk order, the top first
// as ".": 'd' PATH (a directory), 'k' PATH (skipped: a symlink or a
// special file), 'f' PATH MODE SIZE (a file) followed by its data
// segments ('s' OFFSET LENGTH BYTES, offsets rising) and 'e'; then 'z'
// (done) or 'x' MESSAGE (the sender failed). Numbers are big-endian,
// strings a uint16 length and their bytes.
//
// Whoever reads a stream that came out of a volume reads what a sandbox
// made: Unpack checks every path (relative, canonical, under the top, at
// most MaxDepth deep), keeps every write inside an os.Root without
// following symlinks, and stops at the files and bytes the caller allows.

// Record types.
const (
	recHeader  = 'h'
	recDir     = 'd'
	recSkipped = 'k'
	recFile    = 'f'
	recSegment = 's'
	recFileEnd = 'e'
	recDone    = 'z'
	recError   = 'x'
)

// maxSegment bounds one data segment, maxString a path or a message.
const (
	maxSegment = 1 << 20
	maxString  = 4096
)

// ErrOverLimit is returned by Unpack for a stream that carries more
// files or bytes than the caller allowed (the volume changed since it was
// measured, or the sender lies).
var ErrOverLimit = errors.New("the stream carries more than was measured")

// Unlimited is an Unpack limit that allows any amount.
var Unlimited = Usage{Files: math.MaxInt, Apparent: math.MaxInt64}

// streamWriter writes records; the first error sticks.
type streamWriter struct {
	w   *bufio.Writer
	err error
}

func (s *streamWriter) bytes(p []byte) {
	if s.err == nil {
		_, s.err = s.w.Write(p)
	}
}

func (s *streamWriter) byte(b byte) { s.bytes([]byte{b}) }

func (s *streamWriter) u64(v uint64) { s.bytes(binary.BigEndian.AppendUint64(nil, v)) }

func (s *streamWriter) str(v string) {
	if len(v) > maxString {
		if s.err == nil {
			s.err = fmt.Errorf("name of %d bytes is over %d", len(v), maxString)
		}
		return
	}
	s.bytes(binary.BigEndian.AppendUint16(nil, uint16(len(v))))
	s.bytes([]byte(v))
}

// Pack writes rel of the volume (a file or a tree; "" or "/" is its
// root) to w as a tree stream: what Get would copy, walked as Get walks.
func (s *Store) Pack(name, rel string, w io.Writer) error {
	root, rel, err := s.openRel(name, rel)
	if err != nil {
		return err
	}
	defer root.Close()
	if _, err := root.Lstat(rel); err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	base := path.Base(rel)
	if rel == "." {
		base = name
	}
	if err := pack(root, rel, base, w); err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	return nil
}

// PackHost writes the host file or tree src to w as a tree stream: what
// Put would copy.
func PackHost(src string, w io.Writer) error {
	abs, err := filepath.Abs(src)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(filepath.Dir(abs))
	if err != nil {
		return err
	}
	defer root.Close()
	base := filepath.Base(abs)
	if _, err := root.Stat(base); err != nil {
		return err
	}
	return pack(root, base, base, w)
}

// pack writes the tree rel of root as a tree stream whose top is base.
func pack(root *os.Root, rel, base string, w io.Writer) error {
	sw := &streamWriter{w: bufio.NewWriterSize(w, 256<<10)}
	top, err := root.Lstat(rel)
	if err != nil {
		return err
	}
	sw.byte(recHeader)
	sw.str(base)
	if top.IsDir() {
		sw.byte(1)
	} else {
		sw.byte(0)
	}
	buf := make([]byte, maxSegment)
	err = fs.WalkDir(root.FS(), rel, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			err = tooDeep(rel, p, d)
		}
		if err != nil {
			return err
		}
		sub := "."
		if p != rel {
			sub = strings.TrimPrefix(strings.TrimPrefix(p, rel), "/")
			if rel == "." {
				sub = p
			}
		}
		switch {
		case d.IsDir():
			sw.byte(recDir)
			sw.str(sub)
		case d.Type().IsRegular():
			err := packFile(sw, root, p, sub, buf)
			if errors.Is(err, errSkipped) {
				sw.byte(recSkipped)
				sw.str(sub)
				return sw.err
			}
			return err
		default:
			sw.byte(recSkipped)
			sw.str(sub)
		}
		return sw.err
	})
	if err == nil {
		err = sw.err
	}
	if err != nil {
		if sw.err == nil {
			// Tell the reader why the stream ends here.
			sw.byte(recError)
			sw.str(err.Error()[:min(len(err.Error()), maxString)])
			sw.w.Flush()
		}
		return err
	}
	sw.byte(recDone)
	if sw.err == nil {
		sw.err = sw.w.Flush()
	}
	return sw.err
}

// packFile writes one regular file's record and its data segments.
func packFile(sw *streamWriter, root *os.Root, p, sub string, buf []byte) error {
	in, size, err := openRegular(root, p)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	sw.byte(recFile)
	sw.str(sub)
	sw.u64(uint64(permOf(fi.Mode())))
	sw.u64(uint64(size))
	err = dataSegments(in, size, func(off, n int64) error {
		for n > 0 && sw.err == nil {
			k, err := in.ReadAt(buf[:min(n, maxSegment)], off)
			if k > 0 {
				sw.byte(recSegment)
				sw.u64(uint64(off))
				sw.u64(uint64(k))
				sw.bytes(buf[:k])
			}
			if err != nil {
				// Shrunk meanwhile: the rest reads as a hole.
				return nil
			}
			off, n = off+int64(k), n-int64(k)
		}
		return sw.err
	})
	if err != nil {
		return err
	}
	sw.byte(recFileEnd)
	return sw.err
}

// streamReader reads records with bounds.
type streamReader struct {
	r   *bufio.Reader
	buf [8]byte
}

func (s *streamReader) byte() (byte, error) { return s.r.ReadByte() }

func (s *streamReader) u64() (uint64, error) {
	if _, err := io.ReadFull(s.r, s.buf[:8]); err != nil {
		return 0, unexpected(err)
	}
	return binary.BigEndian.Uint64(s.buf[:8]), nil
}

func (s *streamReader) str() (string, error) {
	if _, err := io.ReadFull(s.r, s.buf[:2]); err != nil {
		return "", unexpected(err)
	}
	n := int(binary.BigEndian.Uint16(s.buf[:2]))
	if n > maxString {
		return "", fmt.Errorf("tree stream: a name of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(s.r, b); err != nil {
		return "", unexpected(err)
	}
	return string(b), nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("tree stream cut short: %w", io.ErrUnexpectedEOF)
	}
	return err
}

// Header is what a tree stream says of its top.
type Header struct {
	Base string // its name where it came from
	Dir  bool
}

// ReadHeader reads a tree stream's header record.
func ReadHeader(r *bufio.Reader) (Header, error) {
	sr := &streamReader{r: r}
	t, err := sr.byte()
	if err != nil {
		return Header{}, unexpected(err)
	}
	if t != recHeader {
		return Header{}, fmt.Errorf("tree stream: record %q where the header belongs", t)
	}
	var h Header
	if h.Base, err = sr.str(); err != nil {
		return h, err
	}
	if c, err := CleanRel(h.Base); err != nil || c != h.Base || strings.Contains(c, "/") {
		return h, fmt.Errorf("tree stream: top named %q", h.Base)
	}
	d, err := sr.byte()
	if err != nil {
		return h, unexpected(err)
	}
	h.Dir = d == 1
	return h, nil
}

// Unpack reads a tree stream (after its header) into the host path dst:
// the top becomes dst, in a directory that must exist. limit bounds the
// files and the bytes (sizes with holes) it may write.
func Unpack(r *bufio.Reader, dst string, limit Usage) (Copied, error) {
	dst, err := filepath.Abs(dst)
	if err != nil {
		return Copied{}, err
	}
	// As Get: the destination's directory is made if need be.
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return Copied{}, err
	}
	root, err := os.OpenRoot(filepath.Dir(dst))
	if err != nil {
		return Copied{}, err
	}
	defer root.Close()
	c, err := unpack(r, root, filepath.Base(dst), limit)
	c.Dest = dst
	return c, err
}

// UnpackInto reads a tree stream (header included) into the volume at
// rel, with Put's rules (intoDir: rel ended in a slash).
func (s *Store) UnpackInto(name, rel string, intoDir bool, r *bufio.Reader) (Copied, error) {
	rel, err := cleanOrRoot(rel)
	if err != nil {
		return Copied{}, err
	}
	h, err := ReadHeader(r)
	if err != nil {
		return Copied{}, err
	}
	root, err := s.openVolume(name)
	if err != nil {
		return Copied{}, err
	}
	defer root.Close()
	if rel, err = putDest(root, rel, intoDir, h.Base, h.Dir); err != nil {
		return Copied{}, fmt.Errorf("put into volume %s: %w", name, err)
	}
	c, err := unpack(r, root, rel, Unlimited)
	c.Dest = rel
	if err != nil {
		return c, fmt.Errorf("put into volume %s: %w", name, err)
	}
	return c, nil
}

// unpack writes the stream's entries under top (a path in root).
func unpack(r *bufio.Reader, root *os.Root, top string, limit Usage) (Copied, error) {
	sr := &streamReader{r: r}
	var c Copied
	var apparent int64
	first := true
	for {
		t, err := sr.byte()
		if err != nil {
			return c, unexpected(err)
		}
		switch t {
		case recDone:
			if first {
				return c, errors.New("tree stream: empty")
			}
			return c, nil
		case recError:
			msg, err := sr.str()
			if err != nil {
				return c, err
			}
			return c, fmt.Errorf("the copy failed at its source: %s", msg)
		case recDir, recSkipped, recFile:
		default:
			return c, fmt.Errorf("tree stream: unknown record %q", t)
		}
		p, err := sr.str()
		if err != nil {
			return c, err
		}
		if err := streamPath(p, first); err != nil {
			return c, err
		}
		first = false
		target := path.Join(top, p)
		switch t {
		case recDir:
			if err := root.MkdirAll(target, 0o755); err != nil {
				return c, err
			}
		case recSkipped:
			c.Skipped++
		case recFile:
			if c.Files >= limit.Files {
				return c, fmt.Errorf("%w: over %d files", ErrOverLimit, limit.Files)
			}
			mode, err := sr.u64()
			if err != nil {
				return c, err
			}
			size, err := sr.u64()
			if err != nil {
				return c, err
			}
			if size > uint64(limit.Apparent-apparent) {
				return c, fmt.Errorf("%w: %s of %d bytes, over the %d measured", ErrOverLimit, p, size, limit.Apparent)
			}
			apparent += int64(size)
			if p != "." {
				if err := root.MkdirAll(path.Dir(target), 0o755); err != nil {
					return c, err
				}
			}
			n, err := unpackFile(sr, root, target, fs.FileMode(mode).Perm(), int64(size))
			c.Bytes += n
			if err != nil {
				return c, fmt.Errorf("%s: %w", p, err)
			}
			c.Files++
		}
	}
}

// streamPath checks an entry's path: "." for the first (the top) and
// only for it; else canonical, relative and at most MaxDepth deep.
func streamPath(p string, first bool) error {
	if first || p == "." {
		if first && p == "." {
			return nil
		}
		return fmt.Errorf("tree stream: entry %q out of place", p)
	}
	if c, err := CleanRel(p); err != nil || c != p {
		return fmt.Errorf("tree stream: entry %q is not a path inside the top", p)
	}
	if strings.Count(p, "/")+1 > MaxDepth {
		return fmt.Errorf("%w: %s…", ErrTooDeep, p[:min(len(p), 64)])
	}
	return nil
}

// unpackFile writes a file's segments to target and ends it at size. As
// in Put, a FIFO or a symlink at target is neither waited on nor written
// through.
func unpackFile(sr *streamReader, root *os.Root, target string, mode fs.FileMode, size int64) (int64, error) {
	out, err := root.OpenFile(target, os.O_WRONLY|os.O_CREATE|nonblockNofollow, mode|0o600)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	if fi, err := out.Stat(); err != nil || !fi.Mode().IsRegular() {
		return 0, errSkipped
	}
	if err := out.Truncate(0); err != nil {
		return 0, err
	}
	var written, next int64
	for {
		t, err := sr.byte()
		if err != nil {
			return written, unexpected(err)
		}
		switch t {
		case recFileEnd:
			return written, out.Truncate(size)
		case recSegment:
		default:
			return written, fmt.Errorf("tree stream: record %q inside a file", t)
		}
		off, err := sr.u64()
		if err != nil {
			return written, err
		}
		n, err := sr.u64()
		if err != nil {
			return written, err
		}
		// Rising offsets within the size: a file costs at most its size.
		if off < uint64(next) || n > maxSegment || off > uint64(size) || n > uint64(size)-off {
			return written, fmt.Errorf("tree stream: a segment of %d bytes at %d in a file of %d", n, off, size)
		}
		k, err := io.CopyN(io.NewOffsetWriter(out, int64(off)), sr.r, int64(n))
		written += k
		if err != nil {
			return written, unexpected(err)
		}
		next = int64(off + n)
	}
}
