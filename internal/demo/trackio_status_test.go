package demo

import (
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mlagent/mlagent/internal/dashboard"
)

// TestTrackioLiteEndMarker: trackio_lite marks a run finished on
// finish(), crashed on an uncaught exception, and clears the mark when the
// run resumes, under the project_metadata key the dashboard reads.
func TestTrackioLiteEndMarker(t *testing.T) {
	py := requirePython(t, "sqlite3, json")
	dir := t.TempDir()
	if err := WriteScripts(dir); err != nil {
		t.Fatal(err)
	}
	tdir := filepath.Join(dir, "trackio")
	run := func(prog string, wantOK bool) {
		t.Helper()
		cmd := exec.Command(py, "-c", prog)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TRACKIO_DIR="+tdir, "PYTHONDONTWRITEBYTECODE=1")
		out, err := cmd.CombinedOutput()
		if (err == nil) != wantOK {
			t.Fatalf("python: %v\n%s", err, out)
		}
	}
	run(`import trackio_lite as t
t.init(project="p", name="ok")
t.log({"loss": 1.0})
t.finish()
`, true)
	run(`import trackio_lite as t
t.init(project="p", name="boom")
t.log({"loss": 1.0})
raise RuntimeError("diverged")
`, false)
	status := func() map[string]string {
		t.Helper()
		db, err := sql.Open("sqlite", filepath.Join(tdir, "p.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		rows, err := db.Query(`SELECT c.run_name, m.value FROM project_metadata m JOIN configs c ON m.key = ? || c.run_id`, dashboard.MarkerPrefix)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]string{}
		for rows.Next() {
			var name, v string
			rows.Scan(&name, &v)
			out[name] = v
		}
		return out
	}
	if got := status(); got["ok"] != "finished" || got["boom"] != "crashed" {
		t.Fatalf("end markers = %v; want ok finished, boom crashed", got)
	}
	run(`import trackio_lite as t
t.init(project="p", name="boom", resume="allow")
t.log({"loss": 0.5})
import os; os._exit(0)
`, true)
	if got := status(); got["boom"] != "" || got["ok"] != "finished" {
		t.Fatalf("end markers after resuming boom = %v; want boom's cleared", got)
	}
}
