package tools

import (
	"strings"
	"testing"

	"github.com/mlagent/mlagent/internal/fakehub"
)

// hubCatalogue is two models and a dataset as the Hub lists them.
var hubCatalogue = fakehub.Options{
	Models: []fakehub.Repo{
		{ID: "google-bert/bert-base-uncased", Likes: 2300, Downloads: 60000000, Gated: false,
			PipelineTag: "fill-mask", Library: "transformers", CreatedAt: "2022-03-02T23:29:04.000Z",
			Tags:       []string{"transformers", "pytorch", "fill-mask", "en", "dataset:bookcorpus", "license:apache-2.0", "region:us"},
			Parameters: map[string]int64{"F32": 110106428}},
		{ID: "meta-llama/Llama-3.1-8B", Likes: 1800, Downloads: 900000, Gated: "manual",
			PipelineTag: "text-generation", Library: "transformers",
			Tags:       []string{"transformers", "safetensors", "llama", "text-generation", "license:llama3.1"},
			Parameters: map[string]int64{"BF16": 8030261248}},
	},
	Datasets: []fakehub.Repo{
		{ID: "stanfordnlp/imdb", Author: "stanfordnlp", Gated: false, Likes: 300, Downloads: 120000, SHA: "e6281661",
			Description: "Large Movie Review Dataset.",
			Tags:        []string{"task_categories:text-classification", "task_ids:sentiment-classification", "language:en", "license:other", "size_categories:10K<n<100K", "format:parquet"}},
	},
}

func TestHFSearch(t *testing.T) {
	o := hubCatalogue
	o.Token = "sbx-token"
	hub := fakehub.Start(o)
	defer hub.Close()
	tool := &HFSearchTool{Endpoint: hub.URL() + "/", Token: "sbx-token"}
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
		bad := &HFSearchTool{Endpoint: hub.URL(), Token: "other"}
		r := runJSON(t, bad, map[string]any{"kind": "models"})
		if !r.IsError || !strings.Contains(r.Output, "HTTP 401") {
			t.Errorf("got %q; want HTTP 401 error", r.Output)
		}
	})
	// Datasets are listed without expand[] (the fields differ by kind);
	// models ask for the fields the summary shows.
	for _, req := range hub.Requests() {
		if strings.HasPrefix(req, "GET /api/datasets") && strings.Contains(req, "expand") ||
			strings.HasPrefix(req, "GET /api/models") && !strings.Contains(req, "expand%5B%5D=safetensors") {
			t.Errorf("request %s", req)
		}
	}
}
