package sessionhost

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mlagent/mlagent/internal/config"
)

// ErrRunning: the session is already running in a host (detached).
var ErrRunning = errors.New("the session is already running")

// Hosted is a front end's end of a session host it started.
type Hosted struct {
	conn   *net.UnixConn
	events *bufio.Reader // the conn, past the hello
	proc   *os.Process
	exited chan struct{}
	hello  Hello
}

// Start starts a session host (`mlagent session-host`, this binary) for
// spec and waits until its agent runs, or it says why not. The host logs
// to $MLAGENT_HOME/logs/session-ID.log; progress is where it draws an
// image pull until then (the chat's terminal, or /dev/null).
func Start(ctx context.Context, cfg *config.Config, spec Spec, progress *os.File) (*Hosted, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("session host: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "session"), os.NewFile(uintptr(fds[1]), "session-host")
	defer theirs.Close()
	c, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		return nil, fmt.Errorf("session host: %w", err)
	}
	conn := c.(*net.UnixConn)
	logDir := cfg.LogsDir()
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		conn.Close()
		return nil, fmt.Errorf("session host: %w", err)
	}
	logPath := filepath.Join(logDir, "session-"+spec.Session.ID+".log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("session host log: %w", err)
	}
	defer logf.Close()
	self, err := os.Executable()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("session host: %w", err)
	}
	cmd := exec.Command(self, "session-host")
	cmd.Stdout, cmd.Stderr = logf, logf
	// fd 3: the session's protocol; fd 4: where the host draws progress
	// (an image pull) until the session runs: the chat's terminal.
	cmd.ExtraFiles = []*os.File{theirs, progress}
	// Its own session: the terminal's Ctrl-C and hangup are the chat's,
	// and the host outlives the chat when it detaches.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("session host: %w", err)
	}
	h := &Hosted{conn: conn, proc: cmd.Process, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(h.exited)
	}()
	b, _ := json.Marshal(spec)
	if _, err := conn.Write(append(b, '\n')); err != nil {
		h.kill()
		return nil, fmt.Errorf("session host: %w", err)
	}
	h.events = bufio.NewReaderSize(conn, 64<<10)
	type result struct {
		line []byte
		err  error
	}
	got := make(chan result, 1)
	go func() {
		line, err := h.events.ReadSlice('\n')
		got <- result{append([]byte(nil), line...), err}
	}()
	var r result
	select {
	case r = <-got:
	case <-ctx.Done():
		h.kill()
		return nil, ctx.Err()
	}
	if r.err != nil || json.Unmarshal(r.line, &h.hello) != nil || h.hello.Type != "hosted" {
		h.kill()
		return nil, fmt.Errorf("the session host did not start (its log: %s)", logPath)
	}
	if h.hello.Error != "" {
		<-h.exited
		conn.Close()
		if h.hello.Exists {
			return nil, fmt.Errorf("%w: %s", ErrRunning, h.hello.Error)
		}
		return nil, errors.New(h.hello.Error)
	}
	return h, nil
}

// Hello is what the host said when the session's agent ran.
func (h *Hosted) Hello() Hello { return h.hello }

// Input is the agent's input.
func (h *Hosted) Input() io.WriteCloser { return Input(h.conn) }

// Input is the agent's input through c, a connection to its host:
// closing it ends only the sending half, so what the agent still says on
// its way out is read.
func Input(c *net.UnixConn) io.WriteCloser { return halfCloser{c} }

// Events are the agent's event lines.
func (h *Hosted) Events() io.Reader { return h.events }

type halfCloser struct{ c *net.UnixConn }

func (w halfCloser) Write(p []byte) (int, error) { return w.c.Write(p) }
func (w halfCloser) Close() error                { return w.c.CloseWrite() }

// Finish ends the front end's side: a detached session is left to its
// host; otherwise the host is waited for (it ends the sandbox), at most
// wait, then stopped.
func (h *Hosted) Finish(detached bool, wait time.Duration) {
	h.conn.Close()
	if detached {
		h.proc.Release()
		return
	}
	select {
	case <-h.exited:
	case <-time.After(wait):
		h.proc.Signal(syscall.SIGTERM)
		select {
		case <-h.exited:
		case <-time.After(10 * time.Second):
			h.kill()
		}
	}
}

func (h *Hosted) kill() {
	h.conn.Close()
	h.proc.Kill()
	<-h.exited
}
