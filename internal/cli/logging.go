package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/mlagent/mlagent/internal/sanitize"
)

// newUserLogger logs to dir/mlagent.log (opened on the first record, so a
// command that logs nothing touches no file) and tells the user each
// distinct warning or error once, as "mlagent CMD: what: why" on w.
func newUserLogger(w io.Writer, prefix, dir, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	file := &lazyFile{path: filepath.Join(dir, "mlagent.log")}
	return slog.New(&userHandler{
		file:  slog.NewTextHandler(file, &slog.HandlerOptions{Level: l}),
		tell:  &teller{w: w, prefix: prefix, seen: map[string]bool{}},
		level: l,
	})
}

// userHandler sends records to the log file, and warnings to the user.
type userHandler struct {
	file  slog.Handler
	tell  *teller
	attrs []slog.Attr
	level slog.Level
}

func (h *userHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.file.Enabled(ctx, l)
}

func (h *userHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.file.Enabled(ctx, r.Level) {
		h.file.Handle(ctx, r)
	}
	if r.Level >= slog.LevelWarn {
		h.tell.say(r, h.attrs)
	}
	return nil
}

func (h *userHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &userHandler{file: h.file.WithAttrs(as), tell: h.tell, attrs: append(append([]slog.Attr(nil), h.attrs...), as...), level: h.level}
}

func (h *userHandler) WithGroup(name string) slog.Handler {
	return &userHandler{file: h.file.WithGroup(name), tell: h.tell, attrs: h.attrs, level: h.level}
}

// teller writes warnings for a person: the message and its error, once.
type teller struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	seen   map[string]bool
}

func (t *teller) say(r slog.Record, attrs []slog.Attr) {
	line := r.Message
	add := func(a slog.Attr) bool {
		if a.Key == "err" || a.Key == "error" {
			line += ": " + a.Value.String()
		}
		return true
	}
	for _, a := range attrs {
		add(a)
	}
	r.Attrs(add)
	line = t.prefix + ": " + sanitize.Line(line, 500)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen[line] {
		return
	}
	t.seen[line] = true
	fmt.Fprintln(t.w, line)
}

// lazyFile opens its file (0600, in a 0700 directory) on the first write;
// if that fails, the records are dropped: logging never fails a command.
type lazyFile struct {
	path string
	once sync.Once
	f    *os.File
	mu   sync.Mutex
}

func (l *lazyFile) Write(p []byte) (int, error) {
	l.once.Do(func() {
		if err := os.MkdirAll(filepath.Dir(l.path), 0o700); err != nil {
			return
		}
		l.f, _ = os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	})
	if l.f == nil {
		return len(p), nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}
