package fakeapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ModelInfo is one entry of the model catalogue, as GET /v1/models
// returns it.
type ModelInfo struct {
	ID          string
	DisplayName string
	Line        string // "sonnet", "opus", "haiku", "fable", "mythos" or ""
	Lifecycle   string // "active", "deprecated" or "retired"
	Created     time.Time
	Deprecated  time.Time // zero while active
	Retires     time.Time // zero when no retirement is scheduled
}

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

// DefaultModels is the catalogue a typical key sees on 2026-11-30, newest
// first: the model ids of anthropic-sdk-go v2.15.0 (Mythos models, by
// invitation only, left out), with release and retirement dates from
// Anthropic's model pages where published (else the SDK release that
// first named the model). claude-sonnet-4-5 reached end of life today and
// is retired: a request naming it gets 404, as from the real API.
var DefaultModels = []ModelInfo{
	{ID: "claude-fable-5-2", DisplayName: "Claude Fable 5.2", Line: "fable", Lifecycle: "active", Created: day("2026-11-09")},
	{ID: "claude-haiku-5-5", DisplayName: "Claude Haiku 5.5", Line: "haiku", Lifecycle: "active", Created: day("2026-10-07")},
	{ID: "claude-sonnet-5-5", DisplayName: "Claude Sonnet 5.5", Line: "sonnet", Lifecycle: "active", Created: day("2026-09-24")},
	{ID: "claude-fable-5-1", DisplayName: "Claude Fable 5.1", Line: "fable", Lifecycle: "active", Created: day("2026-09-01")},
	{ID: "claude-opus-5-5", DisplayName: "Claude Opus 5.5", Line: "opus", Lifecycle: "active", Created: day("2026-08-27")},
	{ID: "claude-opus-5", DisplayName: "Claude Opus 5", Line: "opus", Lifecycle: "active", Created: day("2026-07-24")},
	{ID: "claude-sonnet-5", DisplayName: "Claude Sonnet 5", Line: "sonnet", Lifecycle: "active", Created: day("2026-06-30")},
	{ID: "claude-fable-5", DisplayName: "Claude Fable 5", Line: "fable", Lifecycle: "active", Created: day("2026-06-09")},
	{ID: "claude-opus-4-8", DisplayName: "Claude Opus 4.8", Line: "opus", Lifecycle: "active", Created: day("2026-05-28")},
	{ID: "claude-opus-4-7", DisplayName: "Claude Opus 4.7", Line: "opus", Lifecycle: "active", Created: day("2026-04-16")},
	{ID: "claude-sonnet-4-6", DisplayName: "Claude Sonnet 4.6", Line: "sonnet", Lifecycle: "active", Created: day("2026-02-17")},
	{ID: "claude-opus-4-6", DisplayName: "Claude Opus 4.6", Line: "opus", Lifecycle: "active", Created: day("2026-02-05")},
	{ID: "claude-opus-4-5-20251101", DisplayName: "Claude Opus 4.5", Line: "opus", Lifecycle: "deprecated",
		Created: day("2025-11-01"), Deprecated: day("2026-11-23"), Retires: day("2027-01-22")},
	{ID: "claude-haiku-4-5-20251001", DisplayName: "Claude Haiku 4.5", Line: "haiku", Lifecycle: "active", Created: day("2025-10-01")},
	{ID: "claude-sonnet-4-5-20250929", DisplayName: "Claude Sonnet 4.5", Line: "sonnet", Lifecycle: "retired",
		Created: day("2025-09-29"), Deprecated: day("2026-08-27"), Retires: day("2026-11-30")},
}

// aliases maps the alias ids the API also accepts to their snapshots.
var aliases = map[string]string{
	"claude-opus-4-5":   "claude-opus-4-5-20251101",
	"claude-haiku-4-5":  "claude-haiku-4-5-20251001",
	"claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
}

// Models lists the ids of the default catalogue that a request may name
// (active and deprecated models).
var Models = func() []string {
	var ids []string
	for _, m := range DefaultModels {
		if m.Lifecycle != "retired" {
			ids = append(ids, m.ID)
		}
	}
	return ids
}()

func (s *Server) catalogue() []ModelInfo {
	if s.opts.Models != nil {
		return s.opts.Models
	}
	return DefaultModels
}

// findModel returns the catalogue entry of id or of the alias id names.
func (s *Server) findModel(id string) (ModelInfo, bool) {
	for _, m := range s.catalogue() {
		if m.ID == id {
			return m, true
		}
	}
	if snap, ok := aliases[id]; ok {
		for _, m := range s.catalogue() {
			if m.ID == snap {
				return m, true
			}
		}
	}
	return ModelInfo{}, false
}

// usableModel says whether a Messages request may name id: the real API
// answers 404 not_found_error "model: <id>" for an unknown or retired one.
func (s *Server) usableModel(id string) bool {
	if s.opts.AnyModel {
		return true
	}
	m, ok := s.findModel(id)
	return ok && m.Lifecycle != "retired"
}

type wireModel struct {
	Type           string  `json:"type"`
	ID             string  `json:"id"`
	DisplayName    string  `json:"display_name"`
	CreatedAt      string  `json:"created_at"`
	Line           *string `json:"line"`
	Lifecycle      string  `json:"lifecycle"`
	DeprecatedAt   *string `json:"deprecated_at"`
	RetiresAt      *string `json:"retires_at"`
	MaxInputTokens int64   `json:"max_input_tokens"`
	MaxTokens      int64   `json:"max_tokens"`
}

func (m ModelInfo) wire() wireModel {
	opt := func(t time.Time) *string {
		if t.IsZero() {
			return nil
		}
		s := t.UTC().Format(time.RFC3339)
		return &s
	}
	w := wireModel{Type: "model", ID: m.ID, DisplayName: m.DisplayName, CreatedAt: m.Created.UTC().Format(time.RFC3339),
		Lifecycle: m.Lifecycle, DeprecatedAt: opt(m.Deprecated), RetiresAt: opt(m.Retires),
		MaxInputTokens: 1_000_000, MaxTokens: 128_000}
	if m.Line != "" {
		w.Line = &m.Line
	}
	return w
}

// serveModels is GET /v1/models: newest first, paged by limit (1 to
// 1000, default 20) and either after_id or before_id, filtered by
// lifecycle[] (default active and deprecated). Bad parameters get 400,
// as from the real API.
func (s *Server) serveModels(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "limit", "after_id", "before_id", "lifecycle[]":
		default:
			writeError(w, 400, "invalid_request_error", fmt.Sprintf("%s: Extra inputs are not permitted", k))
			return
		}
	}
	limit := 20
	if v, ok := q["limit"]; ok {
		n, err := strconv.Atoi(v[0])
		if len(v) != 1 || err != nil || n < 1 || n > 1000 {
			writeError(w, 400, "invalid_request_error", "limit: Input should be an integer between 1 and 1000")
			return
		}
		limit = n
	}
	if q.Has("after_id") && q.Has("before_id") {
		writeError(w, 400, "invalid_request_error", "after_id and before_id are mutually exclusive")
		return
	}
	stages := q["lifecycle[]"]
	if len(stages) == 0 {
		stages = []string{"active", "deprecated"}
	}
	if len(stages) > 3 {
		writeError(w, 400, "invalid_request_error", "lifecycle: at most 3 values")
		return
	}
	for _, st := range stages {
		if st != "active" && st != "deprecated" && st != "retired" {
			writeError(w, 400, "invalid_request_error", fmt.Sprintf("lifecycle: Input should be 'active', 'deprecated' or 'retired', got %q", st))
			return
		}
	}
	var list []ModelInfo
	for _, m := range s.catalogue() {
		if slices.Contains(stages, m.Lifecycle) {
			list = append(list, m)
		}
	}
	slices.SortStableFunc(list, func(a, b ModelInfo) int { return b.Created.Compare(a.Created) })
	cursor := func(id string) int {
		return slices.IndexFunc(list, func(m ModelInfo) bool { return m.ID == id })
	}
	var lo, hi int
	if id := q.Get("after_id"); q.Has("after_id") {
		i := cursor(id)
		if i < 0 {
			writeError(w, 400, "invalid_request_error", fmt.Sprintf("after_id: no model %q in this list", id))
			return
		}
		lo = i + 1
		hi = min(lo+limit, len(list))
	} else if id := q.Get("before_id"); q.Has("before_id") {
		i := cursor(id)
		if i < 0 {
			writeError(w, 400, "invalid_request_error", fmt.Sprintf("before_id: no model %q in this list", id))
			return
		}
		hi = i
		lo = max(hi-limit, 0)
	} else {
		hi = min(limit, len(list))
	}
	page := list[lo:hi]
	out := struct {
		Data    []wireModel `json:"data"`
		HasMore bool        `json:"has_more"`
		FirstID *string     `json:"first_id"`
		LastID  *string     `json:"last_id"`
	}{Data: []wireModel{}}
	for _, m := range page {
		out.Data = append(out.Data, m.wire())
	}
	if len(page) > 0 {
		out.FirstID, out.LastID = &page[0].ID, &page[len(page)-1].ID
	}
	if q.Has("before_id") {
		out.HasMore = lo > 0
	} else {
		out.HasMore = hi < len(list)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// serveModel is GET /v1/models/{id}.
func (s *Server) serveModel(w http.ResponseWriter, id string) {
	id, err := url.PathUnescape(id)
	m, ok := s.findModel(id)
	if err != nil || !ok || strings.Contains(id, "/") {
		writeError(w, 404, "not_found_error", "model: "+id)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(m.wire())
}
