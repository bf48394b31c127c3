package gateway

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingUpstream is an upstream that counts the connections it accepts
// and records each request's headers.
type countingUpstream struct {
	*httptest.Server
	conns   atomic.Int64
	mu      sync.Mutex
	headers []http.Header
}

func newCountingUpstream(t *testing.T, tlsOn bool, h http.HandlerFunc) *countingUpstream {
	t.Helper()
	u := &countingUpstream{}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.headers = append(u.headers, r.Header.Clone())
		u.mu.Unlock()
		h(w, r)
	}))
	u.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}
	if tlsOn {
		u.StartTLS()
	} else {
		u.Start()
	}
	t.Cleanup(u.Close)
	return u
}

func (u *countingUpstream) lastHeader() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.headers[len(u.headers)-1]
}

const okReply = `{"id":"msg_1","type":"message","model":"claude-haiku-4-5","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":3,"output_tokens":4}}`

// TestForwarderInUse: the model route runs the gateway's own forwarder
// unless a proxy applies to the upstream; nothing else switches it off.
func TestForwarderInUse(t *testing.T) {
	e := newEnv(t, nil, nil)
	if e.g.fwd == nil {
		t.Fatal("the default config does not use the forwarder")
	}
	proxied := newEnv(t, nil, func(c *Config) {
		c.Proxy = func(*http.Request) (*url.URL, error) { return url.Parse("http://127.0.0.1:1") }
	})
	if proxied.g.fwd != nil {
		t.Fatal("the forwarder does not speak to proxies, yet it is in use behind one")
	}
}

// TestForwarderKeepAlive: replies of known length, chunked and empty all
// leave the connection for the next request.
func TestForwarderKeepAlive(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", tlsOn), func(t *testing.T) {
			up := newCountingUpstream(t, tlsOn, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				switch r.URL.Query().Get("kind") {
				case "chunked":
					io.WriteString(w, okReply[:20])
					w.(http.Flusher).Flush()
					io.WriteString(w, okReply[20:])
				case "empty":
					w.WriteHeader(http.StatusNoContent)
				default:
					w.Header().Set("Content-Length", fmt.Sprint(len(okReply)))
					io.WriteString(w, okReply)
				}
			})
			e := newEnv(t, nil, func(c *Config) { c.Upstream = up.URL })
			if tlsOn {
				pool := x509.NewCertPool()
				pool.AddCert(up.Certificate())
				e.g.fwd.tls.RootCAs = pool
			}
			tok := e.issue(t, TokenRequest{Sandbox: "a", BudgetUSD: 10})
			free := e.issue(t, TokenRequest{Sandbox: "b"}) // body streamed, not read first
			for i := 0; i < 12; i++ {
				kind := []string{"length", "chunked", "empty"}[i%3]
				k := []string{tok.Token, free.Token}[i%2]
				resp, got := e.post(t, "/v1/messages?kind="+kind, map[string]string{"x-api-key": k}, `{"model":"claude-haiku-4-5","max_tokens":5}`)
				want := okReply
				if kind == "empty" {
					want = ""
				}
				if resp.StatusCode/100 != 2 || got != want {
					t.Fatalf("%s: %d %q", kind, resp.StatusCode, got)
				}
			}
			if n := up.conns.Load(); n != 1 {
				t.Errorf("12 sequential requests opened %d upstream connections; want 1", n)
			}
			if err := e.g.flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			us, _ := e.g.Usage(context.Background())
			var out int64
			for _, u := range us {
				out += u.OutputTokens
			}
			if out != 8*4 {
				t.Errorf("booked %d output tokens; want %d (8 replies of 4)", out, 8*4)
			}
		})
	}
}

// TestForwarderStaleConn: an idle connection the upstream closed is not
// used for the next request.
// Over TLS the server's close_notify alert arrives before its FIN: the
// pending bytes must not pass for a live connection.
func TestForwarderStaleConn(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", tlsOn), func(t *testing.T) {
			up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				io.WriteString(w, okReply)
			}))
			up.Config.IdleTimeout = 20 * time.Millisecond
			if tlsOn {
				up.StartTLS()
			} else {
				up.Start()
			}
			defer up.Close()
			e := newEnv(t, nil, func(c *Config) { c.Upstream = up.URL })
			if tlsOn {
				pool := x509.NewCertPool()
				pool.AddCert(up.Certificate())
				e.g.fwd.tls.RootCAs = pool
			}
			tok := e.issue(t, TokenRequest{Sandbox: "a"})
			for i := 0; i < 4; i++ {
				if resp, got := e.post(t, "/v1/messages", map[string]string{"x-api-key": tok.Token}, `{}`); resp.StatusCode != 200 {
					t.Fatalf("request %d: %d %s", i, resp.StatusCode, got)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

// TestForwarderNoResendAfterWrite: an upstream that took a request whole
// and then closed without a word may have acted on it: the gateway
// answers 502 and never sends it a second time, even when it could.
func TestForwarderNoResendAfterWrite(t *testing.T) {
	var n atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if n.Add(1) == 2 {
			time.Sleep(50 * time.Millisecond) // "working on it"
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		io.WriteString(w, okReply)
	}))
	defer up.Close()
	e := newEnv(t, nil, func(c *Config) { c.Upstream = up.URL })
	tok := e.issue(t, TokenRequest{Sandbox: "a", BudgetUSD: 10}) // body held: replayable
	body := `{"model":"claude-haiku-4-5","max_tokens":5}`
	if resp, got := e.post(t, "/v1/messages", map[string]string{"x-api-key": tok.Token}, body); resp.StatusCode != 200 {
		t.Fatalf("first: %d %s", resp.StatusCode, got)
	}
	resp, _ := e.post(t, "/v1/messages", map[string]string{"x-api-key": tok.Token}, body)
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("second: status %d; want 502", resp.StatusCode)
	}
	if got := n.Load(); got != 2 {
		t.Errorf("the upstream received %d requests for 2; want no resend", got)
	}
}

// TestForwarderPathJoin: an upstream with a path prefix and a query
// keeps both, as ReverseProxy's SetURL does.
func TestForwarderPathJoin(t *testing.T) {
	var seen atomic.Value
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.URL.RequestURI() + " host=" + r.Host)
		io.WriteString(w, `{}`)
	}))
	defer up.Close()
	e := newEnv(t, nil, func(c *Config) { c.Upstream = up.URL + "/anthropic/?k=1" })
	tok := e.issue(t, TokenRequest{Sandbox: "a"})
	e.post(t, "/v1/messages?beta=true", map[string]string{"x-api-key": tok.Token}, `{}`)
	if got, want := seen.Load(), "/anthropic/v1/messages?k=1&beta=true host="+strings.TrimPrefix(up.URL, "http://"); got != want {
		t.Errorf("upstream saw %q; want %q", got, want)
	}
}

// TestForwarderSSEPerEvent: each event, unknown types included, is
// readable by the client before the upstream writes the next one (nothing
// waits in a buffer), through both upstream paths (the ReverseProxy one
// behind a proxy).
func TestForwarderSSEPerEvent(t *testing.T) {
	for _, custom := range []bool{false, true} {
		t.Run(fmt.Sprintf("reverseproxy=%v", custom), func(t *testing.T) {
			next := make(chan struct{})
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprint(w, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-haiku-4-5\",\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}\n\n")
				w.(http.Flusher).Flush()
				for i := 0; i < 3; i++ {
					<-next
					fmt.Fprintf(w, "event: custom_%d\ndata: {\"type\":\"custom_%d\"}\n\n", i, i)
					w.(http.Flusher).Flush()
				}
			}))
			defer up.Close()
			e := newEnv(t, nil, func(c *Config) {
				c.Upstream = up.URL
				if custom {
					c.Proxy = forwardProxy(t, nil)
				}
			})
			tok := e.issue(t, TokenRequest{Sandbox: "a"})
			req, _ := http.NewRequest("POST", e.data.URL+"/v1/messages", strings.NewReader(`{"stream":true}`))
			req.Header.Set("x-api-key", tok.Token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			readEvent := func() string {
				t.Helper()
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				br.ReadString('\n')
				br.ReadString('\n')
				return line
			}
			if l := readEvent(); l != "event: message_start\n" {
				t.Fatalf("got %q", l)
			}
			for i := 0; i < 3; i++ {
				next <- struct{}{}
				if l, want := readEvent(), fmt.Sprintf("event: custom_%d\n", i); l != want {
					t.Fatalf("got %q; want %q", l, want)
				}
			}
		})
	}
}

// TestForwarderClientCancel: a client that goes away mid-stream closes
// the upstream connection, and what arrived is booked.
func TestForwarderClientCancel(t *testing.T) {
	upstreamDone := make(chan struct{})
	up := newCountingUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		defer close(upstreamDone)
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-haiku-4-5\",\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}\n\n")
		w.(http.Flusher).Flush()
		// Silent from here: only the gateway closing the connection
		// ends this request.
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
			t.Error("the upstream request was not cancelled")
		}
	})
	e := newEnv(t, nil, func(c *Config) { c.Upstream = up.URL })
	tok := e.issue(t, TokenRequest{Sandbox: "a"})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", e.data.URL+"/v1/messages", strings.NewReader(`{"stream":true}`))
	req.Header.Set("x-api-key", tok.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if l, _ := br.ReadString('\n'); l != "event: message_start\n" {
		t.Fatalf("got %q", l)
	}
	cancel()
	resp.Body.Close()
	select {
	case <-upstreamDone:
	case <-time.After(15 * time.Second):
		t.Fatal("the upstream request was not cancelled when the client went away")
	}
	if err := e.g.flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var rec record
	deadline := time.Now().Add(5 * time.Second)
	for rec.TokenID == "" && time.Now().Before(deadline) {
		e.g.flush(context.Background())
		json.Unmarshal([]byte(strings.TrimSpace(e.audit.String())), &rec)
		time.Sleep(10 * time.Millisecond)
	}
	if rec.Usage == nil || rec.Usage.InputTokens != 7 || !rec.Stream {
		t.Errorf("audit = %s; want the stream booked with its 7 input tokens", e.audit.String())
	}
	e.g.fwd.mu.Lock()
	idle := len(e.g.fwd.idle)
	e.g.fwd.mu.Unlock()
	if idle != 0 {
		t.Errorf("the cancelled stream's connection went back to the pool")
	}
}

// TestForwarderTruncated: an upstream that closes before the end of its
// body gives the client an error, not a complete-looking reply, and its
// connection is not reused.
func TestForwarderTruncated(t *testing.T) {
	for _, kind := range []string{"length", "chunked"} {
		t.Run(kind, func(t *testing.T) {
			up := newCountingUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				conn, bw, err := w.(http.Hijacker).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				defer conn.Close()
				if kind == "length" {
					fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(okReply), okReply[:30])
				} else {
					fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1e\r\n%s\r\n", okReply[:30])
				}
				bw.Flush()
			})
			e := newEnv(t, nil, func(c *Config) { c.Upstream = up.URL })
			tok := e.issue(t, TokenRequest{Sandbox: "a"})
			req, _ := http.NewRequest("POST", e.data.URL+"/v1/messages", strings.NewReader(`{}`))
			req.Header.Set("x-api-key", tok.Token)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if err == nil {
				t.Fatal("a truncated upstream reply reached the client as complete")
			}
			e.g.fwd.mu.Lock()
			idle := len(e.g.fwd.idle)
			e.g.fwd.mu.Unlock()
			if idle != 0 {
				t.Error("the truncated reply's connection went back to the pool")
			}
			if err := e.g.flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(e.audit.String(), `"error":"upstream response truncated; incomplete reply`) {
				t.Errorf("audit = %s", e.audit.String())
			}
		})
	}
}

// TestForwarderNoLeak sends every kind of credential header, spelled
// every way, on a raw connection: the upstream sees the real key once
// and nothing else of them, and the real key is in no response, log or
// audit line (newEnv checks those two at cleanup).
func TestForwarderNoLeak(t *testing.T) {
	up := newCountingUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("request-id", "req_9")
		w.Header().Set("anthropic-ratelimit-requests-remaining", "41")
		w.Header().Set("retry-after", "3")
		w.Header().Set("Connection", "X-Up-Hop")
		w.Header().Set("X-Up-Hop", "secret-hop")
		io.WriteString(w, okReply)
	})
	e := newEnv(t, nil, func(c *Config) { c.Upstream = up.URL })
	tok := e.issue(t, TokenRequest{Sandbox: "a", BudgetUSD: 10})
	for _, budget := range []bool{true, false} {
		k := tok.Token
		if !budget {
			k = e.issue(t, TokenRequest{Sandbox: "b"}).Token
		}
		body := `{"model":"claude-haiku-4-5","max_tokens":5}`
		raw := "POST /v1/messages?beta=true HTTP/1.1\r\nHost: gw\r\n" +
			"x-api-key: " + k + "\r\n" +
			"Authorization: Bearer " + k + "\r\n" +
			"Proxy-Authorization: Basic eDp5\r\n" +
			"Cookie: session=1\r\n" +
			"Connection: keep-alive, X-Hop\r\n" +
			"X-Hop: drop-me\r\n" +
			"Te: trailers\r\n" +
			"Upgrade: h2c\r\n" +
			"Accept-Encoding: gzip\r\n" +
			"anthropic-version: 2023-06-01\r\n" +
			"Content-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.data.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, raw)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != 200 || string(got) != okReply {
			t.Fatalf("status %d: %s", resp.StatusCode, got)
		}
		dump := fmt.Sprint(resp.Header) + string(got)
		if strings.Contains(dump, realKey) {
			t.Fatal("the real key is in the response")
		}
		if resp.Header.Get("request-id") != "req_9" || resp.Header.Get("anthropic-ratelimit-requests-remaining") != "41" ||
			resp.Header.Get("retry-after") != "3" || resp.Header.Get("X-Up-Hop") != "" {
			t.Errorf("response headers = %v", resp.Header)
		}
		h := up.lastHeader()
		if v := h.Values("X-Api-Key"); len(v) != 1 || v[0] != realKey {
			t.Errorf("upstream x-api-key is not exactly the real key")
		}
		for _, name := range []string{"Authorization", "Proxy-Authorization", "Cookie", "X-Hop", "Te", "Upgrade", "Connection"} {
			if len(h.Values(name)) != 0 {
				t.Errorf("upstream got %s", name)
			}
		}
		if got := h.Get("Accept-Encoding"); got != "gzip" {
			t.Errorf("upstream Accept-Encoding = %q; want gzip, the gateway's, not the client's", got)
		}
		if h.Get("Anthropic-Version") != "2023-06-01" {
			t.Errorf("anthropic-version lost")
		}
		for name, vs := range h {
			if strings.Contains(strings.Join(vs, " "), k) {
				t.Errorf("sandbox token forwarded upstream in %s", name)
			}
		}
	}
}

// TestForwarderChunkedRequest: a request body of unknown length is sent
// on chunked, and one over the limit is refused with 413.
func TestForwarderChunkedRequest(t *testing.T) {
	var got atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got.Store(n)
		io.WriteString(w, `{}`)
	}))
	defer up.Close()
	e := newEnv(t, nil, func(c *Config) { c.Upstream = up.URL })
	tok := e.issue(t, TokenRequest{Sandbox: "a"})
	post := func(n int64) int {
		req, _ := http.NewRequest("POST", e.data.URL+"/v1/messages", io.MultiReader(strings.NewReader("{"), io.LimitReader(zeros{}, n-1)))
		req.Header.Set("x-api-key", tok.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(100 << 10); code != 200 || got.Load() != 100<<10 {
		t.Errorf("chunked body: %d, upstream read %d bytes; want 200, %d", code, got.Load(), 100<<10)
	}
	if code := post(MaxRequestBody + 1); code != 413 {
		t.Errorf("chunked body over the limit: %d; want 413", code)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestForwarderUnreachable: an upstream that refuses connections gives
// 502 api_error, naming no secret.
func TestForwarderUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	e := newEnv(t, nil, func(c *Config) { c.Upstream = "http://" + addr })
	tok := e.issue(t, TokenRequest{Sandbox: "a"})
	resp, got := e.post(t, "/v1/messages", map[string]string{"x-api-key": tok.Token}, `{}`)
	if resp.StatusCode != 502 || !strings.Contains(got, "api_error") {
		t.Errorf("got %d %s; want 502 api_error", resp.StatusCode, got)
	}
}

// forwardProxy is an HTTP forward proxy for plain-http URLs; it counts
// the requests it carries in n (when not nil). Its result is a
// Config.Proxy that sends every request to it.
func forwardProxy(t *testing.T, n *atomic.Int64) func(*http.Request) (*url.URL, error) {
	t.Helper()
	p := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		if !pr.In.URL.IsAbs() {
			t.Errorf("proxy got %s, not an absolute URL", pr.In.URL)
		}
		if n != nil {
			n.Add(1)
		}
		pr.Out.Header.Del("Proxy-Authorization")
	}})
	t.Cleanup(p.Close)
	u, _ := url.Parse(p.URL)
	return http.ProxyURL(u)
}

// TestForwarderProxyFallback: behind a proxy, the model route goes
// through httputil.ReverseProxy and the proxy, with the real key, and is
// booked like any other.
func TestForwarderProxyFallback(t *testing.T) {
	var viaProxy atomic.Int64
	up := newCountingUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.Header.Get("X-Api-Key") != realKey {
			t.Errorf("upstream got no real key")
		}
		io.WriteString(w, okReply)
	})
	e := newEnv(t, nil, func(c *Config) { c.Upstream = up.URL; c.Proxy = forwardProxy(t, &viaProxy) })
	tok := e.issue(t, TokenRequest{Sandbox: "a", BudgetUSD: 10})
	resp, got := e.post(t, "/v1/messages", map[string]string{"x-api-key": tok.Token}, `{"model":"claude-haiku-4-5","max_tokens":5}`)
	if resp.StatusCode != 200 || got != okReply {
		t.Fatalf("got %d %s; want the reply through the proxy", resp.StatusCode, got)
	}
	if viaProxy.Load() != 1 {
		t.Errorf("the proxy carried %d requests; want 1", viaProxy.Load())
	}
	us, _ := e.g.Usage(context.Background())
	if len(us) != 1 || us[0].Requests != 1 || us[0].OutputTokens != 4 {
		t.Errorf("usage = %+v; want the request booked once", us)
	}
}

// TestForwarderH2Fallback: an upstream that speaks only HTTP/2 (it ends
// a TLS handshake that does not offer h2) is reached through the
// ReverseProxy path, over HTTP/2, and booked.
func TestForwarderH2Fallback(t *testing.T) {
	var proto atomic.Value
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(r.Proto)
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, okReply)
	}))
	up.EnableHTTP2 = true
	up.TLS = &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if !slices.Contains(hello.SupportedProtos, "h2") {
			return nil, errors.New("h2 only")
		}
		return nil, nil
	}}
	up.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	up.StartTLS()
	defer up.Close()
	e := newEnv(t, nil, func(c *Config) { c.Upstream = up.URL })
	pool := x509.NewCertPool()
	pool.AddCert(up.Certificate())
	e.g.fwd.tls.RootCAs = pool // the forwarder is refused for want of h2, not of trust
	e.g.transport.TLSClientConfig = &tls.Config{RootCAs: pool}
	tok := e.issue(t, TokenRequest{Sandbox: "a", BudgetUSD: 10})
	resp, got := e.post(t, "/v1/messages", map[string]string{"x-api-key": tok.Token}, `{"model":"claude-haiku-4-5","max_tokens":5}`)
	if resp.StatusCode != 200 || got != okReply {
		t.Fatalf("got %d %s; want the reply through the fallback", resp.StatusCode, got)
	}
	if p, _ := proto.Load().(string); p != "HTTP/2.0" {
		t.Errorf("upstream saw %q; want HTTP/2.0", p)
	}
	us, _ := e.g.Usage(context.Background())
	if len(us) != 1 || us[0].Requests != 1 || us[0].OutputTokens != 4 {
		t.Errorf("usage = %+v; want the fallback request booked once", us)
	}
}

// TestDialUpstream: every upstream connection goes through
// Config.DialUpstream, so a test (or the demo) reaches its fakes at
// their production URLs, and the model route still runs the forwarder.
func TestDialUpstream(t *testing.T) {
	var hosts sync.Map
	model := newCountingUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		hosts.Store("model", r.Host)
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, okReply)
	})
	hub := newCountingUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		hosts.Store("hub", r.Host)
		io.WriteString(w, `{}`)
	})
	var dialed []string
	var mu sync.Mutex
	e := newEnv(t, nil, func(c *Config) {
		c.Upstream, c.HFUpstream = "http://api.anthropic.com", "http://huggingface.co"
		c.DialUpstream = func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dialed = append(dialed, addr)
			mu.Unlock()
			to := map[string]string{"api.anthropic.com:80": model.Listener.Addr().String(), "huggingface.co:80": hub.Listener.Addr().String()}[addr]
			if to == "" {
				return nil, fmt.Errorf("unexpected dial to %s", addr)
			}
			var d net.Dialer
			return d.DialContext(ctx, network, to)
		}
	})
	tok := e.issue(t, TokenRequest{Sandbox: "a"})
	if resp, got := e.post(t, "/v1/messages", map[string]string{"x-api-key": tok.Token}, `{}`); resp.StatusCode != 200 || got != okReply {
		t.Fatalf("model: %d %s", resp.StatusCode, got)
	}
	req, _ := http.NewRequest("GET", e.data.URL+"/hf/api/whoami-v2", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("hub: %d", resp.StatusCode)
	}
	mu.Lock()
	got := strings.Join(dialed, " ")
	mu.Unlock()
	if got != "api.anthropic.com:80 huggingface.co:80" {
		t.Errorf("dialed %q; want the model API, then the Hub", got)
	}
	if h, _ := hosts.Load("model"); h != "api.anthropic.com" {
		t.Errorf("model upstream saw Host %v", h)
	}
	if h, _ := hosts.Load("hub"); h != "huggingface.co" {
		t.Errorf("hub upstream saw Host %v", h)
	}
	e.g.fwd.mu.Lock()
	idle := len(e.g.fwd.idle)
	e.g.fwd.mu.Unlock()
	if idle != 1 {
		t.Errorf("the forwarder holds %d idle connections; want 1, the model request's", idle)
	}
}

// earlyAnswerUpstream is a raw HTTP/1.1 server that reads a request's
// head and the first 64 KiB of its body, answers 413 and closes the
// connection while the body is still coming, as an API front end does
// with an upload over its limit.
func earlyAnswerUpstream(t *testing.T, answer string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.CopyN(io.Discard, req.Body, 64<<10)
				fmt.Fprintf(conn, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(answer), answer)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestForwarderEarlyAnswer: an upstream that answers before it has read
// the whole request body, and closes, gives the client that answer, also
// when the body is streamed through (a token without a budget, of known
// length or chunked). Before, writing the rest of the body failed, the
// failure was taken for the client's, and the client got 502.
func TestForwarderEarlyAnswer(t *testing.T) {
	const answer = `{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum allowed number of bytes."}}`
	e := newEnv(t, nil, func(c *Config) { c.Upstream = earlyAnswerUpstream(t, answer) })
	budget := e.issue(t, TokenRequest{Sandbox: "a", BudgetUSD: 10})
	free := e.issue(t, TokenRequest{Sandbox: "b"})
	for _, tt := range []struct {
		name, tok string
		chunked   bool
	}{
		{"streamed, known length", free.Token, false},
		{"streamed, chunked", free.Token, true},
		{"held (budget)", budget.Token, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const size = 24 << 20
			var body io.Reader = io.MultiReader(strings.NewReader(`{"model":"claude-haiku-4-5","max_tokens":5,"pad":"`), io.LimitReader(zeros{}, size))
			n := int64(-1)
			if !tt.chunked {
				body = io.LimitReader(body, size)
				n = size
			}
			req, _ := http.NewRequest("POST", e.data.URL+"/v1/messages", body)
			req.ContentLength = n
			req.Header.Set("x-api-key", tt.tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge || string(got) != answer {
				t.Errorf("got %d %s; want the upstream's 413 %s", resp.StatusCode, got, answer)
			}
		})
	}
}

// gzipUpstream answers a Messages request with a gzip-compressed reply,
// whatever the request's Accept-Encoding, as a JSON body or as a stream
// whose every event is flushed through the compressor; each event waits
// for next when next is not nil. It records the Accept-Encoding it saw.
func gzipUpstream(t *testing.T, encoding string, next chan struct{}) (*countingUpstream, []string) {
	events := []string{
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-haiku-4-5\",\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}\n\n",
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hello\"}}\n\n",
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n",
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
	}
	return newCountingUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Encoding", encoding)
		zw := gzip.NewWriter(w)
		if r.URL.Query().Get("stream") == "" {
			var b bytes.Buffer
			zb := gzip.NewWriter(&b)
			io.WriteString(zb, okReply)
			zb.Close()
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", fmt.Sprint(b.Len()))
			w.Write(b.Bytes())
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i, ev := range events {
			if next != nil && i > 0 {
				<-next
			}
			io.WriteString(zw, ev)
			zw.Flush()
			w.(http.Flusher).Flush()
		}
		zw.Close()
	}), events
}

// TestForwarderGzip: the gateway asks the upstream for gzip and decodes
// the reply itself, so that the usage scanner reads plain bytes and the
// client gets them whatever it asked for; a streamed event still reaches
// the client before the upstream sends the next. Before, the gateway
// asked for identity (uncompressed on the upstream's link), and a
// compressed reply went past the scanner unread, booked as nothing.
func TestForwarderGzip(t *testing.T) {
	for _, clientAE := range []string{"", "gzip", "br, zstd"} {
		t.Run("client accepts "+clientAE, func(t *testing.T) {
			next := make(chan struct{})
			up, events := gzipUpstream(t, "gzip", next)
			e := newEnv(t, nil, func(c *Config) { c.Upstream = up.URL })
			tok := e.issue(t, TokenRequest{Sandbox: "a", BudgetUSD: 10})
			do := func(query string) (*http.Response, *bufio.Reader) {
				req, _ := http.NewRequest("POST", e.data.URL+"/v1/messages"+query, strings.NewReader(`{"model":"claude-haiku-4-5","max_tokens":50}`))
				req.Header.Set("x-api-key", tok.Token)
				if clientAE != "" {
					req.Header.Set("Accept-Encoding", clientAE)
				}
				// A raw transport: it decodes nothing on its own.
				resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { resp.Body.Close() })
				return resp, bufio.NewReader(resp.Body)
			}
			resp, br := do("")
			got, _ := io.ReadAll(br)
			if resp.StatusCode != 200 || string(got) != okReply || resp.Header.Get("Content-Encoding") != "" {
				t.Fatalf("JSON reply: %d %q (Content-Encoding %q); want the plain reply", resp.StatusCode, got, resp.Header.Get("Content-Encoding"))
			}
			if ae := up.lastHeader().Get("Accept-Encoding"); ae != "gzip" {
				t.Errorf("upstream Accept-Encoding = %q; want gzip", ae)
			}

			resp, br = do("?stream=1")
			if resp.Header.Get("Content-Encoding") != "" {
				t.Fatalf("stream Content-Encoding %q; want none", resp.Header.Get("Content-Encoding"))
			}
			for i, ev := range events {
				if i > 0 {
					next <- struct{}{}
				}
				buf := make([]byte, len(ev))
				if _, err := io.ReadFull(br, buf); err != nil || string(buf) != ev {
					t.Fatalf("event %d: %q, %v; want %q", i, buf, err, ev)
				}
			}
			if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
				t.Fatalf("after the events: %q, %v; want the end", rest, err)
			}
			if err := e.g.flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			us, _ := e.g.Usage(context.Background())
			if len(us) != 1 || us[0].Requests != 2 || us[0].InputTokens != 3+7 || us[0].OutputTokens != 4+9 {
				t.Errorf("usage = %+v; want 2 requests, 10 input and 13 output tokens", us)
			}
		})
	}
}

// TestForwarderUnknownEncoding: a reply in an encoding the gateway did
// not ask for and cannot read is passed on as it is, and charged its
// max_tokens, since its usage cannot be read.
func TestForwarderUnknownEncoding(t *testing.T) {
	up, _ := gzipUpstream(t, "br", nil)
	e := newEnv(t, nil, func(c *Config) { c.Upstream = up.URL })
	tok := e.issue(t, TokenRequest{Sandbox: "a", BudgetUSD: 10})
	for _, q := range []string{"", "?stream=1"} {
		resp, _ := e.post(t, "/v1/messages"+q, map[string]string{"x-api-key": tok.Token}, `{"model":"claude-haiku-4-5","max_tokens":50}`)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "br" {
			t.Fatalf("%q: %d, Content-Encoding %q; want 200 br", q, resp.StatusCode, resp.Header.Get("Content-Encoding"))
		}
	}
	if err := e.g.flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	us, _ := e.g.Usage(context.Background())
	if len(us) != 1 || us[0].OutputTokens != 2*50 {
		t.Errorf("usage = %+v; want 2 x max_tokens (50) of output", us)
	}
}

// BenchmarkGzipReply measures what asking the upstream for gzip buys and
// costs: the bytes on the upstream's link for a non-streamed reply of
// prose (this repository's README as the text) and for a stream of
// small text deltas, each flushed through the compressor as a server
// must, and the gateway's CPU to decode them (ns/op, per reply).
func BenchmarkGzipReply(b *testing.B) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		b.Fatal(err)
	}
	text, _ := json.Marshal(string(readme[:min(len(readme), 16<<10)]))
	jsonReply := []byte(`{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-5-5","content":[{"type":"text","text":` +
		string(text) + `}],"stop_reason":"end_turn","usage":{"input_tokens":2000,"output_tokens":4000}}`)
	var stream bytes.Buffer
	words := strings.Fields(string(readme))
	stream.WriteString("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-5-5\",\"usage\":{\"input_tokens\":2000,\"output_tokens\":1}}}\n\n")
	var events [][]byte
	for i := 0; i+3 <= len(words) && i < 3*1000; i += 3 {
		d, _ := json.Marshal(strings.Join(words[i:i+3], " ") + " ")
		events = append(events, []byte("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"+string(d)+"}}\n\n"))
	}
	for _, tt := range []struct {
		name   string
		chunks [][]byte
	}{{"json-16KiB", [][]byte{jsonReply}}, {"sse-1000-events", events}} {
		var plain int
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		for _, c := range tt.chunks {
			plain += len(c)
			zw.Write(c)
			zw.Flush() // per event, as a streaming server must
		}
		zw.Close()
		b.Run(tt.name, func(b *testing.B) {
			b.ReportMetric(float64(plain), "plain-bytes")
			b.ReportMetric(float64(z.Len()), "gzip-bytes")
			buf := make([]byte, 32<<10)
			for i := 0; i < b.N; i++ {
				zb := &gzipBody{src: bytes.NewReader(z.Bytes())}
				var err error
				for err == nil {
					_, err = zb.Read(buf)
				}
				zb.close()
				if err != io.EOF {
					b.Fatal(err)
				}
			}
		})
	}
}
