package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// HFSearchTool is the "hf_search" tool: search models and datasets on the
// Hugging Face Hub. Inside the sandbox Endpoint is the gateway's /hf route
// and Token the sandbox token, which the gateway swaps for the real one.
type HFSearchTool struct {
	Endpoint string // e.g. http://127.0.0.1:8790/hf or https://huggingface.co
	Token    string // sent as Bearer when set
	Client   *http.Client
}

type hfSearchInput struct {
	Kind   string `json:"kind"`
	Search string `json:"search,omitempty"`
	Filter string `json:"filter,omitempty"`
	Author string `json:"author,omitempty"`
	Sort   string `json:"sort,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

func (t *HFSearchTool) Info() Info {
	return Info{
		Name: "hf_search",
		Description: `Search the Hugging Face Hub for models or datasets. Returns, per result: id, task (pipeline_tag or task_categories), downloads (last 30 days), likes, licence and size where known (parameter count for models with safetensors, size category for datasets).
filter narrows by tag: a task such as "text-classification", a library such as "timm", a language such as "en". sort is downloads (default), likes, trending or lastModified.`,
		Schema: Schema{
			Properties: map[string]any{
				"kind":   map[string]any{"type": "string", "enum": []string{"models", "datasets"}},
				"search": map[string]any{"type": "string", "description": "Words to find in the repo id."},
				"filter": map[string]any{"type": "string", "description": "Tag filter, e.g. image-classification, timm, en."},
				"author": map[string]any{"type": "string", "description": "Only repos of this user or organisation."},
				"sort":   map[string]any{"type": "string", "enum": []string{"downloads", "likes", "trending", "lastModified"}},
				"limit":  map[string]any{"type": "integer", "description": "Number of results, 1-50 (default 10)."},
			},
			Required: []string{"kind"},
		},
		Parallel: true,
	}
}

func (t *HFSearchTool) Summarize(input json.RawMessage) string {
	var in hfSearchInput
	if Decode(input, &in) != nil {
		return ""
	}
	return oneLine(strings.Join(strings.Fields(in.Kind+" "+in.Search+" "+in.Filter+" "+in.Author), " "), 100)
}

// hfRepo is the subset of the Hub's list entries we use (models and
// datasets share most fields).
type hfRepo struct {
	ID          string   `json:"id"`
	Downloads   int64    `json:"downloads"`
	Likes       int64    `json:"likes"`
	PipelineTag string   `json:"pipeline_tag"`
	LibraryName string   `json:"library_name"`
	Tags        []string `json:"tags"`
	Gated       any      `json:"gated"`
	Safetensors *struct {
		Total int64 `json:"total"`
	} `json:"safetensors"`
}

func (t *HFSearchTool) Run(ctx context.Context, input json.RawMessage) Result {
	var in hfSearchInput
	if err := Decode(input, &in); err != nil {
		return Errorf("%v", err)
	}
	if in.Kind != "models" && in.Kind != "datasets" {
		return Errorf("kind must be models or datasets; got %q", in.Kind)
	}
	sort := in.Sort
	if sort == "" {
		sort = "downloads"
	}
	switch sort {
	case "downloads", "likes", "lastModified":
	case "trending":
		sort = "trendingScore"
	default:
		return Errorf("sort must be downloads, likes, trending or lastModified; got %q", in.Sort)
	}
	limit := in.Limit
	if limit == 0 {
		limit = 10
	}
	if limit < 1 || limit > 50 {
		return Errorf("limit must be between 1 and 50")
	}
	if t.Endpoint == "" {
		return Errorf("no Hugging Face endpoint configured (HF_ENDPOINT)")
	}
	q := url.Values{}
	if in.Search != "" {
		q.Set("search", in.Search)
	}
	if in.Filter != "" {
		q.Set("filter", in.Filter)
	}
	if in.Author != "" {
		q.Set("author", in.Author)
	}
	q.Set("sort", sort)
	q.Set("direction", "-1")
	q.Set("limit", strconv.Itoa(limit))
	if in.Kind == "models" {
		// expand selects the fields returned; safetensors carries the
		// parameter count.
		for _, f := range []string{"pipeline_tag", "downloads", "likes", "tags", "library_name", "gated", "safetensors"} {
			q.Add("expand[]", f)
		}
	}
	u := strings.TrimRight(t.Endpoint, "/") + "/api/" + in.Kind + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Errorf("%v", err)
	}
	if t.Token != "" {
		req.Header.Set("Authorization", "Bearer "+t.Token)
	}
	req.Header.Set("Accept", "application/json")
	client := t.Client
	if client == nil {
		client = &http.Client{Timeout: 60 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return Errorf("Hugging Face Hub request failed: %v", redactURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return Errorf("reading Hub response: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		return Errorf("Hugging Face Hub: HTTP %d: %s", resp.StatusCode, oneLine(string(body), 300))
	}
	var repos []hfRepo
	if err := json.Unmarshal(body, &repos); err != nil {
		return Errorf("unexpected Hub response: %v", err)
	}
	if len(repos) == 0 {
		return Result{Output: "no " + in.Kind + " found", Summary: "0 results"}
	}
	var b strings.Builder
	for _, r := range repos {
		fmt.Fprintf(&b, "%s\ttask=%s\tdownloads=%d\tlikes=%d\tlicense=%s", r.ID, orDash(repoTask(r)), r.Downloads, r.Likes, orDash(tagValue(r.Tags, "license:")))
		if s := repoSize(r); s != "" {
			fmt.Fprintf(&b, "\tsize=%s", s)
		}
		if r.LibraryName != "" {
			fmt.Fprintf(&b, "\tlibrary=%s", r.LibraryName)
		}
		if g, ok := r.Gated.(string); ok && g != "" {
			fmt.Fprintf(&b, "\tgated=%s", g)
		}
		b.WriteByte('\n')
	}
	return Result{Output: b.String(), Summary: fmt.Sprintf("%d %s", len(repos), in.Kind)}
}

// redactURLError drops the URL from a transport error: it carries no
// secret today, but errors are shown to the model and logged.
func redactURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

func repoTask(r hfRepo) string {
	if r.PipelineTag != "" {
		return r.PipelineTag
	}
	var ts []string
	for _, t := range r.Tags {
		if v, ok := strings.CutPrefix(t, "task_categories:"); ok {
			ts = append(ts, v)
		}
	}
	return strings.Join(ts, ",")
}

func repoSize(r hfRepo) string {
	if r.Safetensors != nil && r.Safetensors.Total > 0 {
		return humanParams(r.Safetensors.Total) + " params"
	}
	return tagValue(r.Tags, "size_categories:")
}

func humanParams(n int64) string {
	switch {
	case n >= 1e9:
		return strconv.FormatFloat(float64(n)/1e9, 'f', 1, 64) + "B"
	case n >= 1e6:
		return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + "M"
	case n >= 1e3:
		return strconv.FormatFloat(float64(n)/1e3, 'f', 1, 64) + "K"
	}
	return strconv.FormatInt(n, 10)
}

func tagValue(tags []string, prefix string) string {
	for _, t := range tags {
		if v, ok := strings.CutPrefix(t, prefix); ok {
			return v
		}
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
