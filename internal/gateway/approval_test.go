package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/protocol"
)

func TestWriteAction(t *testing.T) {
	cases := []struct {
		route, method, path, body string
		want                      string // "" = not held
	}{
		{"hf", "GET", "/hf/api/models/you/m", "", ""},
		{"hf", "HEAD", "/hf/you/m/resolve/main/config.json", "", ""},
		{"hf", "POST", "/hf/api/models/you/m/commit/main", "{}", "hub:push you/m"},
		{"hf", "POST", "/hf/api/datasets/you/d/commit/main", "{}", "hub:push datasets/you/d"},
		{"hf", "POST", "/hf/api/models/gpt2/commit/main", "{}", "hub:push gpt2"},
		{"hf", "POST", "/hf/api/models/you/m/preupload/main", "{}", ""},
		{"hf", "POST", "/hf/api/datasets/you/d/paths-info/main", "{}", ""},
		{"hf", "POST", "/hf/api/repos/create", `{"name":"m","organization":"you"}`, "hub:create you/m"},
		{"hf", "POST", "/hf/api/repos/create", `{"name":"d","organization":"you","type":"dataset"}`, "hub:create datasets/you/d"},
		{"hf", "DELETE", "/hf/api/repos/delete", `{"name":"m","organization":"you"}`, "hub:delete you/m"},
		{"hf", "POST", "/hf/api/repos/move", `{"fromRepo":"you/a","toRepo":"you/b"}`, "hub:move you/a"},
		{"hf", "PUT", "/hf/api/models/you/m/settings", `{"private":false}`, "hub:write you/m"},
		{"hf", "POST", "/hf/api/spaces/you/s/restart", "", "hub:write spaces/you/s"},
		{"hf", "POST", "/hf/you/m.git/info/lfs/objects/batch", "{}", ""},
		{"hf", "POST", "/hf/you/m.git/git-receive-pack", "", "hub:push you/m"},
		{"hf", "POST", "/hf/datasets/you/d.git/git-receive-pack", "", "hub:push datasets/you/d"},
		{"hf", "POST", "/hf/api/collections", "{}", "hub:write"},
		{"git", "GET", "/git/github.com/o/r.git/info/refs", "", ""},
		{"git", "POST", "/git/github.com/o/r.git/git-upload-pack", "", ""},
		{"git", "POST", "/git/github.com/o/r.git/git-receive-pack", "", "git:push github.com/o/r"},
		{"git", "POST", "/git/github.com/o/r/git-receive-pack", "", "git:push github.com/o/r"},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
		a, ok := writeAction(c.route, r)
		got := ""
		if ok {
			got = a.String()
		}
		if got != c.want {
			t.Errorf("%s %s: got %q; want %q", c.method, c.path, got, c.want)
		}
		if b, _ := io.ReadAll(r.Body); string(b) != c.body {
			t.Errorf("%s %s: the body left for the upstream is %q; want %q", c.method, c.path, b, c.body)
		}
	}
}

// fakeApprover is the person: each action waits until the test decides.
type fakeApprover struct {
	asked     chan protocol.Action
	decisions chan error
}

func (f *fakeApprover) Approve(ctx context.Context, a protocol.Action) error {
	f.asked <- a
	select {
	case err := <-f.decisions:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestApprovalHold: a Hub write reaches the Hub only after it is
// approved; a denied one never does, and the caller reads why; reads and
// tokens without an approver are not held.
func TestApprovalHold(t *testing.T) {
	var hits atomic.Int64
	var mu sync.Mutex
	var paths []string
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.Path)
		mu.Unlock()
		io.WriteString(w, `{"commitUrl":"https://huggingface.co/you/m/commit/1"}`)
	}))
	defer hub.Close()
	e := newEnv(t, nil, func(c *Config) { c.HFUpstream = hub.URL })
	held := e.issue(t, TokenRequest{Sandbox: "held"})
	free := e.issue(t, TokenRequest{Sandbox: "free"})
	ap := &fakeApprover{asked: make(chan protocol.Action, 1), decisions: make(chan error, 1)}
	e.g.SetApprover(held.ID, ap)

	do := func(tok, method, path string) (int, string, string) {
		req, _ := http.NewRequest(method, e.data.URL+path, strings.NewReader(`{"summary":"x"}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0, "", ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Error-Message"), string(b)
	}

	// Approved: held until the decision, then forwarded.
	type result struct {
		code      int
		hdr, body string
	}
	done := make(chan result, 1)
	go func() {
		c, h, b := do(held.Token, "POST", "/hf/api/models/you/m/commit/main")
		done <- result{c, h, b}
	}()
	a := <-ap.asked
	if a.String() != "hub:push you/m" || a.Detail != "POST /hf/api/models/you/m/commit/main" {
		t.Errorf("asked about %+v; want hub:push you/m", a)
	}
	// The front end shows the request as the gateway holds it.
	hubHost := strings.TrimPrefix(hub.URL, "http://")
	if want := (protocol.HeldRequest{Method: "POST", Host: hubHost, Path: "/api/models/you/m/commit/main", Size: 15}); a.Request == nil || *a.Request != want {
		t.Errorf("held request %+v; want %+v", a.Request, want)
	}
	time.Sleep(100 * time.Millisecond)
	if n := hits.Load(); n != 0 {
		t.Fatalf("the Hub got %d requests before the write was approved", n)
	}
	ap.decisions <- nil
	if r := <-done; r.code != 200 || hits.Load() != 1 {
		t.Fatalf("approved: status %d, %d hub requests; want 200 and 1: %s", r.code, hits.Load(), r.body)
	}

	// Denied: never forwarded, and the reason comes back.
	go func() {
		c, h, b := do(held.Token, "POST", "/hf/api/repos/create")
		done <- result{c, h, b}
	}()
	if a := <-ap.asked; a.Kind != "hub:create" {
		t.Errorf("asked about %+v; want hub:create", a)
	}
	ap.decisions <- errors.New("denied: not now")
	r := <-done
	if r.code != 403 || !strings.Contains(r.body, "was not approved by the user: denied: not now") || !strings.Contains(r.hdr, "hub:create") {
		t.Errorf("denied: got %d %q %q; want 403 naming the action and the reason", r.code, r.hdr, r.body)
	}
	if hits.Load() != 1 {
		t.Errorf("a denied write reached the Hub")
	}

	// A read is not held; nor is a token without an approver.
	if c, _, _ := do(held.Token, "GET", "/hf/api/models/you/m"); c != 200 {
		t.Errorf("read: status %d", c)
	}
	if c, _, _ := do(free.Token, "POST", "/hf/api/models/you/m/commit/main"); c != 200 {
		t.Errorf("unheld token: status %d", c)
	}
	select {
	case a := <-ap.asked:
		t.Errorf("asked about %v; want no question for a read or another token", a)
	default:
	}

	// The caller giving up withdraws the question.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "DELETE", e.data.URL+"/hf/api/repos/delete", strings.NewReader(`{"name":"m","organization":"you"}`))
		req.Header.Set("Authorization", "Bearer "+held.Token)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		done <- result{}
	}()
	<-ap.asked
	cancel()
	<-done
	if hits.Load() != 3 {
		t.Errorf("the Hub got %d requests; want 3 (the approved write, the read, the unheld token)", hits.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range paths {
		if strings.Contains(p, "repos") {
			t.Errorf("a refused or withdrawn write reached the Hub: %s", p)
		}
	}
}
