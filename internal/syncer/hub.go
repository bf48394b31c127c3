package syncer

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
)

// Hub is the small part of the Hugging Face Hub HTTP API the syncer uses:
//
//	GET  /api/{type}s/{id}                  does the repo exist
//	POST /api/repos/create                  create a Space or dataset
//	POST /api/{type}s/{id}/commit/{rev}     commit files (NDJSON, inline base64)
//	POST /api/spaces/{id}/variables         set a Space variable
//
// The token goes only into the Authorization header; it is never part of
// an error or a log line.
type Hub struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
}

// HTTPError is a non-2xx answer from the Hub.
type HTTPError struct {
	Op     string
	Status int
	Body   string // first bytes of the response, for the log
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("hub %s: HTTP %d: %s", e.Op, e.Status, e.Body)
}

// Retryable reports whether retrying the same request may succeed.
func (e *HTTPError) Retryable() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests || e.Status == http.StatusRequestTimeout
}

// Compiled on first use, not at every start of the binary.
var repoIDRe = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$`)
})

// ValidRepoID reports whether id looks like "namespace/name" as the Hub
// accepts it; the syncer refuses anything else (space_id is read from a
// file the sandbox can write).
func ValidRepoID(id string) bool {
	return repoIDRe().MatchString(id) && !strings.Contains(id, "..")
}

func (h *Hub) do(ctx context.Context, op, method, path, contentType string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(h.BaseURL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("hub %s: %w", op, err)
	}
	if h.Token != "" {
		req.Header.Set("Authorization", "Bearer "+h.Token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("User-Agent", "mlagent-syncer")
	client := h.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		// url.Error holds the URL, which holds no credentials.
		return nil, fmt.Errorf("hub %s: %w", op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("hub %s: %w", op, err)
	}
	if resp.StatusCode/100 != 2 {
		msg := string(data)
		if len(msg) > 300 {
			msg = msg[:300]
		}
		return data, &HTTPError{Op: op, Status: resp.StatusCode, Body: redact(msg, h.Token)}
	}
	return data, nil
}

// redact removes the token from text that came back from the server (an
// echoing proxy must not put it in our logs).
func redact(s, token string) string {
	if token == "" {
		return s
	}
	return strings.ReplaceAll(s, token, "[redacted]")
}

func repoPath(repoType, id string) string {
	ns, name, _ := strings.Cut(id, "/")
	return "/api/" + repoType + "s/" + url.PathEscape(ns) + "/" + url.PathEscape(name)
}

// RepoExists reports whether the repo exists (and is visible to the token).
func (h *Hub) RepoExists(ctx context.Context, repoType, id string) (bool, error) {
	_, err := h.do(ctx, "repo info "+id, http.MethodGet, repoPath(repoType, id), "", nil)
	var he *HTTPError
	if errors.As(err, &he) && he.Status == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

// CreateRepo creates a repo; an existing one (409) is not an error.
func (h *Hub) CreateRepo(ctx context.Context, repoType, id string, private bool, sdk string) error {
	ns, name, _ := strings.Cut(id, "/")
	req := map[string]any{"type": repoType, "name": name, "organization": ns, "private": private}
	if repoType == "space" {
		req["sdk"] = sdk
	}
	body, _ := json.Marshal(req)
	_, err := h.do(ctx, "create "+repoType+" "+id, http.MethodPost, "/api/repos/create", "application/json", body)
	var he *HTTPError
	if errors.As(err, &he) && he.Status == http.StatusConflict {
		return nil
	}
	return err
}

// File is one file of a commit.
type File struct {
	Path    string
	Content []byte
}

// Commit adds or replaces files in one commit on main. Files are sent
// inline (base64), which the Hub accepts for regular (non-LFS) files; the
// syncer keeps chunks small so they always are.
func (h *Hub) Commit(ctx context.Context, repoType, id, summary string, files []File) (int, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.Encode(map[string]any{"key": "header", "value": map[string]string{"summary": summary, "description": ""}})
	for _, f := range files {
		enc.Encode(map[string]any{"key": "file", "value": map[string]string{
			"path": f.Path, "encoding": "base64", "content": base64.StdEncoding.EncodeToString(f.Content),
		}})
	}
	n := buf.Len()
	_, err := h.do(ctx, "commit "+id, http.MethodPost, repoPath(repoType, id)+"/commit/main", "application/x-ndjson", buf.Bytes())
	return n, err
}

// SetSpaceVariable sets a (non-secret) Space variable.
func (h *Hub) SetSpaceVariable(ctx context.Context, id, key, value string) error {
	body, _ := json.Marshal(map[string]string{"key": key, "value": value})
	_, err := h.do(ctx, "space variable "+id, http.MethodPost, repoPath("space", id)+"/variables", "application/json", body)
	return err
}
