package cli_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/secrets"
)

// TestSecretSetAsks: a KEY without a value is asked for with no echo on
// a terminal, or read from stdin, so that it stays out of the shell's
// history; a bare value is never taken for a key's name.
func TestSecretSetAsks(t *testing.T) {
	e := newCLIEnv(t)
	stored := func() string {
		v, _, err := secrets.Open(filepath.Join(e.home, "secrets.json")).Lookup(secrets.AnthropicKey)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cmd := exec.Command(binary, "secret", "set", "anthropic", "ANTHROPIC_API_KEY")
	cmd.Env = e.env
	tm := startTerm(t, cmd)
	tm.waitFor("ANTHROPIC_API_KEY for secret anthropic (not shown): ")
	tm.send("sk-ant-typed-secret\r")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("secret set: %v\n%s", err, tm.all())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("secret set did not end:\n%s", tm.all())
	}
	if strings.Contains(tm.all(), "sk-ant-typed-secret") {
		t.Errorf("the terminal echoed the secret:\n%s", tm.all())
	}
	if v := stored(); v != "sk-ant-typed-secret" {
		t.Errorf("stored %q; want the typed value", v)
	}

	cmd = exec.Command(binary, "secret", "set", "anthropic", "ANTHROPIC_API_KEY")
	cmd.Env = e.env
	cmd.Stdin = strings.NewReader("sk-ant-piped\n")
	if out, err := cmd.CombinedOutput(); err != nil || strings.Contains(string(out), "sk-ant-piped") {
		t.Fatalf("secret set from stdin: %v: %s", err, out)
	}
	if v := stored(); v != "sk-ant-piped" {
		t.Errorf("stored %q; want the piped value", v)
	}

	for _, args := range [][]string{{"hf_pastedTokenValue"}, {"sk-ant-pasted"}, {"--bogus=sk-ant-x"}} {
		_, errOut, code := e.run(t, append([]string{"secret", "set", "anthropic"}, args...)...)
		if code != 2 || strings.Contains(errOut, "pasted") || strings.Contains(errOut, "sk-ant-x") {
			t.Errorf("secret set anthropic %s: exit %d, stderr %q; want 2 without the value", args[0], code, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(e.home, "secrets.json")); err != nil {
		t.Fatal(err)
	}
}

// TestSecretSetFromStdin: `mlagent slack` tells the user to run
// `secret set slack SLACK_BOT_TOKEN=@- SLACK_APP_TOKEN=@-`. The first @-
// read all of stdin, so the bot token held both lines and the app token
// was stored empty. Several @- now read a line each; an empty value from
// a file or stdin is refused rather than stored over the old one.
func TestSecretSetFromStdin(t *testing.T) {
	e := newCLIEnv(t)
	store := secrets.Open(filepath.Join(e.home, "secrets.json"))
	cmd := exec.Command(binary, "secret", "set", "slack", "SLACK_BOT_TOKEN=@-", "SLACK_APP_TOKEN=@-")
	cmd.Env = e.env
	cmd.Stdin = strings.NewReader("xoxb-bot-1\nxapp-app-2\n")
	if out, err := cmd.CombinedOutput(); err != nil || strings.Contains(string(out), "xoxb-bot-1") {
		t.Fatalf("secret set: %v: %s", err, out)
	}
	for key, want := range map[string]string{"SLACK_BOT_TOKEN": "xoxb-bot-1", "SLACK_APP_TOKEN": "xapp-app-2"} {
		if v, _, _ := store.Lookup(key); v != want {
			t.Errorf("%s = %q; want %q", key, v, want)
		}
	}
	// One @-: the whole of stdin (a JSON key piped in).
	cmd = exec.Command(binary, "secret", "set", "google", "GOOGLE_CREDENTIALS=@-")
	cmd.Env = e.env
	cmd.Stdin = strings.NewReader("{\n  \"type\": \"service_account\"\n}\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("secret set google: %v: %s", err, out)
	}
	if v, _, _ := store.Lookup("GOOGLE_CREDENTIALS"); v != "{\n  \"type\": \"service_account\"\n}" {
		t.Errorf("GOOGLE_CREDENTIALS = %q; want the whole JSON", v)
	}
	// Nothing to read: refused, and the stored tokens are kept.
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o600)
	for _, args := range [][]string{{"SLACK_BOT_TOKEN=@" + empty}, {"SLACK_BOT_TOKEN=@-", "SLACK_APP_TOKEN=@-"}} {
		cmd = exec.Command(binary, append([]string{"secret", "set", "slack"}, args...)...)
		cmd.Env = e.env
		cmd.Stdin = strings.NewReader("only-one-line\n")
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "empty") {
			t.Errorf("secret set slack %v with too little input: %v %s; want a failure saying the value is empty", args, err, out)
		}
	}
	if v, _, _ := store.Lookup("SLACK_APP_TOKEN"); v != "xapp-app-2" {
		t.Errorf("after refused sets SLACK_APP_TOKEN = %q; want it kept", v)
	}
}
