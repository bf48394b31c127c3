package syncer

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
)

// fault is what the fake Hub does to the next dataset commit.
type fault int

const (
	faultNone           fault = iota
	fault500                  // answer 500, apply nothing
	faultHangBefore           // never answer (client times out), apply nothing
	faultHangAfterApply       // apply the commit, then never answer
)

type fakeRepo struct {
	typ, sdk string
	private  bool
	files    map[string][]byte
}

// fakeHub is a strict stand-in for the Hugging Face Hub: it requires the
// bearer token, implements only the endpoints the syncer uses, and rejects
// malformed requests the way the Hub does (400/404/409).
type fakeHub struct {
	t     testing.TB
	token string

	mu      sync.Mutex
	repos   map[string]*fakeRepo // "dataset/ns/name"
	vars    map[string]map[string]string
	faults  []fault
	commits int
	seen    []string // request lines, for debugging
}

func newFakeHub(t testing.TB, token string) (*fakeHub, *httptest.Server) {
	h := &fakeHub{t: t, token: token, repos: map[string]*fakeRepo{}, vars: map[string]map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/{type}/{ns}/{name}", h.auth(h.info))
	mux.HandleFunc("POST /api/repos/create", h.auth(h.create))
	mux.HandleFunc("POST /api/{type}/{ns}/{name}/commit/{rev}", h.auth(h.commit))
	mux.HandleFunc("POST /api/spaces/{ns}/{name}/variables", h.auth(h.variable))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("fake hub: unexpected %s %s", r.Method, r.URL.Path)
		http.Error(w, "not implemented", http.StatusNotFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return h, srv
}

func (h *fakeHub) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.seen = append(h.seen, r.Method+" "+r.URL.Path)
		h.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+h.token {
			http.Error(w, `{"error":"Invalid credentials in Authorization header"}`, http.StatusUnauthorized)
			return
		}
		next(w, r)
	}
}

func repoType(plural string) (string, bool) {
	switch plural {
	case "spaces", "datasets", "models":
		return strings.TrimSuffix(plural, "s"), true
	}
	return "", false
}

func (h *fakeHub) info(w http.ResponseWriter, r *http.Request) {
	typ, ok := repoType(r.PathValue("type"))
	if !ok {
		http.Error(w, "bad repo type", http.StatusNotFound)
		return
	}
	h.mu.Lock()
	repo := h.repos[typ+"/"+r.PathValue("ns")+"/"+r.PathValue("name")]
	h.mu.Unlock()
	if repo == nil {
		http.Error(w, `{"error":"Repository not found"}`, http.StatusNotFound)
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"id": r.PathValue("ns") + "/" + r.PathValue("name"), "private": repo.private, "sdk": repo.sdk})
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

func (h *fakeHub) create(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Type         string `json:"type"`
		Name         string `json:"name"`
		Organization string `json:"organization"`
		Private      bool   `json:"private"`
		SDK          string `json:"sdk"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "bad request body", http.StatusBadRequest)
		return
	}
	if !nameRe.MatchString(req.Name) || !nameRe.MatchString(req.Organization) {
		http.Error(w, "invalid repo name", http.StatusBadRequest)
		return
	}
	switch req.Type {
	case "space":
		if req.SDK != "gradio" && req.SDK != "static" && req.SDK != "docker" {
			http.Error(w, "space requires sdk", http.StatusBadRequest)
			return
		}
	case "dataset", "model":
		if req.SDK != "" {
			http.Error(w, "sdk only for spaces", http.StatusBadRequest)
			return
		}
	default:
		http.Error(w, "invalid type", http.StatusBadRequest)
		return
	}
	key := req.Type + "/" + req.Organization + "/" + req.Name
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.repos[key] != nil {
		http.Error(w, `{"error":"You already created this repo"}`, http.StatusConflict)
		return
	}
	h.repos[key] = &fakeRepo{typ: req.Type, sdk: req.SDK, private: req.Private, files: map[string][]byte{}}
	json.NewEncoder(w).Encode(map[string]string{"url": "https://huggingface.co/" + key})
}

func validPath(p string) bool {
	if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

func (h *fakeHub) commit(w http.ResponseWriter, r *http.Request) {
	typ, ok := repoType(r.PathValue("type"))
	if !ok || r.PathValue("rev") != "main" {
		http.Error(w, "bad repo type or revision", http.StatusNotFound)
		return
	}
	if r.Header.Get("Content-Type") != "application/x-ndjson" {
		http.Error(w, "want application/x-ndjson", http.StatusBadRequest)
		return
	}
	key := typ + "/" + r.PathValue("ns") + "/" + r.PathValue("name")
	files := map[string][]byte{}
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	line := 0
	for sc.Scan() {
		var op struct {
			Key   string          `json:"key"`
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(sc.Bytes(), &op); err != nil {
			http.Error(w, "bad ndjson line", http.StatusBadRequest)
			return
		}
		dec := json.NewDecoder(bytes.NewReader(op.Value))
		dec.DisallowUnknownFields()
		switch {
		case line == 0 && op.Key == "header":
			var hdr struct {
				Summary     string `json:"summary"`
				Description string `json:"description"`
			}
			if err := dec.Decode(&hdr); err != nil || hdr.Summary == "" {
				http.Error(w, "bad header", http.StatusBadRequest)
				return
			}
		case line > 0 && op.Key == "file":
			var f struct {
				Path     string `json:"path"`
				Encoding string `json:"encoding"`
				Content  string `json:"content"`
			}
			if err := dec.Decode(&f); err != nil || !validPath(f.Path) || f.Encoding != "base64" {
				http.Error(w, "bad file operation", http.StatusBadRequest)
				return
			}
			data, err := base64.StdEncoding.DecodeString(f.Content)
			if err != nil {
				http.Error(w, "bad base64", http.StatusBadRequest)
				return
			}
			files[f.Path] = data
		default:
			http.Error(w, "header must come first, then files", http.StatusBadRequest)
			return
		}
		line++
	}
	if line < 2 {
		http.Error(w, "empty commit", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	repo := h.repos[key]
	f := faultNone
	if typ == "dataset" && len(h.faults) > 0 {
		f, h.faults = h.faults[0], h.faults[1:]
	}
	if repo == nil {
		h.mu.Unlock()
		http.Error(w, "Repository not found", http.StatusNotFound)
		return
	}
	switch f {
	case fault500:
		h.mu.Unlock()
		http.Error(w, "Internal Error", http.StatusInternalServerError)
		return
	case faultHangBefore:
		h.mu.Unlock()
		<-r.Context().Done()
		return
	}
	for p, d := range files {
		repo.files[p] = d
	}
	h.commits++
	h.mu.Unlock()
	if f == faultHangAfterApply {
		<-r.Context().Done()
		return
	}
	json.NewEncoder(w).Encode(map[string]string{"commitOid": "0123abcd", "commitUrl": "https://huggingface.co/" + key})
}

func (h *fakeHub) variable(w http.ResponseWriter, r *http.Request) {
	var v struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil || v.Key == "" {
		http.Error(w, "bad variable", http.StatusBadRequest)
		return
	}
	id := r.PathValue("ns") + "/" + r.PathValue("name")
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.repos["space/"+id] == nil {
		http.Error(w, "Repository not found", http.StatusNotFound)
		return
	}
	if h.vars[id] == nil {
		h.vars[id] = map[string]string{}
	}
	h.vars[id][v.Key] = v.Value
}

func (h *fakeHub) inject(f ...fault) {
	h.mu.Lock()
	h.faults = append(h.faults, f...)
	h.mu.Unlock()
}

// rowsIn decodes every chunk of table in the dataset and returns the
// JSON objects, keyed by row id, failing on a duplicate id.
func (h *fakeHub) rowsIn(t testing.TB, datasetKey, project, table string) map[int64]map[string]any {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	repo := h.repos[datasetKey]
	if repo == nil {
		t.Fatalf("no repo %s", datasetKey)
	}
	prefix := DataPrefix + "/" + project + "/" + table + "/"
	var paths []string
	for p := range repo.files {
		if strings.HasPrefix(p, prefix) {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	out := map[int64]map[string]any{}
	for _, p := range paths {
		sc := bufio.NewScanner(bytes.NewReader(repo.files[p]))
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var row map[string]any
			if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
				t.Fatalf("%s: bad line: %v", p, err)
			}
			id := int64(row["id"].(float64))
			if _, dup := out[id]; dup {
				t.Fatalf("row %d of %s stored twice (again in %s)", id, table, p)
			}
			out[id] = row
		}
	}
	return out
}
