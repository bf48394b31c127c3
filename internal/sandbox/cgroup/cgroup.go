// Package cgroup puts a sandbox's processes under CPU, memory and process
// count limits with the host's cgroup filesystem: cgroup v2 where its
// controllers are available (a delegated subtree, or the root of a
// container's cgroup namespace), else the v1 memory, cpu and pids
// hierarchies. Creating a group
// needs write access there: root, or a delegated v2 subtree such as a
// systemd user session's. Where that is missing, New says why and the
// caller runs without limits (bubblewrap itself has no cgroup support).
package cgroup

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Limits are what a group enforces; a zero field is no limit.
type Limits struct {
	CPUs        float64 // CPU time per wall-clock second, e.g. 1.5
	MemoryBytes int64   // resident memory (and swap) before the OOM killer
	Pids        int64   // tasks (processes and threads) at once; fork fails beyond
}

// ErrUnavailable wraps every reason a group could not be made.
var ErrUnavailable = errors.New("cgroup limits unavailable")

// Group is one sandbox's cgroup: a directory per hierarchy (one on v2,
// one per controller on v1).
type Group struct {
	dirs []string
	V2   bool
}

// cpuPeriod is the CFS period the CPU quota is expressed in, in µs.
const cpuPeriod = 100000

// host is where the cgroup filesystem and this process's membership are
// read from; tests point it at a fake tree.
type host struct {
	mountinfo  string // /proc/self/mountinfo
	selfCgroup string // /proc/self/cgroup
	prefix     string // prepended to mount points
}

var system = host{mountinfo: "/proc/self/mountinfo", selfCgroup: "/proc/self/cgroup"}

// New creates the group "mlagent-<name>" next to (v2) or under (v1) this
// process's own cgroup and writes the limits. Processes join it with Add.
func New(name string, l Limits) (*Group, error) { return system.create(name, l) }

func (h host) create(name string, l Limits) (*Group, error) {
	if l.CPUs < 0 || l.MemoryBytes < 0 || l.Pids < 0 {
		return nil, fmt.Errorf("%w: negative limit", ErrUnavailable)
	}
	if l.CPUs == 0 && l.MemoryBytes == 0 && l.Pids == 0 {
		return &Group{}, nil
	}
	mounts, err := h.mounts()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	own, err := h.membership()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var need []string
	if l.MemoryBytes > 0 {
		need = append(need, "memory")
	}
	if l.CPUs > 0 {
		need = append(need, "cpu")
	}
	if l.Pids > 0 {
		need = append(need, "pids")
	}
	// A random suffix: two homes (or users) with a sandbox of the same
	// name, or a Create that reuses a running sandbox's name, never share
	// (or retune) one group.
	var rnd [4]byte
	rand.Read(rnd[:])
	leaf := "mlagent-" + name + "-" + hex.EncodeToString(rnd[:])
	var v2err error
	if m, ok := mounts["cgroup2"]; ok {
		g, err := createV2(m, own[""], leaf, need, l)
		if err == nil {
			return g, nil
		}
		v2err = err
	}
	g, err := createV1(mounts, own, leaf, need, l)
	if err != nil {
		if v2err != nil {
			err = fmt.Errorf("%v; cgroup v2: %v", err, v2err)
		}
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return g, nil
}

// mount is a cgroup filesystem mounted at dir, showing the hierarchy
// from root down.
type mount struct{ dir, root string }

// path is where a cgroup path of this hierarchy lies in the filesystem.
func (m mount) path(cg string) (string, error) {
	rel, err := filepath.Rel(m.root, cg)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("cgroup %s is outside the mount of %s", cg, m.root)
	}
	return filepath.Join(m.dir, rel), nil
}

// mounts maps "cgroup2" and each v1 controller to its mount.
func (h host) mounts() (map[string]mount, error) {
	f, err := os.Open(h.mountinfo)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]mount{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts [optional…] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		a, b := strings.Fields(pre), strings.Fields(post)
		if len(a) < 5 || len(b) < 3 {
			continue
		}
		m := mount{dir: h.prefix + UnescapeMountinfo(a[4]), root: UnescapeMountinfo(a[3])}
		switch b[0] {
		case "cgroup2":
			out["cgroup2"] = m
		case "cgroup":
			for _, o := range strings.Split(b[2], ",") {
				if o == "memory" || o == "cpu" || o == "pids" {
					out[o] = m
				}
			}
		}
	}
	return out, sc.Err()
}

// UnescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func UnescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// membership maps each v1 controller (and "" for v2) to this process's
// cgroup path.
func (h host) membership() (map[string]string, error) {
	data, err := os.ReadFile(h.selfCgroup)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out, nil
}

func createV2(m mount, own, leaf string, need []string, l Limits) (*Group, error) {
	if own == "" {
		return nil, errors.New("this process is in no cgroup v2 group")
	}
	// A v2 group with processes cannot also hand controllers to children
	// ("no internal processes"), so the sandbox's group is a sibling of
	// ours. Only the real root is exempt; at the root of a container's
	// cgroup namespace enabling controllers fails while processes live
	// there, and the limits are reported unavailable.
	parentCg := own
	if own != "/" {
		parentCg = filepath.Dir(own)
	}
	parent, err := m.path(parentCg)
	if err != nil {
		return nil, err
	}
	avail, err := os.ReadFile(filepath.Join(parent, "cgroup.controllers"))
	if err != nil {
		return nil, err
	}
	for _, c := range need {
		if !hasWord(string(avail), c) {
			return nil, fmt.Errorf("controller %s is not available in %s", c, parent)
		}
	}
	enabled, _ := os.ReadFile(filepath.Join(parent, "cgroup.subtree_control"))
	for _, c := range need {
		if !hasWord(string(enabled), c) {
			if err := write(filepath.Join(parent, "cgroup.subtree_control"), "+"+c); err != nil {
				return nil, fmt.Errorf("enable %s for children of %s: %w", c, parent, err)
			}
		}
	}
	dir := filepath.Join(parent, leaf)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	g := &Group{dirs: []string{dir}, V2: true}
	if l.MemoryBytes > 0 {
		if err := write(filepath.Join(dir, "memory.max"), strconv.FormatInt(l.MemoryBytes, 10)); err != nil {
			g.Remove()
			return nil, err
		}
		write(filepath.Join(dir, "memory.swap.max"), "0") // absent without swap accounting
	}
	if l.CPUs > 0 {
		if err := write(filepath.Join(dir, "cpu.max"), fmt.Sprintf("%d %d", quota(l.CPUs), cpuPeriod)); err != nil {
			g.Remove()
			return nil, err
		}
	}
	if l.Pids > 0 {
		if err := write(filepath.Join(dir, "pids.max"), strconv.FormatInt(l.Pids, 10)); err != nil {
			g.Remove()
			return nil, err
		}
	}
	return g, nil
}

func createV1(mounts map[string]mount, own map[string]string, leaf string, need []string, l Limits) (*Group, error) {
	g := &Group{}
	for _, c := range need {
		m, ok := mounts[c]
		if !ok {
			g.Remove()
			return nil, fmt.Errorf("no cgroup v1 %s hierarchy is mounted", c)
		}
		base, err := m.path(own[c])
		if err != nil {
			g.Remove()
			return nil, err
		}
		dir := filepath.Join(base, leaf)
		if err := os.Mkdir(dir, 0o755); err != nil {
			g.Remove()
			return nil, fmt.Errorf("create cgroup: %w", err)
		}
		g.dirs = append(g.dirs, dir)
		switch c {
		case "memory":
			v := strconv.FormatInt(l.MemoryBytes, 10)
			err = write(filepath.Join(dir, "memory.limit_in_bytes"), v)
			if err == nil {
				// memsw ≥ memory, so it is set second; absent without swap accounting.
				write(filepath.Join(dir, "memory.memsw.limit_in_bytes"), v)
			}
		case "cpu":
			if err = write(filepath.Join(dir, "cpu.cfs_period_us"), strconv.Itoa(cpuPeriod)); err == nil {
				err = write(filepath.Join(dir, "cpu.cfs_quota_us"), strconv.FormatInt(quota(l.CPUs), 10))
			}
		case "pids":
			err = write(filepath.Join(dir, "pids.max"), strconv.FormatInt(l.Pids, 10))
		}
		if err != nil {
			g.Remove()
			return nil, err
		}
	}
	return g, nil
}

// quota is the CPU time per period for cpus CPUs, at least 1 ms as the
// kernel requires.
func quota(cpus float64) int64 { return max(int64(cpus*cpuPeriod), 1000) }

func hasWord(list, w string) bool {
	for _, f := range strings.Fields(list) {
		if f == w {
			return true
		}
	}
	return false
}

func write(path, v string) error {
	// O_CREATE only matters to a test's fake tree: cgroupfs refuses new files.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(v)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", v, path, err)
	}
	return nil
}

// Add moves a process (all its threads) into the group. Its children
// forked afterwards are born there.
func (g *Group) Add(pid int) error {
	for _, d := range g.dirs {
		if err := write(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// Dirs are the group's directories, for a caller that reports where a
// limit is enforced.
func (g *Group) Dirs() []string { return append([]string(nil), g.dirs...) }

// OOMKills is how many processes of the group the kernel killed for
// exceeding the memory limit, where the kernel reports it.
func (g *Group) OOMKills() int64 {
	for _, d := range g.dirs {
		for _, name := range []string{"memory.events", "memory.oom_control"} { // v2, v1
			data, err := os.ReadFile(filepath.Join(d, name))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(data), "\n") {
				if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					return n
				}
			}
		}
	}
	return 0
}

// Tasks is how many tasks (processes and threads) the group holds, and
// how many forks it refused for its pids limit; -1, -1 without a pids
// controller.
func (g *Group) Tasks() (current, refused int64) {
	current, refused = -1, -1
	for _, d := range g.dirs {
		data, err := os.ReadFile(filepath.Join(d, "pids.current"))
		if err != nil {
			continue
		}
		current, _ = strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		refused = 0
		if ev, err := os.ReadFile(filepath.Join(d, "pids.events")); err == nil {
			for _, line := range strings.Split(string(ev), "\n") {
				if v, ok := strings.CutPrefix(line, "max "); ok {
					refused, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				}
			}
		}
		return current, refused
	}
	return current, refused
}

// Remove deletes the group once its processes are gone; they may take a
// moment to leave after being killed, so it retries for up to a second.
func (g *Group) Remove() error {
	var errs []error
	for _, d := range g.dirs {
		var err error
		for i := 0; i < 100; i++ {
			// rmdir, never unlink: only an (empty) group can go.
			if err = syscall.Rmdir(d); err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	g.dirs = nil
	return errors.Join(errs...)
}

// Save records the group's directories in a file, so that another
// process (mlagent sandbox kill) can remove the group later.
func (g *Group) Save(path string) error {
	return os.WriteFile(path, []byte(strings.Join(g.dirs, "\n")+"\n"), 0o600)
}

// Load reads a group saved with Save. A missing file is an empty group.
func Load(path string) (*Group, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Group{}, nil
	}
	if err != nil {
		return nil, err
	}
	mounts, err := system.mounts()
	if err != nil {
		return nil, err
	}
	g := &Group{}
	for _, d := range strings.Fields(string(data)) {
		// Only directories New makes: a group named mlagent-… inside a
		// mounted cgroup hierarchy. Never rmdir anything else.
		if !strings.HasPrefix(filepath.Base(d), "mlagent-") || filepath.Clean(d) != d || !underMount(d, mounts) {
			return nil, fmt.Errorf("%s: %q is not a sandbox cgroup", path, d)
		}
		g.dirs = append(g.dirs, d)
	}
	return g, nil
}

func underMount(d string, mounts map[string]mount) bool {
	for _, m := range mounts {
		if rel, err := filepath.Rel(m.dir, d); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
			return true
		}
	}
	return false
}

// String says how the limits are enforced, for a sandbox's notes.
func (g *Group) String() string {
	if len(g.dirs) == 0 {
		return "no cgroup"
	}
	if g.V2 {
		return "cgroup v2 " + g.dirs[0]
	}
	return "cgroup v1 " + strings.Join(g.dirs, ", ")
}

// Sweep removes the sandbox groups (mlagent-…) next to where New makes
// them that are empty and older than minAge, and says how many it
// removed: those of sandboxes whose CLI was killed and whose home is gone
// (a test's), so nobody reaps them by name. A group in use holds its
// sandbox's processes and rmdir refuses it; minAge spares one that New
// made and whose processes have not joined yet.
func Sweep(minAge time.Duration) int { return system.sweep(minAge, time.Now()) }

func (h host) sweep(minAge time.Duration, now time.Time) int {
	mounts, err := h.mounts()
	if err != nil {
		return 0
	}
	own, err := h.membership()
	if err != nil {
		return 0
	}
	parents := map[string]bool{}
	for key, m := range mounts {
		cg := own[key]
		if key == "cgroup2" {
			if cg = own[""]; cg != "/" && cg != "" {
				cg = filepath.Dir(cg)
			}
		}
		if cg == "" {
			continue
		}
		if p, err := m.path(cg); err == nil {
			parents[p] = true
		}
	}
	n := 0
	for p := range parents {
		entries, err := os.ReadDir(p)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.IsDir() || !strings.HasPrefix(e.Name(), "mlagent-") {
				continue
			}
			fi, err := e.Info()
			if err != nil || now.Sub(fi.ModTime()) < minAge {
				continue
			}
			if syscall.Rmdir(filepath.Join(p, e.Name())) == nil {
				n++
			}
		}
	}
	return n
}

// Available reports why limits like l cannot be enforced on this host
// (nil when they can), by making and removing a probe group.
func Available(l Limits) error {
	g, err := New("probe-"+strconv.Itoa(os.Getpid()), l)
	if err != nil {
		return err
	}
	return g.Remove()
}
