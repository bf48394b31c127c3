package podexec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"time"

	"github.com/mlagent/mlagent/internal/initproc"
)

// Stream runs `mlagent relay` in the sandbox with stdin and stdout
// attached, and returns when it has exited (or the stream broke). The
// Kubernetes backend implements it with the pods/exec subresource; tests
// with a pipe to Serve.
type Stream func(ctx context.Context, stdin io.Reader, stdout io.Writer) error

// ErrLost is returned when the stream ended without the operation's
// result: the sandbox (or the connection to it) went away.
var ErrLost = errors.New("lost the sandbox")

// killGrace is how long a cancelled Exec waits for the sandbox to confirm
// the kill before it drops the stream.
const killGrace = 2 * time.Second

// streamGrace is how long a finished operation waits for its stream to
// close.
const streamGrace = 2 * time.Second

// call is one operation in flight on the host side.
type call struct {
	mu     sync.Mutex // serialises frames to the sandbox
	in     *io.PipeWriter
	stdout io.Writer
	stderr io.Writer
	result chan initproc.Reply
}

// Exec runs a command through the relay; see sandbox.Sandbox.Exec.
func Exec(ctx context.Context, stream Stream, req Request, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if len(req.Argv) == 0 {
		return -1, errors.New("exec: empty command")
	}
	req.Op = OpExec
	var cancelled bool
	r, err := do(ctx, stream, req, stdin, stdout, stderr, func(c *call) {
		cancelled = true
		c.send(frameKill, nil)
	})
	if cancelled {
		return r.Exit, context.Canceled
	}
	if err != nil {
		return -1, fmt.Errorf("exec %s: %w", req.Argv[0], err)
	}
	if e := r.Err(); e != nil {
		return -1, fmt.Errorf("exec %s: %w", req.Argv[0], e)
	}
	return r.Exit, nil
}

// ReadFile reads a file in the sandbox as its user; a missing file is
// fs.ErrNotExist.
func ReadFile(ctx context.Context, stream Stream, path string) ([]byte, error) {
	var buf bytes.Buffer
	if err := Read(ctx, stream, path, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Read streams a file in the sandbox to w.
func Read(ctx context.Context, stream Stream, path string, w io.Writer) error {
	r, err := do(ctx, stream, Request{Op: OpRead, Path: path}, nil, w, io.Discard, nil)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if e := r.Err(); e != nil {
		return &fs.PathError{Op: "read", Path: path, Err: e}
	}
	return nil
}

// WriteFile creates or truncates a file in the sandbox from r.
func WriteFile(ctx context.Context, stream Stream, path string, r io.Reader, mode fs.FileMode) error {
	rep, err := do(ctx, stream, Request{Op: OpWrite, Path: path, Mode: uint32(mode.Perm())}, r, io.Discard, io.Discard, nil)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if e := rep.Err(); e != nil {
		return &fs.PathError{Op: "write", Path: path, Err: e}
	}
	return nil
}

// Install writes files in the sandbox, each atomically and in order.
func Install(ctx context.Context, stream Stream, files []File) error {
	body, err := json.Marshal(files)
	if err != nil {
		return err
	}
	if len(body) > maxInstall {
		return fmt.Errorf("install: %d bytes is over %d", len(body), maxInstall)
	}
	rep, err := do(ctx, stream, Request{Op: OpInstall}, bytes.NewReader(body), io.Discard, io.Discard, nil)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if e := rep.Err(); e != nil {
		return fmt.Errorf("install: %w", e)
	}
	return nil
}

// Ping checks that the sandbox's init answers through the relay.
func Ping(ctx context.Context, stream Stream) error {
	r, err := do(ctx, stream, Request{Op: OpPing}, nil, io.Discard, io.Discard, nil)
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return r.Err()
}

func (c *call) send(typ byte, p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return writeFrame(c.in, typ, p)
}

// do runs one operation: it sends the header and stdin, decodes the
// answer, and calls onCancel (at most once) when ctx ends first.
func do(ctx context.Context, stream Stream, req Request, stdin io.Reader, stdout, stderr io.Writer, onCancel func(*call)) (initproc.Reply, error) {
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	hdr, err := json.Marshal(req)
	if err != nil {
		return initproc.Reply{}, err
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	c := &call{in: inW, stdout: stdout, stderr: stderr, result: make(chan initproc.Reply, 1)}

	streamCtx, cancelStream := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelStream()
	streamDone := make(chan error, 1)
	go func() {
		err := stream(streamCtx, inR, outW)
		outW.CloseWithError(io.EOF)
		inR.CloseWithError(io.ErrClosedPipe)
		streamDone <- err
	}()
	go func() {
		if c.send(frameHeader, hdr) != nil {
			return
		}
		if req.Op != OpExec && req.Op != OpWrite && req.Op != OpInstall {
			return
		}
		if stdin != nil {
			buf := make([]byte, 32<<10)
			for {
				n, err := stdin.Read(buf)
				if n > 0 && c.send(frameStdin, buf[:n]) != nil {
					return
				}
				if err != nil {
					break
				}
			}
		}
		c.send(frameStdinEOF, nil)
	}()
	decodeDone := make(chan error, 1)
	go func() { decodeDone <- c.decode(outR) }()

	cancelled := false
	var killTimer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if !cancelled {
				cancelled = true
				if onCancel != nil {
					onCancel(c)
					killTimer = time.After(killGrace)
				} else {
					cancelStream()
				}
			}
			ctx = context.Background()
		case <-killTimer:
			cancelStream()
		case r := <-c.result:
			// `mlagent podexec` exits after its exit frame: let the stream end
			// on its own (cutting it short makes the exec client log
			// errors), but not for long.
			inW.Close()
			select {
			case <-streamDone:
			case <-time.After(streamGrace):
			}
			return r, nil
		case err := <-decodeDone:
			// The stream ended without an exit frame.
			select {
			case r := <-c.result:
				inW.Close()
				return r, nil
			default:
			}
			inW.Close()
			serr := <-streamDone
			if cancelled {
				return initproc.Reply{Exit: -1}, context.Canceled
			}
			if serr != nil {
				return initproc.Reply{}, fmt.Errorf("%w: %w", ErrLost, serr)
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return initproc.Reply{}, fmt.Errorf("%w: %w", ErrLost, err)
			}
			return initproc.Reply{}, ErrLost
		}
	}
}

// decode reads the sandbox's frames until the exit frame or the end.
func (c *call) decode(r io.Reader) error {
	var buf []byte
	for {
		typ, p, err := readFrame(r, &buf)
		if err != nil {
			return err
		}
		switch typ {
		case frameStdout:
			c.stdout.Write(p)
		case frameStderr:
			c.stderr.Write(p)
		case frameExit:
			var rep initproc.Reply
			if err := json.Unmarshal(p, &rep); err != nil {
				return fmt.Errorf("podexec: bad exit frame: %w", err)
			}
			c.result <- rep
			// Drain whatever follows, so the stream can finish.
			io.Copy(io.Discard, r)
			return nil
		default:
			return fmt.Errorf("podexec: unexpected frame %q from the sandbox", typ)
		}
	}
}
