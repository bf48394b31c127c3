package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/mlagent/mlagent/internal/dashboard"
)

// listenDashboard serves the live dashboard of the Trackio volume on addr
// (falling back to a free loopback port when addr is taken, since a chat
// should not fail over a busy port) and returns its URL.
func listenDashboard(env *Env, addr string) (url string, stop func(), err error) {
	if err := os.MkdirAll(trackioDir(env.Config), 0o755); err != nil {
		return "", nil, err
	}
	d, err := dashboard.New(trackioDir(env.Config), env.Log.With("part", "dashboard"))
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			d.Close()
			return "", nil, err
		}
	}
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	stop = func() {
		d.Close() // ends the event streams, or Shutdown would wait on them
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}
	return fmt.Sprintf("http://%s/", ln.Addr()), stop, nil
}

// chatDashboard starts the dashboard a chat front end shows beside the
// conversation (run, resume, attach), unless mode is "off": its URL, or
// "" when it did not start (a warning says why; the chat goes on), and
// a stop that is always safe to call.
func chatDashboard(env *Env, mode string, log *slog.Logger) (url string, stop func()) {
	if mode == "off" {
		return "", func() {}
	}
	url, stop, err := listenDashboard(env, mode)
	if err != nil {
		log.Warn("dashboard not started", "err", err)
		return "", func() {}
	}
	return url, stop
}

// writerIsTerminal reports whether w is a terminal (styled output,
// spinners) rather than a pipe or file (plain output).
func writerIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// readerIsTerminal reports whether r is a terminal a person types at
// (the line editor) rather than piped input (read a line at a time).
func readerIsTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
