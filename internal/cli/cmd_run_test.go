package cli

import (
	"bytes"
	"context"
	"flag"
	"reflect"
	"strings"
	"testing"

	"github.com/mlagent/mlagent/internal/config"
)

func testEnv(t *testing.T) (*Env, *bytes.Buffer, *bytes.Buffer) {
	cfg := config.Defaults()
	cfg.Home = t.TempDir()
	var out, errb bytes.Buffer
	return &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Config: cfg,
		Getenv: func(string) string { return "" }, Log: newLogger(&errb, "error")}, &out, &errb
}

// Bad flags are refused with exit 2 before any key is looked up or any
// sandbox is created.
func TestRunUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"run", "-p"}, "-p needs a prompt"},
		{[]string{"run", "--output-format", "stream-json", "hi"}, "needs -p"},
		{[]string{"run", "-p", "--output-format", "xml", "hi"}, `want text, json, stream-json or chat`},
		{[]string{"run", "--gpu=maybe", "hi"}, "gpu mode"},
		{[]string{"run", "--volume", "relative:path", "hi"}, "NAME:/absolute/path"},
		{[]string{"run", "--volume", "data:/elsewhere", "hi"}, "clashes with the default"},
		{[]string{"run", "--answers", "/no/such/file", "-p", "hi"}, "answers file"},
		{[]string{"run", "--gateway", "http://gw:8790", "hi"}, "go together"},
		{[]string{"resume", "nosuch"}, `no session "nosuch"`},
		{[]string{"resume"}, "no sessions yet"},
		{[]string{"run", "hi"}, "no model key found"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			env, _, errb := testEnv(t)
			if code := run(context.Background(), env, c.args); code != ExitUsage {
				t.Errorf("got exit %d; want %d (stderr %q)", code, ExitUsage, errb.String())
			}
			if !strings.Contains(errb.String(), c.want) {
				t.Errorf("got stderr %q; want it to contain %q", errb.String(), c.want)
			}
		})
	}
}

func TestParseInterleaved(t *testing.T) {
	cases := []struct {
		args  []string
		pos   []string
		print bool
	}{
		{[]string{"-p", "a", "b"}, []string{"a", "b"}, true},
		{[]string{"a", "-p", "b"}, []string{"a", "b"}, true},
		{[]string{"a", "--", "-p"}, []string{"a", "-p"}, false},
		{nil, nil, false},
	}
	for _, c := range cases {
		env, _, _ := testEnv(t)
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		p := fs.Bool("p", false, "")
		pos, code := parseInterleaved(fs, c.args, env)
		if code != -1 || !reflect.DeepEqual(pos, c.pos) || *p != c.print {
			t.Errorf("parseInterleaved(%q): got %q, -p=%v, code %d; want %q, -p=%v", c.args, pos, *p, code, c.pos, c.print)
		}
	}
}

func TestSessionsEmpty(t *testing.T) {
	env, out, errb := testEnv(t)
	if code := run(context.Background(), env, []string{"sessions"}); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "no sessions yet") {
		t.Errorf("got %q; want the hint to start one", out.String())
	}
}
