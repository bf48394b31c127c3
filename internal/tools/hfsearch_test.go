package tools

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// fakeHub is a strict fake of the Hub's list endpoints: it rejects what the
// real Hub rejects (bad sort, bad limit, a wrong token) and honours expand[].
func fakeHub(t *testing.T, token string) *httptest.Server {
	models := []map[string]any{
		{"_id": "1", "id": "google-bert/bert-base-uncased", "modelId": "google-bert/bert-base-uncased", "likes": 2300, "downloads": 60000000, "private": false, "gated": false,
			"pipeline_tag": "fill-mask", "library_name": "transformers", "createdAt": "2022-03-02T23:29:04.000Z",
			"tags":        []string{"transformers", "pytorch", "fill-mask", "en", "dataset:bookcorpus", "license:apache-2.0", "region:us"},
			"safetensors": map[string]any{"parameters": map[string]int64{"F32": 110106428}, "total": 110106428}},
		{"_id": "2", "id": "meta-llama/Llama-3.1-8B", "modelId": "meta-llama/Llama-3.1-8B", "likes": 1800, "downloads": 900000, "private": false, "gated": "manual",
			"pipeline_tag": "text-generation", "library_name": "transformers",
			"tags":        []string{"transformers", "safetensors", "llama", "text-generation", "license:llama3.1"},
			"safetensors": map[string]any{"parameters": map[string]int64{"BF16": 8030261248}, "total": 8030261248}},
	}
	datasets := []map[string]any{
		{"_id": "3", "id": "stanfordnlp/imdb", "author": "stanfordnlp", "disabled": false, "gated": false, "likes": 300, "downloads": 120000, "private": false, "sha": "e6281661",
			"description": "Large Movie Review Dataset.",
			"tags":        []string{"task_categories:text-classification", "task_ids:sentiment-classification", "language:en", "license:other", "size_categories:10K<n<100K", "format:parquet"}},
	}
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(code int, msg string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(map[string]string{"error": msg})
		}
		if r.Method != http.MethodGet {
			fail(405, "method not allowed")
			return
		}
		if got := r.Header.Get("Authorization"); token != "" && got != "Bearer "+token {
			fail(401, "Invalid credentials in Authorization header")
			return
		}
		q := r.URL.Query()
		switch s := q.Get("sort"); s {
		case "", "downloads", "likes", "trendingScore", "lastModified":
		default:
			fail(400, "invalid sort "+s)
			return
		}
		if d := q.Get("direction"); d != "" && d != "-1" && d != "1" {
			fail(400, "invalid direction")
			return
		}
		if l := q.Get("limit"); l != "" {
			if n, err := strconv.Atoi(l); err != nil || n < 1 || n > 1000 {
				fail(400, "invalid limit")
				return
			}
		}
		var list []map[string]any
		switch r.URL.Path {
		case "/api/models":
			list = models
		case "/api/datasets":
			if len(q["expand[]"]) > 0 {
				fail(400, "test: datasets are listed without expand")
				return
			}
			list = datasets
		default:
			fail(404, "not found")
			return
		}
		var out []map[string]any
		for _, m := range list {
			id := m["id"].(string)
			if s := q.Get("search"); s != "" && !strings.Contains(strings.ToLower(id), strings.ToLower(s)) {
				continue
			}
			if f := q.Get("filter"); f != "" && m["pipeline_tag"] != f && !strings.Contains(strings.Join(m["tags"].([]string), ","), f) {
				continue
			}
			if exp := q["expand[]"]; len(exp) > 0 {
				sel := map[string]any{"_id": m["_id"], "id": id}
				for _, k := range exp {
					if v, ok := m[k]; ok {
						sel[k] = v
					}
				}
				m = sel
			} else {
				delete(m, "safetensors")
			}
			out = append(out, m)
		}
		if out == nil {
			out = []map[string]any{}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	}))
}

func TestHFSearch(t *testing.T) {
	srv := fakeHub(t, "sbx-token")
	defer srv.Close()
	tool := &HFSearchTool{Endpoint: srv.URL + "/", Token: "sbx-token"}
	tests := []struct {
		name  string
		in    map[string]any
		want  string
		isErr bool
	}{
		{"models", map[string]any{"kind": "models", "limit": 5},
			"google-bert/bert-base-uncased\ttask=fill-mask\tdownloads=60000000\tlikes=2300\tlicense=apache-2.0\tsize=110.1M params\tlibrary=transformers\n" +
				"meta-llama/Llama-3.1-8B\ttask=text-generation\tdownloads=900000\tlikes=1800\tlicense=llama3.1\tsize=8.0B params\tlibrary=transformers\tgated=manual\n", false},
		{"filter", map[string]any{"kind": "models", "filter": "text-generation", "sort": "trending"}, "meta-llama/Llama-3.1-8B\t", false},
		{"datasets", map[string]any{"kind": "datasets", "search": "imdb", "sort": "likes"},
			"stanfordnlp/imdb\ttask=text-classification\tdownloads=120000\tlikes=300\tlicense=other\tsize=10K<n<100K\n", false},
		{"none", map[string]any{"kind": "datasets", "search": "zzz"}, "no datasets found", false},
		{"bad kind", map[string]any{"kind": "spaces"}, "kind must be", true},
		{"bad limit", map[string]any{"kind": "models", "limit": 500}, "limit must be", true},
		{"bad sort", map[string]any{"kind": "models", "sort": "stars"}, "sort must be", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runJSON(t, tool, tt.in)
			if r.IsError != tt.isErr || !strings.Contains(r.Output, tt.want) {
				t.Errorf("got %q (error %v); want %q (error %v)", r.Output, r.IsError, tt.want, tt.isErr)
			}
		})
	}
	t.Run("wrong token", func(t *testing.T) {
		bad := &HFSearchTool{Endpoint: srv.URL, Token: "other"}
		r := runJSON(t, bad, map[string]any{"kind": "models"})
		if !r.IsError || !strings.Contains(r.Output, "HTTP 401") {
			t.Errorf("got %q; want HTTP 401 error", r.Output)
		}
	})
}
