package cli

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/trackio/trackiotest"
)

// TestDashboardStopsWithHostileTrackioFiles: the dashboard mlagent run
// serves stops when the chat ends, whatever the sandbox planted in the
// Trackio volume (a FIFO kept the CLI from exiting, even on SIGTERM).
func TestDashboardStopsWithHostileTrackioFiles(t *testing.T) {
	env, _, _ := metricsTestEnv(t, nil)
	trackiotest.PlantHostile(t, trackioDir(env.Config))
	url, stop, err := listenDashboard(env, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Let the follower reach the planted files.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url + "api/projects")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "a-fifo") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(15 * time.Second):
		t.Fatal("stopping the dashboard still blocked after 15s")
	}
}

// TestDashboardCommandExitsOnSIGTERM: `mlagent dashboard` over a Trackio
// directory holding a FIFO, a symlink and a recursive view still serves,
// and exits promptly on SIGTERM (it used to hang in open(2) and ignore it).
func TestDashboardCommandExitsOnSIGTERM(t *testing.T) {
	bin := buildMlagent(t)
	dir := t.TempDir()
	trackiotest.PlantHostile(t, dir)
	cmd := exec.Command(bin, "dashboard", "--dir", dir, "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "MLAGENT_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "dashboard: http://") {
		t.Fatalf("first line %q, %v; want the address", line, err)
	}
	base := strings.Fields(strings.TrimPrefix(line, "dashboard: "))[0]
	// Give the follower time to reach the planted files.
	var projects string
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(projects, "named pipe") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		if resp, err := http.Get(base + "api/projects"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			projects = string(b)
		}
	}
	defer func() {
		if !strings.Contains(projects, "named pipe") {
			t.Errorf("projects = %s; want the FIFO refused as a named pipe", projects)
		}
	}()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("mlagent dashboard still running 15s after SIGTERM")
	}
}
