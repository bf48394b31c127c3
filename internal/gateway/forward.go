package gateway

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// forwarder is the model route's upstream client: a small synchronous
// HTTP/1.1 client over a pool of keep-alive connections. A request is
// written and its response read on the handler's own goroutine, so a
// request costs no goroutine or channel handoff on the upstream side
// (http.Transport runs a read and a write goroutine per connection and
// hands every request and response between them). It speaks plain TCP or
// TLS (ALPN http/1.1 only). What it does not handle (a proxy, an upstream
// that will not speak HTTP/1.1 over TLS) goes through the ReverseProxy path
// instead.
type forwarder struct {
	addr    string // host:port to dial
	host    string // Host header
	tls     *tls.Config
	base    *url.URL // the upstream URL, for its path and query
	dialTCP func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle int
	idleFor time.Duration // an idle connection is closed after this

	mu     sync.Mutex
	idle   []*fconn // oldest first; reuse takes the newest
	reaper *time.Timer
	closed bool
}

// fconn is one upstream connection.
type fconn struct {
	nc     net.Conn // what is read and written (TLS or TCP)
	raw    net.Conn // the TCP connection under it, closed to abort
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	reused bool
	spent  bool // the request was not written whole: never reuse
}

const (
	fwdMaxIdle     = 256
	fwdIdleTimeout = 90 * time.Second
)

// newForwarder returns nil when the upstream must go through
// http.Transport: a proxy applies to it.
func newForwarder(u *url.URL, proxy func(*http.Request) (*url.URL, error), dial func(ctx context.Context, network, addr string) (net.Conn, error)) *forwarder {
	if p, err := proxy(&http.Request{URL: u}); err != nil || p != nil {
		return nil
	}
	f := &forwarder{host: u.Host, base: u, maxIdle: fwdMaxIdle, idleFor: fwdIdleTimeout, dialTCP: dial}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	f.addr = net.JoinHostPort(u.Hostname(), port)
	if u.Scheme == "https" {
		f.tls = &tls.Config{ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
	}
	return f
}

// get returns a live idle connection or dials a new one.
func (f *forwarder) get(ctx context.Context) (*fconn, error) {
	now := time.Now()
	for {
		f.mu.Lock()
		n := len(f.idle)
		if n == 0 {
			f.mu.Unlock()
			break
		}
		fc := f.idle[n-1]
		f.idle[n-1] = nil
		f.idle = f.idle[:n-1]
		f.mu.Unlock()
		if now.Sub(fc.idleAt) < f.idleFor && alive(fc.raw) {
			fc.reused = true
			return fc, nil
		}
		fc.raw.Close()
	}
	return f.dial(ctx)
}

func (f *forwarder) dial(ctx context.Context) (*fconn, error) {
	raw, err := f.dialTCP(ctx, "tcp", f.addr)
	if err != nil {
		return nil, err
	}
	nc := raw
	if f.tls != nil {
		tc := tls.Client(raw, f.tls)
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second) // as http.DefaultTransport
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			raw.Close()
			return nil, err
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
			raw.Close()
			return nil, fmt.Errorf("upstream negotiated %q, not http/1.1", p)
		}
		nc = tc
	}
	return &fconn{nc: nc, raw: raw, br: bufio.NewReaderSize(nc, 16<<10), bw: bufio.NewWriterSize(nc, 16<<10)}, nil
}

// put keeps a connection whose last response was read to its end.
func (f *forwarder) put(fc *fconn) {
	fc.idleAt = time.Now()
	f.mu.Lock()
	if f.closed || len(f.idle) >= f.maxIdle {
		f.mu.Unlock()
		fc.raw.Close()
		return
	}
	f.idle = append(f.idle, fc)
	if f.reaper == nil {
		f.reaper = time.AfterFunc(f.idleFor, f.reap)
	}
	f.mu.Unlock()
}

// reap closes connections idle for longer than idleFor.
func (f *forwarder) reap() {
	now := time.Now()
	f.mu.Lock()
	i := 0
	for i < len(f.idle) && now.Sub(f.idle[i].idleAt) >= f.idleFor {
		f.idle[i].raw.Close()
		i++
	}
	f.idle = append(f.idle[:0], f.idle[i:]...)
	clear(f.idle[len(f.idle):cap(f.idle)])
	f.reaper = nil
	if len(f.idle) > 0 && !f.closed {
		f.reaper = time.AfterFunc(f.idleFor-now.Sub(f.idle[0].idleAt), f.reap)
	}
	f.mu.Unlock()
}

// close drops the idle connections; connections in use close when their
// requests end.
func (f *forwarder) close() {
	f.mu.Lock()
	f.closed = true
	for _, fc := range f.idle {
		fc.raw.Close()
	}
	f.idle = nil
	if f.reaper != nil {
		f.reaper.Stop()
	}
	f.mu.Unlock()
}

// requestURI is the upstream request target: the upstream URL's path
// joined with the request's, queries concatenated, as
// httputil.ProxyRequest.SetURL does.
func (f *forwarder) requestURI(in *url.URL) string {
	b := f.base
	if (b.Path == "" || b.Path == "/") && b.RawPath == "" && b.RawQuery == "" {
		p := in.EscapedPath()
		if p == "" {
			p = "/"
		}
		if in.RawQuery == "" {
			return p
		}
		return p + "?" + in.RawQuery
	}
	u := url.URL{}
	u.Path, u.RawPath = joinURLPath(b, in)
	switch {
	case b.RawQuery == "" || in.RawQuery == "":
		u.RawQuery = b.RawQuery + in.RawQuery
	default:
		u.RawQuery = b.RawQuery + "&" + in.RawQuery
	}
	return u.RequestURI()
}

// joinURLPath is net/http/httputil's.
func joinURLPath(a, b *url.URL) (path, rawpath string) {
	if a.RawPath == "" && b.RawPath == "" {
		return singleJoiningSlash(a.Path, b.Path), ""
	}
	apath, bpath := a.EscapedPath(), b.EscapedPath()
	aslash, bslash := strings.HasSuffix(apath, "/"), strings.HasPrefix(bpath, "/")
	switch {
	case aslash && bslash:
		return a.Path + b.Path[1:], apath + bpath[1:]
	case !aslash && !bslash:
		return a.Path + "/" + b.Path, apath + "/" + bpath
	}
	return a.Path + b.Path, apath + bpath
}

func singleJoiningSlash(a, b string) string {
	aslash, bslash := strings.HasSuffix(a, "/"), strings.HasPrefix(b, "/")
	switch {
	case aslash && bslash:
		return a + b[1:]
	case !aslash && !bslash:
		return a + "/" + b
	}
	return a + b
}

// hopHeaders are never forwarded, in either direction (RFC 9110 7.6.1).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// skipOut says whether an inbound header stays behind: credentials,
// hop-by-hop headers, and those the forwarder writes itself.
func skipOut(k string) bool {
	switch k {
	case "X-Api-Key", "Authorization", "Proxy-Authorization", "Cookie",
		"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Host", "Content-Length", "Accept-Encoding", "Expect":
		return true
	}
	return false
}

// validHeader rejects what could split a header line; net/http's server
// already refuses such requests, so this never fires behind it.
func validHeader(k string, vv []string) bool {
	if k == "" || strings.ContainsAny(k, " :\r\n\t") {
		return false
	}
	for _, v := range vv {
		if strings.ContainsAny(v, "\r\n") {
			return false
		}
	}
	return true
}

// writeRequest writes the request line and headers, the real key, and
// the body: body when it is in memory, else r.Body.
func (g *Gateway) writeRequest(fc *fconn, r *http.Request, body []byte, inMem bool) error {
	uri := g.fwd.requestURI(r.URL)
	if strings.ContainsAny(uri, " \t\r\n") {
		return errBadTarget
	}
	bw := fc.bw
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(g.fwd.host)
	bw.WriteString("\r\n")
	// Headers named by Connection are hop-by-hop too.
	var named []string
	if c := r.Header["Connection"]; len(c) > 0 {
		for _, v := range c {
			for _, f := range strings.Split(v, ",") {
				if f = http.CanonicalHeaderKey(strings.TrimSpace(f)); f != "" {
					named = append(named, f)
				}
			}
		}
	}
outer:
	for k, vv := range r.Header {
		if skipOut(k) || !validHeader(k, vv) {
			continue
		}
		for _, n := range named {
			if n == k {
				continue outer
			}
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if g.cfg.APIKey != "" {
		bw.WriteString("X-Api-Key: ")
		bw.WriteString(g.cfg.APIKey)
		bw.WriteString("\r\n")
	}
	// Compressed on the upstream's link, which is the slow one; decoded
	// here (copyResponse), so that the usage scanner reads plain bytes and
	// the client, on loopback, never pays for compression. The client's
	// own Accept-Encoding is dropped: an encoding the gateway cannot read
	// would blind the scanner.
	bw.WriteString("Accept-Encoding: gzip\r\n")
	n := r.ContentLength
	if inMem {
		n = int64(len(body))
	}
	chunked := !inMem && n < 0
	switch {
	case chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	case n > 0 || (n == 0 && (r.Method == "POST" || r.Method == "PUT" || r.Method == "PATCH")):
		bw.WriteString("Content-Length: ")
		var num [20]byte
		bw.Write(strconv.AppendInt(num[:0], n, 10))
		bw.WriteString("\r\n\r\n")
	default:
		bw.WriteString("\r\n")
	}
	// A failed copy is the client's fault only if reading its body
	// failed; a failed write is the upstream's, which may have answered
	// early (roundTrip reads that answer).
	src := &bodyReader{r: r.Body}
	switch {
	case inMem:
		bw.Write(body)
	case chunked:
		cw := httputil.NewChunkedWriter(bw)
		if _, err := io.Copy(cw, src); err != nil {
			return src.blame(err)
		}
		cw.Close()
		bw.WriteString("\r\n")
	case n > 0:
		k, err := bw.ReadFrom(io.LimitReader(src, n))
		if err == nil && k < n {
			return &bodyError{io.ErrUnexpectedEOF}
		}
		if err != nil {
			return src.blame(err)
		}
	}
	return bw.Flush()
}

// bodyReader remembers a failure to read the client's request body.
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// blame is the error of a failed body copy: a bodyError when reading the
// body failed, else err, a failure to write upstream.
func (b *bodyReader) blame(err error) error {
	if b.err != nil {
		return &bodyError{b.err}
	}
	return err
}

// bodyError is a failure to read the client's request body, as opposed to
// a failure to write upstream.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return "reading request body: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// errBadTarget is a request target that cannot go on a request line;
// net/http's server never passes one on, so it is a guard, not a path.
var errBadTarget = errors.New("request target holds white space")

// errFallback says the forwarder could not reach the upstream before
// anything of the request was consumed: the ReverseProxy path takes it.
var errFallback = errors.New("fallback")

// forward sends r upstream over the forwarder and copies the response
// back. body is the request body when the caller has read it already
// (inMem). It returns errFallback, having written nothing, when it could
// not connect.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, c *call, body []byte, inMem bool) error {
	ctx := r.Context()
	replayable := inMem || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
	var resp *http.Response
	var fc *fconn
	for attempt := 0; ; attempt++ {
		var err error
		if fc, err = g.fwd.get(ctx); err != nil {
			// Not a refused or unreachable host, but one this client
			// cannot speak to (TLS, ALPN): net/http's Transport may.
			var op *net.OpError
			if attempt == 0 && ctx.Err() == nil && !(errors.As(err, &op) && op.Op == "dial") {
				return errFallback
			}
			g.upstreamError(w, r, c, err)
			return nil
		}
		// A client that goes away aborts the upstream request.
		stop := context.AfterFunc(ctx, func() { fc.raw.Close() })
		if resp, err = g.roundTrip(fc, r, body, inMem); err == nil {
			return g.copyResponse(w, r, c, fc, resp, stop)
		}
		stop()
		fc.raw.Close()
		var be *bodyError
		if errors.As(err, &be) || errors.Is(err, errBadTarget) || ctx.Err() != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			g.upstreamError(w, r, c, err)
			return nil
		}
		// A kept-alive connection the upstream had closed before taking
		// the request: send it again on a new one if the body allows. A
		// request written whole is never sent twice (the upstream may have
		// acted on it), as net/http's Transport never resends a POST.
		if errors.Is(err, errNotTaken) && fc.reused && replayable && attempt == 0 {
			continue
		}
		g.upstreamError(w, r, c, err)
		return nil
	}
}

var (
	// errNotTaken: writing the request failed and no reply came, so the
	// upstream had closed the connection and cannot have acted on it.
	errNotTaken = errors.New("upstream closed the connection before taking the request")
	// errNoReply: the request went out whole and the connection closed
	// without a reply; the upstream may have acted on it.
	errNoReply = errors.New("upstream closed the connection without replying")
)

// roundTrip writes the request and reads the response head.
func (g *Gateway) roundTrip(fc *fconn, r *http.Request, body []byte, inMem bool) (*http.Response, error) {
	if err := g.writeRequest(fc, r, body, inMem); err != nil {
		fc.spent = true
		var be *bodyError
		if errors.As(err, &be) || errors.Is(err, errBadTarget) {
			return nil, err
		}
		// The upstream may have answered (and closed) without reading
		// everything: read its reply if there is one.
		if _, perr := fc.br.Peek(1); perr != nil {
			return nil, fmt.Errorf("%w: %v", errNotTaken, err)
		}
	}
	if _, err := fc.br.Peek(1); err != nil {
		return nil, fmt.Errorf("%w: %v", errNoReply, err)
	}
	for {
		resp, err := http.ReadResponse(fc.br, r)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			if resp.StatusCode == http.StatusSwitchingProtocols {
				return nil, errors.New("upstream switched protocols")
			}
			continue // 100 Continue, 103 Early Hints
		}
		return resp, nil
	}
}

// copyResponse sends the response head and streams the body, flushing
// each read of an SSE or unknown-length body. The connection goes back to
// the pool only if the body was read to its end and the upstream keeps
// it alive.
func (g *Gateway) copyResponse(w http.ResponseWriter, r *http.Request, c *call, fc *fconn, resp *http.Response, stop func() bool) error {
	sse := isSSE(resp.Header)
	c.begin(resp.StatusCode, sse)
	// As ReverseProxy with FlushInterval 0: every read of an SSE or
	// unknown-length body is flushed; a reply of known length (before
	// decoding) leaves in one write.
	flush := resp.ContentLength < 0 || sse
	dst := w.Header()
	for k, vv := range resp.Header {
		dst[k] = vv
	}
	for _, k := range hopHeaders {
		delete(dst, k)
	}
	var body io.Reader = resp.Body
	var zr *gzipBody
	switch ce := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))); ce {
	case "", "identity":
	case "gzip", "x-gzip":
		zr = &gzipBody{src: resp.Body}
		body = zr
		delete(dst, "Content-Encoding")
		delete(dst, "Content-Length")
	default:
		// Not asked for and not readable: passed on as it is, and a
		// reply whose usage cannot be read is charged its max_tokens.
		c.sc.hidden = true
		g.log.Warn("upstream reply in an encoding the gateway did not ask for", "route", r.URL.Path, "content_encoding", ce)
	}
	if cv := resp.Header["Connection"]; len(cv) > 0 {
		for _, v := range cv {
			for _, f := range strings.Split(v, ",") {
				if f = strings.TrimSpace(f); f != "" {
					dst.Del(f)
				}
			}
		}
	}
	w.WriteHeader(resp.StatusCode)
	fl, _ := w.(http.Flusher)
	bp := copyPool.Get().(*[]byte)
	buf := *bp
	var rerr, werr error
	for {
		var n int
		n, rerr = body.Read(buf)
		if n > 0 {
			c.bytes += int64(n)
			if c.scan {
				c.sc.Write(buf[:n])
			}
			if _, werr = w.Write(buf[:n]); werr != nil {
				break
			}
			if flush && fl != nil {
				fl.Flush()
			}
		}
		if rerr != nil {
			break
		}
	}
	copyPool.Put(bp)
	if zr != nil {
		zr.close()
	}
	clean := rerr == io.EOF && werr == nil
	if clean && fl != nil {
		// The client has its whole reply before the bookkeeping below
		// (journal, usage, settling) runs.
		fl.Flush()
	}
	if stop() && clean && !fc.spent && !resp.Close && fc.br.Buffered() == 0 &&
		(resp.ContentLength >= 0 || len(resp.TransferEncoding) > 0) {
		g.fwd.put(fc)
	} else {
		fc.raw.Close()
	}
	switch {
	case clean:
	case werr != nil || r.Context().Err() != nil:
		// The client went away; book what arrived.
	default:
		c.errText = "upstream response truncated"
		g.log.Warn("upstream error", "route", r.URL.Path, "token_id", tokenID(c), "err", rerr)
	}
	c.finish()
	if !clean && werr == nil && r.Context().Err() == nil {
		// Do not let a cut reply look complete to the client.
		panic(http.ErrAbortHandler)
	}
	return nil
}

// gzipBody decodes a gzip reply as it is read. Its decoder comes from a
// pool on the first read, so that a reply with no body needs none.
type gzipBody struct {
	src io.Reader
	zr  *gzip.Reader
	err error
}

var gzipReaders sync.Pool // of *gzip.Reader

func (b *gzipBody) Read(p []byte) (int, error) {
	if b.zr == nil && b.err == nil {
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		if zr == nil {
			zr, b.err = gzip.NewReader(b.src)
		} else {
			b.err = zr.Reset(b.src)
		}
		if b.err != nil {
			return 0, b.err
		}
		b.zr = zr
	}
	if b.err != nil {
		return 0, b.err
	}
	return b.zr.Read(p)
}

// close returns the decoder to the pool.
func (b *gzipBody) close() {
	if b.zr != nil {
		gzipReaders.Put(b.zr)
		b.zr = nil
	}
}

func isSSE(h http.Header) bool {
	ct, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return ct == "text/event-stream"
}
