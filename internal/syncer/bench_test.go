package syncer

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/trackio"
	"github.com/mlagent/mlagent/internal/trackio/trackiotest"
)

// BenchmarkSyncBytes measures the commit bytes one sync uploads for 100
// new rows, on databases already holding 1,000 and 100,000 synced rows.
// Bytes per sync must not grow with the database.
// Run: go test -run '^$' -bench SyncBytes -benchtime 20x ./internal/syncer/
func BenchmarkSyncBytes(b *testing.B) {
	for _, size := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("db=%d", size), func(b *testing.B) {
			ctx := context.Background()
			root := b.TempDir()
			dir := filepath.Join(root, "trackio")
			hub := newFakeHub(b, testToken)
			w, err := trackiotest.OpenWriter(ctx, dir, "proj", trackiotest.WriterOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			step := int64(0)
			logN := func(n int) {
				tx, _ := w.DB().Begin()
				for i := 0; i < n; i++ {
					js, _ := trackiotest.EncodeValues(map[string]any{"loss": 1.0 / float64(step+1), "lr": 1e-4, "grad_norm": 0.5})
					if _, err := tx.Exec(trackio.InsertMetricSQL, trackiotest.FormatTimestamp(time.Now()), "rid", "run", step, js); err != nil {
						b.Fatal(err)
					}
					step++
				}
				tx.Commit()
			}
			logN(size)
			s, err := New(Config{Dir: dir, SpaceID: testSpace, StatePath: filepath.Join(root, "state.json"), HubURL: hub.URL(), Token: testToken, MaxRows: 200_000, MaxBytes: 64 << 20}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if _, err := s.SyncOnce(ctx); err != nil { // the initial backlog
				b.Fatal(err)
			}
			var bytes int64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				logN(100)
				b.StartTimer()
				st, err := s.SyncOnce(ctx)
				if err != nil || st.Rows != 100 {
					b.Fatalf("sync = %+v, %v; want 100 rows", st, err)
				}
				bytes += st.Bytes
			}
			b.ReportMetric(float64(bytes)/float64(b.N), "B/sync")
			b.ReportMetric(float64(bytes)/float64(b.N)/100, "B/row")
		})
	}
}
