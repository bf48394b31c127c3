package skills

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The user skills folder is on the data volume, which sandboxes write;
// `mlagent skills` reads it on the host. A FIFO must not block it, a
// sparse file claiming terabytes must not make it allocate them, and the
// good skills beside them still load.
func TestUserSkillsHostileFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, body string) {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("good/SKILL.md", "---\nname: good\ndescription: fine\n---\nbody\n")
	os.MkdirAll(filepath.Join(dir, "fifo"), 0o755)
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo", "SKILL.md"), 0o644); err != nil {
		t.Fatal(err)
	}
	write("sparse/SKILL.md", "")
	if err := os.Truncate(filepath.Join(dir, "sparse", "SKILL.md"), 15<<40); err != nil {
		t.Skipf("no sparse file of 15 TiB here: %v", err)
	}
	write("big/SKILL.md", "---\nname: big\ndescription: x\n---\n"+strings.Repeat("x", 2<<20))

	type result struct {
		set  *Set
		errs []error
	}
	done := make(chan result, 1)
	go func() {
		set, errs := Load(dir)
		done <- result{set, errs}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Load blocked on a FIFO in the user folder")
	}
	if _, ok := r.set.Get("good"); !ok {
		t.Errorf("the good skill did not load: %v", r.errs)
	}
	if _, ok := r.set.Get("big"); ok {
		t.Errorf("a 2 MiB SKILL.md loaded; want it refused")
	}
	if len(r.errs) != 3 {
		t.Errorf("got errors %v; want one for each of fifo, sparse, big", r.errs)
	}
}
