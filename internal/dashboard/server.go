// Package dashboard serves the local live dashboard: a web page (assets
// embedded in the binary, no CDN) listing Trackio projects and runs, one
// chart per metric, run configs and system metrics, updated over
// server-sent events as rows land in the Trackio databases.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/mlagent/mlagent/internal/trackio"
)

//go:embed assets
var assets embed.FS

// Options tune the follower; the zero value is what the CLI uses.
type Options struct {
	// Fallback is the polling interval used even without file
	// notifications (default 500ms; notifications wake it sooner).
	Fallback time.Duration
	// Debounce delays a poll after a notification so a burst of writes
	// becomes one read (default 20ms).
	Debounce time.Duration
}

// Server follows a Trackio directory and serves the dashboard.
// Its methods are safe for concurrent use.
type Server struct {
	dir    string
	log    *slog.Logger
	opts   Options
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	projects map[string]*projectState
	subs     map[*subscriber]struct{}
}

type subscriber struct {
	project string
	ch      chan []byte // pre-rendered SSE frames
}

// New starts following dir (the Trackio directory) and returns the server.
func New(dir string, log *slog.Logger) (*Server, error) {
	return NewWithOptions(dir, log, Options{})
}

// NewWithOptions is New with tuning, for tests and benchmarks.
func NewWithOptions(dir string, log *slog.Logger, opts Options) (*Server, error) {
	if dir == "" {
		return nil, errors.New("dashboard: no Trackio directory")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Fallback <= 0 {
		opts.Fallback = 500 * time.Millisecond
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 20 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		dir: dir, log: log.With("component", "dashboard"), opts: opts,
		cancel: cancel, done: make(chan struct{}),
		projects: map[string]*projectState{}, subs: map[*subscriber]struct{}{},
	}
	go s.follow(ctx)
	return s, nil
}

// Close stops following and ends open event streams.
func (s *Server) Close() error {
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.projects {
		if p.reader != nil {
			p.reader.Close()
		}
	}
	for sub := range s.subs {
		close(sub.ch)
		delete(s.subs, sub)
	}
	return nil
}

func (s *Server) follow(ctx context.Context) {
	defer close(s.done)
	wake := trackio.Watch(ctx, s.dir, s.opts.Fallback, s.log)
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-wake:
			if !ok {
				return
			}
		}
		// Let a burst of WAL writes settle into one read.
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.opts.Debounce):
		}
		s.pollOnce(ctx)
	}
}

// pollOnce reads every database whose files changed. A broken database
// marks its own project with an error; the others keep updating.
func (s *Server) pollOnce(ctx context.Context) {
	paths, err := trackio.ListDBs(s.dir)
	if err != nil {
		return // directory not created yet
	}
	listChanged := false
	for _, path := range paths {
		name := trackio.ProjectOf(path)
		s.mu.Lock()
		p := s.projects[name]
		if p == nil {
			p = newProject(name, path)
			s.projects[name] = p
			listChanged = true
		}
		s.mu.Unlock()

		// A database deleted and created again restarts its row ids: start
		// the project over, and tell its pages to fetch a new snapshot.
		if fi, err := os.Stat(path); err == nil {
			replaced := p.file != nil && !os.SameFile(p.file, fi)
			if !replaced && p.reader != nil && trackio.Sig(path) != p.sig {
				replaced, _ = p.reader.Replaced(ctx)
			}
			if replaced {
				if p.reader != nil {
					p.reader.Close()
				}
				s.mu.Lock()
				p = newProject(name, path)
				s.projects[name] = p
				s.broadcastLocked(name, "reset", map[string]string{"project": name})
				s.mu.Unlock()
				listChanged = true
			}
			p.file = fi
		}
		sig := trackio.Sig(path)
		if sig == p.sig && p.Error == "" {
			continue
		}
		if p.reader == nil {
			r, err := trackio.OpenReader(path)
			if err != nil {
				s.setError(p, err)
				listChanged = true
				continue
			}
			p.reader = r
		}
		for {
			b, err := p.reader.Poll(ctx, 5000)
			if errors.Is(err, trackio.ErrBusy) {
				break // a writer holds the lock: retry on the next wake-up
			}
			if err != nil {
				if s.setError(p, err) {
					listChanged = true
				}
				break
			}
			s.mu.Lock()
			hadErr := p.Error != ""
			p.Error = ""
			p.sig = sig
			if l, err := p.reader.Layout(ctx); err == nil {
				p.Layout = l.String()
			}
			if b.Empty() {
				s.mu.Unlock()
				if hadErr {
					listChanged = true
				}
				break
			}
			d := p.apply(b)
			s.broadcastLocked(name, "delta", d)
			s.mu.Unlock()
		}
	}
	if listChanged {
		s.mu.Lock()
		s.broadcastLocked("", "projects", s.projectListLocked())
		s.mu.Unlock()
	}
}

// setError records a project error; it reports whether it changed.
func (s *Server) setError(p *projectState, err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := err.Error()
	if p.Error == msg {
		return false
	}
	p.Error = msg
	s.log.Warn("trackio database unreadable", "project", p.Name, "err", err)
	return true
}

type projectSummary struct {
	Name  string `json:"name"`
	Runs  int    `json:"runs"`
	Error string `json:"error,omitempty"`
}

func (s *Server) projectListLocked() []projectSummary {
	out := make([]projectSummary, 0, len(s.projects))
	for _, p := range s.projects {
		out = append(out, projectSummary{Name: p.Name, Runs: len(p.Runs), Error: p.Error})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// frame renders one SSE event.
func frame(event string, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{}`)
	}
	return []byte(fmt.Sprintf("event: %s\ndata: %s\n\n", event, b))
}

// broadcastLocked sends an event to the subscribers of project ("" = all).
// A subscriber too slow to keep up is dropped; its browser reconnects and
// gets a fresh snapshot, so nothing is silently lost.
func (s *Server) broadcastLocked(project, event string, v any) {
	f := frame(event, v)
	for sub := range s.subs {
		if project != "" && sub.project != project {
			continue
		}
		select {
		case sub.ch <- f:
		default:
			close(sub.ch)
			delete(s.subs, sub)
		}
	}
}

// Handler serves the page, its assets and the API:
//
//	GET /                  the dashboard page
//	GET /api/projects      project list
//	GET /api/events?project=NAME  SSE: "snapshot", then "delta" and "projects"
//
// URLs in the page are relative, so the handler can be mounted under a
// prefix (e.g. /dashboard/ with http.StripPrefix).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	sub, _ := fs.Sub(assets, "assets")
	static := http.FileServerFS(sub)
	mux.Handle("GET /", withHeaders(static))
	mux.HandleFunc("GET /api/projects", s.handleProjects)
	mux.HandleFunc("GET /api/events", s.handleEvents)
	return mux
}

func withHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

func (s *Server) handleProjects(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	list := s.projectListLocked()
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(list)
}

type snapshot struct {
	Projects []projectSummary `json:"projects"`
	Project  *projectState    `json:"project"`
}

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	name := r.URL.Query().Get("project")
	sub := &subscriber{ch: make(chan []byte, 1024)}
	s.mu.Lock()
	list := s.projectListLocked()
	if name == "" && len(list) > 0 {
		name = list[0].Name
	}
	sub.project = name
	snap := snapshot{Projects: list, Project: s.projects[name]}
	// Rendered under the lock with the subscription, so no delta falls
	// between the snapshot and the stream.
	first := frame("snapshot", snap)
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if _, ok := s.subs[sub]; ok {
			delete(s.subs, sub)
		}
		s.mu.Unlock()
	}()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte("retry: 1000\n\n"))
	w.Write(first)
	fl.Flush()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case f, ok := <-sub.ch:
			if !ok {
				return
			}
			if _, err := w.Write(f); err != nil {
				return
			}
			fl.Flush()
		case <-keepalive.C:
			if _, err := w.Write([]byte(": keepalive\n\n")); err != nil {
				return
			}
			fl.Flush()
		}
	}
}
