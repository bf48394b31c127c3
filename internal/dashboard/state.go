package dashboard

import (
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/mlagent/mlagent/internal/trackio"
)

// point is one chart point; Y is NaN for non-finite values, sent as null
// so the chart shows a gap.
type point struct{ X, Y float64 }

func (p point) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 32)
	b = append(b, '[')
	b = strconv.AppendFloat(b, p.X, 'g', -1, 64)
	b = append(b, ',')
	if math.IsNaN(p.Y) || math.IsInf(p.Y, 0) {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendFloat(b, p.Y, 'g', -1, 64)
	}
	return append(b, ']'), nil
}

type runState struct {
	ID      string             `json:"id"`
	Name    string             `json:"name"`
	Config  json.RawMessage    `json:"config,omitempty"`
	Metrics map[string][]point `json:"metrics"`
	System  map[string][]point `json:"system"`
	start   time.Time          // first system-metrics timestamp, the x origin
}

type projectState struct {
	Name     string            `json:"name"`
	Error    string            `json:"error,omitempty"`
	Layout   string            `json:"layout"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Runs     []*runState       `json:"runs"`

	path string
	byID map[string]*runState
}

func newProject(name, path string) *projectState {
	return &projectState{Name: name, path: path, byID: map[string]*runState{}, Runs: []*runState{}}
}

func (p *projectState) run(id, name string) *runState {
	r := p.byID[id]
	if r == nil {
		r = &runState{ID: id, Name: name, Metrics: map[string][]point{}, System: map[string][]point{}}
		p.byID[id] = r
		p.Runs = append(p.Runs, r)
	}
	return r
}

// deltaRow is one row as sent to browsers.
type deltaRow struct {
	Kind    string         `json:"kind"` // "metric" or "system"
	RunID   string         `json:"run_id"`
	RunName string         `json:"run_name"`
	X       float64        `json:"x"`
	V       map[string]any `json:"values"`
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
	// MaxID is the last metrics row id included, for latency measurements.
	MaxID int64 `json:"max_id"`
}

// apply folds a batch into the project and returns the delta to broadcast.
func (p *projectState) apply(b trackio.Batch) delta {
	d := delta{Project: p.Name}
	for _, row := range b.Metrics {
		vals, err := trackio.Values(row.Raw)
		if err != nil {
			continue
		}
		r := p.run(row.RunID, row.RunName)
		x := float64(row.Step)
		dr := deltaRow{Kind: "metric", RunID: row.RunID, RunName: row.RunName, X: x, V: map[string]any{}}
		for k, v := range vals {
			r.Metrics[k] = append(r.Metrics[k], point{x, v})
			dr.V[k] = jsonNum(v)
		}
		d.Rows = append(d.Rows, dr)
		d.MaxID = row.ID
	}
	for _, row := range b.System {
		vals, err := trackio.Values(row.Raw)
		if err != nil {
			continue
		}
		r := p.run(row.RunID, row.RunName)
		ts, err := parseTimestamp(row.Timestamp)
		if err != nil {
			continue
		}
		if r.start.IsZero() {
			r.start = ts
		}
		x := ts.Sub(r.start).Seconds()
		dr := deltaRow{Kind: "system", RunID: row.RunID, RunName: row.RunName, X: x, V: map[string]any{}}
		for k, v := range vals {
			r.System[k] = append(r.System[k], point{x, v})
			dr.V[k] = jsonNum(v)
		}
		d.Rows = append(d.Rows, dr)
	}
	for _, c := range b.Configs {
		r := p.run(c.RunID, c.RunName)
		r.Config = c.Raw
		d.Configs = append(d.Configs, deltaConfig{RunID: c.RunID, RunName: c.RunName, Config: c.Raw})
	}
	return d
}

func jsonNum(v float64) any {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return v
}

// parseTimestamp accepts Trackio's isoformat timestamps, with or without
// an offset (old releases wrote naive local times).
func parseTimestamp(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999", "2006-01-02 15:04:05.999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, &time.ParseError{Layout: time.RFC3339Nano, Value: s}
}
