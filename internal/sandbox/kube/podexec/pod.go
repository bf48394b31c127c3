package podexec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/mlagent/mlagent/internal/initproc"
)

// ServeOptions configure the pod side.
type ServeOptions struct {
	// Init is the control socket of the sandbox's init ("@name" for an
	// abstract socket).
	Init string
	// Dir is where relative paths point (the workspace).
	Dir string
}

// Serve runs one operation read from in, answering on out: the body of
// `mlagent relay`. It returns once the exit frame is written.
func Serve(ctx context.Context, in io.Reader, out io.Writer, o ServeOptions) error {
	var buf []byte
	typ, p, err := readFrame(in, &buf)
	if err != nil {
		return fmt.Errorf("podexec: read the request: %w", err)
	}
	if typ != frameHeader {
		return fmt.Errorf("podexec: first frame %q, want a header", typ)
	}
	var req Request
	if err := json.Unmarshal(p, &req); err != nil {
		return fmt.Errorf("podexec: bad request: %w", err)
	}
	var mu sync.Mutex
	stdout := &frameWriter{mu: &mu, w: out, typ: frameStdout}
	stderr := &frameWriter{mu: &mu, w: out, typ: frameStderr}
	client := &initproc.Client{Socket: o.Init}

	// The host's frames after the header: stdin, its end, a kill. The
	// stream ending without a kill is the host gone: kill too.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stdin := newQueue()
	go func() {
		defer cancel()
		defer stdin.abort()
		var buf []byte
		for {
			typ, p, err := readFrame(in, &buf)
			if err != nil {
				return
			}
			switch typ {
			case frameStdin:
				stdin.push(p)
			case frameStdinEOF:
				stdin.close()
				if req.Op != OpExec {
					return
				}
			case frameKill:
				return
			}
		}
	}()

	var rep initproc.Reply
	switch req.Op {
	case OpPing:
		if err := client.Ping(ctx); err != nil {
			rep = initproc.ErrorReply(err)
		}
	case OpExec:
		code, err := client.Exec(ctx, req.Argv, req.Env, req.Dir, stdin, stdout, stderr)
		rep.Exit = code
		if err != nil {
			rep = initproc.ErrorReply(err)
			if code == 127 || code == 126 {
				rep.Exit = code
			}
		}
	case OpRead:
		rep = readFile(o.path(req.Path), stdout)
	case OpWrite:
		rep = writeFile(o.path(req.Path), os.FileMode(req.Mode), stdin)
	case OpInstall:
		rep = install(stdin)
	default:
		rep = initproc.Reply{Exit: -1, Error: fmt.Sprintf("podexec: unknown operation %q", req.Op)}
	}
	rep.Done = true
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	return writeFrame(out, frameExit, b)
}

func (o ServeOptions) path(p string) string {
	if filepath.IsAbs(p) || o.Dir == "" {
		return p
	}
	return filepath.Join(o.Dir, p)
}

func readFile(path string, w io.Writer) initproc.Reply {
	f, err := os.Open(path)
	if err != nil {
		return initproc.ErrorReply(err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return initproc.ErrorReply(&os.PathError{Op: "read", Path: path, Err: syscall.EISDIR})
	}
	if _, err := io.Copy(w, f); err != nil {
		return initproc.ErrorReply(err)
	}
	return initproc.Reply{}
}

var errStreamEnded = errors.New("the host's stream ended before the file's end")

func writeFile(path string, mode os.FileMode, r *queue) initproc.Reply {
	if mode == 0 {
		mode = 0o644
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return initproc.ErrorReply(err)
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !r.ended() {
		err = errStreamEnded
	}
	if err != nil {
		return initproc.ErrorReply(err)
	}
	return initproc.Reply{}
}

func install(r *queue) initproc.Reply {
	body, err := io.ReadAll(io.LimitReader(r, maxInstall+1))
	if err == nil && !r.ended() {
		err = errStreamEnded
	}
	if err == nil && len(body) > maxInstall {
		err = fmt.Errorf("install request over %d bytes", maxInstall)
	}
	var files []File
	if err == nil {
		err = json.Unmarshal(body, &files)
	}
	for _, f := range files {
		if err != nil {
			break
		}
		if !filepath.IsAbs(f.Path) {
			err = fmt.Errorf("install: path %q is not absolute", f.Path)
			break
		}
		if err = os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
			break
		}
		tmp := f.Path + ".part"
		os.Remove(tmp) // a read-only leftover of an earlier try
		if err = os.WriteFile(tmp, f.Data, f.Mode.Perm()|0o200); err != nil {
			break
		}
		if err = os.Chmod(tmp, f.Mode.Perm()); err != nil {
			break
		}
		err = os.Rename(tmp, f.Path)
	}
	if err != nil {
		return initproc.ErrorReply(err)
	}
	return initproc.Reply{}
}

// queue is stdin as it arrives: unbounded, so that reading the host's
// frames never waits on a command that does not read its input (a kill
// frame must always get through).
type queue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	chunks [][]byte
	closed bool
	eof    bool // closed by the host's stdin-EOF frame, not by a broken stream
}

func newQueue() *queue {
	q := &queue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *queue) push(p []byte) {
	q.mu.Lock()
	if !q.closed {
		q.chunks = append(q.chunks, append([]byte(nil), p...))
		q.cond.Signal()
	}
	q.mu.Unlock()
}

// close ends the input cleanly: the host sent all of it.
func (q *queue) close() { q.end(true) }

// abort ends the input because the stream broke; a write reading it must
// not report success.
func (q *queue) abort() { q.end(false) }

func (q *queue) end(eof bool) {
	q.mu.Lock()
	if !q.closed {
		q.closed, q.eof = true, eof
	}
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *queue) ended() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.eof
}

func (q *queue) Read(p []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.chunks) == 0 && !q.closed {
		q.cond.Wait()
	}
	if len(q.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, q.chunks[0])
	if n == len(q.chunks[0]) {
		q.chunks = q.chunks[1:]
	} else {
		q.chunks[0] = q.chunks[0][n:]
	}
	return n, nil
}
