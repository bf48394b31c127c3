// Package sessions keeps the index of chat sessions in mlagent's SQLite
// store: what `mlagent sessions` lists and what `mlagent resume` reopens
// (the transcript itself lives on the data volume, written by the agent).
package sessions

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/store"
)

var migrations = []store.Migration{
	{Name: "sessions/001_sessions", SQL: `
CREATE TABLE sessions (
	id       TEXT PRIMARY KEY,
	title    TEXT NOT NULL DEFAULT '',
	model    TEXT NOT NULL DEFAULT '',
	started  TEXT NOT NULL,              -- RFC 3339, UTC
	updated  TEXT NOT NULL,
	turns    INTEGER NOT NULL DEFAULT 0, -- finished turns
	cost_usd REAL NOT NULL DEFAULT 0,    -- as reported by the agent
	volumes  TEXT NOT NULL DEFAULT '[]', -- JSON [{"Volume":…,"Path":…}], reused on resume
	gpu      TEXT NOT NULL DEFAULT 'none',
	sandbox  TEXT NOT NULL DEFAULT ''    -- the last sandbox that ran it
);
CREATE INDEX sessions_updated ON sessions(updated);`},
	{Name: "sessions/002_image", SQL: `ALTER TABLE sessions ADD COLUMN image TEXT NOT NULL DEFAULT ''`},
}

// ErrNotFound is returned for an unknown session id, or by Latest when
// there are no sessions.
var ErrNotFound = errors.New("no such session")

// Session is one row of the index.
type Session struct {
	ID      string
	Title   string
	Model   string
	Started time.Time
	Updated time.Time
	Turns   int
	CostUSD float64
	Volumes []sandbox.Mount
	GPU     string
	Sandbox string
	// Image is the image reference its sandboxes run on ("" for the
	// host's /usr), reused on resume.
	Image string
}

// Index is the sessions table. Safe for concurrent use (and by several
// processes: the store is SQLite in WAL mode).
type Index struct {
	db  *store.DB
	now func() time.Time
}

// Open migrates the sessions table in db and returns the index.
func Open(ctx context.Context, db *store.DB) (*Index, error) {
	if err := db.Migrate(ctx, migrations...); err != nil {
		return nil, fmt.Errorf("sessions: %w", err)
	}
	return &Index{db: db, now: time.Now}, nil
}

// NewID returns a fresh session id: sortable by time, unique by a random
// suffix, and valid as a transcript file name.
func NewID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// TitleMax is the longest title kept, in runes.
const TitleMax = 60

// Title shortens a first prompt to a one-line title.
func Title(prompt string) string {
	s := strings.Join(strings.Fields(prompt), " ")
	var n int
	for i := range s {
		if n == TitleMax {
			return strings.TrimRight(s[:i], " ") + "…"
		}
		n++
	}
	return s
}

const timeFormat = time.RFC3339Nano

// Create records a new session. Started and Updated default to now.
func (x *Index) Create(ctx context.Context, s Session) error {
	if s.ID == "" {
		return errors.New("sessions: create: empty id")
	}
	now := x.now().UTC()
	if s.Started.IsZero() {
		s.Started = now
	}
	if s.Updated.IsZero() {
		s.Updated = s.Started
	}
	if s.GPU == "" {
		s.GPU = "none"
	}
	vols, err := json.Marshal(s.Volumes)
	if err != nil {
		return fmt.Errorf("sessions: create: %w", err)
	}
	if s.Volumes == nil {
		vols = []byte("[]")
	}
	_, err = x.db.ExecContext(ctx, `INSERT INTO sessions(id, title, model, started, updated, turns, cost_usd, volumes, gpu, sandbox, image)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.ID, Title(s.Title), s.Model, s.Started.UTC().Format(timeFormat), s.Updated.UTC().Format(timeFormat),
		s.Turns, s.CostUSD, string(vols), s.GPU, s.Sandbox, s.Image)
	if err != nil {
		return fmt.Errorf("sessions: create %s: %w", s.ID, err)
	}
	return nil
}

// SetTitle sets the title if the session has none yet (a chat started
// without a prompt gets its title from the first message).
func (x *Index) SetTitle(ctx context.Context, id, prompt string) error {
	_, err := x.db.ExecContext(ctx, `UPDATE sessions SET title = ? WHERE id = ? AND title = ''`, Title(prompt), id)
	if err != nil {
		return fmt.Errorf("sessions: set title %s: %w", id, err)
	}
	return nil
}

// Touch records that the session was reopened: its sandbox and model.
func (x *Index) Touch(ctx context.Context, id, sandboxName, model string) error {
	res, err := x.db.ExecContext(ctx, `UPDATE sessions SET updated = ?, sandbox = ?, model = CASE WHEN ? = '' THEN model ELSE ? END WHERE id = ?`,
		x.now().UTC().Format(timeFormat), sandboxName, model, model, id)
	return x.checkOne(res, err, "touch", id)
}

// SetImage records the image a resumed session now runs on.
func (x *Index) SetImage(ctx context.Context, id, image string) error {
	res, err := x.db.ExecContext(ctx, `UPDATE sessions SET image = ? WHERE id = ?`, image, id)
	return x.checkOne(res, err, "set image", id)
}

// RecordTurn counts a finished turn and adds its cost. A cost below zero
// or not a number counts as 0: it was reported from the sandbox, and a
// negative one would give a budget back.
func (x *Index) RecordTurn(ctx context.Context, id string, costUSD float64) error {
	if !(costUSD > 0) || math.IsInf(costUSD, 0) {
		costUSD = 0
	}
	res, err := x.db.ExecContext(ctx, `UPDATE sessions SET turns = turns + 1, cost_usd = cost_usd + ?, updated = ? WHERE id = ?`,
		costUSD, x.now().UTC().Format(timeFormat), id)
	return x.checkOne(res, err, "record turn", id)
}

func (x *Index) checkOne(res sql.Result, err error, op, id string) error {
	if err != nil {
		return fmt.Errorf("sessions: %s %s: %w", op, id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("sessions: %s %s: %w", op, id, ErrNotFound)
	}
	return nil
}

const columns = `id, title, model, started, updated, turns, cost_usd, volumes, gpu, sandbox, image`

// Get returns one session.
func (x *Index) Get(ctx context.Context, id string) (Session, error) {
	row := x.db.QueryRowContext(ctx, `SELECT `+columns+` FROM sessions WHERE id = ?`, id)
	s, err := scan(row)
	if err != nil {
		return Session{}, fmt.Errorf("sessions: %s: %w", id, err)
	}
	return s, nil
}

// Latest returns the most recently updated session.
func (x *Index) Latest(ctx context.Context) (Session, error) {
	row := x.db.QueryRowContext(ctx, `SELECT `+columns+` FROM sessions ORDER BY updated DESC, started DESC LIMIT 1`)
	s, err := scan(row)
	if err != nil {
		return Session{}, fmt.Errorf("sessions: latest: %w", err)
	}
	return s, nil
}

// List returns sessions, most recently updated first; limit ≤ 0 means all.
func (x *Index) List(ctx context.Context, limit int) ([]Session, error) {
	if limit <= 0 {
		limit = -1
	}
	rows, err := x.db.QueryContext(ctx, `SELECT `+columns+` FROM sessions ORDER BY updated DESC, started DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("sessions: list: %w", err)
	}
	defer rows.Close()
	var out []Session
	for rows.Next() {
		s, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("sessions: list: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sessions: list: %w", err)
	}
	return out, nil
}

func scan(row interface{ Scan(...any) error }) (Session, error) {
	var s Session
	var started, updated, vols string
	if err := row.Scan(&s.ID, &s.Title, &s.Model, &started, &updated, &s.Turns, &s.CostUSD, &vols, &s.GPU, &s.Sandbox, &s.Image); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return s, ErrNotFound
		}
		return s, err
	}
	var err error
	if s.Started, err = time.Parse(timeFormat, started); err != nil {
		return s, fmt.Errorf("bad started time %q: %w", started, err)
	}
	if s.Updated, err = time.Parse(timeFormat, updated); err != nil {
		return s, fmt.Errorf("bad updated time %q: %w", updated, err)
	}
	if err := json.Unmarshal([]byte(vols), &s.Volumes); err != nil {
		return s, fmt.Errorf("bad volumes %q: %w", vols, err)
	}
	return s, nil
}
