package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUserLogger: records go to the file; warnings are said once each,
// with their error, in one line; info never reaches the user.
func TestUserLogger(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	var w bytes.Buffer
	log := newUserLogger(&w, "mlagent run", dir, "info").With("session", "s1")
	log.Info("token issued", "token_id", "tok_1")
	log.Warn("dashboard not started", "err", errors.New("listen tcp 127.0.0.1:8792: address already in use"))
	log.Warn("dashboard not started", "err", errors.New("listen tcp 127.0.0.1:8792: address already in use"))
	log.Error("terminal \x1b]0;x\x07 escape", "err", "bad")
	want := "mlagent run: dashboard not started: listen tcp 127.0.0.1:8792: address already in use\n" +
		"mlagent run: terminal escape: bad\n"
	if w.String() != want {
		t.Errorf("the user read:\n%q\nwant:\n%q", w.String(), want)
	}
	b, err := os.ReadFile(filepath.Join(dir, "mlagent.log"))
	if err != nil || strings.Count(string(b), "\n") != 4 || !strings.Contains(string(b), `msg="token issued" session=s1 token_id=tok_1`) {
		t.Errorf("log file: %v\n%s", err, b)
	}
}
