// Package notiontest is a strict fake of the parts of the Notion API the
// notion skill uses, on loopback: it wants the integration token and a
// Notion-Version header on every call, refuses parents not shared with
// the integration, blocks of unknown shape, more than 100 blocks per
// request, and images that name an upload never sent.
package notiontest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Page is a page in the fake workspace.
type Page struct {
	ID, ParentID, Title string
	Blocks              []map[string]any
	// Rows holds a database's rows (a database is a Page with Rows).
	Rows []map[string]any
	// Block marks a block with children (a table), kept so that
	// GET /v1/blocks/{id}/children finds its rows.
	Block bool
}

// Fake is the fake Notion API.
type Fake struct {
	*httptest.Server
	Token string

	mu      sync.Mutex
	Pages   map[string]*Page // by id without dashes
	uploads map[string]bool  // upload id → sent
	// Requests logs "METHOD path" of every request.
	Requests []string
	// Auth logs the Authorization header of every request.
	Auth []string
}

// New starts a fake with one shared parent page, "Reports".
func New(t *testing.T) *Fake {
	f := &Fake{Token: "ntn_fake_" + hexID()[:16], Pages: map[string]*Page{}, uploads: map[string]bool{}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

// AddPage adds a shared page and returns its id (dashed, as Notion shows).
func (f *Fake) AddPage(title, parent string, blocks ...map[string]any) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := hexID()
	f.Pages[id] = &Page{ID: id, ParentID: bare(parent), Title: title, Blocks: blocks}
	return dashed(id)
}

// AddDatabase adds a shared database with rows and returns its id.
func (f *Fake) AddDatabase(title string, rows ...map[string]any) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := hexID()
	f.Pages[id] = &Page{ID: id, Title: title, Rows: rows}
	return dashed(id)
}

// Page returns a page by id (any form).
func (f *Fake) Page(id string) *Page {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Pages[bare(id)]
}

// ChildrenOf returns the pages whose parent is id.
func (f *Fake) ChildrenOf(id string) []*Page {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*Page
	for _, p := range f.Pages {
		if p.ParentID == bare(id) {
			out = append(out, p)
		}
	}
	return out
}

func hexID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func bare(id string) string { return strings.ToLower(strings.ReplaceAll(id, "-", "")) }

func dashed(id string) string {
	return id[:8] + "-" + id[8:12] + "-" + id[12:16] + "-" + id[16:20] + "-" + id[20:]
}

func fail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"object": "error", "status": status, "code": code, "message": msg})
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.Requests = append(f.Requests, r.Method+" "+r.URL.Path)
	f.Auth = append(f.Auth, r.Header.Get("Authorization"))
	f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+f.Token {
		fail(w, http.StatusUnauthorized, "unauthorized", "API token is invalid.")
		return
	}
	if v := r.Header.Get("Notion-Version"); v != "2022-06-28" && v != "2025-09-03" {
		fail(w, http.StatusBadRequest, "missing_version", "Notion-Version header failed validation.")
		return
	}
	s := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(s) < 2 || s[0] != "v1" {
		fail(w, http.StatusNotFound, "invalid_request_url", "Invalid request URL.")
		return
	}
	var body map[string]any
	if r.Method == http.MethodPost || r.Method == http.MethodPatch {
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if !(len(s) == 4 && s[1] == "file_uploads" && s[3] == "send") {
			if ct != "application/json" {
				fail(w, http.StatusBadRequest, "invalid_request", "Content-Type must be application/json.")
				return
			}
			if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
				fail(w, http.StatusBadRequest, "invalid_json", "Error parsing JSON body.")
				return
			}
		}
	}
	switch {
	case r.Method == http.MethodPost && len(s) == 2 && s[1] == "pages":
		f.createPage(w, body)
	case r.Method == http.MethodPatch && len(s) == 4 && s[1] == "blocks" && s[3] == "children":
		f.appendBlocks(w, s[2], body)
	case r.Method == http.MethodGet && len(s) == 3 && s[1] == "pages":
		p := f.Page(s[2])
		if p == nil || p.Rows != nil || p.Block {
			fail(w, http.StatusNotFound, "object_not_found", "Could not find page with ID: "+s[2]+". Make sure the relevant pages and databases are shared with your integration.")
			return
		}
		reply(w, pageJSON(p))
	case r.Method == http.MethodGet && len(s) == 4 && s[1] == "blocks" && s[3] == "children":
		p := f.Page(s[2])
		if p == nil {
			fail(w, http.StatusNotFound, "object_not_found", "Could not find block with ID: "+s[2]+".")
			return
		}
		results := p.Blocks
		if results == nil {
			results = []map[string]any{}
		}
		reply(w, map[string]any{"object": "list", "results": results, "has_more": false, "next_cursor": nil})
	case r.Method == http.MethodPost && len(s) == 4 && s[1] == "databases" && s[3] == "query":
		p := f.Page(s[2])
		if p == nil || p.Rows == nil {
			fail(w, http.StatusNotFound, "object_not_found", "Could not find database with ID: "+s[2]+".")
			return
		}
		reply(w, map[string]any{"object": "list", "results": p.Rows, "has_more": false, "next_cursor": nil})
	case r.Method == http.MethodPost && len(s) == 2 && s[1] == "file_uploads":
		id := dashed(hexID())
		f.mu.Lock()
		f.uploads[id] = false
		f.mu.Unlock()
		reply(w, map[string]any{"object": "file_upload", "id": id, "status": "pending", "upload_url": f.URL + "/v1/file_uploads/" + id + "/send"})
	case r.Method == http.MethodPost && len(s) == 4 && s[1] == "file_uploads" && s[3] == "send":
		f.send(w, r, s[2])
	default:
		fail(w, http.StatusBadRequest, "invalid_request_url", "this fake does not serve "+r.Method+" "+r.URL.Path)
	}
}

func pageJSON(p *Page) map[string]any {
	return map[string]any{"object": "page", "id": dashed(p.ID), "url": "https://www.notion.so/" + p.ID,
		"parent":     map[string]any{"type": "page_id", "page_id": dashed(p.ParentID + strings.Repeat("0", 32-len(p.ParentID)))},
		"properties": map[string]any{"title": map[string]any{"type": "title", "title": []any{map[string]any{"type": "text", "plain_text": p.Title, "text": map[string]any{"content": p.Title}}}}}}
}

// blockTypes are the block types the fake accepts, with the key their
// content lives under.
var blockTypes = map[string]bool{
	"paragraph": true, "heading_1": true, "heading_2": true, "heading_3": true, "bulleted_list_item": true,
	"numbered_list_item": true, "code": true, "table": true, "table_row": true, "image": true, "divider": true,
	"bookmark": true, "callout": true, "quote": true, "to_do": true, "toggle": true, "embed": true,
}

// maxElements is Notion's limit of block elements in one request, nested
// ones (a table's rows) included.
const maxElements = 1000

// countBlocks counts the block elements in a children array, nested ones
// included.
func countBlocks(raw any) int {
	list, _ := raw.([]any)
	n := 0
	for _, x := range list {
		n++
		if b, ok := x.(map[string]any); ok {
			typ, _ := b["type"].(string)
			if content, ok := b[typ].(map[string]any); ok {
				n += countBlocks(content["children"])
			}
		}
	}
	return n
}

func (f *Fake) checkBlocks(raw any) ([]map[string]any, string) {
	if n := countBlocks(raw); n > maxElements {
		return nil, fmt.Sprintf("body.children holds %d block elements; a request takes at most %d", n, maxElements)
	}
	if raw == nil {
		return nil, ""
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, "body.children should be an array"
	}
	if len(list) > 100 {
		return nil, fmt.Sprintf("body.children.length should be ≤ 100, instead was %d", len(list))
	}
	var out []map[string]any
	for i, x := range list {
		b, ok := x.(map[string]any)
		typ, _ := b["type"].(string)
		if !ok || !blockTypes[typ] {
			return nil, fmt.Sprintf("body.children[%d].type is not a known block type", i)
		}
		content, ok := b[typ].(map[string]any)
		if !ok && typ != "divider" {
			return nil, fmt.Sprintf("body.children[%d].%s should be defined", i, typ)
		}
		if typ == "table" {
			rows, msg := f.checkBlocks(content["children"])
			if msg != "" || len(rows) == 0 {
				return nil, fmt.Sprintf("body.children[%d].table.children: a table needs table_row children %s", i, msg)
			}
		}
		if typ == "image" {
			switch content["type"] {
			case "file_upload":
				up, _ := content["file_upload"].(map[string]any)
				id, _ := up["id"].(string)
				f.mu.Lock()
				sent := f.uploads[id]
				f.mu.Unlock()
				if !sent {
					return nil, fmt.Sprintf("body.children[%d].image.file_upload.id is not an uploaded file", i)
				}
			case "external":
			default:
				return nil, fmt.Sprintf("body.children[%d].image needs external or file_upload", i)
			}
		}
		out = append(out, b)
	}
	return out, ""
}

// storeLocked gives blocks ids, as Notion does, and moves a table's rows
// out of it: Notion returns them as the table block's children.
func (f *Fake) storeLocked(blocks []map[string]any) []map[string]any {
	for _, b := range blocks {
		id := hexID()
		b["object"], b["id"], b["has_children"] = "block", dashed(id), false
		typ := b["type"].(string)
		content, _ := b[typ].(map[string]any)
		if kids, ok := content["children"].([]any); ok {
			var rows []map[string]any
			for _, k := range kids {
				rows = append(rows, k.(map[string]any))
			}
			delete(content, "children")
			b["has_children"] = true
			f.Pages[id] = &Page{ID: id, Block: true, Blocks: f.storeLocked(rows)}
		}
	}
	return blocks
}

func (f *Fake) createPage(w http.ResponseWriter, body map[string]any) {
	parent, _ := body["parent"].(map[string]any)
	pid, _ := parent["page_id"].(string)
	if pid == "" {
		fail(w, http.StatusBadRequest, "validation_error", "body.parent.page_id should be defined (this fake makes pages under pages)")
		return
	}
	if f.Page(pid) == nil {
		fail(w, http.StatusNotFound, "object_not_found", "Could not find page with ID: "+pid+". Make sure the relevant pages and databases are shared with your integration.")
		return
	}
	props, _ := body["properties"].(map[string]any)
	title, _ := props["title"].(map[string]any)
	parts, _ := title["title"].([]any)
	var name strings.Builder
	for _, p := range parts {
		t, _ := p.(map[string]any)["text"].(map[string]any)
		c, _ := t["content"].(string)
		name.WriteString(c)
	}
	if name.Len() == 0 {
		fail(w, http.StatusBadRequest, "validation_error", "body.properties.title should be defined")
		return
	}
	blocks, msg := f.checkBlocks(body["children"])
	if msg != "" {
		fail(w, http.StatusBadRequest, "validation_error", msg)
		return
	}
	f.mu.Lock()
	p := &Page{ID: hexID(), ParentID: bare(pid), Title: name.String(), Blocks: f.storeLocked(blocks)}
	f.Pages[p.ID] = p
	f.mu.Unlock()
	reply(w, pageJSON(p))
}

func (f *Fake) appendBlocks(w http.ResponseWriter, id string, body map[string]any) {
	p := f.Page(id)
	if p == nil {
		fail(w, http.StatusNotFound, "object_not_found", "Could not find block with ID: "+id+".")
		return
	}
	blocks, msg := f.checkBlocks(body["children"])
	if msg != "" || blocks == nil {
		fail(w, http.StatusBadRequest, "validation_error", "body.children should be a non-empty array "+msg)
		return
	}
	f.mu.Lock()
	blocks = f.storeLocked(blocks)
	p.Blocks = append(p.Blocks, blocks...)
	f.mu.Unlock()
	reply(w, map[string]any{"object": "list", "results": blocks})
}

func (f *Fake) send(w http.ResponseWriter, r *http.Request, id string) {
	f.mu.Lock()
	_, ok := f.uploads[id]
	f.mu.Unlock()
	if !ok {
		fail(w, http.StatusNotFound, "object_not_found", "Could not find file upload with ID: "+id+".")
		return
	}
	file, hdr, err := r.FormFile("file")
	if err != nil {
		fail(w, http.StatusBadRequest, "validation_error", "multipart form field file is required")
		return
	}
	n, _ := io.Copy(io.Discard, file)
	if n == 0 {
		fail(w, http.StatusBadRequest, "validation_error", "the file is empty")
		return
	}
	f.mu.Lock()
	f.uploads[id] = true
	f.mu.Unlock()
	reply(w, map[string]any{"object": "file_upload", "id": id, "status": "uploaded", "filename": hdr.Filename, "content_length": n})
}
