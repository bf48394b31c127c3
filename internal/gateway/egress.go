package gateway

import (
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// allowed reports whether the CONNECT target host:port is on the
// allowlist: "host" and "*.domain" allow port 443; "host:port" and
// "*.domain:port" allow that port.
func allowed(allow []string, target string) bool {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return false
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, a := range allow {
		ah, ap := strings.ToLower(a), "443"
		if h, p, err := net.SplitHostPort(a); err == nil {
			ah, ap = strings.ToLower(h), p
		}
		if ap != port {
			continue
		}
		if d, ok := strings.CutPrefix(ah, "*."); ok {
			if strings.HasSuffix(host, "."+d) {
				return true
			}
		} else if host == ah {
			return true
		}
	}
	return false
}

// serveConnect tunnels TLS to an allowlisted host. The caller
// authenticates with Proxy-Authorization: Basic (password = its token).
func (g *Gateway) serveConnect(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	target := r.Host
	tok := basicPassword(r.Header.Get("Proxy-Authorization"))
	t, err := g.lookup(r.Context(), tok)
	rec := record{Time: start, Route: "connect", Method: r.Method, Target: target}
	if err != nil {
		rec.Status, rec.Error = http.StatusProxyAuthRequired, "proxy: unknown, expired or revoked token"
		g.emit(rec)
		w.Header().Set("Proxy-Authenticate", `Basic realm="mlagent"`)
		http.Error(w, "mlagent gateway: proxy authentication required (user mlagent, password = the sandbox token)", http.StatusProxyAuthRequired)
		return
	}
	rec.TokenID, rec.Sandbox = t.id, t.sandbox
	if !allowed(g.cfg.Allow, target) {
		rec.Status = http.StatusForbidden
		rec.Error = fmt.Sprintf("egress to %s is not on the allowlist", target)
		g.emit(rec)
		http.Error(w, "mlagent gateway: "+rec.Error, http.StatusForbidden)
		return
	}
	up, err := g.cfg.Dial(r.Context(), "tcp", target)
	if err != nil {
		rec.Status, rec.Error = http.StatusBadGateway, "dial failed"
		g.emit(rec)
		g.log.Warn("connect dial failed", "token_id", t.id, "target", target, "err", err)
		http.Error(w, "mlagent gateway: cannot reach "+target, http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		rec.Status, rec.Error = http.StatusInternalServerError, "connection cannot be hijacked"
		g.emit(rec)
		http.Error(w, "mlagent gateway: CONNECT needs HTTP/1.1", http.StatusInternalServerError)
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	g.track(conn, true)
	g.track(up, true)
	defer g.track(conn, false)
	defer g.track(up, false)
	conn.Write([]byte("HTTP/1.1 200 Connection Established\r\n\r\n"))
	var n int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Bytes the client sent after CONNECT may sit in buf already.
		if k := buf.Reader.Buffered(); k > 0 {
			p, _ := buf.Reader.Peek(k)
			up.Write(p)
		}
		io.Copy(up, conn)
		if tc, ok := up.(interface{ CloseWrite() error }); ok {
			tc.CloseWrite()
		} else {
			up.Close()
		}
	}()
	n, _ = io.Copy(conn, up)
	conn.Close()
	up.Close()
	wg.Wait()
	rec.Status, rec.Bytes = http.StatusOK, n
	rec.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	g.emit(rec)
}

func (g *Gateway) track(c net.Conn, add bool) {
	g.tunnelsMu.Lock()
	defer g.tunnelsMu.Unlock()
	if add {
		g.tunnels[c] = struct{}{}
	} else {
		delete(g.tunnels, c)
	}
}

// refusePlainProxy answers absolute-form (plain HTTP proxy) requests:
// cleartext egress would expose whatever the sandbox sends.
func (g *Gateway) refusePlainProxy(w http.ResponseWriter, r *http.Request) {
	msg := fmt.Sprintf("plain-HTTP egress to %s is refused; use HTTPS (CONNECT) to an allowlisted host", r.URL.Host)
	g.emit(record{Time: time.Now(), Route: "proxy", Method: r.Method, Target: r.URL.Host, Status: http.StatusForbidden, Error: msg})
	http.Error(w, "mlagent gateway: "+msg, http.StatusForbidden)
}

// slogErrorLog routes net/http's internal errors to the logger.
func slogErrorLog(l *slog.Logger) *log.Logger {
	return slog.NewLogLogger(l.Handler(), slog.LevelWarn)
}
