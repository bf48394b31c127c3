package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/mlagent/mlagent/internal/config"
	"github.com/mlagent/mlagent/internal/fakeapi"
	"github.com/mlagent/mlagent/internal/gateway"
	"github.com/mlagent/mlagent/internal/secrets"
	"github.com/mlagent/mlagent/internal/syncbuf"
)

// TestGatewayCommandEndToEnd is the issue's "done when": a key in the
// secret store, `mlagent gateway`, a token from the admin API, the SDK
// through the gateway, and the call in `mlagent usage`.
func TestGatewayCommandEndToEnd(t *testing.T) {
	const key = "sk-ant-cli-test-REAL"
	up := fakeapi.Start(fakeapi.Options{APIKey: key})
	defer up.Close()
	home := t.TempDir()
	getenv := func(k string) string {
		if k == "MLAGENT_HOME" {
			return home
		}
		return ""
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		t.Fatal(err)
	}
	if err := secrets.Open(cfg.SecretsPath()).Set("anthropic", map[string]string{secrets.AnthropicKey: key}); err != nil {
		t.Fatal(err)
	}
	out, logs := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	env := &Env{Stdin: strings.NewReader(""), Stdout: out, Stderr: logs, Config: cfg, Getenv: getenv,
		Log: slog.New(slog.NewTextHandler(logs, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		done <- runGateway(ctx, env, []string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--upstream", up.URL()})
	}()
	re := regexp.MustCompile(`(?m)^(data|admin) plane listening on (\S+)$`)
	var addrs map[string]string
	for i := 0; i < 500 && len(addrs) < 2; i++ {
		time.Sleep(10 * time.Millisecond)
		addrs = map[string]string{}
		for _, m := range re.FindAllStringSubmatch(out.String(), -1) {
			addrs[m[1]] = m[2]
		}
	}
	if len(addrs) < 2 {
		cancel()
		t.Fatalf("gateway did not start: %s %s", out.String(), logs.String())
	}
	admin, err := secrets.Open(cfg.SecretsPath()).Resolve(secrets.AdminToken, getenv)
	if err != nil || admin == "" {
		t.Fatalf("admin token not saved: %v", err)
	}
	if strings.Contains(out.String(), admin) {
		t.Errorf("admin token printed to a non-terminal stdout")
	}
	ac := gateway.NewAdminClient("http://"+addrs["admin"], admin)
	tok, err := ac.Issue(ctx, gateway.TokenRequest{Sandbox: "demo", BudgetUSD: 1})
	if err != nil {
		t.Fatal(err)
	}
	c := anthropic.NewClient(option.WithBaseURL("http://"+addrs["data"]), option.WithAPIKey(tok.Token), option.WithMaxRetries(0))
	if _, err := c.Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-sonnet-5-5", MaxTokens: 10,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}}); err != nil {
		t.Fatal(err)
	}
	cancel()
	if code := <-done; code != ExitOK {
		t.Fatalf("gateway exited %d: %s", code, logs.String())
	}
	var usageOut bytes.Buffer
	env.Stdout = &usageOut
	if code := runUsage(context.Background(), env, []string{"--json"}); code != ExitOK {
		t.Fatalf("usage exited %d", code)
	}
	var us []gateway.TokenUsage
	if err := json.Unmarshal(usageOut.Bytes(), &us); err != nil {
		t.Fatalf("usage --json: %v: %s", err, usageOut.String())
	}
	if len(us) != 1 || us[0].Requests != 1 || us[0].Sandbox != "demo" || us[0].CostUSD <= 0 {
		t.Errorf("usage = %+v; want one call by demo", us)
	}
	usageOut.Reset()
	runUsage(context.Background(), env, nil)
	if !strings.Contains(usageOut.String(), tok.ID) || strings.Contains(usageOut.String(), tok.Token) {
		t.Errorf("usage table:\n%s", usageOut.String())
	}
	all := out.String() + logs.String()
	audit, _ := readFile(cfg.AuditLogPath())
	if strings.Contains(all+audit, key) || strings.Contains(all+audit, tok.Token) {
		t.Errorf("a secret reached stdout, the log or the audit log")
	}
	if !strings.Contains(audit, tok.ID) {
		t.Errorf("audit log lacks the call: %q", audit)
	}
}

func readFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	return string(b), err
}
