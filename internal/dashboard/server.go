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
	"math"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
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
	// ReadTimeout bounds each read of a database (default 2s); a database
	// that needs longer shows an error and is retried with backoff.
	ReadTimeout time.Duration
	// MaxProjects bounds the databases followed (default 1000).
	MaxProjects int
	// MaxPoints bounds the points kept in memory, all projects together
	// (default 25 million, about 200 MB); beyond it the longest series
	// are thinned, keeping each stretch's extremes.
	MaxPoints int64
	// MaxSeries bounds the (run, metric) series kept, all projects
	// together (default 200,000): a database can name any number of
	// metrics; past it new names are not charted.
	MaxSeries int64
	// MaxConfigBytes bounds the run configs kept, all projects together
	// (default 64 MiB); a config over 256 KiB, or past this budget, shows
	// as a note saying so.
	MaxConfigBytes int64
	// StaleAfter is how long a run may go without a row and still show
	// as running (default: 60s, or 10 times its usual interval if longer).
	StaleAfter time.Duration
	// PreviewRows is the size of the sample a project is first shown
	// from when its database holds over previewFactor times as many
	// rows (default 5,000): reading 10 M points takes the follower tens
	// of seconds on a busy machine, a sample of evenly spaced rows a
	// fraction of one. Negative: never preview.
	PreviewRows int

	// catchUpHook, when set (tests), runs before each read of a project
	// that is showing a preview.
	catchUpHook func()
}

// previewFactor: a project is previewed when its tables span more than
// previewFactor × Options.PreviewRows row ids.
const previewFactor = 5

// Server follows a Trackio directory and serves the dashboard.
// Its methods are safe for concurrent use.
type Server struct {
	dir    string
	log    *slog.Logger
	opts   Options
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup // the per-project followers
	polls  atomic.Int64   // follower polls, all projects (what a wake-up costs)
	// serving counts page requests being answered (snapshots, series),
	// which a project read behind its preview waits for.
	serving atomic.Int64

	mu         sync.RWMutex
	points     int64 // stored points, all projects
	seriesLeft int64 // series that may still be created, all projects
	configLeft int64 // config bytes that may still be kept, all projects
	projects   map[string]*projectState
	followers  map[string]chan struct{} // wake-up of each project's follower
	subs       map[*subscriber]struct{}
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
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = 2 * time.Second
	}
	if opts.MaxProjects <= 0 {
		opts.MaxProjects = 1000
	}
	if opts.MaxPoints <= 0 {
		opts.MaxPoints = 25_000_000
	}
	if opts.StaleAfter <= 0 {
		opts.StaleAfter = time.Minute
	}
	if opts.MaxSeries <= 0 {
		opts.MaxSeries = 200_000
	}
	if opts.MaxConfigBytes <= 0 {
		opts.MaxConfigBytes = 64 << 20
	}
	if opts.PreviewRows == 0 {
		opts.PreviewRows = 5_000
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		dir: dir, log: log.With("component", "dashboard"), opts: opts,
		cancel: cancel, done: make(chan struct{}),
		projects: map[string]*projectState{}, followers: map[string]chan struct{}{}, seriesLeft: opts.MaxSeries,
		configLeft: opts.MaxConfigBytes,
		subs:       map[*subscriber]struct{}{},
	}
	go s.follow(ctx)
	return s, nil
}

// closeWait bounds how long Close waits for followers: a read is
// interrupted within ReadTimeout, but Close must return even if one is not
// (mlagent run calls it on its way out).
const closeWait = 5 * time.Second

// Close stops following and ends open event streams.
func (s *Server) Close() error {
	s.cancel()
	<-s.done
	stopped := make(chan struct{})
	go func() { s.wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(closeWait):
		s.log.Warn("dashboard: a Trackio read did not stop; leaving it")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.subs {
		close(sub.ch)
		delete(s.subs, sub)
	}
	return nil
}

// follow wakes one follower per project, so a slow or broken database
// delays only its own project: on a file notification only the projects
// whose files changed (the directory is listed again when one is new), on
// every fallback interval all of them.
func (s *Server) follow(ctx context.Context) {
	defer close(s.done)
	changes := trackio.WatchProjects(ctx, s.dir, s.opts.Fallback, s.log)
	warned := false
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-changes.C:
			if !ok {
				return
			}
		}
		all, changed := changes.Take()
		s.mu.Lock()
		list := all
		for name := range changed {
			list = list || s.followers[name] == nil
		}
		s.mu.Unlock()
		var paths []string
		if list {
			var err error
			paths, err = trackio.ListDBs(s.dir, s.opts.MaxProjects)
			if errors.Is(err, fs.ErrNotExist) {
				continue // directory not created yet
			}
			if err != nil && !warned {
				s.log.Warn("Trackio directory not listed whole", "err", err)
				warned = true
			}
		}
		listChanged := false
		s.mu.Lock()
		for _, path := range paths {
			name := trackio.ProjectOf(path)
			if s.followers[name] == nil {
				s.followers[name] = make(chan struct{}, 1)
				s.projects[name] = s.newProjectLocked(name, path)
				listChanged = true
				s.wg.Add(1)
				go s.followProject(ctx, name, path, s.followers[name])
				changed = mapWith(changed, name)
			} else if all {
				changed = mapWith(changed, name)
			}
		}
		for name := range changed {
			if w := s.followers[name]; w != nil {
				select {
				case w <- struct{}{}:
				default:
				}
			}
		}
		if listChanged {
			s.broadcastLocked("", "projects", s.projectListLocked())
		}
		s.mu.Unlock()
	}
}

func mapWith(m map[string]bool, k string) map[string]bool {
	if m == nil {
		m = map[string]bool{}
	}
	m[k] = true
	return m
}

// followProject reads one database whenever woken. It owns the project's
// reader; errors back off (1s doubling to 5 min), so a database built to
// be slow costs little.
func (s *Server) followProject(ctx context.Context, name, path string, wake <-chan struct{}) {
	defer s.wg.Done()
	f := &projectFollower{s: s, name: name, path: path}
	defer f.close()
	var retry time.Time
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
		}
		// Let a burst of WAL writes settle into one read.
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.opts.Debounce):
		}
		if time.Now().Before(retry) {
			continue
		}
		if err := f.poll(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.setError(name, err)
			retry = time.Now().Add(backoff)
			backoff = min(2*backoff, 5*time.Minute)
			continue
		}
		backoff = time.Second
	}
}

// projectFollower is one project's reading side, used by one goroutine.
type projectFollower struct {
	s          *Server
	name, path string
	reader     *trackio.Reader
}

func (f *projectFollower) close() {
	if f.reader != nil {
		f.reader.Close()
		f.reader = nil
	}
}

// poll reads what is new in the database, if anything. ErrBusy (a writer
// holds the lock) is not an error: the next wake-up retries.
func (f *projectFollower) poll(ctx context.Context) error {
	s := f.s
	s.polls.Add(1)
	if f.reader == nil {
		r, err := trackio.OpenReaderLimits(ctx, f.path, trackio.Limits{Timeout: s.opts.ReadTimeout})
		if errors.Is(err, trackio.ErrBusy) {
			return nil
		}
		if err != nil {
			return err
		}
		f.reader = r
		s.mu.RLock()
		fresh := s.projects[f.name].maxID == 0 && s.projects[f.name].maxSys == 0
		s.mu.RUnlock()
		if fresh {
			f.preview(ctx)
		}
	} else {
		changed, err := f.reader.Changed(ctx)
		if errors.Is(err, trackio.ErrBusy) {
			return nil
		}
		if err != nil {
			f.close()
			return err
		}
		if !changed {
			return nil
		}
		// A database deleted and created again restarts its row ids:
		// start the project over, and tell its pages to fetch a new
		// snapshot.
		replaced, err := f.reader.Replaced(ctx)
		if errors.Is(err, trackio.ErrBusy) {
			return nil
		}
		if err != nil {
			f.close()
			return err
		}
		if replaced {
			f.close()
			s.mu.Lock()
			old := s.projects[f.name]
			s.seriesLeft += old.nseries
			s.configLeft += old.configBytes
			s.points -= old.points
			s.projects[f.name] = s.newProjectLocked(f.name, f.path)
			s.broadcastLocked(f.name, "reset", map[string]string{"project": f.name})
			s.broadcastLocked("", "projects", s.projectListLocked())
			s.mu.Unlock()
			return f.poll(ctx)
		}
	}
	lastProgress := time.Now()
	for {
		limit := 5000
		if f.previewing() {
			if hook := s.opts.catchUpHook; hook != nil {
				hook()
			}
			// Behind a preview, pages come first: the follower waits
			// (a while at most) for their requests to be answered, and
			// holds the lock for shorter batches.
			s.yieldToPages(ctx)
			limit = 2000
		}
		b, err := f.reader.Poll(ctx, limit)
		if errors.Is(err, trackio.ErrBusy) {
			return nil
		}
		if err != nil {
			f.close()
			return err
		}
		var meta map[string]string
		if b.Empty() {
			// End markers live in project_metadata, which has no row ids:
			// read it once the rows are in.
			if meta, err = f.reader.Metadata(ctx); errors.Is(err, trackio.ErrBusy) {
				meta = nil
			} else if err != nil {
				f.close()
				return err
			}
		}
		pb := parse(b)
		s.mu.Lock()
		p := s.projects[f.name]
		hadErr := p.Error != ""
		p.Error = ""
		p.Layout = f.reader.Layout().String()
		before := p.points
		previewing := p.preview != nil
		// Pages showing a preview get no rows: they are shown the whole
		// project (a "reset") once it is read.
		d := p.apply(pb, !previewing && s.listenedLocked(f.name))
		d.Markers = p.applyMarkers(meta)
		s.points += p.points - before
		s.fitLocked()
		switch {
		case previewing && b.Empty():
			p.preview = nil
			s.broadcastLocked(f.name, "reset", map[string]string{"project": f.name})
			s.broadcastLocked("", "projects", s.projectListLocked())
		case previewing:
			p.loaded += int64(len(b.Metrics) + len(b.System))
			if time.Since(lastProgress) >= progressEvery {
				lastProgress = time.Now()
				s.broadcastLocked(f.name, "progress", p.progress())
			}
		default:
			if hadErr || !b.Empty() {
				s.broadcastLocked("", "projects", s.projectListLocked())
			}
			if len(d.Rows)+len(d.Configs)+len(d.Markers)+len(d.Media) > 0 {
				s.broadcastLocked(f.name, "delta", d)
			}
		}
		s.mu.Unlock()
		if b.Empty() {
			return nil
		}
	}
}

// yieldToPages waits, at most maxYield, until no page request is being
// answered.
func (s *Server) yieldToPages(ctx context.Context) {
	deadline := time.Now().Add(maxYield)
	for s.serving.Load() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(2 * time.Millisecond)
	}
}

// maxYield bounds how long reading a project behind its preview waits
// for page requests, so a stream of them cannot stop it.
const maxYield = 500 * time.Millisecond

// progressEvery spaces the "progress" events of a project being read
// behind its preview.
const progressEvery = 250 * time.Millisecond

func (f *projectFollower) previewing() bool {
	f.s.mu.RLock()
	defer f.s.mu.RUnlock()
	return f.s.projects[f.name].preview != nil
}

// preview shows a freshly opened project from a sample of its rows when
// it is large (Options.PreviewRows): pages get the sample at once, and
// the whole project (a "reset") once the follower has read every row. A
// sample that cannot be read is no error: the project shows as it loads.
func (f *projectFollower) preview(ctx context.Context) {
	s := f.s
	n := s.opts.PreviewRows
	if n <= 0 {
		return
	}
	ms, ss, err := f.reader.Spans(ctx)
	if err != nil || ms <= previewFactor*int64(n) && ss <= previewFactor*int64(n) {
		return
	}
	b, _, _, err := f.reader.Sample(ctx, n)
	if err != nil {
		s.log.Debug("no preview", "project", f.name, "err", err)
		return
	}
	meta, err := f.reader.Metadata(ctx)
	if err != nil {
		meta = nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projects[f.name]
	pv := newProject(f.name, f.path)
	// The sample draws on copies of the server's budgets: it is dropped
	// once the project is read, and must not spend them for good.
	seriesLeft, configLeft := s.seriesLeft, s.configLeft
	pv.seriesLeft, pv.configLeft = &seriesLeft, &configLeft
	pv.apply(parse(b), false)
	pv.applyMarkers(meta)
	pv.Layout = f.reader.Layout().String()
	pv.sampled = int64(len(b.Metrics) + len(b.System))
	pv.total = ms + ss
	p.preview = pv
	s.broadcastLocked(f.name, "reset", map[string]string{"project": f.name})
	s.broadcastLocked("", "projects", s.projectListLocked())
}

// newProjectLocked starts a project drawing on the server's series budget.
func (s *Server) newProjectLocked(name, path string) *projectState {
	p := newProject(name, path)
	p.seriesLeft = &s.seriesLeft
	p.configLeft = &s.configLeft
	return p
}

// fitLocked thins the longest series until the points kept fit in
// MaxPoints (to 90% of it, so thinning is not repeated at every row).
func (s *Server) fitLocked() {
	if s.points <= s.opts.MaxPoints {
		return
	}
	for s.points > s.opts.MaxPoints*9/10 {
		var longest *series
		var owner *projectState
		for _, p := range s.projects {
			for _, r := range p.runs {
				for _, m := range []map[string]*series{r.metrics, r.system} {
					for _, sr := range m {
						if longest == nil || len(sr.rows) > len(longest.rows) {
							longest, owner = sr, p
						}
					}
				}
			}
		}
		if longest == nil {
			return
		}
		freed := longest.thin()
		if freed == 0 {
			return
		}
		owner.points -= int64(freed)
		s.points -= int64(freed)
	}
	s.log.Info("dashboard: thinned the longest series to stay within the point limit", "max_points", s.opts.MaxPoints)
}

// setError records a project's error and tells the pages if it changed.
func (s *Server) setError(name string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projects[name]
	msg := err.Error()
	if p == nil || p.Error == msg {
		return
	}
	p.Error = msg
	s.log.Warn("trackio database unreadable", "project", name, "err", err)
	s.broadcastLocked("", "projects", s.projectListLocked())
}

type projectSummary struct {
	Name   string    `json:"name"`
	Runs   int       `json:"runs"`
	Points int64     `json:"points"`
	Last   jsonFloat `json:"last"` // newest row, Unix seconds; null if none
	Error  string    `json:"error,omitempty"`
}

// projectListLocked lists the projects, the most recently written first.
func (s *Server) projectListLocked() []projectSummary {
	out := make([]projectSummary, 0, len(s.projects))
	for _, p := range s.projects {
		p = p.view()
		out = append(out, projectSummary{Name: p.Name, Runs: len(p.runs), Points: p.points, Last: jsonFloat(p.last()), Error: p.Error})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := float64(out[i].Last), float64(out[j].Last)
		switch {
		case a == b || math.IsNaN(a) && math.IsNaN(b):
			return out[i].Name < out[j].Name
		case math.IsNaN(b):
			return true
		case math.IsNaN(a):
			return false
		}
		return a > b
	})
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

// listenedLocked reports whether any page follows project.
func (s *Server) listenedLocked(project string) bool {
	for sub := range s.subs {
		if sub.project == project {
			return true
		}
	}
	return false
}

// broadcastLocked sends an event to the subscribers of project ("" = all).
// A subscriber too slow to keep up is dropped; its browser reconnects and
// gets a fresh snapshot, so nothing is silently lost.
func (s *Server) broadcastLocked(project, event string, v any) {
	var f []byte
	for sub := range s.subs {
		if project != "" && sub.project != project {
			continue
		}
		if f == nil {
			f = frame(event, v)
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
//	GET /                  the dashboard page (and its assets)
//	GET /api/projects      project list, most recently written first
//	GET /api/events?project=NAME  SSE: "snapshot", then "delta", "projects", "reset"
//	GET /api/series?project=NAME&m=METRIC&…  downsampled points (series.go)
//	GET /api/media?project=NAME&path=PATH  an image Trackio logged (media.go)
//
// URLs in the page are relative, so the handler can be mounted under a
// prefix (e.g. /dashboard/ with http.StripPrefix).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	sub, _ := fs.Sub(assets, "assets")
	static := http.FileServerFS(sub)
	mux.Handle("GET /", static)
	mux.HandleFunc("GET /api/projects", s.handleProjects)
	mux.HandleFunc("GET /api/events", s.handleEvents)
	mux.HandleFunc("GET /api/series", s.handleSeries)
	mux.HandleFunc("GET /api/media", s.handleMedia)
	return withHeaders(mux)
}

func withHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rebound(r) {
			http.Error(w, "this dashboard answers to localhost and loopback addresses only", http.StatusMisdirectedRequest)
			return
		}
		// Every string on the page comes from the sandbox: no inline
		// script or style, nothing from elsewhere.
		w.Header().Set("Content-Security-Policy", "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// rebound reports a request that reached a loopback listener under
// another host name: DNS rebinding, by which a web page the user opens
// points its own name at 127.0.0.1 and reads the dashboard (metrics,
// configs, images) as same-origin. A dashboard served beyond loopback on
// purpose (--listen) is reached by whatever name the user gives it.
func rebound(r *http.Request) bool {
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	tcp, ok := local.(*net.TCPAddr)
	if !ok || !tcp.IP.IsLoopback() {
		return false
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return false
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip == nil || !ip.IsLoopback()
}

func (s *Server) handleProjects(w http.ResponseWriter, r *http.Request) {
	s.mu.RLock()
	list := s.projectListLocked()
	s.mu.RUnlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(list)
}

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	name := r.URL.Query().Get("project")
	sub := &subscriber{ch: make(chan []byte, 1024)}
	s.serving.Add(1)
	s.mu.Lock()
	list := s.projectListLocked()
	if name == "" && len(list) > 0 {
		name = list[0].Name
	}
	sub.project = name
	// Rendered under the lock with the subscription, so no delta falls
	// between the snapshot and the stream.
	first := frame("snapshot", s.snapshotLocked(list, s.projects[name]))
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	s.serving.Add(-1)
	defer func() {
		s.mu.Lock()
		delete(s.subs, sub)
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
