package cli

import (
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/mlagent/mlagent/internal/config"
	"github.com/mlagent/mlagent/internal/sandbox"
)

// limitFlags are --cpus, --memory and --pids, shared by the commands that
// create sandboxes; defaults come from config sandbox.cpus, sandbox.memory
// and sandbox.pids.
type limitFlags struct {
	cpus   float64
	memory string
	pids   int
}

func (l *limitFlags) register(fs *flag.FlagSet, cfg *config.Config) {
	fs.Float64Var(&l.cpus, "cpus", cfg.Sandbox.CPUs, "CPU limit, e.g. 2.5; 0 = none (config sandbox.cpus; needs cgroups: root or a delegated cgroup v2 subtree)")
	fs.StringVar(&l.memory, "memory", cfg.Sandbox.Memory, `memory limit, e.g. 8G or 512M; "" = none (config sandbox.memory)`)
	fs.IntVar(&l.pids, "pids", cfg.Sandbox.Pids, "most processes and threads at once, against fork bombs; 0 = none (config sandbox.pids)")
}

// pidsLimit is --pids as sandbox.Spec.Pids.
func (l *limitFlags) pidsLimit() (int, error) {
	switch {
	case l.pids < 0:
		return 0, fmt.Errorf("--pids %d: want a number of processes ≥ 0", l.pids)
	case l.pids == 0:
		return sandbox.NoPidsLimit, nil
	}
	return l.pids, nil
}

// values checks the flags and returns the CPU and byte limits.
func (l *limitFlags) values() (float64, int64, error) {
	if l.cpus < 0 || math.IsNaN(l.cpus) || math.IsInf(l.cpus, 0) {
		return 0, 0, fmt.Errorf("--cpus %v: want a number of CPUs ≥ 0", l.cpus)
	}
	mem, err := parseBytes(l.memory)
	if err != nil {
		return 0, 0, fmt.Errorf("--memory: %v", err)
	}
	return l.cpus, mem, nil
}

// parseBytes is parseSize for a sandbox's memory: at least 4 MiB.
func parseBytes(s string) (int64, error) {
	n, err := parseSize(s)
	if err == nil && n > 0 && n < 4<<20 {
		return 0, fmt.Errorf("size %q: under 4 MiB, too small to start a sandbox", s)
	}
	return n, err
}

// parseSize reads a size like 8G, 512MiB, 1.5g or 1048576; units are
// binary (K = 1024), as in docker's --memory. "" is 0.
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if t == "" || t == "0" {
		return 0, nil
	}
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := 1.0
	if n := len(t); n > 0 {
		if i := strings.IndexByte("KMGT", t[n-1]); i >= 0 {
			mult = math.Pow(1024, float64(i+1))
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || v < 0 || math.IsInf(v*mult, 0) || v*mult >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit, e.g. 8G or 512M", s)
	}
	return int64(v * mult), nil
}
