package syncer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mlagent/mlagent/internal/trackio"
)

// state is the persisted progress, keyed by Space so that pointing the
// syncer at another Space uploads everything there too.
type state struct {
	Version int                    `json:"version"`
	Spaces  map[string]*spaceState `json:"spaces"`
}

type spaceState struct {
	Ready    bool                     `json:"ready"`
	Projects map[string]*projectState `json:"projects"`
}

type projectState struct {
	Cursor  trackio.Cursor `json:"cursor"`
	Pending *pending       `json:"pending,omitempty"`
}

// pending is a commit prepared but not yet confirmed by the Hub.
type pending struct {
	Metrics *rangeOf `json:"metrics,omitempty"`
	System  *rangeOf `json:"system_metrics,omitempty"`
	Configs *rangeOf `json:"configs,omitempty"`
}

type rangeOf struct {
	First int64 `json:"first"`
	Last  int64 `json:"last"`
	Count int   `json:"count"`
}

func (p *pending) rows() int {
	n := 0
	for _, r := range []*rangeOf{p.Metrics, p.System, p.Configs} {
		if r != nil {
			n += r.Count
		}
	}
	return n
}

func (p *pending) advance(c trackio.Cursor) trackio.Cursor {
	if p.Metrics != nil {
		c.Metrics = p.Metrics.Last
	}
	if p.System != nil {
		c.System = p.System.Last
	}
	if p.Configs != nil {
		c.Configs = p.Configs.Last
	}
	return c
}

func (st *state) space(id string) *spaceState {
	if st.Spaces == nil {
		st.Spaces = map[string]*spaceState{}
	}
	sp := st.Spaces[id]
	if sp == nil {
		sp = &spaceState{Projects: map[string]*projectState{}}
		st.Spaces[id] = sp
	}
	return sp
}

func (sp *spaceState) project(name string) *projectState {
	if sp.Projects == nil {
		sp.Projects = map[string]*projectState{}
	}
	p := sp.Projects[name]
	if p == nil {
		p = &projectState{}
		sp.Projects[name] = p
	}
	return p
}

func loadState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &state{Version: 1}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("syncer state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("syncer state %s: %w", path, err)
	}
	return &st, nil
}

// save writes the state atomically (temp file, fsync, rename), so a crash
// leaves either the old or the new progress, never a torn file.
func (st *state) save(path string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("syncer state: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".syncer-state-*")
	if err != nil {
		return fmt.Errorf("syncer state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("syncer state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("syncer state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("syncer state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("syncer state: %w", err)
	}
	return nil
}
