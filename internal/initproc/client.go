package initproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"sync"
	"time"
)

// Client talks to the control socket of one sandbox's init. It is safe
// for concurrent use: every operation has its own connection.
type Client struct {
	Socket string
}

// Listen makes a control socket at path (mode 0600) for a sandbox's init
// to inherit as a descriptor, and returns that descriptor. The caller
// passes it to init and closes its copy; the socket file stays, for
// clients to connect to, until the caller removes it.
func Listen(path string) (*os.File, error) {
	os.Remove(path)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	defer ln.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("control socket: %w", err)
	}
	f, err := ln.File()
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return f, nil
}

// FileListener turns an inherited control socket descriptor into a
// listener (and closes f).
func FileListener(f *os.File) (*net.UnixListener, error) {
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("control socket fd %d: %w", f.Fd(), err)
	}
	ul, ok := ln.(*net.UnixListener)
	if !ok || ul.Addr().Network() != "unixpacket" {
		ln.Close()
		return nil, fmt.Errorf("control socket fd %d: not a unixpacket listener", f.Fd())
	}
	return ul, nil
}

// drainGrace bounds how long Exec waits, after the command exited, for
// background processes that still hold its stdout or stderr.
const drainGrace = 200 * time.Millisecond

func (c *Client) dial(ctx context.Context) (*net.UnixConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unixpacket", c.Socket)
	if err != nil {
		return nil, fmt.Errorf("connect to sandbox init: %w", err)
	}
	return conn.(*net.UnixConn), nil
}

// Ping checks that init answers.
func (c *Client) Ping(ctx context.Context) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := send(conn, Request{Op: OpPing}); err != nil {
		return err
	}
	var r Reply
	if _, err := recv(conn, &r); err != nil {
		return fmt.Errorf("ping sandbox init: %w", err)
	}
	return nil
}

// Exec runs argv inside; see sandbox.Sandbox.Exec. env holds KEY=VALUE.
func (c *Client) Exec(ctx context.Context, argv, env []string, dir string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if len(argv) == 0 {
		return -1, errors.New("exec: empty command")
	}
	var (
		remote  []*os.File // ends sent to the sandbox, closed once sent
		local   []*os.File // our ends, closed when done
		outputs sync.WaitGroup
	)
	defer func() {
		for _, f := range remote {
			f.Close()
		}
	}()
	// Input: a file is passed as is; any other reader is pumped through a pipe.
	switch in := stdin.(type) {
	case nil:
		f, err := os.Open(os.DevNull)
		if err != nil {
			return -1, err
		}
		remote = append(remote, f)
	case *os.File:
		dup, err := dupFile(in) // the caller keeps its own
		if err != nil {
			return -1, err
		}
		remote = append(remote, dup)
	default:
		r, w, err := os.Pipe()
		if err != nil {
			return -1, err
		}
		remote = append(remote, r)
		go func() {
			io.Copy(w, in)
			w.Close()
		}()
	}
	for i, out := range []io.Writer{stdout, stderr} {
		if i == 1 && stderr != nil && sameWriter(stdout, stderr) {
			// One writer for both: one pipe, so writes are not interleaved
			// by two copiers (as os/exec does).
			dup, err := dupFile(remote[1])
			if err != nil {
				return -1, err
			}
			remote = append(remote, dup)
			continue
		}
		switch o := out.(type) {
		case nil:
			f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			if err != nil {
				return -1, err
			}
			remote = append(remote, f)
		case *os.File:
			dup, err := dupFile(o)
			if err != nil {
				return -1, err
			}
			remote = append(remote, dup)
		default:
			r, w, err := os.Pipe()
			if err != nil {
				return -1, err
			}
			remote = append(remote, w)
			local = append(local, r)
			outputs.Add(1)
			go func() {
				defer outputs.Done()
				io.Copy(o, r)
			}()
		}
	}
	defer func() {
		for _, f := range local {
			f.Close()
		}
	}()
	conn, err := c.dial(ctx)
	if err != nil {
		return -1, err
	}
	defer conn.Close()
	fds := make([]int, len(remote))
	for i, f := range remote {
		fds[i] = int(f.Fd())
	}
	if err := send(conn, Request{Op: OpExec, Argv: argv, Env: env, Dir: dir}, fds...); err != nil {
		return -1, err
	}
	// Our copies of the sent ends must go, or the command's output never
	// reaches EOF.
	for _, f := range remote {
		f.Close()
	}
	remote = nil

	replies := make(chan Reply, 4)
	recvErr := make(chan error, 1)
	go func() {
		for {
			var r Reply
			fds, err := recv(conn, &r)
			closeAll(fds)
			if err != nil {
				recvErr <- err
				return
			}
			replies <- r
			if r.Done {
				return
			}
		}
	}()
	var cancelled bool
	for {
		select {
		case <-ctx.Done():
			if !cancelled {
				cancelled = true
				send(conn, Request{Op: OpKill})
				// Wait for init to confirm the kill, but not forever.
				go func() {
					time.Sleep(2 * time.Second)
					conn.Close()
				}()
			}
			ctx = context.Background()
		case err := <-recvErr:
			if cancelled {
				return -1, context.Canceled
			}
			return -1, fmt.Errorf("exec %s: lost the sandbox: %w", argv[0], err)
		case r := <-replies:
			if !r.Done {
				continue
			}
			waitOutputs(&outputs, local)
			if cancelled {
				return r.Exit, context.Canceled
			}
			if r.Error != "" {
				return -1, fmt.Errorf("exec %s: %w", argv[0], replyError(&r))
			}
			return r.Exit, nil
		}
	}
}

// waitOutputs lets the output copies finish, cutting them off after a
// grace period if a background process keeps the pipes open.
func waitOutputs(wg *sync.WaitGroup, local []*os.File) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainGrace):
		for _, f := range local {
			f.Close()
		}
		<-done
	}
}

func dupFile(f *os.File) (*os.File, error) {
	fd, err := dupCloexec(int(f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("dup: %w", err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// ReadFile reads a file as the sandbox's user.
func (c *Client) ReadFile(ctx context.Context, path string) ([]byte, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	conn, err := c.dial(ctx)
	if err != nil {
		w.Close()
		return nil, err
	}
	defer conn.Close()
	err = send(conn, Request{Op: OpRead, Path: path}, int(w.Fd()))
	w.Close()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	readDone := make(chan error, 1)
	go func() { _, err := io.Copy(&buf, r); readDone <- err }()
	var rep Reply
	if _, err := recv(conn, &rep); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if rep.Error != "" {
		return nil, &fs.PathError{Op: "read", Path: path, Err: replyError(&rep)}
	}
	if err := <-readDone; err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return buf.Bytes(), nil
}

// WriteFile creates or truncates a file as the sandbox's user.
func (c *Client) WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer w.Close()
	conn, err := c.dial(ctx)
	if err != nil {
		r.Close()
		return err
	}
	defer conn.Close()
	err = send(conn, Request{Op: OpWrite, Path: path, Mode: uint32(mode.Perm())}, int(r.Fd()))
	r.Close()
	if err != nil {
		return err
	}
	go func() {
		w.Write(data) // an early error shows up in the reply
		w.Close()
	}()
	var rep Reply
	if _, err := recv(conn, &rep); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if rep.Error != "" {
		return &fs.PathError{Op: "write", Path: path, Err: replyError(&rep)}
	}
	return nil
}

// sameWriter reports whether a and b are the same comparable writer.
func sameWriter(a, b io.Writer) (same bool) {
	defer func() { recover() }() // an incomparable dynamic type panics
	return a == b
}
