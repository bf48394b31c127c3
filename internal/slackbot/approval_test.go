package slackbot

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/fakeapi"
	"github.com/mlagent/mlagent/internal/gateway"
	"github.com/mlagent/mlagent/internal/notion"
	"github.com/mlagent/mlagent/internal/notion/notiontest"
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/slackbot/slacktest"
)

// A write the gateway holds (a Notion page outside the parents the user
// chose) waits for a click in the thread: denied, nothing reaches Notion;
// allowed, the page is made.
func TestSlackApprovesHeldWrites(t *testing.T) {
	nt := notiontest.New(t)
	parent := nt.AddPage("Somebody's page", "")
	write := `python3 -c '
import os, json, urllib.request, urllib.error
req = urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/notion/v1/pages", method="POST",
    data=json.dumps({"parent": {"page_id": "` + parent + `"}, "properties": {"title": {"title": [{"type": "text", "text": {"content": "Report"}}]}}}).encode(),
    headers={"Authorization": "Bearer " + os.environ["ANTHROPIC_API_KEY"], "Notion-Version": "2022-06-28", "Content-Type": "application/json"})
try:
    print("status", urllib.request.urlopen(req, timeout=60).status)
except urllib.error.HTTPError as e:
    print("status", e.code)
'`
	script := &fakeapi.Script{Steps: []func(*fakeapi.Request) *fakeapi.Reply{
		func(*fakeapi.Request) *fakeapi.Reply {
			return fakeapi.ToolCalls("", fakeapi.ToolUse("q0", "ask_user", map[string]any{"question": "Publish where?", "choices": []string{"here", "there"}}))
		},
		func(req *fakeapi.Request) *fakeapi.Reply {
			// A free-text reply in the thread answers the question.
			last := req.Messages[len(req.Messages)-1]
			if len(last.Content) == 0 || !strings.Contains(string(last.Content[0].Content), "under Reports please") {
				return fakeapi.Text("the free-text answer did not arrive")
			}
			return fakeapi.ToolCalls("", fakeapi.ToolUse("w1", "bash", map[string]any{"command": write}))
		},
		func(*fakeapi.Request) *fakeapi.Reply { return fakeapi.Text("first try done") },
		func(*fakeapi.Request) *fakeapi.Reply {
			return fakeapi.ToolCalls("", fakeapi.ToolUse("w2", "bash", map[string]any{"command": write}))
		},
		func(*fakeapi.Request) *fakeapi.Reply { return fakeapi.Text("second try done") },
	}}
	e := startEnv(t, script, []gateway.Service{notion.Service(nt.Token, nt.URL, notion.NewPolicy(nil))},
		Config{Users: []string{"U1"}, Channels: []string{"*"}, MaxSandboxes: 1})
	fake, model := e.fake, e.model
	root := fake.Event("message", "U1", "D1", "", "publish the report", nil) // a DM
	fake.WaitText(root, "Publish where?", 60*time.Second)
	fake.Event("message", "U1", "D1", root, "under Reports please", nil)
	fake.WaitText(root, "→ <@U1>: under Reports please", 10*time.Second)
	// The gateway's approval ids are random (the sandbox must not guess
	// them): each new one is found by its buttons.
	buttonID := regexp.MustCompile(`"(` + protocol.GatewayIDPrefix + `[A-Za-z0-9]+)\|allow"`)
	seen := map[string]bool{}
	for i, decision := range []string{"deny", "allow"} {
		var ask slacktest.Message
		var id string
		fake.WaitFor("approval buttons", 60*time.Second, func(msgs []slacktest.Message, _ []slacktest.Upload) bool {
			for _, m := range msgs {
				if sm := buttonID.FindStringSubmatch(string(m.Blocks)); m.ThreadTS == root && sm != nil && !seen[sm[1]] {
					ask, id = m, sm[1]
					seen[id] = true
					return true
				}
			}
			return false
		})
		if !strings.Contains(ask.Text, "notion:create") {
			t.Errorf("approval text %q; want the action named", ask.Text)
		}
		// What is held, as the gateway saw it: the Notion host, the path, the size.
		if host := strings.TrimPrefix(nt.URL, "http://"); !strings.Contains(ask.Text, "POST "+host+"/v1/pages, ") {
			t.Errorf("approval text %q; want the held request POST %s/v1/pages and its size", ask.Text, host)
		}
		if len(nt.ChildrenOf(parent)) != 0 {
			t.Fatal("the write reached Notion before the click")
		}
		fake.Click("U1", ask, "mlagent_approve", id+"|"+decision)
		want := []string{"first try done", "second try done"}[i]
		fake.WaitText(root, want, 60*time.Second)
		if n := len(nt.ChildrenOf(parent)); n != i {
			t.Errorf("after %s: %d pages in Notion; want %d", decision, n, i)
		}
		if i == 0 {
			fake.Event("message", "U1", "D1", root, "try again", nil)
		}
	}
	var all strings.Builder
	for _, m := range fake.Messages() {
		all.WriteString(m.Text + "\n")
	}
	for _, want := range []string{"🚫 denied by <@U1>", "✅ allowed by <@U1>"} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("thread lacks %q:\n%s", want, all.String())
		}
	}
	// What the sandbox saw: 403 after the denial, 200 after the approval.
	var results strings.Builder
	for _, r := range model.Requests() {
		results.Write(r.Body)
	}
	for _, want := range []string{`status 403`, `status 200`} {
		if !strings.Contains(results.String(), want) {
			t.Errorf("the sandbox's command did not print %q", want)
		}
	}
}
