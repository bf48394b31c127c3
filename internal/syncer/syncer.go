// Package syncer pushes new Trackio rows from the Trackio directory to a
// Hugging Face Space, as the original system's syncer container did. It
// watches the directory (file notifications with a polling fallback),
// uploads only rows past a persisted cursor, in chunk files named by their
// row-id range, so a retry after any failure re-sends the same bytes to the
// same path: no row is lost and none is stored twice.
package syncer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mlagent/mlagent/internal/trackio"
)

// SpaceIDFile is the file at the Trackio directory root naming the Space.
const SpaceIDFile = "space_id"

// maxProjects bounds the databases synced from one directory.
const maxProjects = 1000

// DataPrefix is the folder of the dataset repo holding uploaded chunks.
const DataPrefix = "mlagent"

// Config configures a Syncer.
type Config struct {
	Dir       string // Trackio directory
	SpaceID   string // wins over the space_id file when set
	StatePath string // progress file (outside the Trackio volume)
	HubURL    string
	Token     string        // Hugging Face token; never logged
	Interval  time.Duration // polling fallback and minimum gap between commits; default 30s
	Private   bool          // create the Space and dataset private

	// Limits per chunk file; defaults 5000 rows and 4 MiB.
	MaxRows  int
	MaxBytes int
	// Backoff after a failure: BackoffBase doubling up to BackoffMax
	// (defaults 2s and 5m).
	BackoffBase, BackoffMax time.Duration
	HTTPTimeout             time.Duration // default 60s
}

// Stats describes one sync pass.
type Stats struct {
	Commits int
	Rows    int   // metrics + system + config rows uploaded
	Bytes   int64 // request bytes of the commit bodies
	Failed  int   // projects that failed this pass
}

// Syncer uploads Trackio rows to a Space's dataset. Not safe for
// concurrent SyncOnce calls; Run drives it from one goroutine.
type Syncer struct {
	cfg Config
	log *slog.Logger
	hub *Hub

	state   *state
	readers map[string]*trackio.Reader
	backoff map[string]*backoff
}

type backoff struct {
	failures int
	next     time.Time
}

// New validates cfg and loads persisted progress.
func New(cfg Config, log *slog.Logger) (*Syncer, error) {
	if cfg.Dir == "" {
		return nil, errors.New("syncer: no Trackio directory")
	}
	if cfg.StatePath == "" {
		return nil, errors.New("syncer: no state path")
	}
	if cfg.Token == "" {
		return nil, errors.New("syncer: no Hugging Face token (mlagent secret set huggingface HF_TOKEN=...)")
	}
	if cfg.SpaceID != "" && !ValidRepoID(cfg.SpaceID) {
		return nil, fmt.Errorf("syncer: invalid space id %q (want namespace/name)", cfg.SpaceID)
	}
	if cfg.HubURL == "" {
		cfg.HubURL = "https://huggingface.co"
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.MaxRows <= 0 {
		cfg.MaxRows = 5000
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 4 << 20
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = 2 * time.Second
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 5 * time.Minute
	}
	if cfg.HTTPTimeout <= 0 {
		cfg.HTTPTimeout = 60 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := loadState(cfg.StatePath)
	if err != nil {
		return nil, err
	}
	return &Syncer{
		cfg: cfg, log: log.With("component", "syncer"),
		hub:     &Hub{BaseURL: cfg.HubURL, Token: cfg.Token, HTTP: &http.Client{Timeout: cfg.HTTPTimeout}},
		state:   st,
		readers: map[string]*trackio.Reader{},
		backoff: map[string]*backoff{},
	}, nil
}

// Close releases database handles.
func (s *Syncer) Close() error {
	for _, r := range s.readers {
		r.Close()
	}
	return nil
}

// SpaceID resolves the target Space: config first (the space_id file is
// writable from the sandbox, so it must not override an operator's
// choice), then the space_id file. "" means none configured yet.
func (s *Syncer) SpaceID() (string, error) {
	if s.cfg.SpaceID != "" {
		return s.cfg.SpaceID, nil
	}
	b, err := readSpaceIDFile(filepath.Join(s.cfg.Dir, SpaceIDFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", SpaceIDFile, err)
	}
	id := strings.TrimSpace(string(b))
	if !ValidRepoID(id) {
		return "", fmt.Errorf("%s file holds an invalid space id (want namespace/name)", SpaceIDFile)
	}
	return id, nil
}

// maxSpaceIDFile bounds the space_id file read: a repo id is short.
const maxSpaceIDFile = 256

// readSpaceIDFile reads the space_id file, which the sandbox can write:
// only a regular file that is not a symbolic link (a link could name a
// host file), opened without blocking (a FIFO would block open(2) for
// good), and at most maxSpaceIDFile bytes.
func readSpaceIDFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	switch {
	case errors.Is(err, unix.ELOOP):
		return nil, errors.New("a symbolic link, not a regular file")
	case errors.Is(err, unix.ENXIO):
		return nil, errors.New("a socket, not a regular file")
	case err != nil:
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	switch m := fi.Mode(); {
	case m&os.ModeNamedPipe != 0:
		return nil, errors.New("a named pipe, not a regular file")
	case !m.IsRegular():
		return nil, fmt.Errorf("not a regular file (%v)", m.Type())
	case fi.Size() > maxSpaceIDFile:
		return nil, fmt.Errorf("too large (%d bytes; a space id is namespace/name)", fi.Size())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSpaceIDFile+1))
	if err == nil && len(b) > maxSpaceIDFile {
		err = fmt.Errorf("too large (over %d bytes; a space id is namespace/name)", maxSpaceIDFile)
	}
	return b, err
}

// DatasetID is where a Space's rows are stored: Trackio's Spaces persist
// their data in a companion dataset named by TRACKIO_DATASET_ID.
func DatasetID(spaceID string) string { return spaceID + "-dataset" }

// Run syncs until ctx ends: on file notifications (at most once per
// Interval/6, so a busy writer does not turn into a commit storm) and
// every Interval regardless.
func (s *Syncer) Run(ctx context.Context) error {
	wake := trackio.Watch(ctx, s.cfg.Dir, s.cfg.Interval, s.log)
	minGap := s.cfg.Interval / 6
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-wake:
			if !ok {
				return nil
			}
		}
		if wait := minGap - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		last = time.Now()
		if _, err := s.SyncOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("sync pass failed", "err", err)
		}
	}
}

// SyncOnce makes sure the Space exists, then uploads every project's new
// rows. A failing project backs off alone; the others still sync.
func (s *Syncer) SyncOnce(ctx context.Context) (Stats, error) {
	var stats Stats
	spaceID, err := s.SpaceID()
	if err != nil {
		return stats, err
	}
	if spaceID == "" {
		s.log.Debug("no space configured; set [syncer] space_id or write space_id in the Trackio directory")
		return stats, nil
	}
	if !s.ready("space:"+spaceID, time.Now()) {
		return stats, nil
	}
	if err := s.ensureSpace(ctx, spaceID); err != nil {
		d := s.fail("space:" + spaceID)
		s.log.Warn("space setup failed; backing off", "space", spaceID, "retry_in", d, "err", err)
		return stats, err
	}
	s.succeed("space:" + spaceID)
	paths, err := trackio.ListDBs(s.cfg.Dir, maxProjects)
	if err != nil && len(paths) > 0 {
		s.log.Warn("too many Trackio databases", "err", err)
	} else if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return stats, nil
		}
		return stats, fmt.Errorf("list trackio dir: %w", err)
	}
	for _, path := range paths {
		if ctx.Err() != nil {
			return stats, ctx.Err()
		}
		project := trackio.ProjectOf(path)
		key := spaceID + "|" + project
		if !s.ready(key, time.Now()) {
			continue
		}
		ps, err := s.syncProject(ctx, spaceID, project, path)
		stats.Commits += ps.Commits
		stats.Rows += ps.Rows
		stats.Bytes += ps.Bytes
		if err != nil {
			stats.Failed++
			d := s.fail(key)
			s.log.Warn("sync failed; backing off", "project", project, "retry_in", d, "err", err)
			continue
		}
		s.succeed(key)
	}
	return stats, nil
}

func (s *Syncer) ready(key string, now time.Time) bool {
	b := s.backoff[key]
	return b == nil || !now.Before(b.next)
}

func (s *Syncer) fail(key string) time.Duration {
	b := s.backoff[key]
	if b == nil {
		b = &backoff{}
		s.backoff[key] = b
	}
	d := s.cfg.BackoffBase << min(b.failures, 20)
	if d > s.cfg.BackoffMax || d <= 0 {
		d = s.cfg.BackoffMax
	}
	// ±20% jitter so several syncers do not retry in lockstep.
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	b.failures++
	b.next = time.Now().Add(d)
	return d
}

func (s *Syncer) succeed(key string) { delete(s.backoff, key) }

// ensureSpace creates the Space in Trackio's form (Gradio SDK, app.py
// running trackio.show(), TRACKIO_DATASET_ID pointing at the dataset) and
// the dataset, once per Space.
func (s *Syncer) ensureSpace(ctx context.Context, spaceID string) error {
	sp := s.state.space(spaceID)
	if sp.Ready {
		return nil
	}
	datasetID := DatasetID(spaceID)
	exists, err := s.hub.RepoExists(ctx, "space", spaceID)
	if err != nil {
		return err
	}
	if !exists {
		if err := s.hub.CreateRepo(ctx, "space", spaceID, s.cfg.Private, "gradio"); err != nil {
			return err
		}
		if _, err := s.hub.Commit(ctx, "space", spaceID, "mlagent: create Trackio Space", SpaceFiles(spaceID, datasetID)); err != nil {
			return err
		}
		if err := s.hub.SetSpaceVariable(ctx, spaceID, "TRACKIO_DATASET_ID", datasetID); err != nil {
			return err
		}
		s.log.Info("created Space", "space", spaceID, "dataset", datasetID)
	}
	dsExists, err := s.hub.RepoExists(ctx, "dataset", datasetID)
	if err != nil {
		return err
	}
	if !dsExists {
		if err := s.hub.CreateRepo(ctx, "dataset", datasetID, s.cfg.Private, ""); err != nil {
			return err
		}
	}
	sp.Ready = true
	return s.state.save(s.cfg.StatePath)
}

// reader returns the project's open reader, opening it again when the
// file at path is no longer the one open (the reader checks a new file
// before reading it).
func (s *Syncer) reader(ctx context.Context, project, path string) (*trackio.Reader, error) {
	if r := s.readers[project]; r != nil {
		if !r.Stale() {
			return r, nil
		}
		s.dropReader(project)
	}
	r, err := trackio.OpenReader(ctx, path)
	if err != nil {
		return nil, err
	}
	s.readers[project] = r
	return r, nil
}

func (s *Syncer) dropReader(project string) {
	if r := s.readers[project]; r != nil {
		r.Close()
		delete(s.readers, project)
	}
}

// syncProject uploads one project's new rows in one commit. The ranges
// are persisted as "pending" before the commit and the cursor advanced
// only after it succeeds, so a crash or an error at any point leads to
// re-sending exactly the same files.
func (s *Syncer) syncProject(ctx context.Context, spaceID, project, path string) (Stats, error) {
	var stats Stats
	r, err := s.reader(ctx, project, path)
	if err != nil {
		return stats, err
	}
	stats, err = s.syncReader(ctx, r, spaceID, project)
	if err != nil {
		// Whatever went wrong, the next attempt opens (and checks) the
		// file again.
		s.dropReader(project)
	}
	return stats, err
}

func (s *Syncer) syncReader(ctx context.Context, r *trackio.Reader, spaceID, project string) (Stats, error) {
	var stats Stats
	var err error
	ps := s.state.space(spaceID).project(project)
	// A database deleted and created again restarts its ids below the
	// cursor; uploading would silently skip rows, so stop and say so.
	r.SetCursor(ps.Cursor)
	if replaced, err := r.Replaced(ctx); err != nil {
		return stats, err
	} else if replaced {
		return stats, fmt.Errorf("%s: database was replaced (row ids restarted below the synced cursor %d); remove the project from %s to sync it as new", project, ps.Cursor.Metrics, s.cfg.StatePath)
	}
	var files []File
	if ps.Pending != nil {
		files, err = s.rebuild(ctx, r, project, ps.Pending)
		if err != nil {
			return stats, err
		}
	} else {
		p, f, err := s.collect(ctx, r, project, ps.Cursor)
		if err != nil {
			return stats, err
		}
		if p == nil {
			return stats, nil
		}
		ps.Pending, files = p, f
		if err := s.state.save(s.cfg.StatePath); err != nil {
			return stats, err
		}
	}
	rows := ps.Pending.rows()
	n, err := s.hub.Commit(ctx, "dataset", DatasetID(spaceID), fmt.Sprintf("mlagent: %s, %d rows", project, rows), files)
	stats.Bytes += int64(n)
	if err != nil {
		return stats, err
	}
	ps.Cursor = ps.Pending.advance(ps.Cursor)
	ps.Pending = nil
	if err := s.state.save(s.cfg.StatePath); err != nil {
		return stats, err
	}
	stats.Commits++
	stats.Rows += rows
	s.log.Info("synced", "project", project, "rows", rows, "bytes", n, "space", spaceID)
	return stats, nil
}

// collect reads the rows past cursor and builds the chunk files.
func (s *Syncer) collect(ctx context.Context, r *trackio.Reader, project string, cur trackio.Cursor) (*pending, []File, error) {
	m, err := r.ReadMetrics(ctx, cur.Metrics, s.cfg.MaxRows)
	if err != nil {
		return nil, nil, err
	}
	sys, err := r.ReadSystem(ctx, cur.System, s.cfg.MaxRows)
	if err != nil {
		return nil, nil, err
	}
	cfgs, err := r.ReadConfigs(ctx, cur.Configs)
	if err != nil {
		return nil, nil, err
	}
	m = capBytes(m, s.cfg.MaxBytes)
	sys = capBytes(sys, s.cfg.MaxBytes)
	if len(m)+len(sys)+len(cfgs) == 0 {
		return nil, nil, nil
	}
	p := &pending{}
	var files []File
	if len(m) > 0 {
		p.Metrics = &rangeOf{First: m[0].ID, Last: m[len(m)-1].ID, Count: len(m)}
		files = append(files, chunkFile(project, trackio.TableMetrics, p.Metrics, m))
	}
	if len(sys) > 0 {
		p.System = &rangeOf{First: sys[0].ID, Last: sys[len(sys)-1].ID, Count: len(sys)}
		files = append(files, chunkFile(project, trackio.TableSystemMetrics, p.System, sys))
	}
	if len(cfgs) > 0 {
		p.Configs = &rangeOf{First: cfgs[0].ID, Last: cfgs[len(cfgs)-1].ID, Count: len(cfgs)}
		files = append(files, chunkFile(project, trackio.TableConfigs, p.Configs, cfgs))
	}
	return p, files, nil
}

// rebuild re-creates the files of a pending commit from the database.
// Metrics rows are immutable, so the bytes are identical to the first
// attempt; configs may have been replaced meanwhile, which only makes the
// retried file newer (configs are last-write-wins per run).
func (s *Syncer) rebuild(ctx context.Context, r *trackio.Reader, project string, p *pending) ([]File, error) {
	var files []File
	if p.Metrics != nil {
		rows, err := r.ReadMetrics(ctx, p.Metrics.First-1, p.Metrics.Count)
		if err != nil {
			return nil, err
		}
		if len(rows) != p.Metrics.Count || rows[len(rows)-1].ID != p.Metrics.Last {
			return nil, fmt.Errorf("%s: metrics rows %d-%d changed since the last attempt", project, p.Metrics.First, p.Metrics.Last)
		}
		files = append(files, chunkFile(project, trackio.TableMetrics, p.Metrics, rows))
	}
	if p.System != nil {
		rows, err := r.ReadSystem(ctx, p.System.First-1, p.System.Count)
		if err != nil {
			return nil, err
		}
		if len(rows) != p.System.Count || rows[len(rows)-1].ID != p.System.Last {
			return nil, fmt.Errorf("%s: system rows %d-%d changed since the last attempt", project, p.System.First, p.System.Last)
		}
		files = append(files, chunkFile(project, trackio.TableSystemMetrics, p.System, rows))
	}
	if p.Configs != nil {
		all, err := r.ReadConfigs(ctx, p.Configs.First-1)
		if err != nil {
			return nil, err
		}
		var rows []trackio.Config
		for _, c := range all {
			if c.ID <= p.Configs.Last {
				rows = append(rows, c)
			}
		}
		files = append(files, chunkFile(project, trackio.TableConfigs, p.Configs, rows))
	}
	return files, nil
}

func capBytes(rows []trackio.Row, max int) []trackio.Row {
	total := 0
	for i, r := range rows {
		total += len(r.Raw) + len(r.RunID) + len(r.RunName) + 96
		if total > max && i > 0 {
			return rows[:i]
		}
	}
	return rows
}

// ChunkPath is the dataset path of the rows First..Last of table.
func ChunkPath(project, table string, first, last int64) string {
	return fmt.Sprintf("%s/%s/%s/%012d-%012d.jsonl", DataPrefix, safeName(project), table, first, last)
}

func safeName(project string) string {
	return strings.TrimSuffix(trackio.DBFileName(project), trackio.DBExt)
}

func chunkFile[T any](project, table string, r *rangeOf, rows []T) File {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, row := range rows {
		enc.Encode(row)
	}
	return File{Path: ChunkPath(project, table, r.First, r.Last), Content: buf.Bytes()}
}
