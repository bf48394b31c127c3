package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// call is one request through a reverse-proxied route, from admission to
// the end of its response body.
type call struct {
	g        *Gateway
	t        *token
	route    string
	method   string
	start    time.Time
	resUSD   float64
	resToks  int64
	resIn    int64  // input tokens reserved (estimated from the body)
	resID    string // the journal entry of this request
	maxOut   int64  // the request's max_tokens, when read
	reqModel string
	ledger   bool // a model route: booked in the usage ledger
	scan     bool // parse usage from the reply
	sc       usageScanner
	status   int
	bytes    int64
	errText  string
	done     bool
}

type callKey struct{}

var scanBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// finish settles the token's budget and queues the ledger row and audit
// line; it runs once, after the response body is done (or failed).
func (c *call) finish() {
	if c.done {
		return
	}
	c.done = true
	rec := record{
		Time: c.start, TokenID: c.t.id, Sandbox: c.t.sandbox, Route: c.route, Method: c.method,
		Model: c.reqModel, Status: c.status, DurationMS: float64(time.Since(c.start).Microseconds()) / 1000,
		Bytes: c.bytes, Error: c.errText, ledger: c.ledger, Stream: c.sc.stream,
	}
	var u Usage
	if c.scan {
		c.sc.finish()
		if c.sc.model != "" {
			rec.Model = c.sc.model
		}
		if c.sc.errType != "" && rec.Error == "" {
			rec.Error = c.sc.errType
		}
		u = c.sc.usage
		if c.status == http.StatusOK && !c.sc.complete() {
			u = c.incomplete(u)
			note := fmt.Sprintf("incomplete reply: charged %d output tokens", u.OutputTokens)
			if rec.Error != "" {
				note = rec.Error + "; " + note
			}
			rec.Error = note
		}
		if c.sc.sawUsage || u != (Usage{}) {
			rec.Usage = &u
		}
		if !c.sc.stream && cap(c.sc.line) <= 1<<20 {
			b := c.sc.line[:0]
			scanBufs.Put(&b)
		}
		c.sc.line = nil
	}
	rec.CostUSD = c.g.prices.Lookup(rec.Model).Cost(u)
	if j := c.g.journal; j != nil && c.ledger {
		// The exact row, durable before the batched ledger write.
		if c.resID == "" {
			c.resID = j.newID()
		}
		rec.resID = c.resID
		if err := j.done(&rec); err != nil {
			c.g.log.Error("reservation journal write failed", "err", err)
		}
	}
	c.t.settle(c.resUSD, c.resToks, rec.CostUSD, u.Total())
	c.g.emit(rec)
}

// incomplete is what a Messages reply that ended without its final usage
// (the client went away, the upstream cut it, an error event) is charged,
// so that dropping streams cannot get output past a budget: never less
// than the output delivered, counted from the content deltas (one token
// per byte: an upper bound); the whole max_tokens when output may have
// been made that was not delivered (a thinking block, a JSON body); the
// reserved input when the input usage never came.
func (c *call) incomplete(u Usage) Usage {
	out := max(u.OutputTokens, c.sc.deltaBytes)
	if c.maxOut > 0 && (out > c.maxOut || c.sc.hidden || !c.sc.stream) {
		out = c.maxOut
	}
	u.OutputTokens = out
	if !c.sc.started && !c.sc.sawUsage {
		u.InputTokens = max(u.InputTokens, c.resIn)
	}
	return u
}

// countingBody sees every byte of a response as the proxy copies it.
type countingBody struct {
	rc io.ReadCloser
	c  *call
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.c.bytes += int64(n)
		if b.c.scan {
			b.c.sc.Write(p[:n])
		}
	}
	if err == io.EOF {
		b.c.finish()
	}
	return n, err
}

func (b *countingBody) Close() error {
	err := b.rc.Close()
	b.c.finish()
	return err
}

func callOf(r *http.Request) *call {
	c, _ := r.Context().Value(callKey{}).(*call)
	return c
}

// begin notes the response status and, for a successful Messages reply,
// starts the usage scan.
func (c *call) begin(status int, sse bool) {
	c.status = status
	if c.route == "/v1/messages" && status == http.StatusOK {
		c.scan = true
		c.sc.stream = sse
		if !sse {
			c.sc.line = (*scanBufs.Get().(*[]byte))[:0]
		}
	}
}

func (g *Gateway) modifyResponse(resp *http.Response) error {
	c := callOf(resp.Request)
	if c == nil {
		return errors.New("gateway: response without a call")
	}
	c.begin(resp.StatusCode, isSSE(resp.Header))
	resp.Body = &countingBody{rc: resp.Body, c: c}
	return nil
}

func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	g.upstreamError(w, r, callOf(r), err)
}

// upstreamError answers a request whose upstream call failed before the
// response began.
func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, c *call, err error) {
	status, typ, msg := http.StatusBadGateway, "api_error", "mlagent gateway: upstream unreachable"
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		status, typ, msg = http.StatusRequestEntityTooLarge, "request_too_large", "request body exceeds 32 MiB"
	case errors.Is(err, context.Canceled):
		status, typ, msg = 499, "api_error", "client went away"
	}
	if c != nil {
		c.status = status
		c.errText = msg
		c.finish()
	}
	// Transport errors name the upstream URL, never a header value.
	g.log.Warn("upstream error", "route", r.URL.Path, "token_id", tokenID(c), "err", err)
	if status != 499 {
		writeAPIError(w, status, typ, msg)
	}
}

func tokenID(c *call) string {
	if c == nil {
		return ""
	}
	return c.t.id
}

func (g *Gateway) newModelProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(g.upstream) // keeps the query string (?beta=true)
			stripCredentials(pr.Out.Header)
			// Let the transport negotiate (and undo) compression, so the
			// usage scanner always reads plain bytes.
			pr.Out.Header.Del("Accept-Encoding")
			if g.cfg.APIKey != "" {
				pr.Out.Header["X-Api-Key"] = []string{g.cfg.APIKey}
			}
		},
		Transport: g.transport,
		// 0, not -1: ReverseProxy already flushes every write of an SSE
		// (text/event-stream) or unknown-length body; a reply of known length
		// then leaves in one write instead of one per chunk.
		FlushInterval:  0,
		BufferPool:     copyBufs{},
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.proxyError,
		ErrorLog:       slogErrorLog(g.log),
	}
}

// copyBufs lends the proxy its 32 KiB copy buffers.
type copyBufs struct{}

var copyPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (copyBufs) Get() []byte  { return *copyPool.Get().(*[]byte) }
func (copyBufs) Put(b []byte) { copyPool.Put(&b) }

// refuse answers a request that never reaches an upstream, and audits it.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, t *token, route string, status int, typ, msg string) {
	rec := record{Time: time.Now(), Route: route, Method: r.Method, Status: status, Error: msg}
	if t != nil {
		rec.TokenID, rec.Sandbox = t.id, t.sandbox
	}
	g.emit(rec)
	writeAPIError(w, status, typ, msg)
}

func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request, route, tok string) *token {
	t, err := g.lookup(r.Context(), tok)
	if err == nil {
		return t
	}
	if errors.Is(err, ErrUnknownToken) {
		// Never echo the presented value: it may be a real key.
		g.refuse(w, r, nil, route, http.StatusUnauthorized, "authentication_error",
			"mlagent gateway: unknown, expired or revoked token")
	} else {
		g.log.Error("token lookup failed", "err", err)
		g.refuse(w, r, nil, route, http.StatusInternalServerError, "api_error", "mlagent gateway: token lookup failed")
	}
	return nil
}

func (g *Gateway) serveModel(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	route := r.URL.Path
	if strings.HasPrefix(route, "/v1/models/") {
		route = "/v1/models"
	}
	t := g.authenticate(w, r, route, callerToken(r.Header))
	if t == nil {
		return
	}
	if r.ContentLength > MaxRequestBody {
		g.refuse(w, r, t, route, http.StatusRequestEntityTooLarge, "request_too_large", "request body exceeds 32 MiB")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBody)
	c := &call{g: g, t: t, route: route, method: r.Method, start: start, ledger: true}
	var body []byte
	inMem := false
	if t.hasBudget() {
		if route == "/v1/messages" {
			var err error
			body, err = readBody(r.Body, r.ContentLength)
			if err != nil {
				var tooBig *http.MaxBytesError
				if errors.As(err, &tooBig) {
					g.refuse(w, r, t, route, http.StatusRequestEntityTooLarge, "request_too_large", "request body exceeds 32 MiB")
				} else {
					g.refuse(w, r, t, route, http.StatusBadRequest, "invalid_request_error", "could not read request body")
				}
				return
			}
			model, maxTokens := scanTop(body)
			c.reqModel = model
			c.resUSD, c.resToks = estimate(g.prices.Lookup(model), len(body), maxTokens)
			c.maxOut, c.resIn = maxTokens, c.resToks-maxTokens
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			inMem = true
		}
		if err := t.reserve(c.resUSD, c.resToks); err != nil {
			g.refuse(w, r, t, route, http.StatusForbidden, "permission_error", err.Error())
			return
		}
		if g.journal != nil && (c.resUSD > 0 || c.resToks > 0) {
			// Durable before the request leaves: a crash from here on
			// charges the whole reservation, unless its row is booked.
			c.resID = g.journal.newID()
			if err := g.journal.reserve(c.resID, t.id, c.reqModel, c.resUSD, c.resIn, c.maxOut); err != nil {
				t.settle(c.resUSD, c.resToks, 0, 0)
				g.log.Error("reservation journal write failed", "err", err)
				g.refuse(w, r, t, route, http.StatusServiceUnavailable, "api_error", "mlagent gateway: could not record the reservation")
				return
			}
		}
	}
	if g.fwd != nil && g.forward(w, r, c, body, inMem) != errFallback {
		return
	}
	g.model.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callKey{}, c)))
}

// newPrefixProxy forwards prefix/… to upstream/… with the caller's
// credentials replaced by setAuth's, and keeps redirects on the gateway.
func (g *Gateway) newPrefixProxy(prefix string, upstream *url.URL, setAuth func(http.Header)) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			p := strings.TrimPrefix(pr.In.URL.EscapedPath(), prefix)
			if p == "" {
				p = "/"
			}
			pr.Out.URL.Path, _ = url.PathUnescape(p)
			pr.Out.URL.RawPath = p
			pr.SetURL(upstream)
			stripCredentials(pr.Out.Header)
			setAuth(pr.Out.Header)
		},
		Transport:     g.transport,
		FlushInterval: 0, // SSE and unknown lengths still flush per write
		BufferPool:    copyBufs{},
		ModifyResponse: func(resp *http.Response) error {
			if loc := resp.Header.Get("Location"); loc != "" {
				resp.Header.Set("Location", rewriteLocation(loc, prefix, upstream))
			}
			return g.modifyResponse(resp)
		},
		ErrorHandler: g.proxyError,
		ErrorLog:     slogErrorLog(g.log),
	}
}

// rewriteLocation keeps a redirect within the upstream on the gateway
// (under prefix); redirects elsewhere (a CDN) are left alone and go
// through the CONNECT allowlist.
func rewriteLocation(loc, prefix string, upstream *url.URL) string {
	u, err := url.Parse(loc)
	if err != nil {
		return loc
	}
	if u.Host == "" && strings.HasPrefix(u.Path, "/") {
		return prefix + loc
	}
	if u.Host == upstream.Host && u.Scheme == upstream.Scheme {
		u.Scheme, u.Host = "", ""
		return prefix + u.String()
	}
	return loc
}

func (g *Gateway) hfAuth(h http.Header) {
	if g.cfg.HFToken != "" {
		h["Authorization"] = []string{"Bearer " + g.cfg.HFToken}
	}
}

func (g *Gateway) gitAuth(h http.Header) {
	if g.cfg.GitHubToken != "" {
		h["Authorization"] = []string{"Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+g.cfg.GitHubToken))}
	}
}

// basicPassword is the password of a Basic credential (git and proxies
// send the token that way).
func basicPassword(v string) string {
	if len(v) < 6 || !strings.EqualFold(v[:6], "basic ") {
		return ""
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v[6:]))
	if err != nil {
		return ""
	}
	_, pw, _ := strings.Cut(string(raw), ":")
	return pw
}

func (g *Gateway) serveProxied(w http.ResponseWriter, r *http.Request, route string, rp *httputil.ReverseProxy) {
	tok := callerToken(r.Header)
	if tok == "" {
		tok = basicPassword(r.Header.Get("Authorization"))
	}
	t := g.authenticate(w, r, route, tok)
	if t == nil {
		return
	}
	if r.ContentLength > MaxRequestBody {
		g.refuse(w, r, t, route, http.StatusRequestEntityTooLarge, "request_too_large", "request body exceeds 32 MiB")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBody)
	if !g.hold(w, r, t, route) {
		return
	}
	c := &call{g: g, t: t, route: route, method: r.Method, start: time.Now()}
	rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callKey{}, c)))
}

// readBody reads a request body, sized up front when the length is known.
func readBody(r io.Reader, n int64) ([]byte, error) {
	if n <= 0 || n > MaxRequestBody {
		return io.ReadAll(r)
	}
	b := make([]byte, n, n+1)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	// Drain to EOF so a body longer than announced is caught as an error.
	if k, _ := r.Read(b[n : n+1]); k > 0 {
		return nil, errors.New("request body longer than its Content-Length")
	}
	return b, nil
}
