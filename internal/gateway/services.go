package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/mlagent/mlagent/internal/protocol"
)

// Access is what a request to a service route would do upstream.
type Access int

const (
	// AccessNone: not a request the route serves (404).
	AccessNone Access = iota
	// AccessRead reads and changes nothing outside the sandbox: forwarded.
	AccessRead
	// AccessWrite changes something outside the sandbox (a Drive file, a
	// Notion page): forwarded only when pre-approved by the service's own
	// policy or approved by the token's Approver (approval.go), else
	// refused with 403. Unlike /hf and /git, a token without an Approver
	// is refused, not let through: these services hold the user's own
	// documents.
	AccessWrite
)

// Service is a data-plane route to a third-party API whose credential the
// gateway holds: requests to /<Name>/… go to Upstream/… with the caller's
// credentials stripped and Credential's value set. Its methods may be
// called concurrently.
type Service struct {
	// Name is the URL prefix (/<Name>/…) and the route name in the audit
	// log: lowercase letters, digits and '-'.
	Name     string
	Upstream string
	// Credential returns the Authorization header value for one request
	// (token sources cache and refresh). An error answers 503 with
	// NotConfigured or the error's text, which must hold no secret.
	Credential func(ctx context.Context) (string, error)
	// Header is set on every forwarded request after the credential.
	Header http.Header
	// Classify says what the request would do; path is the part after
	// the prefix, decoded. body is nil for GET and HEAD.
	Classify func(method, path string, body []byte) Access
	// PreApproved reports whether a write falls in what the user allowed
	// in advance (a parent page chosen in the config; pages this token
	// created). nil: no write is pre-approved.
	PreApproved func(tokenID, method, path string, body []byte) bool
	// Observe sees the reply to a forwarded write (at most 1 MiB of its
	// body), to remember what the sandbox created. May be nil.
	Observe func(tokenID, method, path string, status int, body []byte)
	// Describe names a write for the user who approves it; nil:
	// kind "<Name>:write", target the path.
	Describe func(method, path string, body []byte) protocol.Action
	// NotConfigured is the 503 message when Credential fails with
	// ErrNotConfigured: how the user connects the service.
	NotConfigured string
}

// ErrNotConfigured is returned by a Service's Credential when the user has
// not connected that service.
var ErrNotConfigured = errors.New("service not configured")

// service is a Service ready to serve.
type service struct {
	Service
	prefix   string
	upstream *url.URL
	proxy    *httputil.ReverseProxy
}

type credKey struct{}

func (g *Gateway) newServices(list []Service) ([]*service, error) {
	var out []*service
	seen := map[string]bool{}
	for _, s := range list {
		if s.Name == "" || strings.Trim(s.Name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" ||
			seen[s.Name] || s.Name == "hf" || s.Name == "git" || s.Name == "v1" {
			return nil, fmt.Errorf("gateway: service name %q: want a unique lowercase name", s.Name)
		}
		seen[s.Name] = true
		u, err := url.Parse(s.Upstream)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("gateway: service %s upstream %q: want an http(s) URL", s.Name, s.Upstream)
		}
		if s.Credential == nil || s.Classify == nil {
			return nil, fmt.Errorf("gateway: service %s needs Credential and Classify", s.Name)
		}
		sv := &service{Service: s, prefix: "/" + s.Name, upstream: u}
		sv.proxy = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				p := strings.TrimPrefix(pr.In.URL.EscapedPath(), sv.prefix)
				if p == "" {
					p = "/"
				}
				pr.Out.URL.Path, _ = url.PathUnescape(p)
				pr.Out.URL.RawPath = p
				pr.SetURL(sv.upstream)
				stripCredentials(pr.Out.Header)
				cred, _ := pr.In.Context().Value(credKey{}).(string)
				pr.Out.Header["Authorization"] = []string{cred}
				for k, v := range sv.Header {
					pr.Out.Header[k] = v
				}
			},
			Transport:     g.transport,
			FlushInterval: 0,
			BufferPool:    copyBufs{},
			ModifyResponse: func(resp *http.Response) error {
				if loc := resp.Header.Get("Location"); loc != "" {
					resp.Header.Set("Location", rewriteLocation(loc, sv.prefix, sv.upstream))
				}
				if obs, ok := resp.Request.Context().Value(observeKey{}).(*observation); ok && sv.Observe != nil {
					head, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
					if err == nil {
						sv.Observe(obs.tokenID, obs.method, obs.path, resp.StatusCode, head)
					}
					resp.Body = struct {
						io.Reader
						io.Closer
					}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
				}
				return g.modifyResponse(resp)
			},
			ErrorHandler: g.proxyError,
			ErrorLog:     slogErrorLog(g.log),
		}
		out = append(out, sv)
	}
	return out, nil
}

// methodOverrides are the headers that ask an upstream to act on another
// method than the request's (canonical forms).
var methodOverrides = []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

type observeKey struct{}

type observation struct{ tokenID, method, path string }

// serviceFor returns the service whose prefix p is under, or nil.
func (g *Gateway) serviceFor(p string) *service {
	for _, s := range g.services {
		if p == s.prefix || strings.HasPrefix(p, s.prefix+"/") {
			return s
		}
	}
	return nil
}

func (g *Gateway) serveService(w http.ResponseWriter, r *http.Request, s *service) {
	tok := callerToken(r.Header)
	if tok == "" {
		tok = basicPassword(r.Header.Get("Authorization"))
	}
	t := g.authenticate(w, r, s.Name, tok)
	if t == nil {
		return
	}
	if r.ContentLength > MaxRequestBody {
		g.refuse(w, r, t, s.Name, http.StatusRequestEntityTooLarge, "request_too_large", "request body exceeds 32 MiB")
		return
	}
	// Classify judges the request line's method; a method override
	// header (Google's front ends honour X-HTTP-Method-Override) would
	// make the upstream act on another one.
	for _, h := range methodOverrides {
		if _, ok := r.Header[h]; ok {
			g.refuse(w, r, t, s.Name, http.StatusBadRequest, "invalid_request_error",
				fmt.Sprintf("mlagent gateway: the %s route does not forward method override headers (%s); send the method itself", s.Name, h))
			return
		}
	}
	path := strings.TrimPrefix(r.URL.Path, s.prefix)
	var body []byte
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		var err error
		if body, err = readBody(http.MaxBytesReader(w, r.Body, MaxRequestBody), r.ContentLength); err != nil {
			g.refuse(w, r, t, s.Name, http.StatusRequestEntityTooLarge, "request_too_large", "could not read the request body (at most 32 MiB)")
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	ctx := r.Context()
	switch s.Classify(r.Method, path, body) {
	case AccessRead:
	case AccessWrite:
		if s.PreApproved == nil || !s.PreApproved(t.id, r.Method, path, body) {
			a := protocol.Action{Kind: s.Name + ":write", Target: path, Detail: r.Method + " " + s.prefix + path}
			if s.Describe != nil {
				a = s.Describe(r.Method, path, body)
			}
			a.Request = heldRequest(r.Method, s.upstream, path, int64(len(body)))
			err := ErrNoApprover
			if ap := g.approver(t.id); ap != nil {
				err = ap.Approve(ctx, a)
			}
			if err != nil {
				msg := fmt.Sprintf("mlagent gateway: %s (%s %s%s) changes %s outside the sandbox and was not approved by the user: %v",
					a, r.Method, s.prefix, path, s.Name, err)
				w.Header().Set("X-Error-Message", msg)
				g.refuse(w, r, t, s.Name, http.StatusForbidden, "permission_error", msg)
				return
			}
		}
		ctx = context.WithValue(ctx, observeKey{}, &observation{tokenID: t.id, method: r.Method, path: path})
	default:
		g.refuse(w, r, t, s.Name, http.StatusNotFound, "not_found_error",
			fmt.Sprintf("mlagent gateway: %s %s%s is not a request the %s route serves", r.Method, s.prefix, path, s.Name))
		return
	}
	cred, err := s.Credential(ctx)
	if err != nil {
		msg := "mlagent gateway: " + s.Name + " credential unavailable"
		if errors.Is(err, ErrNotConfigured) && s.NotConfigured != "" {
			msg = "mlagent gateway: " + s.NotConfigured
		}
		// The error may come from a token endpoint; log it, never echo it.
		g.log.Warn("service credential", "route", s.Name, "token_id", t.id, "err", err)
		g.refuse(w, r, t, s.Name, http.StatusServiceUnavailable, "api_error", msg)
		return
	}
	ctx = context.WithValue(ctx, credKey{}, cred)
	c := &call{g: g, t: t, route: s.Name, method: r.Method, start: time.Now()}
	s.proxy.ServeHTTP(w, r.WithContext(context.WithValue(ctx, callKey{}, c)))
}

// ErrNoApprover is why a write is refused when nobody can approve it (a
// shared gateway's tokens, --permission-mode bypass).
var ErrNoApprover = errors.New("writes need the user's approval and nobody can be asked for this sandbox; " +
	"ask the user to do it themselves")
