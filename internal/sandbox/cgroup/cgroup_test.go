package cgroup

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeHost lays out a cgroup tree under a temporary directory.
func fakeHost(t *testing.T, mountinfo, self string, files map[string]string) (host, string) {
	t.Helper()
	root := t.TempDir()
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(root, "mountinfo"), []byte(mountinfo), 0o644)
	os.WriteFile(filepath.Join(root, "self"), []byte(self), 0o644)
	return host{mountinfo: filepath.Join(root, "mountinfo"), selfCgroup: filepath.Join(root, "self"), prefix: root}, root
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// On a unified (v2) host the group is a sibling of this process's own,
// with the parent's controllers enabled for children.
func TestCreateV2(t *testing.T) {
	h, root := fakeHost(t,
		"30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
		"0::/user.slice/app.slice/term.scope\n",
		map[string]string{
			"sys/fs/cgroup/user.slice/app.slice/cgroup.controllers":     "cpu io memory pids\n",
			"sys/fs/cgroup/user.slice/app.slice/cgroup.subtree_control": "",
		})
	g, err := h.create("s1", Limits{CPUs: 0.5, MemoryBytes: 64 << 20, Pids: 1024})
	if err != nil {
		t.Fatal(err)
	}
	parent := filepath.Join(root, "sys/fs/cgroup/user.slice/app.slice")
	if !g.V2 || len(g.dirs) != 1 || filepath.Dir(g.dirs[0]) != parent || !strings.HasPrefix(filepath.Base(g.dirs[0]), "mlagent-s1-") {
		t.Fatalf("group %+v; want v2 at %s/mlagent-s1-…", g, parent)
	}
	dir := g.dirs[0]
	if got := read(t, filepath.Join(dir, "memory.max")); got != "67108864" {
		t.Errorf("memory.max = %q", got)
	}
	if got := read(t, filepath.Join(dir, "cpu.max")); got != "50000 100000" {
		t.Errorf("cpu.max = %q", got)
	}
	if got := read(t, filepath.Join(dir, "pids.max")); got != "1024" {
		t.Errorf("pids.max = %q", got)
	}
	if got := read(t, filepath.Join(root, "sys/fs/cgroup/user.slice/app.slice/cgroup.subtree_control")); !strings.HasPrefix(got, "+") {
		t.Errorf("subtree_control = %q; want controllers enabled", got)
	}
	if err := g.Add(4242); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(dir, "cgroup.procs")); got != "4242" {
		t.Errorf("cgroup.procs = %q", got)
	}
}

// A hybrid host (v2 mounted without the controllers, as on this CI
// machine) falls back to the v1 hierarchies, each under our own group.
func TestCreateV1Hybrid(t *testing.T) {
	h, root := fakeHost(t,
		"32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"+
			"35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"+
			"36 31 0:33 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"+
			"41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
		"8:pids:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/\n0::/\n",
		map[string]string{
			"sys/fs/cgroup/unified/cgroup.controllers":   "hugetlb\n",
			"sys/fs/cgroup/memory/process_api/abc/tasks": "",
			"sys/fs/cgroup/cpu,cpuacct/cgroup.procs":     "",
			"sys/fs/cgroup/pids/cgroup.procs":            "",
		})
	g, err := h.create("s2", Limits{CPUs: 2, MemoryBytes: 1 << 30, Pids: 64})
	if err != nil {
		t.Fatal(err)
	}
	if g.V2 || len(g.dirs) != 3 || !strings.HasPrefix(filepath.Base(g.dirs[0]), "mlagent-s2-") {
		t.Fatalf("group %+v; want v1 groups mlagent-s2-…", g)
	}
	pids := filepath.Join(root, "sys/fs/cgroup/pids", filepath.Base(g.dirs[0]))
	if g.dirs[2] != pids {
		t.Fatalf("group %+v; want the pids group at %s", g, pids)
	}
	if got := read(t, filepath.Join(pids, "pids.max")); got != "64" {
		t.Errorf("pids.max = %q", got)
	}
	mem := filepath.Join(root, "sys/fs/cgroup/memory/process_api/abc", filepath.Base(g.dirs[0]))
	cpu := filepath.Join(root, "sys/fs/cgroup/cpu,cpuacct", filepath.Base(g.dirs[0]))
	if g.dirs[0] != mem || g.dirs[1] != cpu {
		t.Fatalf("group %+v; want v1 at %s and %s", g, mem, cpu)
	}
	if got := read(t, filepath.Join(mem, "memory.limit_in_bytes")); got != "1073741824" {
		t.Errorf("memory.limit_in_bytes = %q", got)
	}
	if got := read(t, filepath.Join(cpu, "cpu.cfs_quota_us")); got != "200000" {
		t.Errorf("cpu.cfs_quota_us = %q", got)
	}
}

// A v2 parent without the pids controller cannot bound processes; the
// error names the controller.
func TestCreateV2WithoutPids(t *testing.T) {
	h, _ := fakeHost(t,
		"30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
		"0::/user.slice/app.slice/term.scope\n",
		map[string]string{"sys/fs/cgroup/user.slice/app.slice/cgroup.controllers": "cpu memory\n"})
	if _, err := h.create("s4", Limits{Pids: 10}); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "pids") {
		t.Fatalf("got %v; want ErrUnavailable naming the pids controller", err)
	}
}

func TestCreateUnavailable(t *testing.T) {
	h, _ := fakeHost(t, "22 1 0:21 / / rw - ext4 /dev/sda1 rw\n", "0::/\n", nil)
	if _, err := h.create("s3", Limits{MemoryBytes: 1 << 20}); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "memory") {
		t.Fatalf("got %v; want ErrUnavailable naming the memory controller", err)
	}
	g, err := h.create("s3", Limits{})
	if err != nil || len(g.dirs) != 0 {
		t.Fatalf("no limits: got %+v, %v; want an empty group", g, err)
	}
	if err := g.Add(1); err != nil {
		t.Fatalf("Add to an empty group: %v", err)
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/plain`: "/plain", `/end\04`: `/end\04`} {
		if got := UnescapeMountinfo(in); got != want {
			t.Errorf("UnescapeMountinfo(%q) = %q; want %q", in, got, want)
		}
	}
}

// spinCPU is the CPU time the "spin" child burns.
const spinCPU = 400 * time.Millisecond

// processCPU is the CPU time this process has used, all threads.
func processCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}

// child is the process the real-cgroup tests put in a group: it waits for
// a byte on stdin (so it has joined before it works), then allocates or
// spins as CGROUP_TEST_CHILD says.
func TestMain(m *testing.M) {
	switch os.Getenv("CGROUP_TEST_CHILD") {
	case "alloc":
		os.Stdin.Read(make([]byte, 1))
		b := make([]byte, 512<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		os.Exit(0)
	case "fork":
		// Start children that sleep until stdin closes, as many as the
		// group lets us, up to 200, and print how many.
		os.Stdin.Read(make([]byte, 1))
		n := 0
		var kids []*exec.Cmd
		for i := 0; i < 200; i++ {
			c := exec.Command("sleep", "30")
			if c.Start() != nil {
				continue
			}
			kids = append(kids, c)
			n++
		}
		os.Stdout.WriteString(strconv.Itoa(n) + "\n")
		for _, c := range kids {
			c.Process.Kill()
			c.Wait()
		}
		os.Exit(0)
	case "spin":
		// Spin until the process has had spinCPU of CPU time, however
		// long a loaded machine takes to give it that much.
		os.Stdin.Read(make([]byte, 1))
		for processCPU() < spinCPU {
			for i := 0; i < 1e5; i++ {
			}
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startChild starts the test binary as a child of the given kind inside g.
func startChild(t *testing.T, g *Group, kind string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CGROUP_TEST_CHILD="+kind, "GOMAXPROCS=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := g.Add(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("Add: %v", err)
	}
	in.Write([]byte{1})
	in.Close()
	return cmd
}

func realGroup(t *testing.T, l Limits) *Group {
	t.Helper()
	g, err := New("test-"+strconv.Itoa(os.Getpid())+"-"+t.Name(), l)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("this host gives no cgroup to limit (needs root or a delegated cgroup v2 subtree): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Remove(); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
	return g
}

func TestMemoryLimitKills(t *testing.T) {
	g := realGroup(t, Limits{MemoryBytes: 64 << 20})
	cmd := startChild(t, g, "alloc")
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != -1 {
		t.Fatalf("a child touching 512 MiB under a 64 MiB limit: %v; want it killed", err)
	}
	if n := g.OOMKills(); n < 1 {
		t.Errorf("OOMKills = %d; want ≥ 1", n)
	}
}

func TestPidsLimitRefusesForks(t *testing.T) {
	g := realGroup(t, Limits{Pids: 20})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CGROUP_TEST_CHILD=fork", "GOMAXPROCS=1")
	in, _ := cmd.StdinPipe()
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := g.Add(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("Add: %v", err)
	}
	in.Write([]byte{1})
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	// The child's own threads count too: fewer than 20 children start.
	n, err := strconv.Atoi(strings.TrimSpace(out.String()))
	if err != nil || n >= 20 || n == 0 {
		t.Errorf("children started under a 20-task limit: %q; want some, and under 20", out.String())
	}
	if _, refused := g.Tasks(); refused < 1 {
		t.Errorf("Tasks: %d forks refused; want the refusals counted", refused)
	}
}

func TestCPULimitThrottles(t *testing.T) {
	g := realGroup(t, Limits{CPUs: 0.2})
	start := time.Now()
	cmd := startChild(t, g, "spin")
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start)
	used := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	// The child stops after a fixed amount of CPU time, not of wall time:
	// a loaded machine only makes it take longer, so the rate it got can
	// only fall below the limit, never rise above it. Under 0.2 CPUs,
	// 0.4 s of CPU takes about 2 s (0.3 leaves room for the CPU the child
	// used before joining, and a first period's full quota).
	if rate := used.Seconds() / wall.Seconds(); rate > 0.3 {
		t.Errorf("child used %v of CPU in %v (%.2f CPUs) under a 0.2 CPU limit", used, wall.Round(time.Millisecond), rate)
	}
	stat := read(t, filepath.Join(g.dirs[0], "cpu.stat"))
	if !strings.Contains(stat, "nr_throttled") || strings.Contains(stat, "nr_throttled 0\n") {
		t.Errorf("cpu.stat shows no throttling:\n%s", stat)
	}
}

// Two groups for sandboxes of the same name (two homes, or a Create that
// reuses a running sandbox's name) are distinct: neither retunes the other.
func TestSameNameDistinctGroups(t *testing.T) {
	a := realGroup(t, Limits{MemoryBytes: 512 << 20})
	b, err := New("test-"+strconv.Itoa(os.Getpid())+"-"+t.Name(), Limits{MemoryBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Remove()
	if a.dirs[0] == b.dirs[0] {
		t.Fatalf("both groups are %s", a.dirs[0])
	}
	if got := strings.TrimSpace(read(t, filepath.Join(a.dirs[0], "memory.limit_in_bytes"))); a.V2 == false && got != "536870912" {
		t.Errorf("first group's limit became %s", got)
	}
}

// Load refuses a saved file naming anything but a sandbox group inside a
// cgroup hierarchy, so a tampered file cannot make Remove delete it.
func TestLoadRefusesForeignPaths(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "mlagent-x")
	os.Mkdir(victim, 0o755)
	for _, content := range []string{victim, "/sys/fs/cgroup/memory/../../../" + victim, "relative/mlagent-x", "/sys/fs/cgroup/memory/not-ours"} {
		f := filepath.Join(dir, "cgroup")
		os.WriteFile(f, []byte(content+"\n"), 0o600)
		if g, err := Load(f); err == nil {
			t.Errorf("Load(%q) = %v; want it refused", content, g.dirs)
		}
	}
	if _, err := os.Stat(victim); err != nil {
		t.Fatal(err)
	}
}

// Sweep removes only old, empty mlagent groups where New makes them.
func TestSweep(t *testing.T) {
	h, root := fakeHost(t,
		"36 31 0:33 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n",
		"8:pids:/\n0::/\n",
		map[string]string{"sys/fs/cgroup/pids/cgroup.procs": ""})
	base := filepath.Join(root, "sys/fs/cgroup/pids")
	for _, d := range []string{"mlagent-old-1", "mlagent-new-2", "other-old", "mlagent-busy-3"} {
		os.Mkdir(filepath.Join(base, d), 0o755)
	}
	// A real cgroup with processes refuses rmdir; a fake one with a file.
	os.WriteFile(filepath.Join(base, "mlagent-busy-3", "cgroup.procs"), []byte("42\n"), 0o644)
	old := time.Now().Add(-time.Hour)
	for _, d := range []string{"mlagent-old-1", "other-old", "mlagent-busy-3"} {
		os.Chtimes(filepath.Join(base, d), old, old)
	}
	if n := h.sweep(10*time.Minute, time.Now()); n != 1 {
		t.Errorf("swept %d; want 1", n)
	}
	for d, want := range map[string]bool{"mlagent-old-1": false, "mlagent-new-2": true, "other-old": true, "mlagent-busy-3": true} {
		if _, err := os.Stat(filepath.Join(base, d)); (err == nil) != want {
			t.Errorf("%s there = %v; want %v", d, err == nil, want)
		}
	}
}
