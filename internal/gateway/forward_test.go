package gateway

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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

func TestForwarderInUse(t *testing.T) {
	e := newEnv(t, nil, nil)
	if e.g.fwd == nil {
		t.Fatal("the default config does not use the forwarder")
	}
	custom := newEnv(t, nil, func(c *Config) { c.Transport = NewTransport() })
	if custom.g.fwd != nil {
		t.Fatal("a custom Transport is bypassed by the forwarder")
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
// waits in a buffer), through both upstream paths.
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
					c.Transport = NewTransport()
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
		if got := h.Get("Accept-Encoding"); got != "identity" {
			t.Errorf("upstream Accept-Encoding = %q; want identity", got)
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

// TestForwarderTLSFallback: an upstream the forwarder cannot speak TLS
// to goes through the ReverseProxy path instead.
func TestForwarderTLSFallback(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, okReply)
	}))
	defer up.Close()
	e := newEnv(t, nil, func(c *Config) { c.Upstream = up.URL })
	tok := e.issue(t, TokenRequest{Sandbox: "a", BudgetUSD: 10})
	// The forwarder knows only the system roots; the Transport trusts the
	// test server.
	e.g.model.Transport = up.Client().Transport
	resp, got := e.post(t, "/v1/messages", map[string]string{"x-api-key": tok.Token}, `{"model":"claude-haiku-4-5","max_tokens":5}`)
	if resp.StatusCode != 200 || got != okReply {
		t.Errorf("got %d %s; want the reply through the fallback", resp.StatusCode, got)
	}
	us, _ := e.g.Usage(context.Background())
	if len(us) != 1 || us[0].Requests != 1 || us[0].OutputTokens != 4 {
		t.Errorf("usage = %+v; want the fallback request booked once", us)
	}
}
