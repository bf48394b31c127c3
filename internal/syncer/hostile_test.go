package syncer

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/trackio"
	"github.com/mlagent/mlagent/internal/trackio/trackiotest"
)

// TestHostileFilesDoNotStopOthers: a FIFO, a symlink to a host database
// and a recursive view in the Trackio directory fail their own projects
// (logged with the reason) within the pass; the good project syncs; the
// host database is never uploaded.
func TestHostileFilesDoNotStopOthers(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.write(t, 10)
	want := trackiotest.PlantHostile(t, e.dir)
	s := e.syncer(t)
	type result struct {
		st  Stats
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := s.SyncOnce(ctx)
		done <- result{st, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("SyncOnce still blocked after 30s")
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	if res.st.Failed != len(want) || res.st.Rows != 10 {
		t.Fatalf("pass = %+v; want the %d planted projects failed and proj's 10 rows synced", res.st, len(want))
	}
	for name, why := range want {
		if !strings.Contains(e.log.String(), name) || !strings.Contains(e.log.String(), why) {
			t.Errorf("log does not name %s with %q:\n%s", name, why, e.log)
		}
	}
	if rows := rowsIn(t, e.hub, DatasetID(testSpace), "b-link", trackio.TableMetrics); len(rows) != 0 {
		t.Errorf("the symlinked host database was uploaded: %v", rows)
	}
	e.checkExactlyOnce(t)
}

// TestNoCommittedRowIsMissed: the syncer uploads a row committed into a
// restarted WAL with the files' sizes and mtimes as before (issue 16).
func TestNoCommittedRowIsMissed(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s := e.syncer(t)
	trackiotest.WALRestart(t, e.w, func() {
		if _, err := s.SyncOnce(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	rows := rowsIn(t, e.hub, DatasetID(testSpace), "proj", trackio.TableMetrics)
	found := false
	for _, r := range rows {
		found = found || int64(r["step"].(float64)) == trackiotest.WALRestartStep
	}
	if len(rows) != 2 || !found {
		t.Fatalf("dataset rows = %v; want both, with step %d", rows, trackiotest.WALRestartStep)
	}
}
