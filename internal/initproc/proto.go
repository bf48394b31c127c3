// Package initproc is `mlagent init`, PID 1 of every local sandbox: it
// reaps zombies, bridges 127.0.0.1:8790 inside to the gateway's Unix
// socket outside, and serves a control socket through which the host runs
// commands and moves files (the client half is here too).
//
// The control protocol is one SOCK_SEQPACKET connection per operation:
// the client sends one JSON Request with the operation's file descriptors
// attached (SCM_RIGHTS), so a command inside writes straight into the
// host's pipes or terminal, and the server answers with JSON Replies
// ending in one with Done set. Closing the connection, or sending
// {"op":"kill"}, kills the command's process group.
package initproc

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
)

// Operations of the control protocol.
const (
	OpExec  = "exec"  // fds: stdin, stdout, stderr
	OpRead  = "read"  // fds: the write end the file's bytes go to
	OpWrite = "write" // fds: the read end the file's bytes come from
	OpKill  = "kill"  // sent on an exec connection: kill its process group
	OpPing  = "ping"
)

// Request is the first (and, except for kill, only) message of a client.
type Request struct {
	Op   string   `json:"op"`
	Argv []string `json:"argv,omitempty"`
	// Env entries (KEY=VALUE) override the sandbox's environment.
	Env  []string `json:"env,omitempty"`
	Dir  string   `json:"dir,omitempty"`
	Path string   `json:"path,omitempty"`
	Mode uint32   `json:"mode,omitempty"`
}

// Reply is a server message. The last one of an operation has Done set.
type Reply struct {
	Pid   int    `json:"pid,omitempty"` // exec: the command started
	Done  bool   `json:"done,omitempty"`
	Exit  int    `json:"exit"`
	Error string `json:"error,omitempty"`
	// Errno names the cause of Error when it is a system error
	// ("ENOENT", "EACCES", …) so the client can map it to fs errors.
	Errno string `json:"errno,omitempty"`
}

const maxMessage = 1 << 20

// send writes one message with optional descriptors.
func send(c *net.UnixConn, v any, fds ...int) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = syscall.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("control socket: send: %w", err)
	}
	return nil
}

// buffers hold received messages: a message must fit at once, and a fresh
// megabyte for each would cost more than the rest of an exec.
var buffers = sync.Pool{New: func() any { return new([maxMessage]byte) }}

// recv reads one message and any descriptors sent with it. The caller
// owns (and must close) the descriptors.
func recv(c *net.UnixConn, v any) ([]int, error) {
	b := buffers.Get().(*[maxMessage]byte)
	defer buffers.Put(b)
	buf := b[:]
	oob := make([]byte, syscall.CmsgSpace(8*4))
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	if oobn > 0 {
		msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, fmt.Errorf("control socket: %w", err)
		}
		for _, m := range msgs {
			got, err := syscall.ParseUnixRights(&m)
			if err == nil {
				fds = append(fds, got...)
			}
		}
	}
	if flags&(syscall.MSG_TRUNC|syscall.MSG_CTRUNC) != 0 {
		closeAll(fds)
		return nil, errors.New("control socket: message truncated")
	}
	if n == 0 {
		closeAll(fds)
		return nil, errEOF
	}
	if err := json.Unmarshal(buf[:n], v); err != nil {
		closeAll(fds)
		return nil, fmt.Errorf("control socket: bad message: %w", err)
	}
	return fds, nil
}

var errEOF = errors.New("control socket: closed")

func closeAll(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}

// errnoName and errnoByName carry the errors file operations can meet.
var errnoNames = map[syscall.Errno]string{
	syscall.ENOENT: "ENOENT", syscall.EACCES: "EACCES", syscall.EPERM: "EPERM",
	syscall.EROFS: "EROFS", syscall.EISDIR: "EISDIR", syscall.ENOTDIR: "ENOTDIR",
	syscall.EEXIST: "EEXIST", syscall.ENOSPC: "ENOSPC",
	syscall.ETIME: "ETIME", // cut short by the sandbox's time limit
}

func errnoName(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		if n, ok := errnoNames[e]; ok {
			return n
		}
	}
	return ""
}

// Err is the reply's error as one that errors.Is matches against
// fs.ErrNotExist and friends; nil when the reply carries none.
func (r *Reply) Err() error {
	if r.Error == "" {
		return nil
	}
	return replyError(r)
}

// ErrorReply is the reply that carries err (and its errno name) to a
// client, with exit code -1.
func ErrorReply(err error) Reply { return errReply(err) }

// replyError turns an error reply back into an error that errors.Is
// matches against fs.ErrNotExist and friends.
func replyError(r *Reply) error {
	for e, n := range errnoNames {
		if n == r.Errno {
			return &remoteError{msg: r.Error, errno: e}
		}
	}
	return errors.New(r.Error)
}

type remoteError struct {
	msg   string
	errno syscall.Errno
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.errno }
