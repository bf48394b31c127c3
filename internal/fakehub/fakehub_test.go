package fakehub

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

const token = "hf_test"

func do(t *testing.T, h *Hub, method, path, tok, ctype, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, h.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The fake refuses what the Hub refuses.
func TestStrict(t *testing.T) {
	h := Start(Options{Token: token, Models: []Repo{{ID: "a/m"}}})
	defer h.Close()
	for _, tc := range []struct {
		name, method, path, tok, ctype, body string
		code                                 int
	}{
		{"anonymous read", "GET", "/api/models", "", "", "", 200},
		{"wrong token", "GET", "/api/models", "other", "", "", 401},
		{"bad sort", "GET", "/api/models?sort=stars", token, "", "", 400},
		{"bad limit", "GET", "/api/models?limit=0", token, "", "", 400},
		{"bad direction", "GET", "/api/models?direction=up", token, "", "", 400},
		{"write without a token", "POST", "/api/repos/create", "", "application/json", `{"name":"x","organization":"y"}`, 401},
		{"unknown field", "POST", "/api/repos/create", token, "application/json", `{"name":"x","organization":"y","color":"red"}`, 400},
		{"not json", "POST", "/api/repos/create", token, "text/plain", `{"name":"x","organization":"y"}`, 400},
		{"bad name", "POST", "/api/repos/create", token, "application/json", `{"name":"../x","organization":"y"}`, 400},
		{"space without sdk", "POST", "/api/repos/create", token, "application/json", `{"type":"space","name":"x","organization":"y"}`, 400},
		{"commit to a missing repo", "POST", "/api/models/y/none/commit/main", token, "application/x-ndjson",
			`{"key":"header","value":{"summary":"s"}}` + "\n" + `{"key":"file","value":{"path":"a","encoding":"base64","content":""}}`, 404},
		{"info of a missing repo", "GET", "/api/models/y/none", token, "", "", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := do(t, h, tc.method, tc.path, tc.tok, tc.ctype, tc.body); code != tc.code {
				t.Errorf("got %d %s; want %d", code, body, tc.code)
			}
		})
	}
	if code, _ := do(t, h, "GET", "/api/spaces", token, "", ""); code != 404 {
		t.Errorf("unimplemented endpoint: got %d; want 404", code)
	}
	if got := h.Unexpected(); !slices.Contains(got, "GET /api/spaces") {
		t.Errorf("Unexpected() = %q; want the unimplemented request", got)
	}
}

func TestList(t *testing.T) {
	h := Start(Options{Token: token, Models: []Repo{
		{ID: "org/small", PipelineTag: "image-classification", Downloads: 10, Tags: []string{"timm"}},
		{ID: "org/Big", PipelineTag: "text-generation", Downloads: 500, Parameters: map[string]int64{"BF16": 7}},
		{ID: "other/big-vision", PipelineTag: "image-classification", Downloads: 90},
	}})
	defer h.Close()
	ids := func(path string) []string {
		code, body := do(t, h, "GET", path, "", "", "")
		if code != 200 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		var out []map[string]any
		json.Unmarshal([]byte(body), &out)
		var s []string
		for _, m := range out {
			s = append(s, m["id"].(string))
		}
		return s
	}
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/api/models?sort=downloads&direction=-1", []string{"org/Big", "other/big-vision", "org/small"}},
		{"/api/models?search=big", []string{"org/Big", "other/big-vision"}},
		{"/api/models?filter=image-classification&limit=1&sort=downloads", []string{"other/big-vision"}},
		{"/api/models?filter=timm", []string{"org/small"}},
		{"/api/models?author=org", []string{"org/small", "org/Big"}},
	} {
		if got := ids(tc.path); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q; want %q", tc.path, got, tc.want)
		}
	}
	_, body := do(t, h, "GET", "/api/models?search=Big&expand[]=safetensors&expand[]=downloads", "", "", "")
	if !strings.Contains(body, `"safetensors":{"parameters":{"BF16":7},"total":7}`) || strings.Contains(body, "pipeline_tag") {
		t.Errorf("expand: got %s; want only the ids and the fields asked for", body)
	}
	if _, body := do(t, h, "GET", "/api/models", "", "", ""); strings.Contains(body, "safetensors") {
		t.Errorf("without expand: got %s; want no safetensors", body)
	}
}

// A repository is created, committed to, and read back; an injected fault
// applies nothing.
func TestRepoRoundTrip(t *testing.T) {
	h := Start(Options{Token: token})
	defer h.Close()
	if code, body := do(t, h, "POST", "/api/repos/create", token, "application/json", `{"type":"dataset","name":"d","organization":"me","private":true}`); code != 200 || !strings.Contains(body, "datasets/me/d") {
		t.Fatalf("create: %d %s", code, body)
	}
	if code, _ := do(t, h, "POST", "/api/repos/create", token, "application/json", `{"type":"dataset","name":"d","organization":"me"}`); code != 409 {
		t.Errorf("second create: got %d; want 409", code)
	}
	commit := `{"key":"header","value":{"summary":"add"}}` + "\n" +
		`{"key":"file","value":{"path":"x/a.txt","encoding":"base64","content":"` + base64.StdEncoding.EncodeToString([]byte("hello")) + `"}}` + "\n"
	h.Inject(Fault500)
	if code, _ := do(t, h, "POST", "/api/datasets/me/d/commit/main", token, "application/x-ndjson", commit); code != 500 {
		t.Errorf("faulted commit: got %d; want 500", code)
	}
	if r, _ := h.Repo("dataset", "me/d"); len(r.Files) != 0 {
		t.Errorf("a failed commit applied %v", r.Files)
	}
	if code, body := do(t, h, "POST", "/api/datasets/me/d/commit/main", token, "application/x-ndjson", commit); code != 200 {
		t.Fatalf("commit: %d %s", code, body)
	}
	r, ok := h.Repo("dataset", "me/d")
	if !ok || !r.Private || string(r.Files["x/a.txt"]) != "hello" {
		t.Errorf("repo: got %+v, %v; want the private dataset holding x/a.txt", r, ok)
	}
	if code, _ := do(t, h, "POST", "/api/datasets/me/d/commit/main", token, "application/x-ndjson",
		`{"key":"header","value":{"summary":"s"}}`+"\n"+`{"key":"file","value":{"path":"../up","encoding":"base64","content":""}}`); code != 400 {
		t.Errorf("path escaping the repo: got %d; want 400", code)
	}
}
