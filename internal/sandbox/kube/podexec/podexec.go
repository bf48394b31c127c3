// Package podexec carries one sandbox operation (run a command, read or
// write a file) over a single byte stream: the stdin and stdout of
// `mlagent podexec`, run in a sandbox pod through the pods/exec subresource.
// A Kubernetes exec stream cannot say "stdin ended" apart from "the client
// went away", cannot kill what it started, and flattens errors into
// strings; framing both directions gives the backend the same contract as
// the local sandbox: stdin EOF, kill on cancel, exact exit codes and
// errno-typed file errors.
//
// Every frame is a type byte, a big-endian uint32 length and that many
// bytes (at most MaxFrame). The host sends a header frame (a JSON Request)
// and then, for exec, stdin frames, one stdin-EOF frame and perhaps a
// kill frame; the pod answers with stdout and stderr frames and one
// final exit frame (a JSON initproc.Reply). The stream ending before a
// kill or an exit frame means the other side is gone: the pod kills the
// command, the host reports the sandbox lost.
package podexec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
)

// Frame types.
const (
	frameHeader   = 'h' // host → pod: a JSON Request
	frameStdin    = 'i' // host → pod: stdin bytes
	frameStdinEOF = 'c' // host → pod: stdin ended
	frameKill     = 'k' // host → pod: kill the command's process group
	frameStdout   = 'o' // pod → host: stdout bytes (a read file's bytes)
	frameStderr   = 'e' // pod → host: stderr bytes
	frameExit     = 'x' // pod → host: a JSON initproc.Reply, the last frame
)

// MaxFrame bounds a frame's payload.
const MaxFrame = 256 << 10

// Operations.
const (
	OpExec  = "exec"
	OpRead  = "read"
	OpWrite = "write" // the file's bytes come as stdin frames
	OpPing  = "ping"
	// OpInstall writes a set of small files (a JSON []File as stdin),
	// each atomically, in order: the boot step of a sandbox pod.
	OpInstall = "install"
)

// InitSocket is the abstract control socket of a pod's init.
const InitSocket = "@mlagent-init"

// File is one file of an install request.
type File struct {
	Path string      `json:"path"`
	Mode fs.FileMode `json:"mode"`
	Data []byte      `json:"data,omitempty"`
}

// maxInstall bounds an install request.
const maxInstall = 4 << 20

// Request is the header frame.
type Request struct {
	Op   string   `json:"op"`
	Argv []string `json:"argv,omitempty"`
	Env  []string `json:"env,omitempty"` // KEY=VALUE, over the sandbox's
	Dir  string   `json:"dir,omitempty"`
	Path string   `json:"path,omitempty"`
	Mode uint32   `json:"mode,omitempty"`
}

var errFrameTooLarge = errors.New("podexec: frame too large")

// writeFrame writes one frame; callers serialise writes.
func writeFrame(w io.Writer, typ byte, payload []byte) error {
	if len(payload) > MaxFrame {
		return errFrameTooLarge
	}
	var h [5]byte
	h[0] = typ
	binary.BigEndian.PutUint32(h[1:], uint32(len(payload)))
	// One write: a frame must not interleave with another writer's.
	buf := make([]byte, 0, 5+len(payload))
	buf = append(append(buf, h[:]...), payload...)
	_, err := w.Write(buf)
	return err
}

// readFrame reads one frame into buf (grown as needed) and returns its
// type and payload, which stays valid until the next call.
func readFrame(r io.Reader, buf *[]byte) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("%w: %d bytes", errFrameTooLarge, n)
	}
	if cap(*buf) < int(n) {
		*buf = make([]byte, n)
	}
	p := (*buf)[:n]
	if _, err := io.ReadFull(r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return h[0], p, nil
}

// frameWriter turns writes into frames of one type, splitting large
// writes; safe for concurrent use with others sharing mu.
type frameWriter struct {
	mu  *sync.Mutex
	w   io.Writer
	typ byte
}

func (f *frameWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), MaxFrame)]
		f.mu.Lock()
		err := writeFrame(f.w, f.typ, chunk)
		f.mu.Unlock()
		if err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}
