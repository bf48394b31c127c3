package cli

import (
	"io"
	"net/http"
	"strings"
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
