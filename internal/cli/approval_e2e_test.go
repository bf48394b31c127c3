package cli_test

import (
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/fakehub"
)

const fakeHFToken = "hf_e2e-REAL-token-stays-outside"

// TestApprovalHoldsHubWrite: the model asks for a Hub write; the fake Hub
// sees nothing until the person approves it in the chat, and nothing at
// all when they deny it, in which case the agent reads why.
func TestApprovalHoldsHubWrite(t *testing.T) {
	e := newE2E(t)
	hub := fakehub.Start(fakehub.Options{Token: fakeHFToken})
	defer hub.Close()
	e.env = append(e.env, "MLAGENT_HF_UPSTREAM="+hub.URL(), "HF_TOKEN="+fakeHFToken)

	tm := startTerm(t, e.command(true, e.chatArgs("run", pushPrompt)...))
	tm.waitFor("Allow hub:create you/eurosat-cnn?")
	tm.waitFor("Always: hub:create you/eurosat-cnn")
	time.Sleep(300 * time.Millisecond)
	if got := hub.Requests(); len(got) != 0 {
		t.Fatalf("the Hub got %q before the write was approved", got)
	}
	tm.send("y\r")
	tm.waitFor("Hub replied: ")
	tm.waitFor("https://huggingface.co/you/eurosat-cnn")
	if _, ok := hub.Repo("model", "you/eurosat-cnn"); !ok || len(hub.Requests()) != 1 {
		t.Fatalf("after approval the Hub got %q; want the one create of you/eurosat-cnn", hub.Requests())
	}

	// Denied: never reaches the Hub; the agent's tool output says why.
	tm.send(pushPrompt + " again\r")
	tm.waitFor("Allow hub:create you/eurosat-cnn?")
	tm.send("not under my name\r")
	tm.waitFor("was not approved by the user: the user said: not under my name")
	if got := hub.Requests(); len(got) != 1 {
		t.Errorf("a denied write reached the Hub: %q", got)
	}
	tm.send("/exit\r")
	if err := tm.cmd.Wait(); err != nil {
		t.Fatalf("mlagent run: %v\n%s", err, tm.all())
	}
}
