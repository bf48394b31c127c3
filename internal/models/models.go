// Package models chooses the model a chat runs when none is named: the
// newest Sonnet-class model the user's key can use, from GET /v1/models,
// cached for a day; and it warns about a named model that is deprecated
// or that the key cannot use, so that no default dies with a model.
package models

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
)

// Fallback is the model used when none is named and the list of models
// cannot be read (a local server without GET /v1/models, an outage). It
// is the newest Sonnet-class model on 2026-11-30; Choose says when it is
// used, and warns once it is deprecated.
const Fallback = "claude-sonnet-5-5"

// Info is what a chat needs to know of one model.
type Info struct {
	ID          string    `json:"id"`
	DisplayName string    `json:"display_name,omitempty"`
	Line        string    `json:"line,omitempty"`      // sonnet, opus, haiku, …; "" when the server says none
	Lifecycle   string    `json:"lifecycle,omitempty"` // active, deprecated, retired; "" from older servers
	Created     time.Time `json:"created_at"`
	RetiresAt   time.Time `json:"retires_at,omitzero"`
}

// List reads every page of GET /v1/models at baseURL with key (sent as
// the SDK sends it). hc may be nil.
func List(ctx context.Context, hc *http.Client, baseURL, key string) ([]Info, error) {
	opts := []option.RequestOption{
		// Only what the caller passes: no key or base URL from this
		// process's environment.
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(baseURL), option.WithAPIKey(key), option.WithMaxRetries(1),
		option.WithRequestTimeout(15 * time.Second),
	}
	if hc != nil {
		opts = append(opts, option.WithHTTPClient(hc))
	}
	c := anthropic.NewClient(opts...)
	pager := c.Models.ListAutoPaging(ctx, anthropic.ModelListParams{Limit: anthropic.Int(1000)})
	var out []Info
	for pager.Next() {
		m := pager.Current()
		out = append(out, Info{ID: m.ID, DisplayName: m.DisplayName, Line: string(m.Line),
			Lifecycle: string(m.Lifecycle), Created: m.CreatedAt, RetiresAt: m.RetiresAt})
		if len(out) > 10000 {
			return nil, errors.New("list models: more than 10000 models")
		}
	}
	if err := pager.Err(); err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	return out, nil
}

// PickDefault is the newest active Sonnet-class model in list. A server
// that names no model lines (an older API version, a compatible server)
// has its models judged by their ids.
func PickDefault(list []Info) (string, bool) {
	lines := slices.ContainsFunc(list, func(m Info) bool { return m.Line != "" })
	var best *Info
	for i := range list {
		m := &list[i]
		sonnet := m.Line == "sonnet" || (!lines && strings.HasPrefix(m.ID, "claude-sonnet-"))
		if !sonnet || (m.Lifecycle != "" && m.Lifecycle != "active") {
			continue
		}
		if best == nil || m.Created.After(best.Created) {
			best = m
		}
	}
	if best == nil {
		return "", false
	}
	return best.ID, true
}

// endOfLife is the deprecation table of anthropic-sdk-go v2.15.0
// (message.go: "Deprecated: Will reach end-of-life on …"); a model the
// list marks deprecated is warned about even when it is not here.
var endOfLife = map[string]string{
	"claude-mythos-preview":      "2026-06-30",
	"claude-sonnet-4-5":          "2026-11-30",
	"claude-sonnet-4-5-20250929": "2026-11-30",
	"claude-opus-4-5":            "2027-01-22",
	"claude-opus-4-5-20251101":   "2027-01-22",
}

// EndOfLife is the date model stops working, from the SDK's table.
func EndOfLife(model string) (time.Time, bool) {
	d, ok := endOfLife[model]
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.DateOnly, d)
	return t, err == nil
}

// Resolver chooses a model. List is called at most once a day per Key
// (the list is cached in CachePath); it may be nil where no list can be
// had.
type Resolver struct {
	List      func(ctx context.Context) ([]Info, error)
	CachePath string        // "" = no cache
	Key       string        // what the list depends on (upstream and key); stored hashed
	TTL       time.Duration // 0 = 24h
	Now       func() time.Time
}

// Choice is the model to use and what the user should be told.
type Choice struct {
	Model    string
	Warnings []string
}

// Choose returns requested when it is set, with warnings when it is
// deprecated or not among the models the key can use; when requested is
// empty, the newest Sonnet-class model the key can use (or Fallback). A
// requested model that only comes from an old session (keep is false) is
// replaced when the key can no longer use it.
func (r *Resolver) Choose(ctx context.Context, requested string, keep bool) Choice {
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	list, listErr := r.list(ctx, now)
	var c Choice
	def, haveDef := PickDefault(list)
	if requested == "" {
		switch {
		case haveDef:
			c.Model = def
		case listErr != nil:
			c.Model = Fallback
			c.Warnings = append(c.Warnings, fmt.Sprintf("could not list the models your key can use (%v); using %s (--model to choose)", listErr, Fallback))
		default:
			c.Model = Fallback
			c.Warnings = append(c.Warnings, fmt.Sprintf("no Sonnet-class model among the %d models your key can use; using %s (--model to choose)", len(list), Fallback))
		}
		c.Warnings = append(c.Warnings, deprecation(c.Model, list, now, "")...)
		return c
	}
	c.Model = requested
	suggest := ""
	if haveDef && def != requested {
		suggest = def
	}
	if listErr == nil && len(list) > 0 && !usable(requested, list) {
		if !keep && haveDef {
			c.Model = def
			c.Warnings = append(c.Warnings, fmt.Sprintf("this session's model %s is not among the models your key can use; using %s", requested, def))
			return c
		}
		c.Warnings = append(c.Warnings, fmt.Sprintf("model %s is not among the models your key can use: %s", requested, IDs(list)))
	}
	c.Warnings = append(c.Warnings, deprecation(requested, list, now, suggest)...)
	return c
}

// usable says whether a Messages request may name id: it is listed and
// not retired, or it is an alias of a listed snapshot (id-YYYYMMDD).
func usable(id string, list []Info) bool {
	for _, m := range list {
		if m.ID == id || (strings.HasPrefix(m.ID, id+"-") && len(m.ID) == len(id)+9) {
			return m.Lifecycle != "retired"
		}
	}
	return false
}

// deprecation warns about a model with an end of life, from the list or
// the SDK's table, whichever says it.
func deprecation(id string, list []Info, now time.Time, suggest string) []string {
	var eol time.Time
	for _, m := range list {
		if m.ID == id || (strings.HasPrefix(m.ID, id+"-") && len(m.ID) == len(id)+9) {
			if m.Lifecycle == "deprecated" || m.Lifecycle == "retired" {
				eol = m.RetiresAt
				if eol.IsZero() {
					eol = now
				}
			}
		}
	}
	if t, ok := EndOfLife(id); ok && (eol.IsZero() || t.Before(eol)) {
		eol = t
	}
	if eol.IsZero() {
		return nil
	}
	then := "use another model"
	if suggest != "" {
		then = "the newest Sonnet-class model your key can use is " + suggest
	}
	date := eol.UTC().Format(time.DateOnly)
	if !now.Before(eol.UTC().Truncate(24 * time.Hour)) {
		return []string{fmt.Sprintf("model %s is deprecated and reached its end of life on %s: requests naming it fail; %s", id, date, then)}
	}
	days := int(eol.Sub(now).Hours()/24) + 1
	return []string{fmt.Sprintf("model %s is deprecated and reaches its end of life on %s (in %d days); %s", id, date, days, then)}
}

// IDs lists the usable models of list, newest first, for a message.
func IDs(list []Info) string {
	l := slices.Clone(list)
	slices.SortStableFunc(l, func(a, b Info) int { return b.Created.Compare(a.Created) })
	var ids []string
	for _, m := range l {
		if m.Lifecycle != "retired" {
			ids = append(ids, m.ID)
		}
	}
	if len(ids) == 0 {
		return "(none)"
	}
	return strings.Join(ids, ", ")
}

// cacheFile is the cached list.
type cacheFile struct {
	Key     string    `json:"key"`
	Fetched time.Time `json:"fetched"`
	Models  []Info    `json:"models"`
}

func (r *Resolver) hashedKey() string {
	h := sha256.Sum256([]byte("mlagent models cache\x00" + r.Key))
	return hex.EncodeToString(h[:16])
}

// list returns the cached list while it is fresh, else a new one (and
// caches it); a stale cache is better than nothing when listing fails.
func (r *Resolver) list(ctx context.Context, now time.Time) ([]Info, error) {
	ttl := cmp.Or(r.TTL, 24*time.Hour)
	var cached *cacheFile
	if r.CachePath != "" {
		if b, err := readSmall(r.CachePath, 4<<20); err == nil {
			var cf cacheFile
			if json.Unmarshal(b, &cf) == nil && cf.Key == r.hashedKey() {
				cached = &cf
				if age := now.Sub(cf.Fetched); age >= 0 && age < ttl {
					return cf.Models, nil
				}
			}
		}
	}
	if r.List == nil {
		return nil, errors.New("no way to list models")
	}
	list, err := r.List(ctx)
	if err != nil {
		if cached != nil {
			return cached.Models, nil
		}
		return nil, err
	}
	if r.CachePath != "" {
		if err := writeCache(r.CachePath, cacheFile{Key: r.hashedKey(), Fetched: now, Models: list}); err != nil {
			return list, nil // a cache that cannot be written only costs a request
		}
	}
	return list, nil
}

// readSmall reads a regular file of at most max bytes, never through a
// symlink.
func readSmall(path string, max int64) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > max {
		return nil, errors.New("not a small regular file")
	}
	return os.ReadFile(path)
}

// writeCache replaces the cache file atomically (0600).
func writeCache(path string, cf cacheFile) error {
	b, err := json.Marshal(cf)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".models-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
