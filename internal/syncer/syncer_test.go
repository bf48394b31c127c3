package syncer

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/fakehub"
	"github.com/mlagent/mlagent/internal/trackio"
	"github.com/mlagent/mlagent/internal/trackio/trackiotest"
)

const (
	testToken = "hf_TESTTOKEN_do_not_leak_0123456789"
	testSpace = "alice/train-dash"
)

type env struct {
	dir, state string
	hub        *fakehub.Hub
	url        string
	log        *bytes.Buffer
	w          *trackiotest.Writer
	step       int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	root := t.TempDir()
	e := &env{dir: filepath.Join(root, "trackio"), state: filepath.Join(root, "home", "syncer.json"), log: &bytes.Buffer{}}
	e.hub = newFakeHub(t, testToken)
	e.url = e.hub.URL()
	w, err := trackiotest.OpenWriter(ctx, e.dir, "proj", trackiotest.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	e.w = w
	return e
}

func (e *env) syncer(t *testing.T) *Syncer {
	t.Helper()
	s, err := New(Config{
		Dir: e.dir, SpaceID: testSpace, StatePath: e.state, HubURL: e.url, Token: testToken,
		Private: true, BackoffBase: time.Nanosecond, BackoffMax: time.Nanosecond, HTTPTimeout: 300 * time.Millisecond,
	}, slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (e *env) write(t *testing.T, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		if _, err := e.w.Log(ctx, "rid-1", "run-1", e.step, map[string]any{"loss": 1.0 / float64(e.step+1)}, time.Now()); err != nil {
			t.Fatal(err)
		}
		e.step++
	}
}

// checkExactlyOnce: the dataset holds every metrics row written, once,
// with its step.
func (e *env) checkExactlyOnce(t *testing.T) {
	t.Helper()
	rows := rowsIn(t, e.hub, DatasetID(testSpace), "proj", trackio.TableMetrics)
	if int64(len(rows)) != e.step {
		t.Fatalf("dataset has %d rows; want %d", len(rows), e.step)
	}
	for id := int64(1); id <= e.step; id++ {
		r, ok := rows[id]
		if !ok {
			t.Fatalf("row %d missing from the dataset", id)
		}
		if int64(r["step"].(float64)) != id-1 || r["run_id"] != "rid-1" {
			t.Fatalf("row %d = %v; want step %d of rid-1", id, r, id-1)
		}
	}
}

func TestCreatesSpaceInTrackioFormAndUploadsIncrementally(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.write(t, 50)
	e.w.SetConfig(ctx, "rid-1", "run-1", map[string]any{"lr": 0.001}, time.Now())
	e.w.LogSystem(ctx, "rid-1", "run-1", map[string]any{"cpu": 50.0}, time.Now())
	s := e.syncer(t)
	st, err := s.SyncOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Commits != 1 || st.Rows != 52 {
		t.Fatalf("first pass = %+v; want 1 commit of 52 rows", st)
	}
	space, ok := e.hub.Repo("space", testSpace)
	if !ok || space.SDK != "gradio" || !space.Private {
		t.Fatalf("space = %+v; want a private gradio Space", space)
	}
	for _, f := range []string{"README.md", "app.py", "requirements.txt"} {
		if _, ok := space.Files[f]; !ok {
			t.Errorf("space lacks %s", f)
		}
	}
	if !strings.Contains(string(space.Files["app.py"]), "trackio.show()") || !strings.Contains(string(space.Files["requirements.txt"]), "trackio") {
		t.Errorf("space app does not run Trackio")
	}
	if got := e.hub.Variables(testSpace)["TRACKIO_DATASET_ID"]; got != DatasetID(testSpace) {
		t.Errorf("TRACKIO_DATASET_ID = %q; want %q", got, DatasetID(testSpace))
	}
	e.checkExactlyOnce(t)
	if n := len(rowsIn(t, e.hub, DatasetID(testSpace), "proj", trackio.TableConfigs)); n != 1 {
		t.Errorf("configs uploaded = %d; want 1", n)
	}

	// Nothing new: no commit.
	if st, err = s.SyncOnce(ctx); err != nil || st.Commits != 0 {
		t.Fatalf("idle pass = %+v, %v; want no commit", st, err)
	}
	// Ten new rows: only they are sent.
	e.write(t, 10)
	if st, err = s.SyncOnce(ctx); err != nil || st.Rows != 10 {
		t.Fatalf("incremental pass = %+v, %v; want 10 rows", st, err)
	}
	e.checkExactlyOnce(t)
}

// TestFailuresThenRecovery injects 500s and timeouts (before and after the
// Hub applied the commit) while rows keep arriving; the dataset ends with
// every row exactly once.
func TestFailuresThenRecovery(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s := e.syncer(t)
	e.hub.Inject(fakehub.Fault500, fakehub.FaultHangAfterApply, fakehub.FaultHangBefore, fakehub.Fault500, fakehub.FaultHangAfterApply, fakehub.FaultNone, fakehub.FaultHangAfterApply)
	failures := 0
	for round := 0; round < 12; round++ {
		e.write(t, 7)
		st, _ := s.SyncOnce(ctx)
		failures += st.Failed
	}
	// Drain: retry until nothing is pending.
	for i := 0; i < 10; i++ {
		if _, err := s.SyncOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if failures < 5 {
		t.Errorf("saw %d failed passes; want the injected faults to fail syncs", failures)
	}
	e.checkExactlyOnce(t)
	if !strings.Contains(e.log.String(), "backing off") {
		t.Errorf("failures were not logged")
	}
}

// TestRestartResumesPendingCommit: the Hub applied a commit but the answer
// was lost, then the syncer restarted; it re-sends the same chunk (same
// path, same bytes) and never duplicates a row.
func TestRestartResumesPendingCommit(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.write(t, 20)
	s1 := e.syncer(t)
	if _, err := s1.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	e.write(t, 15)
	e.hub.Inject(fakehub.FaultHangAfterApply)
	if st, _ := s1.SyncOnce(ctx); st.Failed != 1 {
		t.Fatalf("pass with lost answer = %+v; want a failure", st)
	}
	s1.Close()
	e.write(t, 5) // rows that arrive while the syncer is down

	s2 := e.syncer(t)
	for i := 0; i < 3; i++ {
		if _, err := s2.SyncOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	e.checkExactlyOnce(t)
}

func TestAuthFailureNeverLeaksToken(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.write(t, 3)
	// A Hub that knows another token.
	other := fakehub.Start(fakehub.Options{Token: "hf_a_different_valid_token"})
	defer other.Close()
	e.url = other.URL()
	s := e.syncer(t)
	_, err := s.SyncOnce(ctx)
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != 401 {
		t.Fatalf("SyncOnce = %v; want HTTP 401", err)
	}
	state, _ := os.ReadFile(e.state)
	for what, text := range map[string]string{"error": err.Error(), "log": e.log.String(), "state file": string(state)} {
		if strings.Contains(text, testToken) || strings.Contains(text, "TESTTOKEN") {
			t.Errorf("%s contains the token: %s", what, text)
		}
	}
}

// TestEchoedTokenIsRedacted: a Hub (or proxy) that echoes the request
// headers in an error body must not get the token into our logs.
func TestEchoedTokenIsRedacted(t *testing.T) {
	h := &Hub{Token: testToken}
	got := redact("bad header Authorization: Bearer "+testToken, h.Token)
	if strings.Contains(got, testToken) {
		t.Fatalf("redact left the token: %q", got)
	}
}

func TestBrokenProjectDoesNotStopOthers(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.write(t, 10)
	os.WriteFile(filepath.Join(e.dir, "broken.db"), []byte(strings.Repeat("garbage!", 512)), 0o644)
	s := e.syncer(t)
	st, err := s.SyncOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Failed != 1 || st.Rows != 10 {
		t.Fatalf("pass = %+v; want broken to fail and proj's 10 rows synced", st)
	}
	if !strings.Contains(e.log.String(), "broken") {
		t.Errorf("log does not name the broken project:\n%s", e.log)
	}
	e.checkExactlyOnce(t)
}

func TestSpaceIDSources(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.write(t, 2)
	mk := func(spaceID string) *Syncer {
		s, err := New(Config{Dir: e.dir, SpaceID: spaceID, StatePath: e.state, HubURL: e.url, Token: testToken}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	// No config, no file: idle, no requests.
	if st, err := mk("").SyncOnce(ctx); err != nil || st.Commits != 0 {
		t.Fatalf("unconfigured = %+v, %v; want idle", st, err)
	}
	// A hostile file is refused.
	os.WriteFile(filepath.Join(e.dir, SpaceIDFile), []byte("../../api/evil\n"), 0o644)
	if _, err := mk("").SyncOnce(ctx); err == nil {
		t.Fatal("invalid space_id file accepted")
	}
	// A valid file is used.
	os.WriteFile(filepath.Join(e.dir, SpaceIDFile), []byte("bob/from-file\n"), 0o644)
	if _, err := mk("").SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.hub.Repo("space", "bob/from-file"); !ok {
		t.Fatal("space from the space_id file was not created")
	}
	// Config wins over the file.
	if _, err := mk(testSpace).SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.hub.Repo("dataset", DatasetID(testSpace)); !ok {
		t.Fatal("configured space not used")
	}
	if _, err := New(Config{Dir: e.dir, SpaceID: "no-slash", StatePath: e.state, Token: "x"}, nil); err == nil {
		t.Error("invalid configured space id accepted")
	}
}

// TestSpaceAppImportsChunks runs the Space's importer (app.py
// --import-only) on what the fake Hub holds and checks that Trackio's
// database ends with exactly the rows, even when imported twice.
func TestSpaceAppImportsChunks(t *testing.T) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("needs /usr/bin/python3")
	}
	ctx := context.Background()
	e := newEnv(t)
	e.write(t, 30)
	e.w.SetConfig(ctx, "rid-1", "run-1", map[string]any{"lr": 0.1}, time.Now())
	s := e.syncer(t)
	s.SyncOnce(ctx)
	e.write(t, 12)
	s.SyncOnce(ctx)

	root := t.TempDir()
	chunks := filepath.Join(root, "snapshot")
	ds, _ := e.hub.Repo("dataset", DatasetID(testSpace))
	for p, data := range ds.Files {
		os.MkdirAll(filepath.Join(chunks, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(chunks, p), data, 0o644)
	}
	app := filepath.Join(root, "app.py")
	os.WriteFile(app, spaceApp, 0o644)
	out := filepath.Join(root, "space-trackio")
	for i := 0; i < 2; i++ {
		if b, err := exec.Command(py, app, "--import-only", chunks, out).CombinedOutput(); err != nil {
			t.Fatalf("importer: %v\n%s", err, b)
		}
	}
	db, err := sql.Open("sqlite", filepath.Join(out, "proj.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n, distinct int
	db.QueryRow(`SELECT count(*), count(DISTINCT step) FROM metrics WHERE run_id = 'rid-1'`).Scan(&n, &distinct)
	if n != 42 || distinct != 42 {
		t.Fatalf("space db has %d rows (%d distinct steps); want 42", n, distinct)
	}
	var cfg string
	db.QueryRow(`SELECT config FROM configs WHERE run_id = 'rid-1'`).Scan(&cfg)
	if !strings.Contains(cfg, `"lr"`) {
		t.Errorf("config = %q; want lr", cfg)
	}
}

// TestRunFollowsDirectory: the long-running loop picks up rows written
// after it started (file notifications, polling fallback).
func TestRunFollowsDirectory(t *testing.T) {
	e := newEnv(t)
	s, err := New(Config{Dir: e.dir, SpaceID: testSpace, StatePath: e.state, HubURL: e.url, Token: testToken, Interval: 60 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	e.write(t, 25)
	for {
		if ds, _ := e.hub.Repo("dataset", DatasetID(testSpace)); len(ds.Files) > 0 {
			// Rows may be split over passes; wait until all are there.
			if int64(len(rowsIn(t, e.hub, DatasetID(testSpace), "proj", trackio.TableMetrics))) == e.step {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e.checkExactlyOnce(t)
}

func TestReplacedDatabaseIsReportedNotSkipped(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.write(t, 10)
	s := e.syncer(t)
	if _, err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	e.w.DB().Exec(`DELETE FROM metrics; DELETE FROM sqlite_sequence`)
	e.w.Log(ctx, "rid-2", "run-2", 0, map[string]any{"loss": 1.0}, time.Now())
	st, _ := s.SyncOnce(ctx)
	if st.Failed != 1 || !strings.Contains(e.log.String(), "database was replaced") {
		t.Fatalf("pass = %+v, log:\n%s\nwant the replaced database reported", st, e.log)
	}
}
