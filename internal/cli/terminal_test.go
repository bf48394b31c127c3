package cli

// Every string that came from a sandbox is stripped of control characters
// before a command prints it (internal/sanitize): one test per command
// that prints such strings.

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/chat"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sessions"
	"github.com/mlagent/mlagent/internal/store"
)

// hostile is what a program in the sandbox writes to take over a terminal:
// OSC 52 (set the clipboard), OSC 0 (window title), erase-line and a
// carriage return to forge what the line says, an 8-bit CSI.
const hostile = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b]0;pwned\x1b\\\x1b[2K\rforged\u009b2J"

// checkTerminalSafe fails when s holds anything a terminal interprets.
func checkTerminalSafe(t *testing.T, what, s string) {
	t.Helper()
	for i, r := range s {
		if (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			t.Errorf("%s: control character %U at %d in %q", what, r, i, s)
			return
		}
	}
}

// addSessions records sessions in the store of the mlagent home.
func addSessions(t *testing.T, home string, ss ...sessions.Session) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(home, "mlagent.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	idx, err := sessions.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		if err := idx.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
}

func homeEnv(t *testing.T, home string) (*Env, *strings.Builder, *strings.Builder) {
	var out, errb strings.Builder
	return &Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string {
		switch k {
		case "MLAGENT_HOME":
			return home
		case "XDG_CONFIG_HOME":
			return filepath.Join(home, "config")
		}
		return ""
	}}, &out, &errb
}

func TestRunPrintsChatErrorsSafely(t *testing.T) {
	var printed strings.Builder
	fail := func(code int, format string, a ...any) int {
		printed.WriteString(strings.TrimSpace(strings.ReplaceAll(format, "%s", "")) + " ")
		for _, v := range a {
			printed.WriteString(v.(string))
		}
		return code
	}
	chatExitCode(&chatFlags{}, chat.Result{}, errors.New("the agent asked "+hostile), nil, fail)
	checkTerminalSafe(t, "chat error", printed.String())
}

func TestDemoNewestRunIsSanitized(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "2025-01-01"), 0o755)
	os.Mkdir(filepath.Join(dir, "2025-01-02"+hostile), 0o755)
	got, ok := newestRun(dir)
	checkTerminalSafe(t, "newest run", got)
	if !ok || !strings.HasPrefix(got, "2025-01-02") {
		t.Errorf("newestRun: got %q, %v; want the 2025-01-02 folder", got, ok)
	}
}

func TestSkillsOutputIsSanitized(t *testing.T) {
	home := t.TempDir()
	dir := filepath.Join(home, "skills")
	os.MkdirAll(filepath.Join(dir, "evil"), 0o755)
	os.WriteFile(filepath.Join(dir, "evil", "SKILL.md"), []byte("---\nname: evil\ndescription: \"Looks fine \\e]52;c;cm0=\\a\\e[2K\\rforged\\x9b2J\"\n---\nBody "+hostile+"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "evil", "notes"+hostile+".txt"), []byte("x"), 0o644)
	// A broken skill: its error names the file, from the volume.
	os.MkdirAll(filepath.Join(dir, "bad"+hostile), 0o755)
	os.WriteFile(filepath.Join(dir, "bad"+hostile, "SKILL.md"), []byte("no front matter "+hostile), 0o644)
	for _, args := range [][]string{{"skills", "ls", "--skills-dir", dir}, {"skills", "show", "evil", "--skills-dir", dir}} {
		env, out, errb := homeEnv(t, home)
		if code := run(context.Background(), env, args); code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, errb)
		}
		checkTerminalSafe(t, strings.Join(args[:2], " ")+" stdout", out.String())
		checkTerminalSafe(t, strings.Join(args[:2], " ")+" stderr", errb.String())
		if !strings.Contains(out.String(), "forged") {
			t.Errorf("%q: got %q; want the description's text kept", args, out)
		}
	}
}

func TestSessionsTitleIsSanitized(t *testing.T) {
	home := t.TempDir()
	ctx := context.Background()
	addSessions(t, home, sessions.Session{ID: "s-1", Title: "train " + hostile, Started: time.Now(), Volumes: sandbox.DefaultMounts()})
	env, out, errb := homeEnv(t, home)
	if code := run(ctx, env, []string{"sessions"}); code != 0 {
		t.Fatalf("sessions: exit %d: %s", code, errb)
	}
	checkTerminalSafe(t, "sessions", out.String())
	if !strings.Contains(out.String(), "train") {
		t.Errorf("sessions: got %q; want the title", out)
	}
	env, out, errb = homeEnv(t, home)
	if code := run(ctx, env, []string{"sessions", "--json"}); code != 0 {
		t.Fatalf("sessions --json: exit %d: %s", code, errb)
	}
	checkTerminalSafe(t, "sessions --json", out.String())
	var row struct{ Title string }
	if err := json.Unmarshal([]byte(out.String()), &row); err != nil || !strings.HasPrefix(row.Title, "train \x1b]52") {
		t.Errorf("sessions --json: %q, %v; want the title kept, escaped", out, err)
	}
}
