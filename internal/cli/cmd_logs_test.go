package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sessions"
)

// The jobs' directory is on the data volume, which the sandbox writes: a
// link there (at any level) must not make `mlagent logs` list or print a
// host directory's files.
func TestLogsStayInTheVolume(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	for _, id := range []string{"s-ok", "s-jobs", "s-shell", "s-sessions"} {
		addSessions(t, home, sessions.Session{ID: id, Started: time.Now(), Volumes: sandbox.DefaultMounts()})
	}
	host := t.TempDir() // a host directory that happens to hold job logs
	for _, p := range []string{"job1.log", "jobs/job1.log", "s-sessions.shell/jobs/job1.log"} {
		os.MkdirAll(filepath.Dir(filepath.Join(host, p)), 0o755)
		os.WriteFile(filepath.Join(host, p), []byte("HOST SECRET\n"), 0o600)
	}
	data := filepath.Join(home, "volumes", "data", "sessions")
	os.MkdirAll(filepath.Join(data, "s-ok.shell", "jobs"), 0o755)
	os.WriteFile(filepath.Join(data, "s-ok.shell", "jobs", "job1.log"), []byte("epoch 1\n"), 0o644)
	os.MkdirAll(filepath.Join(data, "s-jobs.shell"), 0o755)
	os.Symlink(host, filepath.Join(data, "s-jobs.shell", "jobs"))
	os.Symlink(host, filepath.Join(data, "s-shell.shell"))

	env, out, errb := homeEnv(t, home)
	if code := run(ctx, env, []string{"logs", "--no-follow", "s-ok", "job1"}); code != 0 || out.String() != "epoch 1\n" {
		t.Errorf("logs of a job in the volume: exit %d, %q %q; want its output", code, out, errb)
	}
	check := func(ids ...string) {
		for _, id := range ids {
			for _, args := range [][]string{{"logs", "--no-follow", id, "job1"}, {"logs", id}} {
				env, out, errb := homeEnv(t, home)
				code := run(ctx, env, args)
				if strings.Contains(out.String()+errb.String(), "HOST SECRET") || strings.Contains(out.String(), "job1 ") {
					t.Errorf("%q (exit %d) read the host directory: %q %q", args, code, out, errb)
				}
			}
		}
	}
	check("s-jobs", "s-shell")
	// The whole sessions/ directory a link.
	os.RemoveAll(data)
	os.Symlink(host, data)
	check("s-sessions")
}
