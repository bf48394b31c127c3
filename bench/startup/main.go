// Command startup times mlagent as the whole process a user runs, side
// by side with the floor: `mlagent sandbox run -- true` (the store, the
// in-process gateway and its token, the sandbox, the command, the
// teardown) against bubblewrap alone running /usr/bin/true with the same
// namespaces, interleaved round by round so that both meet the same load.
// With -run it also times `mlagent run -p` from its start to the model
// request arriving at a fake model API (time to first model request).
// Besides wall time it reports the CPU time (user + system) the whole
// process tree used, which a loaded machine inflates far less.
//
//	go build -o /tmp/mlagent ./cmd/mlagent && go run ./bench/startup -binary /tmp/mlagent -n 40
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mlagent/mlagent/internal/fakeapi"
)

func main() {
	binary := flag.String("binary", "", "the mlagent binary to time (go build -o /tmp/mlagent ./cmd/mlagent)")
	n := flag.Int("n", 30, "rounds; each runs every variant once, in turn")
	runP := flag.Bool("run", true, "also time mlagent run -p to its first model request")
	extra := flag.String("args", "", "extra arguments for sandbox run, space separated (e.g. --no-gateway)")
	flag.Parse()
	if *binary == "" {
		log.Fatal("-binary is required")
	}
	bw, err := exec.LookPath("bwrap")
	if err != nil {
		log.Fatal(err)
	}
	root, err := os.MkdirTemp("", "mlst")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	env := append(os.Environ(), "MLAGENT_HOME="+filepath.Join(root, "home"),
		"XDG_CONFIG_HOME="+filepath.Join(root, "config"), "ANTHROPIC_API_KEY=sk-ant-bench")

	var cpuBare, cpuML []time.Duration
	cpu := func(cmd *exec.Cmd) time.Duration { return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime() }
	bare := func() time.Duration {
		start := time.Now()
		cmd := exec.Command(bw, "--unshare-user", "--uid", "1000", "--gid", "1000", "--unshare-pid", "--unshare-ipc",
			"--unshare-uts", "--unshare-net", "--unshare-cgroup-try", "--disable-userns", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
			"--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
			"--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
			"--", "/usr/bin/true")
		if out, err := cmd.CombinedOutput(); err != nil {
			log.Fatalf("bare bwrap: %v: %s", err, out)
		}
		d := time.Since(start)
		cpuBare = append(cpuBare, cpu(cmd))
		return d
	}
	args := []string{"sandbox", "run"}
	if *extra != "" {
		args = append(args, strings.Fields(*extra)...)
	}
	args = append(args, "--", "true")
	mlagent := func() time.Duration {
		start := time.Now()
		cmd := exec.Command(*binary, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			log.Fatalf("mlagent %s: %v: %s", strings.Join(args, " "), err, out)
		}
		d := time.Since(start)
		cpuML = append(cpuML, cpu(cmd))
		return d
	}

	// time to first model request: a fake model API notes when the
	// request arrives, and answers at once.
	arrived := make(chan time.Time, 1)
	api := fakeapi.Start(fakeapi.Options{APIKey: "sk-ant-bench", Responder: fakeapi.ResponderFunc(func(*fakeapi.Request) *fakeapi.Reply {
		select {
		case arrived <- time.Now():
		default:
		}
		return fakeapi.Text("ok")
	})})
	defer api.Close()
	runToRequest := func() time.Duration {
		start := time.Now()
		cmd := exec.Command(*binary, "run", "-p", "--base-url", api.URL(), "--model", "claude-sonnet-5-5", "--dashboard-listen", "off", "hello")
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			log.Fatalf("mlagent run -p: %v: %s", err, out)
		}
		select {
		case t := <-arrived:
			return t.Sub(start)
		default:
			log.Fatal("mlagent run -p: no model request arrived")
		}
		return 0
	}

	mlagent() // the first run migrates the store; not a user's every run
	cpuML = nil
	var b, m, r []time.Duration
	for i := range *n {
		// Alternate the order, so that neither always runs first.
		if i%2 == 0 {
			b, m = append(b, bare()), append(m, mlagent())
		} else {
			m, b = append(m, mlagent()), append(b, bare())
		}
		if *runP {
			r = append(r, runToRequest())
		}
	}
	report := func(name string, d []time.Duration) time.Duration {
		slices.Sort(d)
		med := d[len(d)/2]
		fmt.Printf("%-44s median %6.1f ms  p10 %6.1f  p90 %6.1f  (n=%d)\n", name, ms(med), ms(d[len(d)/10]), ms(d[len(d)*9/10]), len(d))
		return med
	}
	mb := report("bare bwrap … /usr/bin/true", b)
	mm := report("mlagent "+strings.Join(args, " "), m)
	fmt.Printf("ratio of medians: %.2f×\n", float64(mm)/float64(mb))
	cb := report("CPU (user+sys) of bare bwrap", cpuBare)
	cm := report("CPU (user+sys) of mlagent "+strings.Join(args, " "), cpuML)
	fmt.Printf("ratio of CPU medians: %.2f×\n", float64(cm)/float64(cb))
	if *runP {
		report("mlagent run -p: start → first model request", r)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
