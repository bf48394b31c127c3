package bwrap

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/cgroup"
	"github.com/mlagent/mlagent/internal/store"
)

// migrations are this backend's tables in mlagent's store, so another
// process (`mlagent sandbox ls|exec|kill`) finds the sandboxes.
var migrations = []store.Migration{{
	Name: "sandbox/001_sandboxes",
	SQL: `CREATE TABLE sandboxes (
		name       TEXT PRIMARY KEY,
		backend    TEXT NOT NULL,
		pid        INTEGER NOT NULL DEFAULT 0, -- host pid of the sandbox's PID 1
		start_time INTEGER NOT NULL DEFAULT 0, -- its start time (clock ticks), against pid reuse
		state_dir  TEXT NOT NULL,
		labels     TEXT NOT NULL DEFAULT '{}',
		gpu        INTEGER NOT NULL DEFAULT 0,
		notes      TEXT NOT NULL DEFAULT '[]',
		created    TEXT NOT NULL
	)`,
}, {
	Name: "sandbox/002_image",
	SQL: `ALTER TABLE sandboxes ADD COLUMN image TEXT NOT NULL DEFAULT '';
	ALTER TABLE sandboxes ADD COLUMN image_id TEXT NOT NULL DEFAULT ''`,
}, {
	// The volumes it mounts: `volume rm` refuses while one is in use.
	Name: "sandbox/003_volumes",
	SQL:  `ALTER TABLE sandboxes ADD COLUMN volumes TEXT NOT NULL DEFAULT '[]'`,
}}

type record struct {
	Name      string
	Pid       int
	StartTime uint64
	StateDir  string
	Labels    map[string]string
	GPU       bool
	Notes     []string
	Created   time.Time
	// Image and ImageID name the image it runs on ("" for the host's /usr).
	Image, ImageID string
	Volumes        []sandbox.Mount
}

const backendName = "local"

// claim inserts a record for a new sandbox; a dead one of the same name
// is replaced, a live one is ErrExists.
func (b *Backend) claim(ctx context.Context, r *record) error {
	labels, _ := json.Marshal(r.Labels)
	notes, _ := json.Marshal(r.Notes)
	vols, _ := json.Marshal(r.Volumes)
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record sandbox: %w", err)
	}
	defer tx.Rollback()
	old, err := scanRecord(tx.QueryRowContext(ctx, selectRecord+` WHERE name = ?`, r.Name))
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return fmt.Errorf("record sandbox: %w", err)
	case old.Pid == 0 || alive(old.Pid, old.StartTime):
		// pid 0: another process is creating it right now.
		return fmt.Errorf("%w: %s", sandbox.ErrExists, r.Name)
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO sandboxes
		(name, backend, pid, start_time, state_dir, labels, gpu, notes, created, image, image_id, volumes) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
		r.Name, backendName, 0, 0, r.StateDir, string(labels), r.GPU, string(notes),
		r.Created.UTC().Format(time.RFC3339Nano), r.Image, r.ImageID, string(vols)); err != nil {
		return fmt.Errorf("record sandbox: %w", err)
	}
	return tx.Commit()
}

func (b *Backend) setPid(ctx context.Context, name string, pid int, start uint64) error {
	_, err := b.db.ExecContext(ctx, `UPDATE sandboxes SET pid = ?, start_time = ? WHERE name = ?`, pid, int64(start), name)
	if err != nil {
		return fmt.Errorf("record sandbox: %w", err)
	}
	return nil
}

func (b *Backend) forget(ctx context.Context, name string) error {
	if _, err := b.db.ExecContext(ctx, `DELETE FROM sandboxes WHERE name = ?`, name); err != nil {
		return fmt.Errorf("forget sandbox %s: %w", name, err)
	}
	return nil
}

const selectRecord = `SELECT name, pid, start_time, state_dir, labels, gpu, notes, created, image, image_id, volumes FROM sandboxes`

type scanner interface{ Scan(...any) error }

func scanRecord(s scanner) (*record, error) {
	var (
		r             record
		start         int64
		labels, notes string
		created, vols string
	)
	if err := s.Scan(&r.Name, &r.Pid, &start, &r.StateDir, &labels, &r.GPU, &notes, &created, &r.Image, &r.ImageID, &vols); err != nil {
		return nil, err
	}
	r.StartTime = uint64(start)
	if err := json.Unmarshal([]byte(labels), &r.Labels); err != nil {
		return nil, fmt.Errorf("sandbox %s: corrupt labels: %w", r.Name, err)
	}
	if err := json.Unmarshal([]byte(notes), &r.Notes); err != nil {
		return nil, fmt.Errorf("sandbox %s: corrupt notes: %w", r.Name, err)
	}
	if err := json.Unmarshal([]byte(vols), &r.Volumes); err != nil {
		return nil, fmt.Errorf("sandbox %s: corrupt volumes: %w", r.Name, err)
	}
	r.Created, _ = time.Parse(time.RFC3339Nano, created)
	return &r, nil
}

func (b *Backend) lookup(ctx context.Context, name string) (*record, error) {
	r, err := scanRecord(b.db.QueryRowContext(ctx, selectRecord+` WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", sandbox.ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("look up sandbox %s: %w", name, err)
	}
	return r, nil
}

func (r *record) info() sandbox.Info {
	st := sandbox.StateDead
	switch {
	case alive(r.Pid, r.StartTime):
		st = sandbox.StateRunning
	case r.Pid == 0 && time.Since(r.Created) < startGrace:
		st = sandbox.StateStarting
	}
	var ooms int64
	if g, err := cgroup.Load(cgroupPath(r.StateDir)); err == nil {
		ooms = g.OOMKills()
	}
	return sandbox.Info{
		Name: r.Name, Backend: backendName, State: st, Created: r.Created,
		Labels: r.Labels, Workspace: workspaceDir(r.StateDir), GPU: r.GPU, Notes: r.Notes,
		OOMKills: ooms, Image: r.Image, ImageID: r.ImageID, Volumes: r.Volumes,
	}
}

// procStartTime reads field 22 of /proc/PID/stat: with the pid it names a
// process uniquely, so a recycled pid is not taken for the sandbox.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(s[i+1:])
	// After ")" come field 3 (state) onwards; start time is field 22.
	if len(f) < 20 {
		return 0, errors.New("bad /proc stat")
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, errors.New("process is a zombie")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	got, err := procStartTime(pid)
	return err == nil && got == start
}
