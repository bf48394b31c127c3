package cli_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const fakeHFToken = "hf_e2e-REAL-token-stays-outside"

// TestApprovalHoldsHubWrite: the model asks for a Hub write; the fake Hub
// sees nothing until the person approves it in the chat, and nothing at
// all when they deny it, in which case the agent reads why.
func TestApprovalHoldsHubWrite(t *testing.T) {
	e := newE2E(t)
	var mu sync.Mutex
	var hub []string
	fakeHub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		hub = append(hub, r.Method+" "+r.URL.Path+" "+string(body))
		mu.Unlock()
		// Strict as the Hub: only the real token, only this route.
		if r.Header.Get("Authorization") != "Bearer "+fakeHFToken || r.Method != "POST" || r.URL.Path != "/api/repos/create" {
			http.Error(w, `{"error":"unexpected request"}`, http.StatusBadRequest)
			return
		}
		io.WriteString(w, `{"url":"https://huggingface.co/you/eurosat-cnn"}`)
	}))
	defer fakeHub.Close()
	hubRequests := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), hub...)
	}
	e.env = append(e.env, "MLAGENT_HF_UPSTREAM="+fakeHub.URL, "HF_TOKEN="+fakeHFToken)

	tm := startTerm(t, e.command(true, e.chatArgs("run", pushPrompt)...))
	tm.waitFor("Allow hub:create you/eurosat-cnn?")
	tm.waitFor("Always: hub:create you/eurosat-cnn")
	time.Sleep(300 * time.Millisecond)
	if got := hubRequests(); len(got) != 0 {
		t.Fatalf("the Hub got %q before the write was approved", got)
	}
	tm.send("y\r")
	tm.waitFor("Hub replied: ")
	tm.waitFor("https://huggingface.co/you/eurosat-cnn")
	if got := hubRequests(); len(got) != 1 || !strings.Contains(got[0], `"organization":"you"`) {
		t.Fatalf("after approval the Hub got %q; want the one create", got)
	}

	// Denied: never reaches the Hub; the agent's tool output says why.
	tm.send(pushPrompt + " again\r")
	tm.waitFor("Allow hub:create you/eurosat-cnn?")
	tm.send("not under my name\r")
	tm.waitFor("was not approved by the user: the user said: not under my name")
	if got := hubRequests(); len(got) != 1 {
		t.Errorf("a denied write reached the Hub: %q", got)
	}
	tm.send("/exit\r")
	if err := tm.cmd.Wait(); err != nil {
		t.Fatalf("mlagent run: %v\n%s", err, tm.all())
	}
}
