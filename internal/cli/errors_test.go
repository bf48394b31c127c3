package cli

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/secrets"
)

// TestBaseURLFailsFast: a --base-url nobody answers on, or that lacks the
// Messages API, fails before any sandbox, at once, naming the URL (and
// the /v1 to drop).
func TestBaseURLFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	cases := []struct {
		url  string
		want []string
	}{
		{closed, []string{"cannot reach --base-url " + closed + ": connection refused", "is the server running"}},
		{notFound.URL + "/v1", []string{"answers 404 Not Found for POST " + notFound.URL + "/v1/v1/messages", "drop the /v1: --base-url " + notFound.URL}},
		{"http://no-such-host.invalid:11434", []string{"cannot reach --base-url http://no-such-host.invalid:11434: no such host"}},
		{"localhost:11434", []string{`want an http(s) URL`}},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			env, _, errb := testEnv(t)
			start := time.Now()
			code := run(context.Background(), env, []string{"run", "-p", "--base-url", c.url, "hello"})
			if code != ExitFailure {
				t.Errorf("got exit %d; want %d", code, ExitFailure)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("took %v; want a fast failure", d)
			}
			for _, w := range c.want {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr %q lacks %q", errb.String(), w)
				}
			}
			if n := strings.Count(errb.String(), "\n"); n != 1 {
				t.Errorf("stderr has %d lines; want one:\n%s", n, errb.String())
			}
			if _, err := os.Stat(filepath.Join(env.Config.Home, "sandboxes")); err == nil {
				t.Errorf("a sandbox was made before the URL was checked")
			}
		})
	}
}

// TestExportedKeyWins: $ANTHROPIC_API_KEY wins over the stored key, and
// the chat says so when they differ.
func TestExportedKeyWins(t *testing.T) {
	env, _, errb := testEnv(t)
	st := secrets.Open(env.Config.SecretsPath())
	if err := st.Set("anthropic", map[string]string{secrets.AnthropicKey: "sk-ant-stored"}); err != nil {
		t.Fatal(err)
	}
	env.Getenv = func(k string) string {
		if k == secrets.AnthropicKey {
			return "sk-ant-exported"
		}
		return ""
	}
	var probed string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probed = r.Header.Get("x-api-key")
		w.WriteHeader(http.StatusNotFound)
	}))
	defer api.Close()
	run(context.Background(), env, []string{"run", "-p", "--base-url", api.URL, "hello"})
	if probed != "sk-ant-exported" {
		t.Errorf("the key sent was %q; want the exported one", probed)
	}
	if !strings.Contains(errb.String(), `using $ANTHROPIC_API_KEY from the environment; it differs from the key in secret "anthropic"`) {
		t.Errorf("stderr lacks the note:\n%s", errb.String())
	}
}

// TestBadFlagIsOneLine: a bad flag is one line pointing at --help (not
// the whole help), exit 2; the help writes flags as --name.
func TestBadFlagIsOneLine(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"run", "--gpu=maybe", "hi"}, `mlagent run: invalid boolean value "maybe" for --gpu: gpu mode "maybe": want none, required, optional, a count, a type (A100) or TYPE:COUNT; see mlagent run --help`},
		{[]string{"run", "--nope"}, "mlagent run: flag provided but not defined: --nope; see mlagent run --help"},
		{[]string{"run", "--budget-usd"}, "mlagent run: flag needs an argument: --budget-usd; see mlagent run --help"},
		{[]string{"logs", "--follow", "x"}, "mlagent logs: flag provided but not defined: --follow; see mlagent logs --help"},
		{[]string{"attach", "--permission-mode", "bypass"}, "mlagent attach: flag provided but not defined: --permission-mode; see mlagent attach --help"},
		{[]string{"secret", "ls", "--bogus"}, "mlagent secret ls: unknown flag --bogus; see mlagent secret --help"},
		{[]string{"secret", "rm", "--yes", "x"}, "mlagent secret rm: unknown flag --yes; see mlagent secret --help"},
		{[]string{"volume", "import", "--bogus", "gdrive://x", "data:/x"}, "mlagent volume import: flag provided but not defined: --bogus; see mlagent volume import --help"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			env, out, errb := testEnv(t)
			if code := run(context.Background(), env, c.args); code != ExitUsage {
				t.Errorf("got exit %d; want 2", code)
			}
			if got := errb.String(); got != c.want+"\n" {
				t.Errorf("stderr:\n%q\nwant:\n%q", got, c.want+"\n")
			}
			if out.Len() != 0 {
				t.Errorf("stdout %q; want nothing", out.String())
			}
		})
	}
	env, out, _ := testEnv(t)
	if code := run(context.Background(), env, []string{"run", "--help"}); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, s := range []string{"\n  --budget-usd float\n", "\n  -p\n", "\n  --permission-mode string\n"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("help lacks %q:\n%s", s, out.String())
		}
	}
	if strings.Contains(out.String(), "\n  -budget-usd") {
		t.Errorf("help still writes -budget-usd")
	}
}
