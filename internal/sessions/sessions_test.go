package sessions

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/store"
)

func newIndex(t *testing.T) (*Index, *time.Time) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "mlagent.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	x, err := Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	// Opening twice (a second process) must not re-run the migration.
	if _, err := Open(ctx, db); err != nil {
		t.Fatalf("second Open: %v", err)
	}
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	x.now = func() time.Time { return now }
	return x, &now
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	x, now := newIndex(t)
	vols := []sandbox.Mount{{Volume: "data", Path: "/data"}, {Volume: "mine", Path: "/mnt/mine"}}
	if err := x.Create(ctx, Session{ID: "a", Title: "Train a model for categorizing multispectral satellite imagery, please, with care", Model: "m1", Volumes: vols, GPU: "optional"}); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(time.Minute)
	if err := x.Create(ctx, Session{ID: "b", Model: "m1"}); err != nil {
		t.Fatal(err)
	}
	if err := x.Create(ctx, Session{ID: "b"}); err == nil {
		t.Errorf("duplicate Create: got nil; want an error")
	}
	if err := x.SetTitle(ctx, "b", "second   chat\nhere"); err != nil {
		t.Fatal(err)
	}
	if err := x.SetTitle(ctx, "b", "not this one"); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(time.Minute)
	for range 2 {
		if err := x.RecordTurn(ctx, "a", 0.25); err != nil {
			t.Fatal(err)
		}
	}
	// Costs are reported from the sandbox: a negative or non-number one
	// counts the turn and adds nothing.
	for _, c := range []float64{-1000, math.NaN(), math.Inf(-1), math.Inf(1)} {
		if err := x.RecordTurn(ctx, "a", c); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.RecordTurn(ctx, "nope", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("RecordTurn unknown: got %v; want ErrNotFound", err)
	}
	if err := x.Touch(ctx, "a", "sb-1", ""); err != nil {
		t.Fatal(err)
	}

	a, err := x.Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	want := Session{ID: "a", Title: "Train a model for categorizing multispectral satellite image…", Model: "m1",
		Started: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC), Updated: time.Date(2025, 3, 4, 5, 8, 7, 0, time.UTC),
		Turns: 6, CostUSD: 0.5, Volumes: vols, GPU: "optional", Sandbox: "sb-1"}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("got %+v; want %+v", a, want)
	}
	latest, err := x.Latest(ctx)
	if err != nil || latest.ID != "a" {
		t.Errorf("Latest: got %q, %v; want a (most recently updated)", latest.ID, err)
	}
	list, err := x.List(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids, titles []string
	for _, s := range list {
		ids = append(ids, s.ID)
		titles = append(titles, s.Title)
	}
	if !reflect.DeepEqual(ids, []string{"a", "b"}) || titles[1] != "second chat here" {
		t.Errorf("List: got %v %q; want [a b] with b titled from its first message", ids, titles)
	}
	if _, err := x.Get(ctx, "zzz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get unknown: got %v; want ErrNotFound", err)
	}
}

func TestLatestEmpty(t *testing.T) {
	x, _ := newIndex(t)
	if _, err := x.Latest(context.Background()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v; want ErrNotFound", err)
	}
}

func TestCorruptRow(t *testing.T) {
	ctx := context.Background()
	x, _ := newIndex(t)
	if err := x.Create(ctx, Session{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := x.db.ExecContext(ctx, `UPDATE sessions SET volumes = 'not json'`); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Get(ctx, "a"); err == nil || !strings.Contains(err.Error(), "bad volumes") {
		t.Errorf("got %v; want a clear error about the volumes column", err)
	}
}

func TestNewIDAndTitle(t *testing.T) {
	id := NewID(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	if !regexp.MustCompile(`^20250102-030405-[0-9a-f]{8}$`).MatchString(id) {
		t.Errorf("NewID: got %q", id)
	}
	cases := []struct{ in, want string }{
		{"short", "short"},
		{"  spaced\n\tout  ", "spaced out"},
		{strings.Repeat("é", 61), strings.Repeat("é", 60) + "…"},
		{strings.Repeat("x", 60), strings.Repeat("x", 60)},
	}
	for _, c := range cases {
		if got := Title(c.in); got != c.want {
			t.Errorf("Title(%q) = %q; want %q", c.in, got, c.want)
		}
	}
}

func TestImageKeptForResume(t *testing.T) {
	x, _ := newIndex(t)
	ctx := context.Background()
	if err := x.Create(ctx, Session{ID: "s1", Image: "python:3.12-slim"}); err != nil {
		t.Fatal(err)
	}
	if s, err := x.Get(ctx, "s1"); err != nil || s.Image != "python:3.12-slim" {
		t.Errorf("got %q, %v; want the image recorded", s.Image, err)
	}
	if err := x.SetImage(ctx, "s1", ""); err != nil {
		t.Fatal(err)
	}
	if s, _ := x.Latest(ctx); s.Image != "" {
		t.Errorf("after SetImage: got %q; want the host's (empty)", s.Image)
	}
	if err := x.SetImage(ctx, "nope", "x"); err == nil {
		t.Errorf("SetImage on an unknown session: no error")
	}
}
