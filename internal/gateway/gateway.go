// Package gateway is the only way out of a sandbox: it swaps a sandbox's
// worthless per-sandbox token for the real model key (and Hugging Face and
// GitHub tokens), enforces per-token budgets, keeps the usage ledger and
// audit log, and lets other egress through a CONNECT proxy with a host
// allowlist. The admin plane, on its own listener, issues and revokes
// tokens.
package gateway

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mlagent/mlagent/internal/prices"
	"github.com/mlagent/mlagent/internal/store"
)

// Config configures a Gateway.
type Config struct {
	Upstream    string // Anthropic-compatible API, default https://api.anthropic.com
	HFUpstream  string // default https://huggingface.co
	GitUpstream string // default https://github.com
	// Real secrets. APIKey may be "" for keyless local servers; an empty
	// HF or GitHub token forwards those routes anonymously.
	APIKey, HFToken, GitHubToken string
	// Allow is the CONNECT allowlist: "host" or "*.domain" (port 443), or
	// either with an explicit ":port".
	Allow  []string
	Prices PriceTable // nil = prices.Default()
	DB     *store.DB
	// JournalDir holds the reservation journals that keep budgets across
	// a crash (journal.go); "" = "gateway-journal" beside a file-backed
	// DB, none for an in-memory one; "-" = none.
	JournalDir string
	Audit      io.Writer // JSON lines; nil = no audit log
	Log        *slog.Logger
	// DialUpstream opens the TCP connections to every upstream (the model
	// API, the Hub, GitHub, services); nil = net.Dialer. Tests use it to
	// reach a fake at a production URL. The model routes always go
	// through the gateway's own HTTP/1.1 forwarder (forward.go), except
	// behind a proxy or to an upstream that will not speak HTTP/1.1, which
	// take httputil.ReverseProxy with a tuned clone of
	// http.DefaultTransport, as /hf, /git and the services do.
	DialUpstream func(ctx context.Context, network, addr string) (net.Conn, error)
	// Proxy picks the proxy for an upstream request, as
	// http.Transport.Proxy; nil = http.ProxyFromEnvironment, which
	// net/http reads once per process (so tests set this instead).
	Proxy func(*http.Request) (*url.URL, error)
	// Dial opens CONNECT tunnels; nil = net.Dialer with a 10 s timeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Services are extra routes to third-party APIs (Google Drive,
	// Notion) with their credentials injected (services.go).
	Services []Service
}

// MaxRequestBody is the largest request body forwarded (the API's limit).
const MaxRequestBody = 32 << 20

// Gateway serves the data plane and the admin plane. It is safe for
// concurrent use.
type Gateway struct {
	cfg    Config
	db     *store.DB
	log    *slog.Logger
	audit  io.Writer
	prices PriceTable

	upstream, hfUpstream, gitUpstream *url.URL
	transport                         *http.Transport // of every ReverseProxy
	model, hf, git                    *httputil.ReverseProxy
	fwd                               *forwarder // nil: the model route uses model
	services                          []*service

	mu     sync.RWMutex
	tokens map[[32]byte]*token
	byID   map[string]*token

	records    chan record
	auditBuf   []byte   // owned by the writer goroutine
	ledgerArgs []any    // owned by the writer goroutine
	settledIDs []string // owned by the writer goroutine
	journal    *journal // nil: no crash-safe reservations
	// insertStmts are the ledger's INSERTs of 64 rows and of 1 row,
	// prepared by the writer goroutine on first use.
	insertStmts [2]*sql.Stmt
	flushes     chan chan struct{}
	writerDone  chan struct{}
	closeMu     sync.RWMutex
	closed      bool

	tunnelsMu sync.Mutex
	tunnels   map[net.Conn]struct{}

	// revStop ends the goroutine that follows the revocations of other
	// processes (watchRevocations); nil with an in-memory store.
	revStop, revDone chan struct{}

	approversMu sync.RWMutex
	approvers   map[string]Approver // token id → who approves its writes (approval.go)
}

// New opens the gateway's tables and loads its tokens.
func New(ctx context.Context, cfg Config) (*Gateway, error) {
	if cfg.DB == nil {
		return nil, errors.New("gateway: Config.DB is required")
	}
	if cfg.Upstream == "" {
		cfg.Upstream = "https://api.anthropic.com"
	}
	if cfg.HFUpstream == "" {
		cfg.HFUpstream = "https://huggingface.co"
	}
	if cfg.GitUpstream == "" {
		cfg.GitUpstream = "https://github.com"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Prices == nil {
		cfg.Prices = prices.Default()
	}
	if cfg.Proxy == nil {
		cfg.Proxy = http.ProxyFromEnvironment
	}
	if cfg.DialUpstream == nil {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second} // as http.DefaultTransport
		cfg.DialUpstream = d.DialContext
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: 10 * time.Second}
		cfg.Dial = d.DialContext
	}
	g := &Gateway{
		cfg: cfg, db: cfg.DB, log: cfg.Log, audit: cfg.Audit, prices: cfg.Prices,
		tokens: map[[32]byte]*token{}, byID: map[string]*token{},
		records: make(chan record, 4096), flushes: make(chan chan struct{}),
		writerDone: make(chan struct{}), tunnels: map[net.Conn]struct{}{},
	}
	var err error
	for _, u := range []struct {
		name string
		raw  string
		dst  **url.URL
	}{{"upstream", cfg.Upstream, &g.upstream}, {"hf upstream", cfg.HFUpstream, &g.hfUpstream}, {"git upstream", cfg.GitUpstream, &g.gitUpstream}} {
		if *u.dst, err = url.Parse(u.raw); err != nil || (*u.dst).Host == "" ||
			((*u.dst).Scheme != "http" && (*u.dst).Scheme != "https") {
			return nil, fmt.Errorf("gateway: %s %q: want an http(s) URL", u.name, u.raw)
		}
	}
	if err := Migrate(ctx, g.db); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	// Another process can share a file-backed store: follow its
	// revocations from the newest one now.
	shared := g.db.Path != "" && g.db.Path != ":memory:"
	var revSeq int64
	if shared {
		if revSeq, err = g.lastRevocation(ctx); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	dir := cfg.JournalDir
	if dir == "" && g.db.Path != "" && g.db.Path != ":memory:" {
		dir = filepath.Join(filepath.Dir(g.db.Path), "gateway-journal")
	}
	if dir != "" && dir != "-" {
		if g.journal, err = openJournal(dir); err != nil {
			return nil, fmt.Errorf("gateway: reservation journal: %w", err)
		}
		if err := g.recoverJournals(ctx); err != nil {
			g.journal.close(false)
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	g.transport = NewTransport()
	g.transport.Proxy = cfg.Proxy
	g.transport.DialContext = cfg.DialUpstream
	g.model = g.newModelProxy()
	g.fwd = newForwarder(g.upstream, cfg.Proxy, cfg.DialUpstream)
	g.hf = g.newPrefixProxy("/hf", g.hfUpstream, g.hfAuth)
	g.git = g.newPrefixProxy("/git/github.com", g.gitUpstream, g.gitAuth)
	if g.services, err = g.newServices(cfg.Services); err != nil {
		return nil, err
	}
	if shared {
		g.revStop, g.revDone = make(chan struct{}), make(chan struct{})
		go g.watchRevocations(revSeq, revocationPoll, g.revStop, g.revDone)
	}
	go g.writer()
	return g, nil
}

// NewTransport is the upstream transport: HTTP/2 where offered, many idle
// connections per host (64 concurrent clients must not redial), and no
// response-header timeout, since a long non-streamed generation sends its
// headers only when done.
func NewTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 256
	t.IdleConnTimeout = 90 * time.Second
	t.ResponseHeaderTimeout = 0
	t.ForceAttemptHTTP2 = true
	return t
}

// Close stops the ledger writer after persisting every queued record and
// closes open CONNECT tunnels. Shut the HTTP servers down first so that
// streams drain.
func (g *Gateway) Close() error {
	g.closeMu.Lock()
	if g.closed {
		g.closeMu.Unlock()
		return nil
	}
	g.closed = true
	close(g.records)
	g.closeMu.Unlock()
	<-g.writerDone
	if g.revStop != nil {
		close(g.revStop)
		<-g.revDone
	}
	if g.journal != nil {
		g.journal.close(true)
	}
	for _, s := range g.insertStmts {
		if s != nil {
			s.Close()
		}
	}
	if g.fwd != nil {
		g.fwd.close()
	}
	g.tunnelsMu.Lock()
	for c := range g.tunnels {
		c.Close()
	}
	g.tunnelsMu.Unlock()
	return nil
}

// writeAPIError answers with the Anthropic error shape. msg must never
// contain a secret.
func writeAPIError(w http.ResponseWriter, status int, typ, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("x-should-retry", "false")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"type":"error","error":{"type":%q,"message":%q}}`, typ, msg)
}

// credentialHeaders are deleted from every request before a real
// credential is set, so that a sandbox can neither spoof nor smuggle one.
var credentialHeaders = []string{"X-Api-Key", "Authorization", "Proxy-Authorization", "Cookie"}

func stripCredentials(h http.Header) {
	for _, k := range credentialHeaders {
		delete(h, k)
	}
}

// callerToken is the token a client sent: x-api-key, else Authorization:
// Bearer.
func callerToken(h http.Header) string {
	if v := h.Get("X-Api-Key"); v != "" {
		return v
	}
	if a := h.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// safePath refuses what an upstream (or a CDN in front of it) could
// resolve to another path than the one routed on, with the real
// credential attached: "." and ".." segments in any encoding (r.URL.Path
// is decoded once; "%2e" left after that was encoded twice) and
// backslashes, which some servers take for "/".
func safePath(p string) bool {
	if strings.ContainsRune(p, '\\') || strings.Contains(strings.ToLower(p), "%2e") {
		return false
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// isModelPath is /v1/models/{model id}: one segment of the characters
// model ids use, nothing below it.
func isModelPath(p string) bool {
	id, ok := strings.CutPrefix(p, "/v1/models/")
	if !ok || id == "" {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == ':' || c == '@') {
			return false
		}
	}
	return true
}

// refusePath answers a request whose path safePath refuses, and audits it.
func (g *Gateway) refusePath(w http.ResponseWriter, r *http.Request) {
	msg := "paths with . or .. segments, encoded dots or backslashes are refused"
	g.emit(record{Time: time.Now(), Route: "refused", Method: r.Method, Status: http.StatusBadRequest, Error: msg})
	writeAPIError(w, http.StatusBadRequest, "invalid_request_error", "mlagent gateway: "+msg)
}

// DataHandler serves what sandboxes call: the model API, /hf/…,
// /git/github.com/… and CONNECT.
func (g *Gateway) DataHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodConnect:
			g.serveConnect(w, r)
		case r.URL.Host != "" || strings.HasPrefix(r.RequestURI, "http://"):
			g.refusePlainProxy(w, r)
		case !safePath(r.URL.Path):
			g.refusePath(w, r)
		case r.URL.Path == "/v1/messages" && r.Method == http.MethodPost,
			r.URL.Path == "/v1/messages/count_tokens" && r.Method == http.MethodPost,
			(r.URL.Path == "/v1/models" || isModelPath(r.URL.Path)) && r.Method == http.MethodGet:
			g.serveModel(w, r)
		case r.URL.Path == "/hf" || strings.HasPrefix(r.URL.Path, "/hf/"):
			g.serveProxied(w, r, "hf", g.hf)
		case strings.HasPrefix(r.URL.Path, "/git/github.com/"):
			g.serveProxied(w, r, "git", g.git)
		default:
			if s := g.serviceFor(r.URL.Path); s != nil {
				g.serveService(w, r, s)
				return
			}
			writeAPIError(w, http.StatusNotFound, "not_found_error", "mlagent gateway: no route for "+r.Method+" "+r.URL.Path)
		}
	})
}
