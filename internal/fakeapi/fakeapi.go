// Package fakeapi is a strict fake of the Anthropic Messages API: it rejects
// what the real API rejects (missing anthropic-version, a wrong key, bad
// roles, unpaired tool_use/tool_result blocks) and streams real event
// sequences. Tests of the gateway and the agent run against it, and so does
// `mlagent demo`, which is why it does not import testing.
package fakeapi

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Options configures a Server.
type Options struct {
	// APIKey is the only key accepted (in x-api-key or Authorization:
	// Bearer); "" accepts any non-empty key.
	APIKey string
	// Responder decides each reply of POST /v1/messages; nil replies "ok".
	Responder Responder
	// Models is the catalogue of GET /v1/models; nil = DefaultModels. A
	// Messages request naming a model not in it, or retired, gets 404.
	Models []ModelInfo
	// AnyModel accepts any model name in Messages requests, for tests
	// about something else.
	AnyModel bool
}

// Responder decides the reply to one accepted request. It is called from
// the server's handler goroutines, so it must be safe for concurrent use.
type Responder interface{ Respond(req *Request) *Reply }

// ResponderFunc adapts a function to Responder.
type ResponderFunc func(req *Request) *Reply

// Respond calls f.
func (f ResponderFunc) Respond(req *Request) *Reply { return f(req) }

// Server is a running (or handler-only) fake API.
type Server struct {
	opts Options
	srv  *http.Server
	ln   net.Listener
	url  string

	mu       sync.Mutex
	requests []*Request
	cache    map[[32]byte]bool // prompt-cache prefixes seen
}

// NewServer returns a server without a listener; serve s.Handler().
func NewServer(opts Options) *Server {
	return &Server{opts: opts, cache: map[[32]byte]bool{}}
}

// Start returns a server listening on a random 127.0.0.1 port.
func Start(opts Options) *Server {
	s := NewServer(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("fakeapi: listen: %v", err))
	}
	s.ln = ln
	s.url = "http://" + ln.Addr().String()
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return s
}

// URL is the base URL (no trailing slash) of a started server.
func (s *Server) URL() string { return s.url }

// Close stops a started server, dropping open connections.
func (s *Server) Close() {
	if s.srv != nil {
		s.srv.Close()
	}
}

// Handler serves the API.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }

// Requests returns the accepted POST /v1/messages requests, in order.
func (s *Server) Requests() []*Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Request(nil), s.requests...)
}

// APIError is the body of every error reply.
type apiError struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id,omitempty"`
}

func writeError(w http.ResponseWriter, status int, typ, msg string) {
	var e apiError
	e.Type = "error"
	e.Error.Type = typ
	e.Error.Message = msg
	e.RequestID = w.Header().Get("request-id")
	b, _ := json.Marshal(e)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-should-retry", fmt.Sprint(status == 429 || status >= 500))
	w.WriteHeader(status)
	w.Write(b)
}

// errorTypeFor is the Anthropic error type of an HTTP status.
func errorTypeFor(status int) string {
	switch status {
	case 400:
		return "invalid_request_error"
	case 401:
		return "authentication_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 413:
		return "request_too_large"
	case 429:
		return "rate_limit_error"
	case 529:
		return "overloaded_error"
	default:
		return "api_error"
	}
}

func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// maxBody is the real API's request size limit.
const maxBody = 32 << 20

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("request-id", newID("req_"))
	route := r.Method + " " + r.URL.Path
	modelID, isModel := strings.CutPrefix(r.URL.EscapedPath(), "/v1/models/")
	switch {
	case route == "POST /v1/messages", route == "POST /v1/messages/count_tokens", route == "GET /v1/models":
	case r.Method == "GET" && isModel && modelID != "":
		route = "GET /v1/models/{id}"
	default:
		writeError(w, 404, "not_found_error", "Not found")
		return
	}
	if msg := s.checkAuth(r.Header); msg != "" {
		writeError(w, 401, "authentication_error", msg)
		return
	}
	version := r.Header.Get("anthropic-version")
	switch version {
	case "2026-10-21", "2023-06-01", "2023-01-01":
	case "":
		writeError(w, 400, "invalid_request_error", "anthropic-version: header is required")
		return
	default:
		writeError(w, 400, "invalid_request_error", fmt.Sprintf("anthropic-version: invalid version %q", version))
		return
	}
	switch route {
	case "GET /v1/models":
		s.serveModels(w, r)
		return
	case "GET /v1/models/{id}":
		s.serveModel(w, modelID)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		writeError(w, 400, "invalid_request_error", "could not read request body")
		return
	}
	if len(body) > maxBody {
		writeError(w, 413, "request_too_large", "Request exceeds the maximum allowed number of bytes.")
		return
	}
	countOnly := route == "POST /v1/messages/count_tokens"
	req, err := parseRequest(r.Header, body, countOnly, version)
	if err != nil {
		writeError(w, 400, "invalid_request_error", err.Error())
		return
	}
	if !s.usableModel(req.Model) {
		writeError(w, 404, "not_found_error", "model: "+req.Model)
		return
	}
	usage := s.promptUsage(req)
	if countOnly {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"input_tokens":%d}`, usage.InputTokens+usage.CacheCreationInputTokens+usage.CacheReadInputTokens)
		return
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()

	var reply *Reply
	if s.opts.Responder == nil {
		reply = Text("ok")
	} else {
		reply = s.opts.Responder.Respond(req)
	}
	if reply == nil {
		reply = &Reply{Status: 500, ErrorMessage: "fakeapi: responder returned no reply"}
	}
	for k, vs := range reply.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if reply.Status >= 400 {
		typ := reply.ErrorType
		if typ == "" {
			typ = errorTypeFor(reply.Status)
		}
		msg := reply.ErrorMessage
		if msg == "" {
			msg = http.StatusText(reply.Status)
		}
		writeError(w, reply.Status, typ, msg)
		return
	}
	if reply.Usage != nil {
		usage = *reply.Usage
	} else {
		usage.OutputTokens = reply.outputTokens()
	}
	if req.Stream {
		writeStream(r.Context(), w, req, reply, usage)
		return
	}
	writeMessage(w, req, reply, usage)
}

func (s *Server) checkAuth(h http.Header) string {
	key := h.Get("x-api-key")
	if key == "" {
		if a := h.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
			key = a[7:]
		}
	}
	if key == "" {
		return "x-api-key header is required"
	}
	if s.opts.APIKey != "" && subtle.ConstantTimeCompare([]byte(key), []byte(s.opts.APIKey)) != 1 {
		return "invalid x-api-key"
	}
	return ""
}

// Script plays its steps in order, one per request; past the end it
// answers 500. It is safe for concurrent use.
type Script struct {
	Steps []func(*Request) *Reply

	mu sync.Mutex
	n  int
}

// Respond plays the next step.
func (s *Script) Respond(req *Request) *Reply {
	s.mu.Lock()
	i := s.n
	s.n++
	s.mu.Unlock()
	if i >= len(s.Steps) {
		return &Reply{Status: 500, ErrorType: "api_error",
			ErrorMessage: fmt.Sprintf("fakeapi: script has %d steps; request %d is past its end", len(s.Steps), i+1)}
	}
	return s.Steps[i](req)
}

// Played is how many requests the script has answered.
func (s *Script) Played() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}
