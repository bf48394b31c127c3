package dashboard

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// snapshotJSON is the first event of a page's stream: the projects, and
// the chosen project's runs with their configs and summaries, but no
// points (charts fetch those from /api/series, downsampled).
type snapshotJSON struct {
	Projects []projectSummary `json:"projects"`
	// Now is the server's clock (Unix seconds) and StaleAfter the least
	// age (seconds) at which a run stops showing as running.
	Now        float64      `json:"now"`
	StaleAfter float64      `json:"stale_after"`
	Project    *projectJSON `json:"project"`
}

type projectJSON struct {
	Name   string      `json:"name"`
	Error  string      `json:"error,omitempty"`
	Layout string      `json:"layout"`
	MaxID  int64       `json:"max_id"`
	MaxSys int64       `json:"max_sys"`
	Runs   []runJSON   `json:"runs"`
	Media  []mediaItem `json:"media"`
	// Preview is set while the runs are a sample of the project's rows.
	Preview *previewJSON `json:"preview,omitempty"`
}

type runJSON struct {
	ID       string          `json:"id"`
	Name     string          `json:"name"`
	Config   json.RawMessage `json:"config,omitempty"`
	First    jsonFloat       `json:"first"`
	Last     jsonFloat       `json:"last"`
	Interval float64         `json:"interval"`
	Marker   string          `json:"marker,omitempty"`
	Rows     int             `json:"rows"`
	// Per metric: last value, lowest, highest, points.
	Metrics map[string][4]jsonVal `json:"metrics"`
	System  map[string][4]jsonVal `json:"system"`
}

func summaries(m map[string]*series) map[string][4]jsonVal {
	out := make(map[string][4]jsonVal, len(m))
	for k, s := range m {
		out[k] = [4]jsonVal{jsonVal(s.last), jsonVal(s.min), jsonVal(s.max), jsonVal(len(s.rows))}
	}
	return out
}

func (s *Server) snapshotLocked(list []projectSummary, p *projectState) snapshotJSON {
	snap := snapshotJSON{Projects: list, Now: float64(time.Now().UnixMicro()) / 1e6, StaleAfter: s.opts.StaleAfter.Seconds()}
	if p == nil {
		return snap
	}
	var preview *previewJSON
	if p.preview != nil {
		pr := p.progress()
		preview = &pr
	}
	p = p.view()
	pj := &projectJSON{Preview: preview, Name: p.Name, Error: p.Error, Layout: p.Layout, MaxID: p.maxID, MaxSys: p.maxSys, Runs: make([]runJSON, 0, len(p.runs)), Media: p.media}
	if pj.Media == nil {
		pj.Media = []mediaItem{}
	}
	for _, r := range p.runs {
		pj.Runs = append(pj.Runs, runJSON{
			ID: r.ID, Name: r.Name, Config: r.Config, First: jsonFloat(r.first), Last: jsonFloat(r.last),
			Interval: r.interval(), Marker: r.marker, Rows: len(r.steps),
			Metrics: summaries(r.metrics), System: summaries(r.system),
		})
	}
	snap.Project = pj
	return snap
}

// MediaDir is where Trackio keeps logged images, under the Trackio
// directory (trackio.utils.MEDIA_DIR).
const MediaDir = "media"

// maxMediaBytes bounds an image served.
const maxMediaBytes = 16 << 20

// handleMedia serves an image a project's rows reference. The files are
// the sandbox's: only a regular file inside the media directory (no
// symlink out of it, no FIFO), at most 16 MiB, that is a PNG, JPEG, GIF
// or WebP by its first bytes, served with a type that cannot run script.
func (s *Server) handleMedia(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rel := q.Get("path")
	s.mu.RLock()
	p := s.projects[q.Get("project")].view()
	listed := false
	if p != nil {
		for _, m := range p.media {
			listed = listed || (m.Path == rel && m.Type == "trackio.image")
		}
	}
	s.mu.RUnlock()
	if !listed || !filepath.IsLocal(rel) || strings.ContainsRune(rel, '\\') || path.Clean(rel) != rel {
		http.NotFound(w, r)
		return
	}
	// Rooted at the Trackio directory (the host's), not at media/: the
	// sandbox can make media/ itself a link, and OpenRoot follows a link
	// in the root's own name; inside a Root no link leads out.
	root, err := os.OpenRoot(s.dir)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer root.Close()
	f, err := root.OpenFile(path.Join(MediaDir, rel), os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > maxMediaBytes {
		http.Error(w, "not an image this dashboard serves", http.StatusForbidden)
		return
	}
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		http.Error(w, "unreadable", http.StatusForbidden)
		return
	}
	ct := http.DetectContentType(head[:n])
	switch ct {
	case "image/png", "image/jpeg", "image/gif", "image/webp":
	default:
		http.Error(w, "not a PNG, JPEG, GIF or WebP image", http.StatusUnsupportedMediaType)
		return
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Cache-Control", "no-store")
	w.Write(head[:n])
	io.Copy(w, io.LimitReader(f, maxMediaBytes-int64(n)))
}
