package demo

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// hubEntry is one repository of the demo's offline Hub catalogue, shaped
// like the Hub's /api/models and /api/datasets list items. Download and
// like counts are left out: offline, there is nothing true to show.
type hubEntry struct {
	ID          string   `json:"id"`
	PipelineTag string   `json:"pipeline_tag,omitempty"`
	Library     string   `json:"library_name,omitempty"`
	Tags        []string `json:"tags"`
	Private     bool     `json:"private"`
}

// The catalogue: real repositories the reference session considers.
var (
	hubModels = []hubEntry{
		{ID: "microsoft/swin-tiny-patch4-window7-224", PipelineTag: "image-classification", Library: "transformers",
			Tags: []string{"transformers", "pytorch", "swin", "image-classification", "vision", "dataset:imagenet-1k", "license:apache-2.0"}},
		{ID: "microsoft/swin-base-patch4-window7-224", PipelineTag: "image-classification", Library: "transformers",
			Tags: []string{"transformers", "pytorch", "swin", "image-classification", "vision", "dataset:imagenet-1k", "license:apache-2.0"}},
		{ID: "timm/resnet50.a1_in1k", PipelineTag: "image-classification", Library: "timm",
			Tags: []string{"timm", "pytorch", "image-classification", "license:apache-2.0"}},
		{ID: "google/vit-base-patch16-224", PipelineTag: "image-classification", Library: "transformers",
			Tags: []string{"transformers", "pytorch", "vit", "image-classification", "vision", "license:apache-2.0"}},
		{ID: "ibm-nasa-geospatial/Prithvi-EO-1.0-100M", Library: "terratorch",
			Tags: []string{"pytorch", "earth-observation", "satellite", "multispectral", "license:apache-2.0"}},
	}
	hubDatasets = []hubEntry{
		{ID: "blanchon/EuroSAT_MSI",
			Tags: []string{"task_categories:image-classification", "modality:image", "satellite", "multispectral", "sentinel-2", "license:mit"}},
		{ID: "blanchon/EuroSAT_RGB",
			Tags: []string{"task_categories:image-classification", "modality:image", "satellite", "sentinel-2", "license:mit"}},
		{ID: "jonathan-roberts1/bigearthnet",
			Tags: []string{"task_categories:image-classification", "satellite", "multispectral", "sentinel-2"}},
	}
)

// hubHandler serves the offline catalogue on the two listing endpoints
// hf_search uses, through the gateway's /hf route, and refuses the rest.
func hubHandler() http.Handler {
	mux := http.NewServeMux()
	list := func(entries []hubEntry) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet {
				http.Error(w, `{"error":"method not allowed"}`, http.StatusMethodNotAllowed)
				return
			}
			q := r.URL.Query()
			terms := strings.Fields(strings.ToLower(q.Get("search")))
			filter := strings.ToLower(q.Get("filter"))
			limit, err := strconv.Atoi(q.Get("limit"))
			if err != nil || limit <= 0 {
				limit = 20
			}
			out := []hubEntry{}
			for _, e := range entries {
				hay := strings.ToLower(e.ID + " " + strings.Join(e.Tags, " ") + " " + e.PipelineTag)
				ok := true
				for _, t := range terms {
					ok = ok && strings.Contains(hay, t)
				}
				if filter != "" && !strings.Contains(hay, filter) {
					ok = false
				}
				if ok && len(out) < limit {
					out = append(out, e)
				}
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(out)
		}
	}
	mux.HandleFunc("/api/models", list(hubModels))
	mux.HandleFunc("/api/datasets", list(hubDatasets))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"the demo's offline Hub serves only /api/models and /api/datasets"}`, http.StatusNotFound)
	})
	return mux
}
