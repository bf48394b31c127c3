// Package notion defines the gateway's Notion route: sandboxes read pages
// and databases as task input and publish experiment reports as pages
// under a parent page the user chose, through the gateway, which injects
// the integration token. Writes outside what the user allowed in advance
// (pages under the configured parents, and the pages the sandbox created
// there) are held for the user's approval like any write leaving the
// sandbox.
package notion

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"sync"

	"github.com/mlagent/mlagent/internal/gateway"
	"github.com/mlagent/mlagent/internal/protocol"
)

// RouteName is the gateway prefix: /notion/v1/….
const RouteName = "notion"

// DefaultUpstream is Notion's API host.
const DefaultUpstream = "https://api.notion.com"

// NotConfigured says how the user connects Notion.
const NotConfigured = "Notion is not connected; ask the user to create an internal integration, share the report's " +
	"parent page with it, and run `mlagent secret set notion NOTION_TOKEN=@-` on the host " +
	"(and add the parent page to [notion] parents in config.toml to publish without asking)"

var idRE = regexp.MustCompile(`[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}`)

// ParseID returns the 32-hex-digit id in a Notion id or link (the last one
// in a link, which is the page's), lowercase without dashes.
func ParseID(s string) (string, bool) {
	all := idRE.FindAllString(s, -1)
	if len(all) == 0 {
		return "", false
	}
	return strings.ToLower(strings.ReplaceAll(all[len(all)-1], "-", "")), true
}

// Policy is what the user allowed in advance: creating pages under the
// parents, and editing the pages a sandbox token created there. Safe for
// concurrent use.
type Policy struct {
	parents map[string]bool
	mu      sync.Mutex
	created map[string]map[string]bool // token id → page ids
}

// NewPolicy allows pages under parents (ids or links; bad ones are
// returned as errors by the caller's validation, here skipped).
func NewPolicy(parents []string) *Policy {
	p := &Policy{parents: map[string]bool{}, created: map[string]map[string]bool{}}
	for _, s := range parents {
		if id, ok := ParseID(s); ok {
			p.parents[id] = true
		}
	}
	return p
}

// Service is the gateway route. token "" means not configured.
func Service(token, upstream string, pol *Policy) gateway.Service {
	if upstream == "" {
		upstream = DefaultUpstream
	}
	if pol == nil {
		pol = NewPolicy(nil)
	}
	return gateway.Service{
		Name:     RouteName,
		Upstream: upstream,
		Credential: func(context.Context) (string, error) {
			if token == "" {
				return "", gateway.ErrNotConfigured
			}
			return "Bearer " + token, nil
		},
		Classify:      Classify,
		Describe:      Describe,
		PreApproved:   pol.PreApproved,
		Observe:       pol.Observe,
		NotConfigured: NotConfigured,
	}
}

func segs(p string) []string {
	return strings.Split(strings.Trim(p, "/"), "/")
}

// Classify says what a request below /notion would do. Reads: GET of
// pages, blocks, databases, data sources, users and comments; POST of
// search and database/data-source queries (Notion reads by POST there).
// Writes: every other POST, PATCH and DELETE under /v1. Else not served.
func Classify(method, p string, _ []byte) gateway.Access {
	s := segs(p)
	if len(s) < 2 || s[0] != "v1" {
		return gateway.AccessNone
	}
	switch s[1] {
	case "pages", "blocks", "databases", "data_sources", "users", "comments", "search", "file_uploads":
	default:
		return gateway.AccessNone
	}
	switch method {
	case http.MethodGet, http.MethodHead:
		if s[1] == "search" {
			return gateway.AccessNone
		}
		return gateway.AccessRead
	case http.MethodPost:
		if len(s) == 2 && s[1] == "search" ||
			len(s) == 4 && (s[1] == "databases" || s[1] == "data_sources") && s[3] == "query" {
			return gateway.AccessRead
		}
		return gateway.AccessWrite
	case http.MethodPatch, http.MethodDelete, http.MethodPut:
		return gateway.AccessWrite
	}
	return gateway.AccessNone
}

// PreApproved allows, without asking: creating a page whose parent is a
// configured parent; appending blocks to, or updating, a page this token
// created; uploading files (private until a block of an allowed page uses
// them).
func (pol *Policy) PreApproved(tokenID, method, p string, body []byte) bool {
	s := segs(p)
	switch {
	case method == http.MethodPost && len(s) == 2 && s[1] == "pages":
		id, ok := parentOf(body)
		return ok && pol.parents[id]
	case method == http.MethodPatch && len(s) == 4 && s[1] == "blocks" && s[3] == "children",
		method == http.MethodPatch && len(s) == 3 && s[1] == "pages":
		id, ok := ParseID(s[2])
		if !ok || len(s[2]) > 36 {
			return false
		}
		pol.mu.Lock()
		defer pol.mu.Unlock()
		return pol.created[tokenID][id]
	case method == http.MethodPost && s[1] == "file_uploads" && len(s) == 2:
		return sentUpload(body)
	case method == http.MethodPost && s[1] == "file_uploads" && len(s) == 4 && (s[3] == "send" || s[3] == "complete"):
		return true
	}
	return false
}

// object decodes a JSON object with its keys as written. Notion reads
// keys exactly; encoding/json into a struct matches them without case
// (and the last of "parent" and "Parent" wins), so a struct would read
// another parent than the one Notion uses.
func object(b []byte) (map[string]json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil || m == nil {
		return nil, false
	}
	return m, true
}

// parentOf returns the id of the parent a page-creating body names, as
// Notion reads it: one of page_id, database_id or data_source_id, with an
// optional "type" naming that same key, and nothing else. Any other shape
// (two ids, a type naming another key, a workspace parent) is not a
// parent the policy can vouch for.
func parentOf(body []byte) (string, bool) {
	top, ok := object(body)
	if !ok {
		return "", false
	}
	parent, ok := object(top["parent"])
	if !ok {
		return "", false
	}
	key := ""
	for k := range parent {
		switch k {
		case "type":
		case "page_id", "database_id", "data_source_id":
			if key != "" {
				return "", false
			}
			key = k
		default:
			return "", false
		}
	}
	if key == "" {
		return "", false
	}
	if t, ok := parent["type"]; ok {
		var typ string
		if json.Unmarshal(t, &typ) != nil || typ != key {
			return "", false
		}
	}
	var v string
	if json.Unmarshal(parent[key], &v) != nil {
		return "", false
	}
	return ParseID(v)
}

// sentUpload reports whether a file upload is one whose bytes the
// sandbox sends (single_part, the default, or multi_part). In
// external_url mode Notion's servers fetch a URL the sandbox chose: a way
// out of the sandbox past the gateway's egress allowlist, so the user is
// asked.
func sentUpload(body []byte) bool {
	if len(body) == 0 {
		return true
	}
	m, ok := object(body)
	if !ok {
		return false
	}
	if _, ok := m["external_url"]; ok {
		return false
	}
	mode, ok := m["mode"]
	if !ok {
		return true
	}
	var v string
	return json.Unmarshal(mode, &v) == nil && (v == "single_part" || v == "multi_part")
}

// Observe remembers the pages a token created, so it may fill them.
func (pol *Policy) Observe(tokenID, method, p string, status int, body []byte) {
	s := segs(p)
	if method != http.MethodPost || len(s) != 2 || s[1] != "pages" || status != http.StatusOK {
		return
	}
	var resp struct {
		Object string `json:"object"`
		ID     string `json:"id"`
	}
	if json.Unmarshal(body, &resp) != nil || resp.Object != "page" {
		return
	}
	id, ok := ParseID(resp.ID)
	if !ok {
		return
	}
	pol.mu.Lock()
	defer pol.mu.Unlock()
	if pol.created[tokenID] == nil {
		pol.created[tokenID] = map[string]bool{}
	}
	pol.created[tokenID][id] = true
}

// Describe names a Notion write for the user: notion:create with the
// parent's id for a new page, notion:write with the page or block id
// otherwise.
func Describe(method, p string, body []byte) protocol.Action {
	a := protocol.Action{Kind: "notion:write", Detail: method + " /notion" + p}
	s := segs(p)
	if method == http.MethodPost && len(s) == 2 && s[1] == "pages" {
		a.Kind = "notion:create"
		if id, ok := parentOf(body); ok {
			a.Target = id
		} else {
			a.Target = "(parent not a single page or database)"
		}
		return a
	}
	if len(s) >= 3 {
		if id, ok := ParseID(s[2]); ok {
			a.Target = id
		}
	}
	return a
}
