package dashboard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mlagent/mlagent/internal/trackio"
)

// The server keeps every project's points in memory, column by column, so
// a chart of any run, metric and x-axis is computed without reading the
// database again: per run one step and one wall time per metrics row, and
// per metric the rows that logged it with their values (float32: what a
// chart and a tooltip show). About 8 bytes a point; Options.MaxPoints
// bounds the total by thinning the longest series (thin).

// series is one metric of one run: the indexes of the rows (into the run's
// steps and times, or sysTimes) that logged it, and the values there.
type series struct {
	rows []int32
	vals []float32
	// Exact summary of every value ever appended, thinned or not.
	last, min, max float64 // last finite value; NaN until one arrives
	lastRow        int32
	thinned        int // times the series was halved to fit MaxPoints
}

func newSeries() *series { return &series{last: math.NaN(), min: math.NaN(), max: math.NaN()} }

func (s *series) add(row int32, v float64) {
	s.rows = append(s.rows, row)
	s.vals = append(s.vals, float32(v))
	s.lastRow = row
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	s.last = v
	if math.IsNaN(s.min) || v < s.min {
		s.min = v
	}
	if math.IsNaN(s.max) || v > s.max {
		s.max = v
	}
}

// thin halves the series, keeping of each four points the lowest and the
// highest in their order, so spikes survive; it returns the points freed.
func (s *series) thin() int {
	n := len(s.rows)
	if n < 8 {
		return 0
	}
	w := 0
	keep := func(j int) {
		s.rows[w], s.vals[w] = s.rows[j], s.vals[j]
		w++
	}
	for i := 0; i < n; i += 4 {
		end := min(i+4, n)
		lo, hi, gap := extremes(i, end, func(j int) float32 { return s.vals[j] })
		// In index order: the gap (a NaN breaks the line), the lowest, the
		// highest.
		for j := i; j < end; j++ {
			if j == gap || j == lo || (j == hi && hi != lo) {
				keep(j)
			}
		}
	}
	s.rows = append([]int32(nil), s.rows[:w]...)
	s.vals = append([]float32(nil), s.vals[:w]...)
	s.thinned++
	return n - w
}

// extremes returns, among points [i, end) with values y, the index of
// the lowest and of the highest finite value and of the first non-finite
// one (-1 when there is none).
func extremes(i, end int, y func(int) float32) (lo, hi, gap int) {
	lo, hi, gap = -1, -1, -1
	for j := i; j < end; j++ {
		v := y(j)
		switch {
		case v != v || math.IsInf(float64(v), 0):
			if gap < 0 {
				gap = j
			}
		case lo < 0:
			lo, hi = j, j
		case v < y(lo):
			lo = j
		case v > y(hi):
			hi = j
		}
	}
	return lo, hi, gap
}

// runData is one run of a project.
type runData struct {
	ID, Name string
	Config   json.RawMessage
	// Per metrics row, in row-id order: its step and wall time (Unix
	// seconds; NaN when the timestamp does not parse).
	steps   []int64
	times   []float64
	metrics map[string]*series
	// Per system_metrics row: its wall time.
	sysTimes []float64
	system   map[string]*series
	// first and last row times, any table; intervals between the last
	// metrics rows, for "still running?".
	first, last float64
	gaps        []float64
	marker      string // end marker from project_metadata, "" if none
	// Whether steps, times or sysTimes ever went back (or a time was
	// unknown): until then a chart reads them in order, without sorting.
	stepsBack, timesBack, sysBack bool
}

// push appends a metrics row's step and time and returns its index.
func (r *runData) push(step int64, t float64) int32 {
	if n := len(r.steps); n > 0 && (step < r.steps[n-1] || !(t >= r.times[n-1])) {
		r.stepsBack = r.stepsBack || step < r.steps[n-1]
		r.timesBack = r.timesBack || !(t >= r.times[n-1])
	}
	if math.IsNaN(t) {
		r.timesBack = true
	}
	r.steps = append(r.steps, step)
	r.times = append(r.times, t)
	return int32(len(r.steps) - 1)
}

// pushSys appends a system row's time and returns its index.
func (r *runData) pushSys(t float64) int32 {
	if n := len(r.sysTimes); n > 0 && t < r.sysTimes[n-1] {
		r.sysBack = true
	}
	r.sysTimes = append(r.sysTimes, t)
	return int32(len(r.sysTimes) - 1)
}

func newRun(id, name string) *runData {
	return &runData{ID: id, Name: name, metrics: map[string]*series{}, system: map[string]*series{}, first: math.NaN(), last: math.NaN()}
}

func (r *runData) seen(t float64) {
	if math.IsNaN(t) {
		return
	}
	if math.IsNaN(r.first) || t < r.first {
		r.first = t
	}
	if math.IsNaN(r.last) || t > r.last {
		if !math.IsNaN(r.last) {
			r.gaps = append(r.gaps, t-r.last)
			if len(r.gaps) > 32 {
				r.gaps = r.gaps[len(r.gaps)-32:]
			}
		}
		r.last = t
	}
}

// interval is the median gap between the run's recent rows, 0 if unknown.
func (r *runData) interval() float64 {
	if len(r.gaps) == 0 {
		return 0
	}
	g := append([]float64(nil), r.gaps...)
	sort.Float64s(g)
	return g[len(g)/2]
}

// mediaItem is an image, table or other media object Trackio logged.
type mediaItem struct {
	RunID   string `json:"run_id"`
	Key     string `json:"key"`
	Step    int64  `json:"step"`
	Type    string `json:"type"` // trackio.image, trackio.table, …
	Caption string `json:"caption,omitempty"`
	Path    string `json:"path,omitempty"` // under the Trackio media directory
	Rows    int    `json:"rows,omitempty"` // tables
	Cols    int    `json:"cols,omitempty"`
}

// maxMedia bounds the media items kept per project (the newest); each
// keeps at most maxCaption bytes of caption and a path of maxMediaPath.
const (
	maxMedia     = 500
	maxCaption   = 1024
	maxMediaPath = 1024
)

// truncateUTF8 cuts s to at most n bytes, at a rune boundary.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// projectState is one project as the dashboard holds it.
type projectState struct {
	Name   string
	Error  string
	Layout string
	path   string
	runs   []*runData
	byID   map[string]*runData
	media  []mediaItem
	points int64 // stored points, for MaxPoints
	// seriesLeft is the server's budget of series (MaxSeries), shared by
	// all projects.
	seriesLeft *int64
	nseries    int64 // series this project holds
	// configLeft is the server's budget of config bytes (MaxConfigBytes).
	configLeft  *int64
	configBytes int64 // config bytes this project holds
	maxID       int64 // last metrics row applied
	maxSys      int64 // last system row applied
	// preview, while set, is what pages are shown of the project: a
	// sample of its rows, read at once, while the follower reads them all
	// (loaded so far); sampled and total are the preview's rows and the
	// rows the database held when it was taken.
	preview        *projectState
	loaded         int64
	sampled, total int64
}

// view is what pages are shown of p: its preview while it has one.
func (p *projectState) view() *projectState {
	if p != nil && p.preview != nil {
		return p.preview
	}
	return p
}

// previewJSON tells a page it is shown a sample, and how far the
// follower has read.
type previewJSON struct {
	Project string `json:"project"`
	Sampled int64  `json:"sampled"`
	Loaded  int64  `json:"loaded"`
	Total   int64  `json:"total"`
}

// progress is the "progress" event of a project being read behind its
// preview.
func (p *projectState) progress() previewJSON {
	pv := p.view()
	return previewJSON{Project: p.Name, Sampled: pv.sampled, Loaded: p.loaded, Total: max(pv.total, p.loaded)}
}

func newProject(name, path string) *projectState {
	return &projectState{Name: name, path: path, byID: map[string]*runData{}}
}

// maxRuns bounds the runs of one project; rows of further runs are
// dropped (a database may hold any number of distinct run ids).
const maxRuns = 1000

func (p *projectState) run(id, name string) *runData {
	r := p.byID[id]
	if r == nil {
		if len(p.runs) >= maxRuns {
			return nil
		}
		r = newRun(id, name)
		p.byID[id] = r
		p.runs = append(p.runs, r)
	}
	return r
}

// last is the newest row time of the project (NaN if none).
func (p *projectState) last() float64 {
	t := math.NaN()
	for _, r := range p.runs {
		if math.IsNaN(t) || r.last > t {
			t = r.last
		}
	}
	return t
}

// maxKeys bounds the metric names of one run.
const maxKeys = 2000

// deltaRow is one row as sent to browsers.
type deltaRow struct {
	Kind    string             `json:"kind"` // "metric" or "system"
	ID      int64              `json:"id"`
	RunID   string             `json:"run_id"`
	RunName string             `json:"run_name"`
	Step    int64              `json:"step"`
	Time    jsonFloat          `json:"t"`
	V       map[string]jsonVal `json:"values"`
}

type deltaConfig struct {
	RunID   string          `json:"run_id"`
	RunName string          `json:"run_name"`
	Config  json.RawMessage `json:"config"`
}

// delta is what one poll of one project adds, sent as an SSE event.
type delta struct {
	Project string        `json:"project"`
	Rows    []deltaRow    `json:"rows"`
	Configs []deltaConfig `json:"configs,omitempty"`
	Media   []mediaItem   `json:"media,omitempty"`
	Markers []runMarker   `json:"markers,omitempty"`
	// MaxID is the last metrics row id included, for latency measurements.
	MaxID int64 `json:"max_id"`
}

type runMarker struct {
	RunID  string `json:"run_id"`
	Marker string `json:"marker"` // "" when cleared
}

// parsed is a batch with each row's values decoded (nil: not decodable),
// done before the server's lock is taken: it is most of a row's cost.
type parsed struct {
	trackio.Batch
	metrics, system []map[string]float64
}

func parse(b trackio.Batch) parsed {
	pb := parsed{Batch: b, metrics: make([]map[string]float64, len(b.Metrics)), system: make([]map[string]float64, len(b.System))}
	for i, row := range b.Metrics {
		pb.metrics[i], _ = row.Values()
	}
	for i, row := range b.System {
		pb.system[i], _ = row.Values()
	}
	return pb
}

// apply folds a batch into the project and returns the delta to
// broadcast; the rows are left out of it when nobody is listening
// (withRows false), which at startup is most of the work saved.
func (p *projectState) apply(b parsed, withRows bool) delta {
	d := delta{Project: p.Name}
	for i, row := range b.Metrics {
		p.maxID = row.ID
		d.MaxID = row.ID
		vals := b.metrics[i]
		if vals == nil {
			continue
		}
		dropLongKeys(vals)
		r := p.run(row.RunID, row.RunName)
		if r == nil {
			continue
		}
		t := parseTime(row.Timestamp)
		idx := r.push(row.Step, t)
		r.seen(t)
		p.points += p.addValues(r.metrics, idx, vals)
		if withRows {
			d.Rows = append(d.Rows, deltaRow{Kind: "metric", ID: row.ID, RunID: r.ID, RunName: r.Name, Step: row.Step, Time: jsonFloat(t), V: deltaValues(vals)})
		}
		if bytes.Contains(row.Raw, []byte(`"_type"`)) {
			for _, m := range mediaOf(row.Raw) {
				m.RunID, m.Step = r.ID, row.Step
				p.media = append(p.media, m)
				d.Media = append(d.Media, m)
			}
			if len(p.media) > maxMedia {
				p.media = append([]mediaItem(nil), p.media[len(p.media)-maxMedia:]...)
			}
		}
	}
	for i, row := range b.System {
		p.maxSys = row.ID
		vals := b.system[i]
		if vals == nil {
			continue
		}
		dropLongKeys(vals)
		r := p.run(row.RunID, row.RunName)
		if r == nil {
			continue
		}
		t := parseTime(row.Timestamp)
		if math.IsNaN(t) {
			continue // a system row has no other x
		}
		idx := r.pushSys(t)
		r.seen(t)
		p.points += p.addValues(r.system, idx, vals)
		if withRows {
			d.Rows = append(d.Rows, deltaRow{Kind: "system", ID: row.ID, RunID: r.ID, RunName: r.Name, Time: jsonFloat(t), V: deltaValues(vals)})
		}
	}
	for _, c := range b.Configs {
		r := p.run(c.RunID, c.RunName)
		if r == nil {
			continue
		}
		p.setConfig(r, c.Raw)
		d.Configs = append(d.Configs, deltaConfig{RunID: r.ID, RunName: r.Name, Config: r.Config})
	}
	return d
}

// maxKeyBytes bounds a metric name: a longer one is not charted (a
// database can make names of megabytes, and the server keeps each).
const maxKeyBytes = trackio.DefaultMaxName

func dropLongKeys(vals map[string]float64) {
	for k := range vals {
		if len(k) > maxKeyBytes {
			delete(vals, k)
		}
	}
}

// maxConfigBytes bounds one run's config as kept and shown; configs are
// hyperparameters, kilobytes.
const maxConfigBytes = 256 << 10

// setConfig keeps a run's config, or a note in its place when it is over
// maxConfigBytes or the server's budget (Options.MaxConfigBytes) is spent.
func (p *projectState) setConfig(r *runData, raw json.RawMessage) {
	n := int64(len(raw))
	p.configBytes -= int64(len(r.Config))
	if p.configLeft != nil {
		*p.configLeft += int64(len(r.Config))
	}
	r.Config = nil
	switch {
	case n > maxConfigBytes:
		raw = configNote(fmt.Sprintf("config of %d bytes, over the dashboard's limit of %d", n, maxConfigBytes))
	case p.configLeft == nil || *p.configLeft < n:
		raw = configNote("config not kept: the dashboard's memory for configs is spent")
	}
	r.Config = raw
	p.configBytes += int64(len(raw))
	if p.configLeft != nil {
		*p.configLeft -= int64(len(raw))
	}
}

func configNote(msg string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"(not shown)": msg})
	return b
}

// addValues appends a row's values (row index idx) to the run's series,
// at most maxKeys per run and while the server's series budget lasts (a
// database can hold any number of names), and returns the points added.
func (p *projectState) addValues(m map[string]*series, idx int32, vals map[string]float64) int64 {
	n := int64(0)
	for k, v := range vals {
		s := m[k]
		if s == nil {
			if len(m) >= maxKeys || p.seriesLeft == nil || *p.seriesLeft <= 0 {
				continue
			}
			*p.seriesLeft--
			p.nseries++
			s = newSeries()
			m[k] = s
		}
		s.add(idx, v)
		n++
	}
	return n
}

func deltaValues(vals map[string]float64) map[string]jsonVal {
	out := make(map[string]jsonVal, len(vals))
	for k, v := range vals {
		out[k] = jsonVal(v)
	}
	return out
}

// MarkerPrefix starts the project_metadata key of a run's end marker:
// "mlagent/run_status/<run id>" = "finished" or "crashed". Trackio itself
// writes none, so without one a run that stopped writing shows as
// finished.
const MarkerPrefix = "mlagent/run_status/"

// applyMarkers records the end markers in meta (nil: not read) and
// returns those that changed; a marker removed (the run resumed) clears.
func (p *projectState) applyMarkers(meta map[string]string) []runMarker {
	if meta == nil {
		return nil
	}
	var out []runMarker
	for _, r := range p.runs {
		v := meta[MarkerPrefix+r.ID]
		if v != "finished" && v != "crashed" {
			v = ""
		}
		if r.marker != v {
			r.marker = v
			out = append(out, runMarker{RunID: r.ID, Marker: v})
		}
	}
	return out
}

// mediaOf lists the media objects in a metrics row.
func mediaOf(raw json.RawMessage) []mediaItem {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	var out []mediaItem
	for k, v := range m {
		if len(v) == 0 || v[0] != '{' {
			continue
		}
		var obj struct {
			Type     string            `json:"_type"`
			FilePath string            `json:"file_path"`
			Caption  *string           `json:"caption"`
			Value    []json.RawMessage `json:"_value"`
		}
		if json.Unmarshal(v, &obj) != nil || !strings.HasPrefix(obj.Type, "trackio.") {
			continue
		}
		if len(k) > maxKeyBytes || len(obj.Type) > 64 {
			continue
		}
		it := mediaItem{Key: k, Type: obj.Type, Path: obj.FilePath}
		if len(it.Path) > maxMediaPath {
			it.Path = "" // not served: listed without its image
		}
		if obj.Caption != nil {
			it.Caption = truncateUTF8(*obj.Caption, maxCaption)
		}
		if obj.Type == "trackio.table" {
			it.Rows = len(obj.Value)
			if len(obj.Value) > 0 {
				var cols map[string]json.RawMessage
				if json.Unmarshal(obj.Value[0], &cols) == nil {
					it.Cols = len(cols)
				}
			}
		}
		out = append(out, it)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// jsonVal is a value as sent to browsers: null for NaN and ±Inf.
type jsonVal float64

func (v jsonVal) MarshalJSON() ([]byte, error) { return appendNum(nil, float64(v), 64), nil }

// jsonFloat is a time or x value, exact; null when unknown.
type jsonFloat float64

func (v jsonFloat) MarshalJSON() ([]byte, error) { return appendNum(nil, float64(v), 64), nil }

// parseTime reads Trackio's isoformat timestamps, with or without an
// offset (old releases wrote naive times, taken as UTC), as Unix seconds;
// NaN if it does not parse.
func parseTime(s string) float64 {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999", "2006-01-02 15:04:05.999999", "2006-01-02 15:04:05.999999-07:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return float64(t.UnixMicro()) / 1e6
		}
	}
	return math.NaN()
}
