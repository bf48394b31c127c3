package bwrap

import (
	"context"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
)

// reportLatency adds the median and p99 of the runs to the benchmark
// output (ns/op alone is a mean).
func reportLatency(b *testing.B, d []time.Duration) {
	slices.Sort(d)
	at := func(q float64) float64 {
		return float64(d[min(len(d)-1, int(q*float64(len(d))))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.5), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}

// BenchmarkCreateExecTerminate is the measure: Create → the first
// command exits → Terminate. Run with -benchtime=100x for ≥ 50 runs.
func BenchmarkCreateExecTerminate(b *testing.B) {
	sandboxtest.RequireBwrap(b)
	be := newTestEnv(b).backend(b)
	ctx := context.Background()
	var d []time.Duration
	var create, exec time.Duration
	for b.Loop() {
		start := time.Now()
		sb, err := be.Create(ctx, sandbox.Spec{Volumes: sandbox.DefaultMounts()})
		if err != nil {
			b.Fatal(err)
		}
		create += time.Since(start)
		t := time.Now()
		if code, err := sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{"true"}}); err != nil || code != 0 {
			b.Fatalf("Exec: %d %v", code, err)
		}
		exec += time.Since(t)
		if err := sb.Terminate(ctx); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(start))
		be.Remove(ctx, sb.Name())
	}
	reportLatency(b, d)
	b.ReportMetric(float64(create.Microseconds())/1000/float64(len(d)), "create-ms")
	b.ReportMetric(float64(exec.Microseconds())/1000/float64(len(d)), "exec-ms")
}

// BenchmarkBareBwrap is the floor: bubblewrap with the same namespaces
// (user, pid, ipc, uts, net, cgroup, and the nested user namespace that
// --disable-userns makes) running /usr/bin/true, no init, no store.
func BenchmarkBareBwrap(b *testing.B) {
	bw := sandboxtest.RequireBwrap(b)
	var d []time.Duration
	for b.Loop() {
		start := time.Now()
		cmd := exec.Command(bw, "--unshare-user", "--uid", "1000", "--gid", "1000", "--unshare-pid", "--unshare-ipc",
			"--unshare-uts", "--unshare-net", "--unshare-cgroup-try", "--disable-userns", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
			"--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
			"--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
			"--", "/usr/bin/true")
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(start))
	}
	reportLatency(b, d)
}

// BenchmarkStartImageVsHost compares Create → first command → Terminate
// on an image root (cached) with the host root, interleaved so that both
// see the same load: each iteration starts one of each, in alternating
// order. Run with -benchtime=30x for a median of 30 each; the target is
// image/host ≤ 1.10.
func BenchmarkStartImageVsHost(b *testing.B) {
	sandboxtest.RequireBwrap(b)
	env := newTestEnv(b)
	be := env.backend(b)
	ref := env.pythonImage(b)
	ctx := context.Background()
	once := func(image string) time.Duration {
		start := time.Now()
		sb, err := be.Create(ctx, sandbox.Spec{Volumes: sandbox.DefaultMounts(), Image: image})
		if err != nil {
			b.Fatal(err)
		}
		if code, err := sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{"true"}}); err != nil || code != 0 {
			b.Fatalf("Exec: %d %v", code, err)
		}
		if err := sb.Terminate(ctx); err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		be.Remove(ctx, sb.Name())
		return d
	}
	var host, img []time.Duration
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			host = append(host, once(""))
			img = append(img, once(ref))
		} else {
			img = append(img, once(ref))
			host = append(host, once(""))
		}
		i++
	}
	med := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Microseconds()) / 1000
	}
	h, m := med(host), med(img)
	b.ReportMetric(h, "host-p50-ms")
	b.ReportMetric(m, "image-p50-ms")
	b.ReportMetric(m/h, "image/host")
}
