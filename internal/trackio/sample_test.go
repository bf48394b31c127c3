package trackio

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
)

// TestSample: Sample reads about n rows evenly spaced over the ids, the
// first and the last included, skips ids that are gone, and leaves the
// cursor where it was; Spans gives the id ranges.
func TestSample(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(SchemaSQL); err != nil {
		t.Fatal(err)
	}
	tx, _ := db.Begin()
	for i := 0; i < 1000; i++ {
		if _, err := tx.Exec(InsertMetricSQL, "2026-01-01T00:00:00+00:00", "r", "r", i, `{"loss":1.5}`); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	r, err := OpenReader(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	ms, ss, err := r.Spans(ctx)
	if err != nil || ms != 1000 || ss != 0 {
		t.Fatalf("Spans = %d, %d, %v; want 1000, 0, nil", ms, ss, err)
	}
	b, ms, _, err := r.Sample(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, row := range b.Metrics {
		ids = append(ids, row.ID)
	}
	want := []int64{1, 101, 201, 301, 401, 501, 601, 701, 801, 901, 1000}
	if ms != 1000 || !equalIDs(ids, want) {
		t.Errorf("Sample(10) = ids %v, span %d; want %v, 1000", ids, ms, want)
	}
	if b.Metrics[1].Step != 100 || string(b.Metrics[1].Raw) != `{"loss":1.5}` {
		t.Errorf("sampled row = %+v; want step 100 and its values", b.Metrics[1])
	}

	if _, err := db.Exec(`DELETE FROM metrics WHERE id BETWEEN 150 AND 850`); err != nil {
		t.Fatal(err)
	}
	b, _, _, err = r.Sample(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	ids = ids[:0]
	for _, row := range b.Metrics {
		ids = append(ids, row.ID)
	}
	if want := []int64{1, 101, 901, 1000}; !equalIDs(ids, want) {
		t.Errorf("Sample(10) with ids 150–850 gone = %v; want %v", ids, want)
	}

	all, err := r.Poll(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(all.Metrics); n != 1000-701 || all.Metrics[0].ID != 1 {
		t.Errorf("Poll after Sample: %d rows from id %d; want %d from 1 (the cursor untouched)", n, all.Metrics[0].ID, 1000-701)
	}
}

func equalIDs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestOverviewQueriesUseThePrimaryKey: the queries of Spans and Sample
// look rows up by id and never scan the table (a scan of 500,000 rows
// took 0.4 s, which a loaded machine made longer than a read's deadline).
func TestOverviewQueriesUseThePrimaryKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(SchemaSQL); err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		name, sql string
		args      []any
	}{
		{"idRange", idRangeQuery("main.metrics"), nil},
		{"sample", sampleQuery("id, metrics", "main.metrics"), []any{1, 100, 1000000, 5000}},
	} {
		rows, err := db.Query("EXPLAIN QUERY PLAN "+q.sql, q.args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		for _, step := range plan {
			if strings.HasPrefix(step, "SCAN metrics") || strings.HasPrefix(step, "SCAN main.metrics") {
				t.Errorf("%s query plan %q scans the table", q.name, plan)
			}
		}
	}
}
