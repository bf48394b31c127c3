package gateway

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/mlagent/mlagent/internal/fakeapi"
	"github.com/mlagent/mlagent/internal/prices"
	"github.com/mlagent/mlagent/internal/store"
	"github.com/mlagent/mlagent/internal/syncbuf"
)

const (
	realKey   = "sk-ant-REAL-KEY-must-never-leak-0123456789"
	realHF    = "hf_REAL_TOKEN_must_never_leak"
	realGH    = "ghp_REAL_TOKEN_must_never_leak"
	adminTest = "admin-test-token"
)

type env struct {
	g        *Gateway
	up       *fakeapi.Server
	data     *httptest.Server
	admin    *httptest.Server
	audit    *syncbuf.Buffer
	logs     *syncbuf.Buffer
	db       *store.DB
	adminCli *AdminClient
}

func newEnv(t *testing.T, resp fakeapi.Responder, mod func(*Config)) *env {
	t.Helper()
	ctx := context.Background()
	up := fakeapi.Start(fakeapi.Options{APIKey: realKey, Responder: resp})
	t.Cleanup(up.Close)
	db, err := store.OpenMemory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{up: up, audit: &syncbuf.Buffer{}, logs: &syncbuf.Buffer{}, db: db}
	cfg := Config{
		Upstream: up.URL(), APIKey: realKey, HFToken: realHF, GitHubToken: realGH,
		DB: db, Audit: e.audit, Log: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	g, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.g = g
	e.data = httptest.NewServer(g.DataHandler())
	e.admin = httptest.NewServer(g.AdminHandler(adminTest))
	e.adminCli = NewAdminClient(e.admin.URL, adminTest)
	t.Cleanup(func() {
		e.data.Close()
		e.admin.Close()
		g.Close()
		// Whatever the test did, no secret reached the logs or audit.
		for _, s := range []string{realKey, realHF, realGH} {
			if strings.Contains(e.logs.String(), s) || strings.Contains(e.audit.String(), s) {
				t.Errorf("a real secret leaked into the logs or audit log")
			}
		}
	})
	return e
}

func (e *env) issue(t *testing.T, r TokenRequest) IssuedToken {
	t.Helper()
	if r.TTL == 0 {
		r.TTL = time.Hour
	}
	it, err := e.adminCli.Issue(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return it
}

func (e *env) client(tok string) anthropic.Client {
	return anthropic.NewClient(option.WithBaseURL(e.data.URL), option.WithAPIKey(tok), option.WithMaxRetries(0))
}

func (e *env) post(t *testing.T, path string, hdr map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", e.data.URL+path, strings.NewReader(body))
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("content-type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(b), realKey) {
		t.Fatalf("response body holds the real key")
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			if strings.Contains(v, realKey) {
				t.Fatalf("response header %s holds the real key", k)
			}
		}
	}
	return resp, string(b)
}

func userMsg(s string) []anthropic.MessageParam {
	return []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(s))}
}

func TestSDKThroughGateway(t *testing.T) {
	script := &fakeapi.Script{Steps: []func(*fakeapi.Request) *fakeapi.Reply{
		func(*fakeapi.Request) *fakeapi.Reply {
			r := fakeapi.ToolCalls("Listing.", fakeapi.ToolUse("toolu_1", "bash", map[string]any{"cmd": "ls"}))
			r.Content = append([]fakeapi.ReplyBlock{fakeapi.Thinking("plan: list", "sig")}, r.Content...)
			return r
		},
		func(r *fakeapi.Request) *fakeapi.Reply {
			return fakeapi.Text("files: " + r.ToolResultText(r.LastToolResults()[0]))
		},
		func(*fakeapi.Request) *fakeapi.Reply {
			return &fakeapi.Reply{Status: 429, ErrorMessage: "slow down",
				Header: http.Header{"Retry-After": {"7"}, "Anthropic-Ratelimit-Requests-Remaining": {"0"}}}
		},
	}}
	e := newEnv(t, script, nil)
	tok := e.issue(t, TokenRequest{Sandbox: "a"})
	c := e.client(tok.Token)
	ctx := context.Background()

	stream := c.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: "claude-sonnet-5-5", MaxTokens: 200, Messages: userMsg("list")})
	var msg anthropic.Message
	for stream.Next() {
		if err := msg.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) != 3 || msg.Content[0].Signature != "sig" || string(msg.Content[2].Input) != `{"cmd":"ls"}` {
		t.Fatalf("accumulated %+v", msg.Content)
	}
	next, err := c.Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-sonnet-5-5", MaxTokens: 200,
		Messages: append(userMsg("list"), msg.ToParam(), anthropic.NewUserMessage(anthropic.NewToolResultBlock("toolu_1", "a.txt", false)))})
	if err != nil {
		t.Fatal(err)
	}
	if got := next.Content[0].Text; got != "files: a.txt" {
		t.Errorf("got %q; want files: a.txt", got)
	}

	_, err = c.Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-sonnet-5-5", MaxTokens: 10, Messages: userMsg("x")})
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 {
		t.Fatalf("got %v; want a typed 429", err)
	}
	if got := apiErr.Response.Header.Get("Retry-After"); got != "7" {
		t.Errorf("retry-after = %q; want 7", got)
	}
	if apiErr.Response.Header.Get("Anthropic-Ratelimit-Requests-Remaining") != "0" || apiErr.RequestID == "" {
		t.Errorf("rate-limit or request-id header lost: %v", apiErr.Response.Header)
	}

	count, err := c.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{Model: "claude-sonnet-5-5", Messages: userMsg(strings.Repeat("word ", 100))})
	if err != nil || count.InputTokens < 100 {
		t.Fatalf("count_tokens = %v, %v", count, err)
	}
	models, err := c.Models.List(ctx, anthropic.ModelListParams{})
	if err != nil || len(models.Data) == 0 {
		t.Fatalf("models = %v, %v", models, err)
	}

	bad := e.client("mlat_not-a-token")
	_, err = bad.Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-sonnet-5-5", MaxTokens: 10, Messages: userMsg("x")})
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || !strings.Contains(err.Error(), "authentication_error") {
		t.Fatalf("got %v; want a typed 401 authentication_error", err)
	}

	us, err := e.g.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 1 || us[0].Requests != 5 || us[0].OutputTokens == 0 || us[0].CostUSD <= 0 {
		t.Errorf("usage = %+v; want 5 requests with output and cost", us)
	}
}

func TestStreamVerbatim(t *testing.T) {
	reply := func(*fakeapi.Request) *fakeapi.Reply {
		return &fakeapi.Reply{Content: []fakeapi.ReplyBlock{{Type: "text", Text: "hello world"}}, ErrorEventAfter: 4}
	}
	e := newEnv(t, fakeapi.ResponderFunc(reply), nil)
	tok := e.issue(t, TokenRequest{Sandbox: "a"})
	body := `{"model":"claude-haiku-4-5","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	resp, got := e.post(t, "/v1/messages?beta=true", map[string]string{"x-api-key": tok.Token}, body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	var events []string
	for _, l := range strings.Split(got, "\n") {
		if ev, ok := strings.CutPrefix(l, "event: "); ok {
			events = append(events, ev)
		}
	}
	if g, w := strings.Join(events, ","), "message_start,ping,content_block_start,content_block_delta,error"; g != w {
		t.Errorf("events = %s; want %s", g, w)
	}
	if !strings.Contains(got, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n") {
		t.Errorf("error event not passed verbatim:\n%s", got)
	}
	if err := e.g.flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var rec record
	json.Unmarshal([]byte(strings.TrimSpace(e.audit.String())), &rec)
	if !strings.HasPrefix(rec.Error, "overloaded_error; incomplete reply: charged 4 output tokens") || rec.Model != "claude-haiku-4-5" || rec.Usage == nil || rec.Usage.InputTokens == 0 || rec.TokenID != tok.ID {
		t.Errorf("audit = %s", e.audit.String())
	}
}

func TestCredentialSwapAndSpoofing(t *testing.T) {
	e := newEnv(t, nil, nil)
	tok := e.issue(t, TokenRequest{Sandbox: "a"})
	body := `{"model":"claude-sonnet-5-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
	tests := []struct {
		name   string
		hdr    map[string]string
		status int
	}{
		{"token in x-api-key", map[string]string{"x-api-key": tok.Token, "Cookie": "s=1", "Proxy-Authorization": "Basic eDp5"}, 200},
		{"token as bearer", map[string]string{"Authorization": "Bearer " + tok.Token}, 200},
		{"real key in x-api-key", map[string]string{"x-api-key": realKey}, 401},
		{"real key as bearer", map[string]string{"Authorization": "Bearer " + realKey}, 401},
		{"real key beside a token", map[string]string{"x-api-key": realKey, "Authorization": "Bearer " + tok.Token}, 401},
		{"no credential", nil, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.up.Requests())
			resp, got := e.post(t, "/v1/messages", tc.hdr, body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d (%s); want %d", resp.StatusCode, got, tc.status)
			}
			reqs := e.up.Requests()
			if tc.status != 200 {
				if len(reqs) != before {
					t.Fatalf("a refused request was forwarded")
				}
				if !strings.Contains(got, `"authentication_error"`) || strings.Contains(got, tok.Token) {
					t.Errorf("body = %s", got)
				}
				return
			}
			h := reqs[len(reqs)-1].Header
			if h.Get("X-Api-Key") != realKey {
				t.Errorf("upstream x-api-key is not the real key")
			}
			for _, k := range []string{"Authorization", "Cookie", "Proxy-Authorization"} {
				if h.Get(k) != "" {
					t.Errorf("upstream got %s", k)
				}
			}
			for k, vs := range h {
				if strings.Contains(strings.Join(vs, " "), tok.Token) {
					t.Errorf("sandbox token forwarded upstream in %s", k)
				}
			}
		})
	}
}

func TestRoutesAndLimits(t *testing.T) {
	var seen atomic.Value
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Method + " " + r.URL.RequestURI() + " v=" + r.Header.Get("anthropic-version") + " b=" + r.Header.Get("anthropic-beta"))
		w.Header().Set("request-id", "req_1")
		io.WriteString(w, `{"data":[]}`)
	}))
	defer up.Close()
	e := newEnv(t, nil, func(c *Config) { c.Upstream = up.URL })
	tok := e.issue(t, TokenRequest{Sandbox: "a"})
	auth := map[string]string{"x-api-key": tok.Token, "anthropic-beta": "tools-2024"}

	resp, _ := e.post(t, "/v1/messages?beta=true", auth, `{}`)
	if got, want := seen.Load(), "POST /v1/messages?beta=true v=2023-06-01 b=tools-2024"; got != want || resp.Header.Get("request-id") != "req_1" {
		t.Errorf("upstream saw %q; want %q", got, want)
	}
	for _, p := range []string{"/v1/complete", "/v1/messages/batches", "/admin", "/"} {
		resp, body := e.post(t, p, auth, `{}`)
		if resp.StatusCode != 404 || !strings.Contains(body, "not_found_error") {
			t.Errorf("POST %s = %d %s; want 404 not_found_error", p, resp.StatusCode, body)
		}
	}
	big := strings.Repeat("x", MaxRequestBody+1)
	for _, budget := range []float64{0, 5} {
		tk := e.issue(t, TokenRequest{Sandbox: "big", BudgetUSD: budget})
		resp, body := e.post(t, "/v1/messages", map[string]string{"x-api-key": tk.Token}, big)
		if resp.StatusCode != 413 || !strings.Contains(body, "request_too_large") {
			t.Errorf("budget %v: %d %s; want 413 request_too_large", budget, resp.StatusCode, body)
		}
	}
}

func TestRevokeAndExpiry(t *testing.T) {
	e := newEnv(t, nil, nil)
	ctx := context.Background()
	tok := e.issue(t, TokenRequest{Sandbox: "a"})
	c := e.client(tok.Token)
	params := anthropic.MessageNewParams{Model: "claude-sonnet-5-5", MaxTokens: 5, Messages: userMsg("hi")}
	if _, err := c.Messages.New(ctx, params); err != nil {
		t.Fatal(err)
	}
	if err := e.adminCli.Revoke(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Messages.New(ctx, params); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("after revoke: %v; want 401", err)
	}
	stream := c.Messages.NewStreaming(ctx, params)
	for stream.Next() {
	}
	if stream.Err() == nil {
		t.Fatal("a stream started after revoke was served")
	}
	if err := e.adminCli.Revoke(ctx, "tok_nope"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("revoke unknown = %v; want 404", err)
	}
	short := e.issue(t, TokenRequest{Sandbox: "b", TTL: time.Millisecond})
	time.Sleep(5 * time.Millisecond)
	sc := e.client(short.Token)
	if _, err := sc.Messages.New(ctx, params); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("expired token: %v; want 401", err)
	}
	// A second gateway on the same store (another process) honours both.
	g2, err := New(ctx, Config{Upstream: e.up.URL(), APIKey: realKey, DB: e.db})
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	if _, err := g2.lookup(ctx, tok.Token); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("revoked token in a fresh gateway: %v; want ErrUnknownToken", err)
	}
}

// TestBudgetParallel fires 100 requests at once at a token whose budget
// covers about 6; the upstream holds every admitted request until all
// others were answered, so all 100 are in flight together.
func TestBudgetParallel(t *testing.T) {
	const n = 100
	var arrived, refused atomic.Int64
	release := make(chan struct{})
	var once sync.Once
	check := func() {
		if arrived.Load()+refused.Load() == n {
			once.Do(func() { close(release) })
		}
	}
	resp := fakeapi.ResponderFunc(func(*fakeapi.Request) *fakeapi.Reply {
		arrived.Add(1)
		check()
		<-release
		return &fakeapi.Reply{Content: []fakeapi.ReplyBlock{{Type: "text", Text: "ok"}},
			Usage: &fakeapi.Usage{InputTokens: 40, OutputTokens: 1000}}
	})
	e := newEnv(t, resp, nil)
	const budget = 0.1
	cost := prices.Default().Lookup("claude-sonnet-5-5").Cost(Usage{InputTokens: 40, OutputTokens: 1000})
	a := e.issue(t, TokenRequest{Sandbox: "a", BudgetUSD: budget})
	b := e.issue(t, TokenRequest{Sandbox: "b", BudgetUSD: budget})
	body := `{"model":"claude-sonnet-5-5","max_tokens":1000,"messages":[{"role":"user","content":"hi"}]}`
	var ok, forbidden atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, got := e.post(t, "/v1/messages", map[string]string{"x-api-key": a.Token}, body)
			switch resp.StatusCode {
			case 200:
				ok.Add(1)
			case 403:
				if !strings.Contains(got, "permission_error") || !strings.Contains(got, "budget_usd") {
					t.Errorf("403 body = %s", got)
				}
				forbidden.Add(1)
				refused.Add(1)
				check()
			default:
				t.Errorf("status %d: %s", resp.StatusCode, got)
				refused.Add(1)
				check()
			}
		}()
	}
	wg.Wait()
	if ok.Load()+forbidden.Load() != n || arrived.Load() != ok.Load() {
		t.Fatalf("ok=%d forbidden=%d arrived upstream=%d", ok.Load(), forbidden.Load(), arrived.Load())
	}
	us, err := e.g.Usage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	spent := map[string]float64{}
	for _, u := range us {
		spent[u.Sandbox] = u.CostUSD
	}
	if spent["a"] > budget+cost {
		t.Errorf("spent $%.4f of a $%.2f budget; overshoot is more than one request ($%.4f)", spent["a"], budget, cost)
	}
	if int(ok.Load()) < int(budget/cost) {
		t.Errorf("only %d requests admitted; the budget covers %d", ok.Load(), int(budget/cost))
	}
	// Spent now: A is refused, B (another sandbox) is untouched.
	if resp, got := e.post(t, "/v1/messages", map[string]string{"x-api-key": a.Token}, body); resp.StatusCode != 403 {
		t.Errorf("A after budget: %d %s; want 403", resp.StatusCode, got)
	}
	if spent["b"] != 0 {
		t.Errorf("sandbox b was charged $%v", spent["b"])
	}
	arrived.Store(-1 << 40) // later requests pass straight through
	if resp, got := e.post(t, "/v1/messages", map[string]string{"x-api-key": b.Token}, body); resp.StatusCode != 200 {
		t.Errorf("B: %d %s; want 200", resp.StatusCode, got)
	}
}

func TestTokenBudget(t *testing.T) {
	e := newEnv(t, fakeapi.ResponderFunc(func(*fakeapi.Request) *fakeapi.Reply {
		return &fakeapi.Reply{Content: []fakeapi.ReplyBlock{{Type: "text", Text: "ok"}},
			Usage: &fakeapi.Usage{InputTokens: 100, OutputTokens: 100, CacheReadInputTokens: 50}}
	}), nil)
	tok := e.issue(t, TokenRequest{Sandbox: "a", BudgetTokens: 500})
	body := `{"model":"claude-haiku-4-5","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`
	var codes []int
	for i := 0; i < 4; i++ {
		resp, _ := e.post(t, "/v1/messages", map[string]string{"x-api-key": tok.Token}, body)
		codes = append(codes, resp.StatusCode)
	}
	if fmt.Sprint(codes) != "[200 200 403 403]" {
		t.Errorf("codes = %v; want [200 200 403 403] (250 tokens each, budget 500)", codes)
	}
	resp, got := e.post(t, "/v1/messages/count_tokens", map[string]string{"x-api-key": tok.Token}, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 403 || !strings.Contains(got, "budget_tokens") {
		t.Errorf("count_tokens after budget: %d %s", resp.StatusCode, got)
	}
}

func TestHFAndGitRoutes(t *testing.T) {
	var hfAuth, gitAuth, hfPath, gitPath atomic.Value
	hf := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hfAuth.Store(r.Header.Get("Authorization"))
		hfPath.Store(r.URL.RequestURI())
		if strings.HasPrefix(r.URL.Path, "/gpt2/resolve/") {
			w.Header().Set("Location", "/api/resolve-cache/models/gpt2/abc/config.json")
			w.WriteHeader(307)
			return
		}
		io.WriteString(w, `{"id":"gpt2"}`)
	}))
	defer hf.Close()
	gh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gitAuth.Store(r.Header.Get("Authorization"))
		gitPath.Store(r.URL.RequestURI())
		io.WriteString(w, "001e# service=git-upload-pack\n")
	}))
	defer gh.Close()
	e := newEnv(t, nil, func(c *Config) { c.HFUpstream = hf.URL; c.GitUpstream = gh.URL })
	tok := e.issue(t, TokenRequest{Sandbox: "a"})
	get := func(path string, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest("GET", e.data.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := get("/hf/api/models/gpt2?expand=x", map[string]string{"Authorization": "Bearer " + tok.Token})
	if resp.StatusCode != 200 || hfAuth.Load() != "Bearer "+realHF || hfPath.Load() != "/api/models/gpt2?expand=x" {
		t.Errorf("hf: %d auth ok=%v path=%v", resp.StatusCode, hfAuth.Load() == "Bearer "+realHF, hfPath.Load())
	}
	resp = get("/hf/gpt2/resolve/main/config.json", map[string]string{"Authorization": "Bearer " + tok.Token})
	if loc := resp.Header.Get("Location"); resp.StatusCode != 307 || loc != "/hf/api/resolve-cache/models/gpt2/abc/config.json" {
		t.Errorf("redirect = %d %q; want it kept under /hf", resp.StatusCode, loc)
	}
	if resp := get("/hf/api/models/gpt2", map[string]string{"Authorization": "Bearer " + realHF}); resp.StatusCode != 401 {
		t.Errorf("hf with the real token: %d; want 401", resp.StatusCode)
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("x:"+tok.Token))
	for _, h := range []string{"Bearer " + tok.Token, basic} {
		resp = get("/git/github.com/o/r.git/info/refs?service=git-upload-pack", map[string]string{"Authorization": h})
		wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+realGH))
		if resp.StatusCode != 200 || gitAuth.Load() != wantAuth || gitPath.Load() != "/o/r.git/info/refs?service=git-upload-pack" {
			t.Errorf("git: %d auth ok=%v path=%v", resp.StatusCode, gitAuth.Load() == wantAuth, gitPath.Load())
		}
	}
}

func TestConnectAllowlist(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	target := ln.Addr().String()
	e := newEnv(t, nil, func(c *Config) { c.Allow = []string{target, "*.hf.co"} })
	tok := e.issue(t, TokenRequest{Sandbox: "a"})
	connect := func(target, password string) (string, net.Conn) {
		c, err := net.Dial("tcp", strings.TrimPrefix(e.data.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		auth := ""
		if password != "" {
			auth = "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("mlagent:"+password)) + "\r\n"
		}
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", target, target, auth)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status, c
	}
	status, c := connect(target, tok.Token)
	if !strings.HasPrefix(status, "200") {
		t.Fatalf("allowed CONNECT: %s", status)
	}
	io.WriteString(c, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Errorf("tunnel echo = %q, %v", buf, err)
	}
	c.Close()
	for _, tc := range []struct{ target, pw, want string }{
		{"evil.example.com:443", tok.Token, "403"},
		{"hf.co.evil.com:443", tok.Token, "403"},
		{"cdn.hf.co:22", tok.Token, "403"},
		{target, "", "407"},
		{target, realKey, "407"},
	} {
		status, c := connect(tc.target, tc.pw)
		c.Close()
		if !strings.HasPrefix(status, tc.want) {
			t.Errorf("CONNECT %s: %s; want %s", tc.target, status, tc.want)
		}
	}
	e.g.flush(context.Background())
	if !strings.Contains(e.audit.String(), `"error":"egress to evil.example.com:443 is not on the allowlist"`) {
		t.Errorf("audit lacks the refusal reason:\n%s", e.audit.String())
	}
	pc, err := net.Dial("tcp", strings.TrimPrefix(e.data.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	io.WriteString(pc, "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(pc), nil)
	if err != nil || resp.StatusCode != 403 {
		t.Errorf("plain-HTTP proxy request: %v, %v; want 403", resp, err)
	}
}

func TestAdminAPI(t *testing.T) {
	e := newEnv(t, nil, nil)
	do := func(method, path, auth, body string) (int, string) {
		req, _ := http.NewRequest(method, e.admin.URL+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		name, method, path, auth, body string
		status                         int
	}{
		{"healthz", "GET", "/healthz", "", "", 200},
		{"no auth", "GET", "/v1/usage", "", "", 401},
		{"wrong auth", "POST", "/v1/tokens", "nope", `{"sandbox":"a"}`, 401},
		{"issue", "POST", "/v1/tokens", adminTest, `{"sandbox":"a","budget_usd":2.5,"budget_tokens":0,"ttl":"24h"}`, 201},
		{"unknown field", "POST", "/v1/tokens", adminTest, `{"sandbox":"a","budget":1}`, 400},
		{"bad ttl", "POST", "/v1/tokens", adminTest, `{"sandbox":"a","ttl":"forever"}`, 400},
		{"negative budget", "POST", "/v1/tokens", adminTest, `{"sandbox":"a","budget_usd":-1}`, 400},
		{"no sandbox", "POST", "/v1/tokens", adminTest, `{}`, 400},
		{"usage", "GET", "/v1/usage", adminTest, "", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := do(tc.method, tc.path, tc.auth, tc.body)
			if status != tc.status {
				t.Fatalf("status = %d (%s); want %d", status, body, tc.status)
			}
			if tc.name == "issue" {
				var out struct {
					ID, Token string
					ExpiresAt string `json:"expires_at"`
				}
				json.Unmarshal([]byte(body), &out)
				if !strings.HasPrefix(out.ID, "tok_") || len(out.Token) < 40 || out.ExpiresAt == "" {
					t.Errorf("issued %s", body)
				}
				// Only the hash is stored.
				var n int
				e.db.QueryRow(`SELECT count(*) FROM gateway_tokens WHERE instr(CAST(hash AS TEXT), ?) > 0 OR sandbox = ?`, out.Token, out.Token).Scan(&n)
				if n != 0 {
					t.Errorf("token stored in clear")
				}
				if strings.Contains(e.logs.String(), out.Token) {
					t.Errorf("token logged")
				}
			}
		})
	}
}

// TestPathTraversalRefused: a path that an upstream or a CDN in front of
// it could resolve elsewhere never leaves with a real credential. The
// requests are written by hand so no client cleans them first.
func TestPathTraversalRefused(t *testing.T) {
	var hits atomic.Int64
	count := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, `{}`)
	})
	up := httptest.NewServer(count)
	defer up.Close()
	e := newEnv(t, nil, func(c *Config) { c.Upstream = up.URL; c.HFUpstream = up.URL; c.GitUpstream = up.URL })
	tok := e.issue(t, TokenRequest{Sandbox: "a", BudgetUSD: 1})
	raw := func(target string) int {
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.data.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: gw\r\nX-Api-Key: %s\r\nAuthorization: Bearer %s\r\nAnthropic-Version: 2023-06-01\r\nConnection: close\r\n\r\n",
			target, tok.Token, tok.Token)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, target := range []string{
		"/v1/models/../files",
		"/v1/models/%2e%2e/messages/batches",
		"/v1/models/..%2f..%2fv1%2ffiles",
		"/v1/models/%252e%252e%252ffiles",
		`/v1/models/..\files`,
		"/v1/models/a/b",
		"/v1/models/./x",
		"/hf/api/../../v1/files",
		"/hf/%2E%2E/x",
		"/git/github.com/o/r.git/../../../x",
	} {
		if code := raw(target); code < 400 || code >= 500 {
			t.Errorf("GET %s: status %d; want it refused", target, code)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("%d refused requests reached an upstream", n)
	}
	if code := raw("/v1/models/claude-sonnet-5-5"); code != 200 || hits.Load() != 1 {
		t.Errorf("GET a model: status %d, %d upstream hits; want 200 and 1", code, hits.Load())
	}
	if code := raw("/hf/api/models/org/name/revision/refs%2Fpr%2F1"); code != 200 || hits.Load() != 2 {
		t.Errorf("GET an HF revision with an encoded slash: status %d; want it forwarded", code)
	}
}
