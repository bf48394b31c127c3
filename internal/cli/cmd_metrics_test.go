package cli

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/mlagent/mlagent/internal/config"
)

func metricsTestEnv(t *testing.T, vars map[string]string) (*Env, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	cfg := config.Defaults()
	cfg.Home = t.TempDir()
	var out, errb bytes.Buffer
	return &Env{
		Stdout: &out, Stderr: &errb, Config: cfg,
		Log:    slog.New(slog.NewTextHandler(&errb, nil)),
		Getenv: func(k string) string { return vars[k] },
	}, &out, &errb
}

func TestMetricsCommandsHelp(t *testing.T) {
	for _, name := range []string{"dashboard", "syncer"} {
		t.Run(name, func(t *testing.T) {
			env, out, _ := metricsTestEnv(t, nil)
			if code := run(context.Background(), env, []string{name, "--help"}); code != ExitOK {
				t.Fatalf("%s --help = %d; want 0", name, code)
			}
			if !strings.Contains(out.String(), "Usage: mlagent "+name) {
				t.Errorf("help = %q; want a usage line", out)
			}
		})
	}
}

func TestSyncerNeedsToken(t *testing.T) {
	env, _, errb := metricsTestEnv(t, nil)
	code := run(context.Background(), env, []string{"syncer", "--once", "--space", "a/b"})
	if code != ExitFailure || !strings.Contains(errb.String(), "HF_TOKEN") {
		t.Fatalf("syncer without token = %d, %q; want failure naming HF_TOKEN", code, errb)
	}
}

func TestSyncerRejectsBadInterval(t *testing.T) {
	env, _, _ := metricsTestEnv(t, map[string]string{"HF_TOKEN": "hf_x"})
	if code := run(context.Background(), env, []string{"syncer", "--interval", "soon"}); code != ExitUsage {
		t.Fatalf("bad interval = %d; want %d", code, ExitUsage)
	}
}
