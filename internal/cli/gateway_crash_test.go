package cli_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/gateway"
	"github.com/mlagent/mlagent/internal/prices"
)

// gatewayProc is `mlagent gateway` run as its own process.
type gatewayProc struct {
	cmd         *exec.Cmd
	data, admin string
}

func startGatewayProc(t *testing.T, home, upstream string) *gatewayProc {
	t.Helper()
	cmd := exec.Command(binary, "gateway", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--upstream", upstream)
	cmd.Env = []string{"MLAGENT_HOME=" + home, "HOME=" + home, "ANTHROPIC_API_KEY=" + fakeKey,
		"MLAGENT_ADMIN_TOKEN=admin-crash-test", "MLAGENT_LOG_LEVEL=warn", "PATH=/usr/bin:/bin"}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	p := &gatewayProc{cmd: cmd}
	re := regexp.MustCompile(`^(data|admin) plane listening on (\S+)$`)
	sc := bufio.NewScanner(out)
	for (p.data == "" || p.admin == "") && sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			if m[1] == "data" {
				p.data = "http://" + m[2]
			} else {
				p.admin = "http://" + m[2]
			}
		}
	}
	if p.data == "" || p.admin == "" {
		t.Fatal("mlagent gateway did not say where it listens")
	}
	go io.Copy(io.Discard, out)
	return p
}

// TestGatewayKill9KeepsBudget is issue 11's High 2 with a real kill -9 of
// a real `mlagent gateway`: the requests that finished just before the
// crash and the streams open at it are in the ledger after a restart on
// the same state (the streams at their whole reservation), so the token
// cannot exceed its budget by more than what was in flight.
func TestGatewayKill9KeepsBudget(t *testing.T) {
	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), `"stream":true`) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-5-5\",\"usage\":{\"input_tokens\":30,\"output_tokens\":1}}}\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-hold:
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-5-5","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","usage":{"input_tokens":30,"output_tokens":100}}`)
	}))
	defer up.Close()
	defer release()

	home := t.TempDir()
	gw := startGatewayProc(t, home, up.URL)
	ctx := context.Background()
	admin := gateway.NewAdminClient(gw.admin, "admin-crash-test")
	const budget = 5.0
	tok, err := admin.Issue(ctx, gateway.TokenRequest{Sandbox: "crash", BudgetUSD: budget, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	post := func(ctx context.Context, stream bool) (*http.Response, error) {
		body := `{"model":"claude-sonnet-5-5","max_tokens":20000,"messages":[{"role":"user","content":"hi"}]}`
		if stream {
			body = strings.Replace(body, `"max_tokens"`, `"stream":true,"max_tokens"`, 1)
		}
		req, _ := http.NewRequestWithContext(ctx, "POST", gw.data+"/v1/messages", strings.NewReader(body))
		req.Header.Set("x-api-key", tok.Token)
		req.Header.Set("anthropic-version", "2023-06-01")
		return http.DefaultClient.Do(req)
	}
	// Three streams open at the crash.
	const streams, finished = 3, 20
	for i := 0; i < streams; i++ {
		resp, err := post(ctx, true)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("stream %d: %v %v", i, resp, err)
		}
		br := bufio.NewReader(resp.Body)
		if l, _ := br.ReadString('\n'); l != "event: message_start\n" {
			t.Fatalf("stream %d: %q", i, l)
		}
		defer resp.Body.Close()
	}
	// Twenty finished requests, the last ones within the ledger's batch
	// window of the crash.
	for i := 0; i < finished; i++ {
		resp, err := post(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
	gw.cmd.Process.Signal(syscall.SIGKILL)
	gw.cmd.Wait()
	release()

	gw2 := startGatewayProc(t, home, up.URL)
	admin2 := gateway.NewAdminClient(gw2.admin, "admin-crash-test")
	us, err := admin2.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 1 {
		t.Fatalf("usage = %+v", us)
	}
	p := prices.Default()["claude-sonnet-5-5"]
	exact := p.Cost(gateway.Usage{InputTokens: 30, OutputTokens: 100})
	if us[0].Requests != streams+finished {
		t.Errorf("ledger has %d requests after kill -9 and restart; want %d (%d finished + %d open streams)", us[0].Requests, streams+finished, finished, streams)
	}
	// Each open stream is charged at least its max_tokens of output.
	if min := float64(finished)*exact + streams*p.Cost(gateway.Usage{OutputTokens: 20000}); us[0].CostUSD < min-1e-9 {
		t.Errorf("ledger $%.4f; want at least $%.4f (finished exactly, open streams at their reservation)", us[0].CostUSD, min)
	}
	if us[0].OutputTokens < finished*100+streams*20000 {
		t.Errorf("output tokens %d; want at least %d", us[0].OutputTokens, finished*100+streams*20000)
	}
}
