// Package gdrivetest is a strict fake of the Google Drive v3 API and
// Google's OAuth token endpoint, for tests on loopback. It refuses what
// Drive refuses: a missing or wrong bearer token, unknown query
// parameters, downloads of folders and Workspace files, exports of
// binary files, uploads into folders that do not exist.
package gdrivetest

import (
	"crypto"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// FolderMIME is a folder's MIME type.
const FolderMIME = "application/vnd.google-apps.folder"

// Item is a file or folder in the fake Drive.
type Item struct {
	ID, Name, MimeType string
	Parents            []string
	Data               []byte
	// Exports holds a Workspace file's content per export MIME type.
	Exports map[string][]byte
}

// Fake is the fake Drive. Set its fields before use; lock-free reads of
// Items are safe only once no request is in flight.
type Fake struct {
	*httptest.Server
	t *testing.T

	// AccessToken is the only bearer token the API accepts.
	AccessToken string
	// ClientID, ClientSecret and RefreshToken are what the token endpoint
	// wants for grant_type=refresh_token.
	ClientID, ClientSecret, RefreshToken string
	// ServiceAccountKey, when set, is the public key that verifies a
	// service account's JWT grant; ServiceAccountEmail its issuer.
	ServiceAccountKey   *rsa.PublicKey
	ServiceAccountEmail string
	// PageSize caps list pages so tests see pagination.
	PageSize int

	mu      sync.Mutex
	Items   map[string]*Item
	nextID  int
	uploads map[string]*upload
	// CutDownload, when set, makes the first download of that file id end
	// after CutAfter bytes (the connection is closed).
	CutDownload string
	CutAfter    int
	cutDone     bool
	// FailChunk makes the upload chunk request number FailChunk (1-based,
	// across all sessions) fail once with 503.
	FailChunk  int
	chunkCalls int
	// Requests logs "METHOD path?query" of every API request.
	Requests []string
	// Tokens counts tokens issued.
	Tokens int
}

type upload struct {
	meta Item
	data []byte
}

// New starts a fake with a root folder "root".
func New(t *testing.T) *Fake {
	f := &Fake{
		t: t, AccessToken: "ya29.fake-access-token-" + strconv.Itoa(int(rand32())),
		ClientID: "client-id.apps.googleusercontent.com", ClientSecret: "fake-client-secret",
		RefreshToken: "1//fake-refresh-token", PageSize: 2,
		Items:   map[string]*Item{"root": {ID: "root", Name: "My Drive", MimeType: FolderMIME}},
		uploads: map[string]*upload{},
	}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

// AuthorizedUserJSON is an authorized-user credential file for this fake.
func (f *Fake) AuthorizedUserJSON() []byte {
	b, _ := json.Marshal(map[string]string{
		"type": "authorized_user", "client_id": f.ClientID, "client_secret": f.ClientSecret,
		"refresh_token": f.RefreshToken, "token_uri": f.URL + "/token",
	})
	return b
}

// Add puts an item in the fake and returns its id.
func (f *Fake) Add(it Item) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if it.ID == "" {
		it.ID = f.newIDLocked()
	}
	c := it
	f.Items[c.ID] = &c
	return c.ID
}

func (f *Fake) newIDLocked() string {
	f.nextID++
	return fmt.Sprintf("1fake%04dID", f.nextID)
}

// Children returns the items in a folder, sorted by name.
func (f *Fake) Children(id string) []*Item {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.childrenLocked(id)
}

func (f *Fake) childrenLocked(id string) []*Item {
	var out []*Item
	for _, it := range f.Items {
		for _, p := range it.Parents {
			if p == id {
				out = append(out, it)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Name < out[j].Name || out[i].Name == out[j].Name && out[i].ID < out[j].ID
	})
	return out
}

func apiErr(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": code, "message": msg, "errors": []map[string]string{{"domain": "global", "reason": reason, "message": msg}},
	}})
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		f.serveToken(w, r)
		return
	}
	f.mu.Lock()
	f.Requests = append(f.Requests, r.Method+" "+r.URL.RequestURI())
	f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+f.AccessToken {
		apiErr(w, http.StatusUnauthorized, "authError", "Request had invalid authentication credentials.")
		return
	}
	q := r.URL.Query()
	p := r.URL.Path
	switch {
	case p == "/drive/v3/files" && r.Method == http.MethodGet:
		f.list(w, q)
	case p == "/drive/v3/files" && r.Method == http.MethodPost:
		f.createFolder(w, r, q)
	case strings.HasPrefix(p, "/drive/v3/files/") && strings.HasSuffix(p, "/export") && r.Method == http.MethodGet:
		f.export(w, strings.TrimSuffix(strings.TrimPrefix(p, "/drive/v3/files/"), "/export"), q)
	case strings.HasPrefix(p, "/drive/v3/files/") && !strings.Contains(p[len("/drive/v3/files/"):], "/") && r.Method == http.MethodGet:
		f.get(w, r, p[len("/drive/v3/files/"):], q)
	case p == "/upload/drive/v3/files" && (r.Method == http.MethodPost || r.Method == http.MethodPut):
		f.upload(w, r, q)
	default:
		apiErr(w, http.StatusNotFound, "notFound", "no such API path: "+r.Method+" "+p)
	}
}

// checkParams refuses query parameters outside allowed (Drive answers 400
// to unknown ones).
func checkParams(w http.ResponseWriter, q url.Values, allowed ...string) bool {
	ok := map[string]bool{"alt": true, "prettyPrint": true}
	for _, a := range allowed {
		ok[a] = true
	}
	for k := range q {
		if !ok[k] {
			apiErr(w, http.StatusBadRequest, "invalidParameter", "Invalid field selection or parameter: "+k)
			return false
		}
	}
	return true
}

func meta(it *Item) map[string]any {
	m := map[string]any{"id": it.ID, "name": it.Name, "mimeType": it.MimeType, "kind": "drive#file"}
	if it.MimeType != FolderMIME && !strings.HasPrefix(it.MimeType, "application/vnd.google-apps.") {
		sum := md5.Sum(it.Data)
		m["size"] = strconv.Itoa(len(it.Data))
		m["md5Checksum"] = hex.EncodeToString(sum[:])
	}
	if len(it.Parents) > 0 {
		m["parents"] = it.Parents
	}
	return m
}

func (f *Fake) list(w http.ResponseWriter, q url.Values) {
	if !checkParams(w, q, "q", "fields", "pageSize", "pageToken", "supportsAllDrives", "includeItemsFromAllDrives", "orderBy", "spaces", "corpora") {
		return
	}
	query := q.Get("q")
	parent, ok := strings.CutPrefix(query, "'")
	parent, rest, ok2 := strings.Cut(parent, "' in parents")
	if !ok || !ok2 || (rest != "" && rest != " and trashed = false") {
		apiErr(w, http.StatusBadRequest, "invalid", "Invalid Value: q (this fake knows only \"'ID' in parents [and trashed = false]\")")
		return
	}
	f.mu.Lock()
	kids := f.childrenLocked(parent)
	f.mu.Unlock()
	start := 0
	if pt := q.Get("pageToken"); pt != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(pt, "page-"))
		if err != nil || n > len(kids) {
			apiErr(w, http.StatusBadRequest, "invalid", "Invalid Value: pageToken")
			return
		}
		start = n
	}
	size := f.PageSize
	if ps, _ := strconv.Atoi(q.Get("pageSize")); ps > 0 && ps < size {
		size = ps
	}
	end := min(start+size, len(kids))
	resp := map[string]any{"kind": "drive#fileList", "files": []map[string]any{}}
	var files []map[string]any
	for _, it := range kids[start:end] {
		files = append(files, meta(it))
	}
	if files != nil {
		resp["files"] = files
	}
	if end < len(kids) {
		resp["nextPageToken"] = "page-" + strconv.Itoa(end)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

func (f *Fake) item(w http.ResponseWriter, id string) *Item {
	f.mu.Lock()
	it := f.Items[id]
	f.mu.Unlock()
	if it == nil {
		apiErr(w, http.StatusNotFound, "notFound", "File not found: "+id+".")
	}
	return it
}

func (f *Fake) get(w http.ResponseWriter, r *http.Request, id string, q url.Values) {
	if !checkParams(w, q, "fields", "supportsAllDrives", "acknowledgeAbuse", "includeItemsFromAllDrives") {
		return
	}
	it := f.item(w, id)
	if it == nil {
		return
	}
	if q.Get("alt") != "media" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(meta(it))
		return
	}
	if it.MimeType == FolderMIME || strings.HasPrefix(it.MimeType, "application/vnd.google-apps.") {
		apiErr(w, http.StatusForbidden, "fileNotDownloadable", "Only files with binary content can be downloaded. Use Export with Docs Editors files.")
		return
	}
	data, status := it.Data, http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" {
		from, ok := strings.CutPrefix(rg, "bytes=")
		from, _, _ = strings.Cut(from, "-")
		n, err := strconv.Atoi(from)
		if !ok || err != nil || n < 0 {
			apiErr(w, http.StatusBadRequest, "badRange", "bad Range "+rg)
			return
		}
		if n >= len(data) {
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", n, len(data)-1, len(data)))
		data, status = data[n:], http.StatusPartialContent
	}
	w.Header().Set("Content-Type", it.MimeType)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	f.mu.Lock()
	cut := f.CutDownload == id && !f.cutDone && f.CutAfter < len(data)
	if cut {
		f.cutDone = true
	}
	f.mu.Unlock()
	w.WriteHeader(status)
	if cut {
		w.Write(data[:f.CutAfter])
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.Write(data)
}

func (f *Fake) export(w http.ResponseWriter, id string, q url.Values) {
	if !checkParams(w, q, "mimeType", "fields") {
		return
	}
	it := f.item(w, id)
	if it == nil {
		return
	}
	if !strings.HasPrefix(it.MimeType, "application/vnd.google-apps.") || it.MimeType == FolderMIME {
		apiErr(w, http.StatusForbidden, "fileNotExportable", "Export only supports Docs Editors files.")
		return
	}
	data, ok := it.Exports[q.Get("mimeType")]
	if !ok {
		apiErr(w, http.StatusBadRequest, "badRequest", "The requested conversion is not supported.")
		return
	}
	w.Header().Set("Content-Type", q.Get("mimeType"))
	w.Write(data)
}

type fileMeta struct {
	Name     string   `json:"name"`
	MimeType string   `json:"mimeType"`
	Parents  []string `json:"parents"`
}

func (f *Fake) checkMeta(w http.ResponseWriter, m fileMeta) bool {
	if m.Name == "" || len(m.Parents) != 1 {
		apiErr(w, http.StatusBadRequest, "badRequest", "want a name and exactly one parent")
		return false
	}
	f.mu.Lock()
	p := f.Items[m.Parents[0]]
	f.mu.Unlock()
	if p == nil || p.MimeType != FolderMIME {
		apiErr(w, http.StatusNotFound, "notFound", "File not found: "+m.Parents[0]+".")
		return false
	}
	return true
}

func decodeMeta(w http.ResponseWriter, r io.Reader) (fileMeta, bool) {
	var m fileMeta
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		apiErr(w, http.StatusBadRequest, "parseError", "bad file metadata: "+err.Error())
		return m, false
	}
	return m, true
}

func (f *Fake) store(m fileMeta, data []byte) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	it := &Item{ID: f.newIDLocked(), Name: m.Name, MimeType: m.MimeType, Parents: m.Parents, Data: data}
	if it.MimeType == "" {
		it.MimeType = "application/octet-stream"
	}
	f.Items[it.ID] = it
	return meta(it)
}

func (f *Fake) createFolder(w http.ResponseWriter, r *http.Request, q url.Values) {
	if !checkParams(w, q, "fields", "supportsAllDrives") {
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		apiErr(w, http.StatusBadRequest, "badContent", "want application/json metadata")
		return
	}
	m, ok := decodeMeta(w, r.Body)
	if !ok || !f.checkMeta(w, m) {
		return
	}
	if m.MimeType != FolderMIME {
		apiErr(w, http.StatusBadRequest, "badRequest", "a file without media: this fake creates only folders this way")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(f.store(m, nil))
}

func (f *Fake) upload(w http.ResponseWriter, r *http.Request, q url.Values) {
	switch q.Get("uploadType") {
	case "multipart":
		if !checkParams(w, q, "uploadType", "fields", "supportsAllDrives") {
			return
		}
		ct, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || ct != "multipart/related" {
			apiErr(w, http.StatusBadRequest, "badContent", "want multipart/related")
			return
		}
		mr := multipart.NewReader(r.Body, params["boundary"])
		part, err := mr.NextPart()
		if err != nil {
			apiErr(w, http.StatusBadRequest, "badContent", "no metadata part")
			return
		}
		m, ok := decodeMeta(w, part)
		if !ok || !f.checkMeta(w, m) {
			return
		}
		part, err = mr.NextPart()
		if err != nil {
			apiErr(w, http.StatusBadRequest, "badContent", "no media part")
			return
		}
		data, _ := io.ReadAll(part)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(f.store(m, data))
	case "resumable":
		if id := q.Get("upload_id"); id != "" {
			f.chunk(w, r, id)
			return
		}
		if !checkParams(w, q, "uploadType", "fields", "supportsAllDrives") {
			return
		}
		m, ok := decodeMeta(w, r.Body)
		if !ok || !f.checkMeta(w, m) {
			return
		}
		f.mu.Lock()
		f.nextID++
		sid := fmt.Sprintf("session%d", f.nextID)
		f.uploads[sid] = &upload{meta: Item{Name: m.Name, MimeType: m.MimeType, Parents: m.Parents}}
		f.mu.Unlock()
		loc := *r.URL
		loc.Scheme, loc.Host = "http", r.Host
		lq := loc.Query()
		lq.Set("upload_id", sid)
		loc.RawQuery = lq.Encode()
		w.Header().Set("Location", loc.String())
		w.WriteHeader(http.StatusOK)
	default:
		apiErr(w, http.StatusBadRequest, "badRequest", "uploadType must be multipart or resumable")
	}
}

// chunk takes one piece of a resumable upload: Content-Range
// "bytes a-b/*" (more to come), "bytes a-b/total" or "bytes */total".
func (f *Fake) chunk(w http.ResponseWriter, r *http.Request, sid string) {
	f.mu.Lock()
	f.chunkCalls++
	fail := f.chunkCalls == f.FailChunk
	up := f.uploads[sid]
	f.mu.Unlock()
	if up == nil {
		apiErr(w, http.StatusNotFound, "notFound", "no upload session "+sid)
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if fail {
		apiErr(w, http.StatusServiceUnavailable, "backendError", "try again")
		return
	}
	cr, ok := strings.CutPrefix(r.Header.Get("Content-Range"), "bytes ")
	rng, total, ok2 := strings.Cut(cr, "/")
	if !ok || !ok2 {
		apiErr(w, http.StatusBadRequest, "badRange", "bad Content-Range")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if rng != "*" {
		a, b, _ := strings.Cut(rng, "-")
		from, err1 := strconv.Atoi(a)
		to, err2 := strconv.Atoi(b)
		if err1 != nil || err2 != nil || to-from+1 != len(data) || from > len(up.data) {
			http.Error(w, "chunk does not match Content-Range", http.StatusBadRequest)
			return
		}
		up.data = append(up.data[:from], data...)
	}
	if total == "*" {
		w.Header().Set("X-Http-Status-Code-Override", "308")
		w.Header().Set("Range", fmt.Sprintf("bytes=0-%d", len(up.data)-1))
		w.WriteHeader(http.StatusOK)
		return
	}
	if n, err := strconv.Atoi(total); err != nil || n != len(up.data) {
		http.Error(w, "total does not match the bytes received", http.StatusBadRequest)
		return
	}
	delete(f.uploads, sid)
	f.nextID++
	it := up.meta
	it.ID = fmt.Sprintf("1fake%04dID", f.nextID)
	it.Data = up.data
	if it.MimeType == "" {
		it.MimeType = "application/octet-stream"
	}
	f.Items[it.ID] = &it
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(meta(&it))
}

func (f *Fake) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method", http.StatusMethodNotAllowed)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "form", http.StatusBadRequest)
		return
	}
	fail := func(desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": desc})
	}
	switch r.PostForm.Get("grant_type") {
	case "refresh_token":
		if r.PostForm.Get("client_id") != f.ClientID || r.PostForm.Get("client_secret") != f.ClientSecret ||
			r.PostForm.Get("refresh_token") != f.RefreshToken {
			fail("Bad Request")
			return
		}
	case "urn:ietf:params:oauth:grant-type:jwt-bearer":
		if f.ServiceAccountKey == nil || !f.verifyJWT(r.PostForm.Get("assertion")) {
			fail("Invalid JWT Signature.")
			return
		}
	default:
		fail("unsupported grant_type")
		return
	}
	f.mu.Lock()
	f.Tokens++
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": f.AccessToken, "token_type": "Bearer", "expires_in": 3599})
}

// verifyJWT checks an RS256 service-account assertion: signature, issuer,
// audience (this token endpoint) and a Drive scope.
func (f *Fake) verifyJWT(tok string) bool {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	h := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(f.ServiceAccountKey, crypto.SHA256, h[:], sig) != nil {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return false
	}
	var claims struct {
		Iss, Aud, Scope string
	}
	if json.Unmarshal(raw, &claims) != nil {
		return false
	}
	return claims.Iss == f.ServiceAccountEmail && claims.Aud == f.URL+"/token" &&
		strings.Contains(claims.Scope, "https://www.googleapis.com/auth/drive")
}

func rand32() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
