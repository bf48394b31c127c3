package syncer

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// TestHostileSpaceIDFile: the space_id file is the sandbox's. A FIFO
// there must not block the syncer in open(2), a link to a host file must
// not be read, and a huge file must not be read whole.
func TestHostileSpaceIDFile(t *testing.T) {
	host := filepath.Join(t.TempDir(), "host-space")
	os.WriteFile(host, []byte("host/space\n"), 0o644)
	for _, tc := range []struct {
		name  string
		plant func(path string) error
		want  string
	}{
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o644) }, "named pipe"},
		{"symlink", func(p string) error { return os.Symlink(host, p) }, "symbolic link"},
		{"huge", func(p string) error {
			return os.WriteFile(p, []byte("ns/name"+strings.Repeat(" ", 1<<20)), 0o644)
		}, "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if err := tc.plant(filepath.Join(e.dir, SpaceIDFile)); err != nil {
				t.Fatal(err)
			}
			s, err := New(Config{Dir: e.dir, StatePath: e.state, HubURL: e.url, Token: testToken}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			type result struct {
				id  string
				err error
			}
			done := make(chan result, 1)
			go func() {
				id, err := s.SpaceID()
				done <- result{id, err}
			}()
			select {
			case res := <-done:
				if res.err == nil || !strings.Contains(res.err.Error(), tc.want) {
					t.Errorf("SpaceID() = %q, %v; want an error saying %q", res.id, res.err, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("SpaceID still blocked after 10s")
			}
		})
	}
}
