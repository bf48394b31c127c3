package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// probeBaseURL checks, before a sandbox is made, that --base-url answers
// the Messages API: an unreachable server (refused, no such host) or a URL
// without the route fails at once, naming the URL, instead of as model
// requests retried for minutes. The probe is an empty request, which a
// Messages API refuses (400, or 401 for a bad key) without generating.
func probeBaseURL(ctx context.Context, base, key string) error {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("--base-url %q: want an http(s) URL such as http://localhost:11434", base)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	endpoint := strings.TrimRight(base, "/") + "/v1/messages"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader("{}"))
	if err != nil {
		return fmt.Errorf("--base-url %s: %w", base, err)
	}
	req.Header.Set("content-type", "application/json")
	req.Header.Set("anthropic-version", "2023-06-01")
	if key != "" {
		req.Header.Set("x-api-key", key)
	}
	client := &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach --base-url %s: %s; is the server running there?", base, reachError(err))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
		msg := fmt.Sprintf("--base-url %s answers %d %s for POST %s: not an Anthropic-compatible Messages API there",
			base, resp.StatusCode, http.StatusText(resp.StatusCode), endpoint)
		if p := strings.TrimRight(u.Path, "/"); strings.HasSuffix(p, "/v1") {
			msg += fmt.Sprintf("; drop the /v1: --base-url %s", strings.TrimSuffix(strings.TrimRight(base, "/"), "/v1"))
		}
		return errors.New(msg)
	}
	return nil
}

// reachError is the reason a connection failed, in a few words.
func reachError(err error) string {
	var dns *net.DNSError
	var op *net.OpError
	switch {
	case errors.As(err, &dns):
		return "no such host " + dns.Name
	case errors.As(err, &op) && op.Err != nil:
		s := op.Err.Error()
		if i := strings.LastIndex(s, ": "); i >= 0 {
			s = s[i+2:]
		}
		return s
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer within 10 s"
	}
	return err.Error()
}
