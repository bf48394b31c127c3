package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/mlagent/mlagent/internal/protocol"
)

// A service route swaps the sandbox token for the service's credential,
// forwards reads, refuses writes nobody approved before they reach the
// upstream, and forwards pre-approved or approved ones.
func TestServiceRoute(t *testing.T) {
	const realSvc = "svc-REAL-credential-9d8e"
	var mu sync.Mutex
	var seen []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.RequestURI()+" auth="+r.Header.Get("Authorization")+" cookie="+r.Header.Get("Cookie")+" body="+string(body))
		mu.Unlock()
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/items/1", http.StatusFound)
			return
		}
		w.Write([]byte(`{"id":"new-1"}`))
	}))
	defer up.Close()
	var observed []string
	ap := &recordingApprover{}
	svc := Service{
		Name: "svc", Upstream: up.URL,
		Credential: func(context.Context) (string, error) { return "Bearer " + realSvc, nil },
		Classify: func(method, p string, body []byte) Access {
			switch {
			case method == http.MethodGet && (strings.HasPrefix(p, "/items") || p == "/redirect"):
				return AccessRead
			case strings.HasPrefix(p, "/items"):
				return AccessWrite
			}
			return AccessNone
		},
		PreApproved: func(tokenID, method, p string, body []byte) bool { return p == "/items/mine" },
		Describe: func(method, p string, body []byte) protocol.Action {
			return protocol.Action{Kind: "svc:write", Target: string(body), Detail: method + " " + p}
		},
		Observe: func(tokenID, method, p string, status int, body []byte) {
			mu.Lock()
			observed = append(observed, method+" "+p+" "+string(body))
			mu.Unlock()
		},
	}
	off := Service{Name: "off", Upstream: up.URL, Classify: svc.Classify, NotConfigured: "Off is not connected; run X",
		Credential: func(context.Context) (string, error) { return "", ErrNotConfigured }}
	broken := Service{Name: "broken", Upstream: up.URL, Classify: svc.Classify,
		Credential: func(context.Context) (string, error) {
			return "", errors.New("oauth2: refresh failed: invalid_grant-DETAIL")
		}}
	e := newEnv(t, nil, func(c *Config) {
		c.Services = []Service{svc, off, broken}
	})
	issued := e.issue(t, TokenRequest{Sandbox: "s1"})
	tok := issued.Token
	e.g.SetApprover(issued.ID, ap)

	do := func(method, path, body string, h map[string]string) (int, string) {
		req, _ := http.NewRequest(method, e.data.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if loc := resp.Header.Get("Location"); loc != "" {
			return resp.StatusCode, "Location: " + loc
		}
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		name, method, path, body string
		wantStatus               int
		wantBody                 string // substring
		wantUpstream             bool
	}{
		{"read", "GET", "/svc/items/1?x=1", "", 200, `"new-1"`, true},
		{"redirect stays on the gateway", "GET", "/svc/redirect", "", 302, "Location: /svc/items/1", true},
		{"unknown path", "GET", "/svc/admin", "", 404, "not a request the svc route serves", false},
		{"write refused", "POST", "/svc/items", `{"a":1}`, 403, "the user said no", false},
		{"write approved", "POST", "/svc/items", `{"please":1}`, 200, `"new-1"`, true},
		{"write pre-approved", "PATCH", "/svc/items/mine", `{}`, 200, `"new-1"`, true},
		{"not configured", "GET", "/off/items/1", "", 503, "Off is not connected; run X", false},
		{"credential error not echoed", "GET", "/broken/items/1", "", 503, "broken credential unavailable", false},
	}
	for _, tt := range tests {
		mu.Lock()
		before := len(seen)
		mu.Unlock()
		status, body := do(tt.method, tt.path, tt.body, map[string]string{"Cookie": "session=spoof"})
		mu.Lock()
		reached := len(seen) > before
		mu.Unlock()
		if status != tt.wantStatus || !strings.Contains(body, tt.wantBody) || reached != tt.wantUpstream {
			t.Errorf("%s: got %d %q, upstream reached %v; want %d %q, %v", tt.name, status, body, reached, tt.wantStatus, tt.wantBody, tt.wantUpstream)
		}
		if strings.Contains(body, realSvc) || strings.Contains(body, "invalid_grant-DETAIL") {
			t.Errorf("%s: the reply holds the real credential or a token endpoint's error", tt.name)
		}
	}
	// A read carrying a method override: Google's front ends honour
	// X-HTTP-Method-Override, so a "GET" classified as a read could act
	// as the method named there. Refused, not forwarded.
	for _, h := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
		mu.Lock()
		before := len(seen)
		mu.Unlock()
		status, body := do("GET", "/svc/items/1", "", map[string]string{h: "DELETE"})
		mu.Lock()
		reached := len(seen) > before
		mu.Unlock()
		if status != http.StatusBadRequest || !strings.Contains(body, "method override") || reached {
			t.Errorf("GET with %s: DELETE: got %d %q, upstream reached %v; want 400 naming the header, not forwarded", h, status, body, reached)
		}
	}
	for _, s := range seen {
		if !strings.Contains(s, "auth=Bearer "+realSvc) || strings.Contains(s, tok) || strings.Contains(s, "spoof") {
			t.Errorf("upstream saw %q; want the real credential only, no sandbox token, no cookie", s)
		}
	}
	held := &protocol.HeldRequest{Method: "POST", Host: strings.TrimPrefix(up.URL, "http://"), Path: "/items", Size: 7}
	if len(ap.asked) != 2 || ap.asked[0].Request == nil || *ap.asked[0].Request != *held {
		t.Errorf("the held request shown: %+v; want the gateway's view %+v", ap.asked, held)
	} else {
		ap.asked[0].Request = nil
	}
	if len(ap.asked) != 2 || ap.asked[0] != (protocol.Action{Kind: "svc:write", Target: `{"a":1}`, Detail: "POST /items"}) {
		t.Errorf("approvals asked = %+v; want the two writes policy did not pre-approve, described", ap.asked)
	}
	if len(observed) != 2 || observed[0] != `POST /items {"id":"new-1"}` {
		t.Errorf("observed = %q; want the forwarded writes' replies", observed)
	}
	// No token, or the real credential presented as a token: 401, nothing forwarded.
	for _, auth := range []string{"", "Bearer " + realSvc} {
		req, _ := http.NewRequest("GET", e.data.URL+"/svc/items/1", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("auth %q: got %d; want 401", auth, resp.StatusCode)
		}
	}
	e.g.flush(context.Background())
	if strings.Contains(e.logs.String(), realSvc) || strings.Contains(e.audit.String(), realSvc) {
		t.Error("the service credential leaked into the logs or audit log")
	}
	if !strings.Contains(e.audit.String(), `"route":"svc"`) {
		t.Error("service calls are not in the audit log")
	}
}

type recordingApprover struct {
	mu    sync.Mutex
	asked []protocol.Action
}

func (a *recordingApprover) Approve(ctx context.Context, act protocol.Action) error {
	a.mu.Lock()
	a.asked = append(a.asked, act)
	a.mu.Unlock()
	if strings.Contains(act.Target, "please") {
		return nil
	}
	return errors.New("the user said no")
}

// Without an approver every write that policy did not pre-approve is
// refused, and the error says why.
func TestServiceWriteWithoutApprover(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Errorf("upstream reached: %s %s", r.Method, r.URL) }))
	defer up.Close()
	e := newEnv(t, nil, func(c *Config) {
		c.Services = []Service{{Name: "svc", Upstream: up.URL,
			Credential: func(context.Context) (string, error) { return "Bearer x", nil },
			Classify:   func(string, string, []byte) Access { return AccessWrite }}}
	})
	tok := e.issue(t, TokenRequest{Sandbox: "s1"}).Token
	req, _ := http.NewRequest("DELETE", e.data.URL+"/svc/files/1", nil)
	req.Header.Set("x-api-key", tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(b), "need the user's approval") || !strings.Contains(string(b), "DELETE /svc/files/1") ||
		!strings.Contains(resp.Header.Get("X-Error-Message"), "not approved") {
		t.Errorf("got %d %s; want 403 naming the write and the approval", resp.StatusCode, b)
	}
}

func TestServiceNamesChecked(t *testing.T) {
	for _, name := range []string{"", "hf", "v1", "Bad", "a/b"} {
		_, err := (&Gateway{}).newServices([]Service{{Name: name, Upstream: "https://x", Credential: func(context.Context) (string, error) { return "", nil }, Classify: func(string, string, []byte) Access { return AccessRead }}})
		if err == nil {
			t.Errorf("service name %q accepted", name)
		}
	}
}
