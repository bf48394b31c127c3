package trackio_test

import (
	"context"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/trackio"
	"github.com/mlagent/mlagent/internal/trackio/trackiotest"
)

func walWriter(t *testing.T, rows int) *trackiotest.Writer {
	t.Helper()
	ctx := context.Background()
	w, err := trackiotest.OpenWriter(ctx, t.TempDir(), "p", trackiotest.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	for i := 0; i < rows; i++ {
		if _, err := w.Log(ctx, "r", "r", int64(i), map[string]any{"loss": 1.0}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// TestChangedSeesWALRestart: a row committed into a restarted WAL, with
// the files' sizes and mtimes unchanged, is seen (issue 16).
func TestChangedSeesWALRestart(t *testing.T) {
	ctx := context.Background()
	w := walWriter(t, 3)
	r, err := trackio.OpenReader(ctx, w.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	trackiotest.WALRestart(t, w, func() {
		if _, err := r.Poll(ctx, 0); err != nil {
			t.Fatal(err)
		}
		if changed, err := r.Changed(ctx); err != nil || changed {
			t.Fatalf("Changed right after a Poll = %v, %v; want false", changed, err)
		}
	})
	changed, err := r.Changed(ctx)
	if err != nil || !changed {
		t.Fatalf("Changed after a commit = %v, %v; want true", changed, err)
	}
	b, err := r.Poll(ctx, 0)
	if err != nil || len(b.Metrics) != 1 || b.Metrics[0].Step != trackiotest.WALRestartStep {
		t.Fatalf("Poll = %+v, %v; want the step-%d row", b.Metrics, err, trackiotest.WALRestartStep)
	}
	if changed, _ := r.Changed(ctx); changed {
		t.Errorf("Changed after reading everything = true; want false (an idle database costs no read)")
	}
}

// TestChangedWhenPollStoppedAtLimit: rows left behind by a limited Poll
// count as a change.
func TestChangedWhenPollStoppedAtLimit(t *testing.T) {
	ctx := context.Background()
	w := walWriter(t, 3)
	r, err := trackio.OpenReader(ctx, w.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i, want := range []int{2, 1, 0} {
		b, err := r.Poll(ctx, 2)
		if err != nil || len(b.Metrics) != want {
			t.Fatalf("poll %d = %d rows, %v; want %d", i, len(b.Metrics), err, want)
		}
		changed, _ := r.Changed(ctx)
		if wantChanged := want == 2; changed != wantChanged {
			t.Fatalf("Changed after poll %d = %v; want %v", i, changed, wantChanged)
		}
	}
}
