// Package fakehub is a strict fake of the Hugging Face Hub's HTTP API, for
// tests and the offline demo: the list endpoints hf_search uses and the
// repository endpoints the syncer and Hub writes use. Like the real Hub it
// refuses a wrong token, writes without a token, unknown sort orders,
// limits and body fields, malformed commits and names, and paths it does
// not implement. The catalogue is a parameter.
package fakehub

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Repo is one repository of the catalogue, listed by /api/models or
// /api/datasets and known to the repository endpoints. Zero counts are
// left out of listings (the demo has nothing true to show there).
type Repo struct {
	ID          string
	Author      string
	PipelineTag string
	Library     string
	Tags        []string
	Likes       int64
	Downloads   int64
	Private     bool
	Gated       any // false, "auto" or "manual"; nil: not listed
	CreatedAt   string
	Description string
	SHA         string
	// Parameters are safetensors parameter counts by dtype (models),
	// returned only when asked for with expand[]=safetensors.
	Parameters map[string]int64
}

// Options configure a Hub.
type Options struct {
	// Token is the one valid token. Reads accept it or none; writes need
	// it; any other token is refused with 401.
	Token            string
	Models, Datasets []Repo
}

// Fault is what the Hub does to the next dataset commit (see Inject).
type Fault int

const (
	FaultNone           Fault = iota
	Fault500                  // answer 500, apply nothing
	FaultHangBefore           // never answer (the client times out), apply nothing
	FaultHangAfterApply       // apply the commit, then never answer
)

// RepoState is a repository's state as the repository endpoints left it.
type RepoState struct {
	Kind    string // model, dataset or space
	SDK     string
	Private bool
	Files   map[string][]byte
}

// Hub is a running fake. Safe for concurrent use.
type Hub struct {
	srv  *httptest.Server
	opts Options

	mu         sync.Mutex
	repos      map[string]*RepoState // "kind/ns/name"
	vars       map[string]map[string]string
	faults     []Fault
	requests   []string
	unexpected []string
}

// Start serves a Hub on loopback; Close stops it.
func Start(o Options) *Hub {
	h := &Hub{opts: o, repos: map[string]*RepoState{}, vars: map[string]map[string]string{}}
	for _, r := range o.Models {
		h.repos["model/"+r.ID] = &RepoState{Kind: "model", Private: r.Private, Files: map[string][]byte{}}
	}
	for _, r := range o.Datasets {
		h.repos["dataset/"+r.ID] = &RepoState{Kind: "dataset", Private: r.Private, Files: map[string][]byte{}}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/models", h.auth(false, h.list("model", o.Models)))
	mux.HandleFunc("GET /api/datasets", h.auth(false, h.list("dataset", o.Datasets)))
	mux.HandleFunc("GET /api/{kinds}/{ns}/{name}", h.auth(false, h.info))
	mux.HandleFunc("POST /api/repos/create", h.auth(true, h.create))
	mux.HandleFunc("POST /api/{kinds}/{ns}/{name}/commit/{rev}", h.auth(true, h.commit))
	mux.HandleFunc("POST /api/spaces/{ns}/{name}/variables", h.auth(true, h.variable))
	mux.HandleFunc("/", h.auth(false, func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.unexpected = append(h.unexpected, r.Method+" "+r.URL.Path)
		h.mu.Unlock()
		fail(w, http.StatusNotFound, "fakehub: "+r.Method+" "+r.URL.Path+" is not implemented")
	}))
	h.srv = httptest.NewServer(mux)
	return h
}

// URL is the Hub's base URL (what HF_ENDPOINT would be).
func (h *Hub) URL() string { return h.srv.URL }

// Close stops the server.
func (h *Hub) Close() { h.srv.Close() }

// Requests returns every request so far as "METHOD /path?query".
func (h *Hub) Requests() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.requests)
}

// Unexpected returns the requests for endpoints the fake does not
// implement: a test that expects none checks it is empty.
func (h *Hub) Unexpected() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.unexpected)
}

// Inject queues faults for the next dataset commits, one each.
func (h *Hub) Inject(f ...Fault) {
	h.mu.Lock()
	h.faults = append(h.faults, f...)
	h.mu.Unlock()
}

// Repo returns a copy of a repository's state; kind is model, dataset or
// space, id is "ns/name".
func (h *Hub) Repo(kind, id string) (RepoState, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.repos[kind+"/"+id]
	if r == nil {
		return RepoState{}, false
	}
	c := *r
	c.Files = maps.Clone(r.Files)
	return c, true
}

// Variables returns a Space's variables.
func (h *Hub) Variables(spaceID string) map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.vars[spaceID])
}

// fail answers as the Hub does: a JSON error, and the message in
// X-Error-Message, which huggingface_hub shows.
func fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Error-Message", msg)
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// auth logs the request and checks its token: a wrong one is refused;
// none is refused for writes.
func (h *Hub) auth(write bool, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.requests = append(h.requests, r.Method+" "+r.URL.RequestURI())
		h.mu.Unlock()
		got := r.Header.Get("Authorization")
		if (got != "" || write) && (h.opts.Token == "" || got != "Bearer "+h.opts.Token) {
			fail(w, http.StatusUnauthorized, "Invalid credentials in Authorization header")
			return
		}
		next(w, r)
	}
}

// list serves /api/models or /api/datasets: search (in the id), author,
// filter (a tag or the task), sort, direction, limit and expand[].
func (h *Hub) list(kind string, repos []Repo) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		sortBy := q.Get("sort")
		switch sortBy {
		case "", "downloads", "likes", "trendingScore", "lastModified", "createdAt":
		default:
			fail(w, http.StatusBadRequest, "invalid sort "+sortBy)
			return
		}
		if d := q.Get("direction"); d != "" && d != "-1" && d != "1" {
			fail(w, http.StatusBadRequest, "invalid direction")
			return
		}
		limit := len(repos)
		if l := q.Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil || n < 1 || n > 1000 {
				fail(w, http.StatusBadRequest, "invalid limit")
				return
			}
			limit = n
		}
		search := strings.ToLower(q.Get("search"))
		var out []map[string]any
		for i, repo := range repos {
			switch {
			case search != "" && !strings.Contains(strings.ToLower(repo.ID), search),
				q.Get("author") != "" && !strings.HasPrefix(repo.ID, q.Get("author")+"/"),
				q.Get("filter") != "" && repo.PipelineTag != q.Get("filter") && !slices.Contains(repo.Tags, q.Get("filter")):
				continue
			}
			out = append(out, listItem(kind, i, repo, q["expand[]"]))
		}
		if sortBy == "downloads" || sortBy == "likes" {
			slices.SortStableFunc(out, func(a, b map[string]any) int {
				x, _ := a[sortBy].(int64)
				y, _ := b[sortBy].(int64)
				if q.Get("direction") == "1" {
					return cmp.Compare(x, y)
				}
				return cmp.Compare(y, x)
			})
		}
		if len(out) > limit {
			out = out[:limit]
		}
		if out == nil {
			out = []map[string]any{}
		}
		reply(w, out)
	}
}

// listItem is a repository as a listing shows it; with expand, only the
// fields asked for (and the ids).
func listItem(kind string, i int, r Repo, expand []string) map[string]any {
	m := map[string]any{"_id": fmt.Sprintf("%024x", i+1), "id": r.ID, "private": r.Private, "tags": r.Tags}
	if m["tags"] == nil {
		m["tags"] = []string{}
	}
	if kind == "model" {
		m["modelId"] = r.ID
	}
	set := func(k string, v any, ok bool) {
		if ok {
			m[k] = v
		}
	}
	set("author", r.Author, r.Author != "")
	set("pipeline_tag", r.PipelineTag, r.PipelineTag != "")
	set("library_name", r.Library, r.Library != "")
	set("likes", r.Likes, r.Likes != 0)
	set("downloads", r.Downloads, r.Downloads != 0)
	set("gated", r.Gated, r.Gated != nil)
	set("createdAt", r.CreatedAt, r.CreatedAt != "")
	set("description", r.Description, r.Description != "")
	set("sha", r.SHA, r.SHA != "")
	if len(expand) == 0 {
		return m
	}
	if r.Parameters != nil {
		var total int64
		for _, n := range r.Parameters {
			total += n
		}
		m["safetensors"] = map[string]any{"parameters": r.Parameters, "total": total}
	}
	sel := map[string]any{"_id": m["_id"], "id": r.ID}
	for _, k := range expand {
		if v, ok := m[k]; ok {
			sel[k] = v
		}
	}
	return sel
}

// kindOf maps the plural in a path to a repository kind.
func kindOf(plural string) (string, bool) {
	switch plural {
	case "spaces", "datasets", "models":
		return strings.TrimSuffix(plural, "s"), true
	}
	return "", false
}

func (h *Hub) info(w http.ResponseWriter, r *http.Request) {
	kind, ok := kindOf(r.PathValue("kinds"))
	if !ok {
		fail(w, http.StatusNotFound, "Not Found")
		return
	}
	id := r.PathValue("ns") + "/" + r.PathValue("name")
	h.mu.Lock()
	repo := h.repos[kind+"/"+id]
	var private bool
	var sdk string
	if repo != nil {
		private, sdk = repo.Private, repo.SDK
	}
	h.mu.Unlock()
	if repo == nil {
		fail(w, http.StatusNotFound, "Repository not found")
		return
	}
	out := map[string]any{"id": id, "private": private}
	if sdk != "" {
		out["sdk"] = sdk
	}
	reply(w, out)
}

var nameRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$`) })

func (h *Hub) create(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Type         string `json:"type"`
		Name         string `json:"name"`
		Organization string `json:"organization"`
		Private      bool   `json:"private"`
		SDK          string `json:"sdk"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		fail(w, http.StatusBadRequest, "bad request body")
		return
	}
	if !nameRe().MatchString(req.Name) || !nameRe().MatchString(req.Organization) {
		fail(w, http.StatusBadRequest, "invalid repo name")
		return
	}
	if req.Type == "" {
		req.Type = "model"
	}
	switch req.Type {
	case "space":
		if req.SDK != "gradio" && req.SDK != "static" && req.SDK != "docker" {
			fail(w, http.StatusBadRequest, "space requires sdk")
			return
		}
	case "dataset", "model":
		if req.SDK != "" {
			fail(w, http.StatusBadRequest, "sdk only for spaces")
			return
		}
	default:
		fail(w, http.StatusBadRequest, "invalid type")
		return
	}
	id := req.Organization + "/" + req.Name
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.repos[req.Type+"/"+id] != nil {
		fail(w, http.StatusConflict, "You already created this repo")
		return
	}
	h.repos[req.Type+"/"+id] = &RepoState{Kind: req.Type, SDK: req.SDK, Private: req.Private, Files: map[string][]byte{}}
	url := "https://huggingface.co/" + id
	if req.Type != "model" {
		url = "https://huggingface.co/" + req.Type + "s/" + id
	}
	reply(w, map[string]string{"url": url})
}

// validPath is a repository file path: relative, no empty, . or ..
// segments, no backslash.
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

// commit applies an NDJSON commit: a header line, then base64 files.
func (h *Hub) commit(w http.ResponseWriter, r *http.Request) {
	kind, ok := kindOf(r.PathValue("kinds"))
	if !ok || r.PathValue("rev") != "main" {
		fail(w, http.StatusNotFound, "bad repo type or revision")
		return
	}
	if r.Header.Get("Content-Type") != "application/x-ndjson" {
		fail(w, http.StatusBadRequest, "want application/x-ndjson")
		return
	}
	id := r.PathValue("ns") + "/" + r.PathValue("name")
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
			fail(w, http.StatusBadRequest, "bad ndjson line")
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
				fail(w, http.StatusBadRequest, "bad header")
				return
			}
		case line > 0 && op.Key == "file":
			var f struct {
				Path     string `json:"path"`
				Encoding string `json:"encoding"`
				Content  string `json:"content"`
			}
			if err := dec.Decode(&f); err != nil || !validPath(f.Path) || f.Encoding != "base64" {
				fail(w, http.StatusBadRequest, "bad file operation")
				return
			}
			data, err := base64.StdEncoding.DecodeString(f.Content)
			if err != nil {
				fail(w, http.StatusBadRequest, "bad base64")
				return
			}
			files[f.Path] = data
		default:
			fail(w, http.StatusBadRequest, "header must come first, then files")
			return
		}
		line++
	}
	if line < 2 {
		fail(w, http.StatusBadRequest, "empty commit")
		return
	}
	h.mu.Lock()
	repo := h.repos[kind+"/"+id]
	f := FaultNone
	if kind == "dataset" && len(h.faults) > 0 {
		f, h.faults = h.faults[0], h.faults[1:]
	}
	if repo == nil {
		h.mu.Unlock()
		fail(w, http.StatusNotFound, "Repository not found")
		return
	}
	switch f {
	case Fault500:
		h.mu.Unlock()
		fail(w, http.StatusInternalServerError, "Internal Error")
		return
	case FaultHangBefore:
		h.mu.Unlock()
		<-r.Context().Done()
		return
	}
	maps.Copy(repo.Files, files)
	h.mu.Unlock()
	if f == FaultHangAfterApply {
		<-r.Context().Done()
		return
	}
	reply(w, map[string]string{"commitOid": "0123abcd", "commitUrl": "https://huggingface.co/" + id})
}

func (h *Hub) variable(w http.ResponseWriter, r *http.Request) {
	var v struct {
		Key         string `json:"key"`
		Value       string `json:"value"`
		Description string `json:"description"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil || v.Key == "" {
		fail(w, http.StatusBadRequest, "bad variable")
		return
	}
	id := r.PathValue("ns") + "/" + r.PathValue("name")
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.repos["space/"+id] == nil {
		fail(w, http.StatusNotFound, "Repository not found")
		return
	}
	if h.vars[id] == nil {
		h.vars[id] = map[string]string{}
	}
	h.vars[id][v.Key] = v.Value
}
