package slackbot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/slack-go/slack"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/tools"
)

// errTooBig stops a download past the size limit.
var errTooBig = errors.New("file too large")

// limitedWriter fails once more than n bytes were written.
type limitedWriter struct {
	w io.Writer
	n int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, errTooBig
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}

// safeFileName keeps a file name from Slack, or from the sandbox for a
// shared file, usable as one path element and honest to read: no control
// characters (C0, DEL, C1) and no bidirectional controls, which could
// show "report\u202efdp.exe" as "reportexe.pdf".
func safeFileName(name, id string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r == '/' || r == '\\' || r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f || isBidiControl(r):
			b.WriteRune('_')
		default:
			b.WriteRune(r)
		}
	}
	s := strings.TrimSpace(b.String())
	if s == "" || s == "." || s == ".." || strings.HasPrefix(s, ".") {
		s = "file-" + id + strings.TrimLeft(s, ".")
	}
	if len(s) > 150 {
		s = s[:150]
	}
	return s
}

// freeName returns dir/name, or dir/name-2, -3 … when taken. The
// directory is the sandbox's: it may hold any number of names, or make
// every lookup fail (a directory it made unreadable, a file swapped in),
// so only "does not exist" is a free name, any other error ends the
// search, and so do maxTries names.
func freeName(root *os.Root, dir, name string) (string, error) {
	const maxTries = 100
	rel := path.Join(dir, name)
	for i := 2; ; i++ {
		_, err := root.Lstat(rel)
		if errors.Is(err, os.ErrNotExist) {
			return rel, nil
		}
		if err != nil {
			return "", err
		}
		if i > maxTries {
			return "", fmt.Errorf("%d files of that name in %s already", maxTries, dir)
		}
		ext := path.Ext(name)
		rel = path.Join(dir, strings.TrimSuffix(name, ext)+"-"+strconv.Itoa(i)+ext)
	}
}

// download saves the thread's attached files on the host, with the bot
// token, into the data volume at uploads/<session>/, and returns the paths
// the agent sees (/data/uploads/…). Files go through os.Root: the volume is
// shared with sandboxes, which may have planted symlinks.
func (t *thread) download(ctx context.Context, volName string, files []slack.File) ([]string, []string) {
	var saved, problems []string
	if len(files) == 0 {
		return nil, nil
	}
	dir, err := t.bot.volumes.Ensure(volName)
	if err != nil {
		return nil, []string{err.Error()}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, []string{err.Error()}
	}
	defer root.Close()
	sub := path.Join(sandbox.UploadsSubdir, t.sessionID)
	if err := root.MkdirAll(sub, 0o755); err != nil {
		return nil, []string{err.Error()}
	}
	for _, f := range files {
		if f.Size > 0 && int64(f.Size) > t.bot.cfg.MaxFileBytes {
			problems = append(problems, fmt.Sprintf("%s is %d bytes; the limit is %d", f.Name, f.Size, t.bot.cfg.MaxFileBytes))
			continue
		}
		rel, err := freeName(root, sub, safeFileName(f.Name, f.ID))
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", f.Name, err))
			continue
		}
		out, err := root.OpenFile(rel, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", f.Name, err))
			continue
		}
		url := f.URLPrivateDownload
		if url == "" {
			url = f.URLPrivate
		}
		err = t.bot.api.GetFileContext(ctx, url, &limitedWriter{w: out, n: t.bot.cfg.MaxFileBytes})
		out.Close()
		if err != nil {
			root.Remove(rel)
			// The error may name the URL; never the token.
			problems = append(problems, fmt.Sprintf("%s: download failed: %v", f.Name, err))
			continue
		}
		saved = append(saved, path.Join(sandbox.DataMount, rel))
	}
	return saved, problems
}

// share uploads a file the agent shared to the thread. The path comes
// from the sandbox: it is read inside the sandbox, as the sandbox's user,
// and at most tools.MaxShareBytes of it.
func (t *thread) share(ctx context.Context, sb sandbox.Sandbox, p string) error {
	if !path.IsAbs(p) || strings.ContainsAny(p, "\x00\n") {
		return fmt.Errorf("bad path %q", p)
	}
	var buf bytes.Buffer
	lw := &limitedWriter{w: &buf, n: tools.MaxShareBytes}
	code, err := sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{"head", "-c", strconv.Itoa(tools.MaxShareBytes + 1), "--", p}, Stdout: lw, Stderr: io.Discard})
	if errors.Is(err, errTooBig) || lw.n < 0 {
		return fmt.Errorf("%s is larger than %d bytes", p, tools.MaxShareBytes)
	}
	if err != nil || code != 0 {
		return fmt.Errorf("read %s in the sandbox: exit %d %v", p, code, err)
	}
	if buf.Len() == 0 {
		return fmt.Errorf("%s is empty", p)
	}
	name := safeFileName(path.Base(p), "shared")
	_, err = t.bot.api.UploadFileContext(ctx, slack.UploadFileParameters{
		Reader: &buf, Filename: name, FileSize: buf.Len(), Title: name,
		Channel: t.channel, ThreadTimestamp: t.ts,
	})
	return err
}
