package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/mlagent/mlagent/internal/protocol"
)

// The approval hold: a request through /hf or /git with an effect outside
// the sandbox (a Hub commit, creating or deleting a repo, a git push)
// waits until the user approves it, for tokens that have an Approver.
// Reads (and the requests that only prepare an upload: preupload, LFS
// batch, paths-info) pass; the gateway tells a write from a read by
// method and path, and for /api/repos/* by the small JSON body.

// Approver decides whether a held action may go ahead. Approve blocks
// until it has decided or ctx ends (the sandbox gave up on the request);
// nil lets the request through, an error refuses it and its text is what
// the agent reads. Safe for concurrent use.
type Approver interface {
	Approve(ctx context.Context, a protocol.Action) error
}

// SetApprover makes the token's writes wait for a; nil removes the hold.
// Tokens without an Approver are not held (a shared gateway's clients
// decide for themselves).
func (g *Gateway) SetApprover(tokenID string, a Approver) {
	g.approversMu.Lock()
	defer g.approversMu.Unlock()
	if a == nil {
		delete(g.approvers, tokenID)
		return
	}
	if g.approvers == nil {
		g.approvers = map[string]Approver{}
	}
	g.approvers[tokenID] = a
}

func (g *Gateway) approver(tokenID string) Approver {
	g.approversMu.RLock()
	defer g.approversMu.RUnlock()
	return g.approvers[tokenID]
}

// hold asks the token's Approver about a write and answers the request
// itself when it is refused; false means the request must not go on.
func (g *Gateway) hold(w http.ResponseWriter, r *http.Request, t *token, route string) bool {
	ap := g.approver(t.id)
	if ap == nil {
		return true
	}
	a, ok := writeAction(route, r)
	if !ok {
		return true
	}
	// What the user is shown is the gateway's own view of the request.
	up, prefix := g.hfUpstream, "/hf"
	if route == "git" {
		up, prefix = g.gitUpstream, "/git/github.com"
	}
	a.Request = heldRequest(r.Method, up, strings.TrimPrefix(r.URL.Path, prefix), r.ContentLength)
	err := ap.Approve(r.Context(), a)
	if err == nil {
		return true
	}
	msg := "mlagent gateway: " + a.String() + " was not approved by the user: " + err.Error()
	// huggingface_hub shows X-Error-Message; git and curl show the body.
	w.Header().Set("X-Error-Message", msg)
	g.refuse(w, r, t, route, http.StatusForbidden, "permission_error", msg)
	return false
}

// heldRequest describes a held request to the upstream up.
func heldRequest(method string, up *url.URL, path string, size int64) *protocol.HeldRequest {
	host := ""
	if up != nil {
		host = up.Host
	}
	if size < 0 {
		size = -1
	}
	return &protocol.HeldRequest{Method: method, Host: host, Path: path, Size: size}
}

// writeAction classifies a /hf or /git request: ok is true for a write,
// with the action the user is asked about.
func writeAction(route string, r *http.Request) (protocol.Action, bool) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return protocol.Action{}, false
	}
	detail := r.Method + " " + r.URL.Path
	switch route {
	case "git":
		p := strings.TrimPrefix(r.URL.Path, "/git/github.com")
		repo, rest := gitRepo(p)
		if rest == "/git-upload-pack" { // a fetch: a POST that only reads
			return protocol.Action{}, false
		}
		kind := "git:write"
		if rest == "/git-receive-pack" {
			kind = "git:push"
		}
		return protocol.Action{Kind: kind, Target: "github.com/" + repo, Detail: detail}, true
	case "hf":
		p := strings.TrimPrefix(r.URL.Path, "/hf")
		return hubAction(p, r, detail)
	}
	return protocol.Action{}, false
}

// hubAction classifies a non-GET request to the Hub (p without /hf).
func hubAction(p string, r *http.Request, detail string) (protocol.Action, bool) {
	a := protocol.Action{Kind: "hub:write", Detail: detail}
	if strings.Contains(p, ".git/") {
		prefix := ""
		for _, t := range []string{"datasets", "spaces"} {
			if rest, ok := strings.CutPrefix(p, "/"+t+"/"); ok {
				prefix, p = t+"/", "/"+rest
			}
		}
		repo, rest := gitRepo(p)
		repo = prefix + repo
		switch rest {
		case "/git-upload-pack", "/info/lfs/objects/batch":
			// A fetch, or the negotiation of an LFS transfer: nothing
			// changes in the repo until the push or commit.
			return protocol.Action{}, false
		case "/git-receive-pack":
			a.Kind = "hub:push"
		}
		a.Target = repo
		return a, true
	}
	switch p {
	case "/api/repos/create":
		a.Kind, a.Target = "hub:create", repoFromBody(r, "organization", "name")
		return a, true
	case "/api/repos/delete":
		a.Kind, a.Target = "hub:delete", repoFromBody(r, "organization", "name")
		return a, true
	case "/api/repos/move":
		a.Kind, a.Target = "hub:move", repoFromBody(r, "", "fromRepo")
		return a, true
	}
	segs := strings.Split(strings.Trim(p, "/"), "/")
	if len(segs) >= 3 && segs[0] == "api" && (segs[1] == "models" || segs[1] == "datasets" || segs[1] == "spaces") {
		repo, verb := segs[2], ""
		if len(segs) >= 4 {
			if hubVerbs[segs[3]] {
				verb = segs[3]
			} else {
				repo += "/" + segs[3]
				if len(segs) >= 5 {
					verb = segs[4]
				}
			}
		}
		switch verb {
		case "preupload", "paths-info", "treesize":
			return protocol.Action{}, false // questions about the repo
		case "commit":
			a.Kind = "hub:push"
		}
		a.Target = repo
		if segs[1] != "models" {
			a.Target = segs[1] + "/" + repo
		}
	}
	return a, true
}

// hubVerbs are the words that follow a repo id in the Hub's API paths;
// one right after the type means a repo id without a namespace ("gpt2").
var hubVerbs = map[string]bool{
	"commit": true, "preupload": true, "paths-info": true, "treesize": true, "settings": true,
	"branch": true, "tag": true, "discussions": true, "super-squash": true, "restart": true,
	"pause": true, "secrets": true, "variables": true, "hardware": true, "sleeptime": true, "lfs-files": true,
}

// gitRepo splits a git smart-HTTP path "/owner/repo.git/rest" (".git"
// optional) into "owner/repo" and "/rest".
func gitRepo(p string) (repo, rest string) {
	p = strings.TrimPrefix(p, "/")
	if i := strings.Index(p, ".git/"); i >= 0 {
		return p[:i], p[i+4:]
	}
	segs := strings.SplitN(p, "/", 3)
	if len(segs) < 3 {
		return p, ""
	}
	return segs[0] + "/" + segs[1], "/" + segs[2]
}

// repoFromBody reads the repo id from a small /api/repos/* JSON body,
// leaving the body for the upstream; "" when it cannot be told.
func repoFromBody(r *http.Request, nsField, nameField string) string {
	if r.Body == nil || r.ContentLength > 64<<10 {
		return ""
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
	if err != nil || len(body) > 64<<10 {
		return ""
	}
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	name, _ := m[nameField].(string)
	if ns, _ := m[nsField].(string); ns != "" && name != "" && !strings.Contains(name, "/") {
		name = ns + "/" + name
	}
	if typ, _ := m["type"].(string); typ == "dataset" || typ == "space" {
		name = typ + "s/" + name
	}
	return name
}
