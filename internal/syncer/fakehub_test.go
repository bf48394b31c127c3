package syncer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/mlagent/mlagent/internal/fakehub"
)

// newFakeHub starts the strict fake Hub with the one valid token; the
// test fails if the syncer called an endpoint the Hub does not have.
func newFakeHub(t testing.TB, token string) *fakehub.Hub {
	h := fakehub.Start(fakehub.Options{Token: token})
	t.Cleanup(func() {
		h.Close()
		if u := h.Unexpected(); len(u) > 0 {
			t.Errorf("fake hub: unexpected requests %q", u)
		}
	})
	return h
}

// rowsIn decodes every chunk of table in the dataset and returns the
// JSON objects, keyed by row id, failing on a duplicate id.
func rowsIn(t testing.TB, h *fakehub.Hub, datasetID, project, table string) map[int64]map[string]any {
	t.Helper()
	repo, ok := h.Repo("dataset", datasetID)
	if !ok {
		t.Fatalf("no dataset %s", datasetID)
	}
	prefix := DataPrefix + "/" + project + "/" + table + "/"
	var paths []string
	for p := range repo.Files {
		if strings.HasPrefix(p, prefix) {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	out := map[int64]map[string]any{}
	for _, p := range paths {
		sc := bufio.NewScanner(bytes.NewReader(repo.Files[p]))
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var row map[string]any
			if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
				t.Fatalf("%s: bad line: %v", p, err)
			}
			id := int64(row["id"].(float64))
			if _, dup := out[id]; dup {
				t.Fatalf("row %d of %s stored twice (again in %s)", id, table, p)
			}
			out[id] = row
		}
	}
	return out
}
