package dashboard

import (
	"math"
	"net/http"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Charts get their points from GET /api/series, downsampled on the server
// to about as many points per run as the chart has pixels to show them:
// the x range is cut into buckets shared by every run of the chart, and
// each bucket keeps its lowest and highest point (in their order), so
// spikes survive and the runs' points line up. A range holding no more
// points than asked for is sent whole: zooming in reaches full resolution.

// xAxis maps a point of a run to its x value.
type xAxis struct {
	kind   string // "step", "wall", "rel" or "metric"
	metric string // for "metric"
}

func parseXAxis(s string) (xAxis, bool) {
	switch s {
	case "", "step":
		return xAxis{kind: "step"}, true
	case "wall", "rel":
		return xAxis{kind: s}, true
	}
	if m, ok := strings.CutPrefix(s, "m:"); ok && m != "" {
		return xAxis{kind: "metric", metric: m}, true
	}
	return xAxis{}, false
}

// pt is one point of a chart.
type pt struct {
	x float64
	y float32
}

// view is one run's series on one x axis. Rows are in id order, which is
// x order for steps and times while a run never went back (the common
// case, read in place by index); otherwise, and for a metric as x, the
// points are copied and sorted once.
type view struct {
	r      *runData
	s      *series
	system bool
	kind   string // the axis, with step and metric read as rel for system rows
	sorted []pt   // the points in x order, when not read in place
}

func newView(r *runData, s *series, system bool, ax xAxis) *view {
	v := &view{r: r, s: s, system: system, kind: ax.kind}
	if system && (v.kind == "step" || v.kind == "metric") {
		v.kind = "rel"
	}
	inPlace := false
	switch v.kind {
	case "step":
		inPlace = !r.stepsBack
	case "wall", "rel":
		inPlace = !r.timesBack
		if system {
			inPlace = !r.sysBack
		}
	}
	if inPlace {
		return v
	}
	all := make([]pt, 0, len(s.rows))
	if v.kind == "metric" {
		xs := r.metrics[ax.metric]
		if xs == nil {
			return nil
		}
		j := 0 // merge walk: both row lists ascend
		for i, row := range s.rows {
			for j < len(xs.rows) && xs.rows[j] < row {
				j++
			}
			if j < len(xs.rows) && xs.rows[j] == row {
				if x := float64(xs.vals[j]); !math.IsNaN(x) && !math.IsInf(x, 0) {
					all = append(all, pt{x, s.vals[i]})
				}
			}
		}
	} else {
		for i := range s.rows {
			if x := v.xAt(i); !math.IsNaN(x) && !math.IsInf(x, 0) {
				all = append(all, pt{x, s.vals[i]})
			}
		}
	}
	sort.SliceStable(all, func(a, b int) bool { return all[a].x < all[b].x })
	v.sorted = all
	return v
}

// len is the number of points in the view.
func (v *view) len() int {
	if v.sorted != nil {
		return len(v.sorted)
	}
	return len(v.s.rows)
}

// xAt and yAt read point i (in x order).
func (v *view) xAt(i int) float64 {
	if v.sorted != nil {
		return v.sorted[i].x
	}
	row := v.s.rows[i]
	switch v.kind {
	case "step":
		return float64(v.r.steps[row])
	case "wall":
		return v.r.time(v.system, row)
	}
	return v.r.time(v.system, row) - v.r.first
}

func (v *view) yAt(i int) float32 {
	if v.sorted != nil {
		return v.sorted[i].y
	}
	return v.s.vals[i]
}

func (r *runData) time(system bool, row int32) float64 {
	if system {
		return r.sysTimes[row]
	}
	return r.times[row]
}

// span returns the index range [i, j) of the points with lo <= x <= hi.
func (v *view) span(lo, hi float64) (int, int) {
	n := v.len()
	i := sort.Search(n, func(k int) bool { return v.xAt(k) >= lo })
	j := sort.Search(n, func(k int) bool { return v.xAt(k) > hi })
	return i, max(i, j)
}

// downsample returns points [i, j) if they are at most max, or else the
// first and the last and, of each of max/2 buckets of equal width over
// [blo, bhi] (the chart's range, the same for every run), the lowest and
// highest point in their order. A bucket holding a non-finite value keeps
// one too, so the line shows the gap.
func (v *view) downsample(i, j, max int, blo, bhi float64) []pt {
	n := j - i
	out := make([]pt, 0, min(n, max+2))
	if n <= max || max < 4 {
		for k := i; k < j; k++ {
			out = append(out, pt{v.xAt(k), v.yAt(k)})
		}
		return out
	}
	buckets := max / 2
	width := (bhi - blo) / float64(buckets)
	if v.sorted == nil && v.kind == "step" && width > 0 && !slowDownsample {
		return v.downsampleSteps(out, i, j, blo, width)
	}
	out = append(out, pt{v.xAt(i), v.yAt(i)})
	for k := i + 1; k < j-1; {
		b := 0
		if width > 0 {
			b = int((v.xAt(k) - blo) / width)
		}
		e := k + 1
		for e < j-1 && (width <= 0 || int((v.xAt(e)-blo)/width) == b) {
			e++
		}
		mn, mx, gap := extremes(k, e, v.yAt)
		for q := k; q < e; q++ {
			if q == gap || q == mn || (q == mx && mx != mn) {
				out = append(out, pt{v.xAt(q), v.yAt(q)})
			}
		}
		k = e
	}
	return append(out, pt{v.xAt(j - 1), v.yAt(j - 1)})
}

// downsampleSteps is downsample for a series read in place on the step
// axis (the common case, and the bulk of a page's first load): the same
// buckets, in one pass over the slices, without the per-point calls of
// xAt and yAt.
func (v *view) downsampleSteps(out []pt, i, j int, blo, width float64) []pt {
	steps, rows, vals := v.r.steps, v.s.rows, v.s.vals
	x := func(k int) float64 { return float64(steps[rows[k]]) }
	out = append(out, pt{x(i), vals[i]})
	k := i + 1
	for k < j-1 {
		b := int((x(k) - blo) / width)
		// The bucket's points: [k, e). Its lowest, highest and first
		// non-finite value, as extremes finds them.
		lo, hi, gap := -1, -1, -1
		e := k
		for ; e < j-1; e++ {
			xe := float64(steps[rows[e]])
			if e > k && int((xe-blo)/width) != b {
				break
			}
			y := vals[e]
			switch {
			case y != y || y > math.MaxFloat32 || y < -math.MaxFloat32:
				if gap < 0 {
					gap = e
				}
			case lo < 0:
				lo, hi = e, e
			case y < vals[lo]:
				lo = e
			case y > vals[hi]:
				hi = e
			}
		}
		out = appendInOrder(out, x, vals, gap, lo, hi)
		k = e
	}
	return append(out, pt{x(j - 1), vals[j-1]})
}

// appendInOrder appends the points at the distinct indexes among a, b
// and c (−1: none) in index order, as downsample keeps a bucket's.
func appendInOrder(out []pt, x func(int) float64, vals []float32, a, b, c int) []pt {
	idx := [3]int{a, b, c}
	if idx[0] > idx[1] {
		idx[0], idx[1] = idx[1], idx[0]
	}
	if idx[1] > idx[2] {
		idx[1], idx[2] = idx[2], idx[1]
	}
	if idx[0] > idx[1] {
		idx[0], idx[1] = idx[1], idx[0]
	}
	prev := -1
	for _, q := range idx {
		if q >= 0 && q != prev {
			out = append(out, pt{x(q), vals[q]})
			prev = q
		}
	}
	return out
}

// slowDownsample turns the fast path off (tests compare the two).
var slowDownsample = false

// seriesRun is one run's points in a chart.
type seriesRun struct {
	id      string
	x       []float64
	y       []float32
	total   int // points of the run in the window, before downsampling
	thinned int
}

type seriesChart struct {
	key    string
	system bool
	runs   []seriesRun
}

// chartOf computes one chart: each run's points of metric key within
// [lo, hi], downsampled to about n.
func chartOf(p *projectState, key string, system bool, ax xAxis, only map[string]bool, lo, hi float64, n int) seriesChart {
	c := seriesChart{key: key, system: system}
	// The chart's range: what was asked, narrowed to the data, so the
	// buckets are the same for every run.
	type runView struct {
		v    *view
		i, j int
	}
	var views []runView
	clo, chi := math.Inf(1), math.Inf(-1)
	for _, run := range p.runs {
		if len(only) > 0 && !only[run.ID] {
			continue
		}
		sr := run.metrics[key]
		if system {
			sr = run.system[key]
		}
		if sr == nil {
			continue
		}
		v := newView(run, sr, system, ax)
		if v == nil {
			continue
		}
		i, j := v.span(lo, hi)
		if j > i {
			clo, chi = min(clo, v.xAt(i)), max(chi, v.xAt(j-1))
		}
		views = append(views, runView{v, i, j})
	}
	for _, rv := range views {
		ds := rv.v.downsample(rv.i, rv.j, n, clo, chi)
		sr := seriesRun{id: rv.v.r.ID, total: rv.j - rv.i, thinned: rv.v.s.thinned, x: make([]float64, len(ds)), y: make([]float32, len(ds))}
		for i, p := range ds {
			sr.x[i], sr.y[i] = p.x, p.y
		}
		c.runs = append(c.runs, sr)
	}
	return c
}

// maxChartsPerRequest and maxPointsPerRun bound one /api/series answer.
const (
	maxChartsPerRequest = 200
	maxPointsPerRun     = 5000
	defaultPointsPerRun = 300
)

// handleSeries answers
//
//	GET /api/series?project=P&m=METRIC&s=SYSTEM_METRIC&x=AXIS&run=ID&xmin=&xmax=&points=N
//
// m and s repeat (one chart each); run repeats (default: every run); AXIS
// is step (default), wall, rel or m:METRIC; points is per run (default 300).
// The answer carries max_id and max_sys, the last rows it includes, so a
// page applies only later rows from the event stream.
func (s *Server) handleSeries(w http.ResponseWriter, r *http.Request) {
	s.serving.Add(1)
	defer s.serving.Add(-1)
	q := r.URL.Query()
	ax, ok := parseXAxis(q.Get("x"))
	if !ok {
		http.Error(w, "x: want step, wall, rel or m:METRIC", http.StatusBadRequest)
		return
	}
	n := defaultPointsPerRun
	if v := q.Get("points"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			http.Error(w, "points: want a positive integer", http.StatusBadRequest)
			return
		}
		n = min(n, maxPointsPerRun)
	}
	lo, hi := math.Inf(-1), math.Inf(1)
	for _, b := range []struct {
		name string
		v    *float64
	}{{"xmin", &lo}, {"xmax", &hi}} {
		if v := q.Get(b.name); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsNaN(f) {
				http.Error(w, b.name+": want a number", http.StatusBadRequest)
				return
			}
			*b.v = f
		}
	}
	type want struct {
		key    string
		system bool
	}
	var wants []want
	for _, k := range q["m"] {
		wants = append(wants, want{k, false})
	}
	for _, k := range q["s"] {
		wants = append(wants, want{k, true})
	}
	if len(wants) > maxChartsPerRequest {
		http.Error(w, "too many charts in one request", http.StatusBadRequest)
		return
	}
	only := map[string]bool{}
	for _, id := range q["run"] {
		only[id] = true
	}

	s.mu.RLock()
	p := s.projects[q.Get("project")].view()
	if p == nil {
		s.mu.RUnlock()
		http.Error(w, "no such project", http.StatusNotFound)
		return
	}
	maxID, maxSys := p.maxID, p.maxSys
	// Charts are independent: compute them on every core, under the read
	// lock (the follower waits for them, not the other way round).
	charts := make([]seriesChart, len(wants))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for ci, wt := range wants {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			charts[ci] = chartOf(p, wt.key, wt.system, ax, only, lo, hi, n)
		}()
	}
	wg.Wait()
	s.mu.RUnlock()

	// Encoded by hand: a large answer is mostly numbers, and the values
	// go out at float32 precision, which is what was stored.
	b := make([]byte, 0, 1<<16)
	b = append(b, `{"max_id":`...)
	b = strconv.AppendInt(b, maxID, 10)
	b = append(b, `,"max_sys":`...)
	b = strconv.AppendInt(b, maxSys, 10)
	b = append(b, `,"charts":[`...)
	for i, c := range charts {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"key":`...)
		b = appendJSONString(b, c.key)
		b = append(b, `,"system":`...)
		b = strconv.AppendBool(b, c.system)
		b = append(b, `,"runs":[`...)
		for j, sr := range c.runs {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			b = appendJSONString(b, sr.id)
			b = append(b, `,"total":`...)
			b = strconv.AppendInt(b, int64(sr.total), 10)
			b = append(b, `,"thinned":`...)
			b = strconv.AppendInt(b, int64(sr.thinned), 10)
			b = append(b, `,"x":[`...)
			for k, x := range sr.x {
				if k > 0 {
					b = append(b, ',')
				}
				// Steps are integers: AppendInt is several times cheaper
				// than the shortest float form, and reads back the same.
				if xi := int64(x); float64(xi) == x && xi > -1<<53 && xi < 1<<53 {
					b = strconv.AppendInt(b, xi, 10)
				} else {
					b = appendNum(b, x, 64)
				}
			}
			b = append(b, `],"y":[`...)
			for k, y := range sr.y {
				if k > 0 {
					b = append(b, ',')
				}
				b = appendNum(b, float64(y), 32)
			}
			b = append(b, "]}"...)
		}
		b = append(b, "]}"...)
	}
	b = append(b, "]}"...)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

// appendNum appends v as a JSON number (null for NaN and ±Inf), in the
// shortest form that reads back as the same float of the given bit size.
func appendNum(b []byte, v float64, bits int) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, bits)
}

// appendJSONString appends s as a JSON string; <, > and & are escaped as
// encoding/json does, so the text is inert anywhere in a page.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20 || r == '<' || r == '>' || r == '&' || r == 0x2028 || r == 0x2029:
			b = append(b, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
		case r == 0xfffd:
			b = append(b, "\ufffd"...)
		default:
			b = append(b, string(r)...)
		}
	}
	return append(b, '"')
}
