package slackbot

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/config"
	"github.com/mlagent/mlagent/internal/fakeapi"
	"github.com/mlagent/mlagent/internal/gateway"
	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
	"github.com/mlagent/mlagent/internal/slackbot/slacktest"
	"github.com/mlagent/mlagent/internal/testbin"
	"github.com/mlagent/mlagent/internal/volume"
)

func TestMain(m *testing.M) { os.Exit(testbin.Main(m)) }

const modelKey = "sk-ant-REAL-model-key-for-slack-test"

var uploadRE = regexp.MustCompile(`/data/uploads/\S+/labels\.csv`)

// scriptedModel plays a thread: plan and ask which count, run a command
// on the attached file, share the result, report.
func scriptedModel(req *fakeapi.Request) *fakeapi.Reply {
	first := req.Messages[0]
	var task string
	for _, b := range first.Content {
		task += b.Text
	}
	upload := uploadRE.FindString(task)
	var last string
	for _, b := range req.Messages[len(req.Messages)-1].Content {
		last += b.Text
	}
	results := map[string]string{}
	for _, m := range req.Messages {
		for _, b := range m.Content {
			if b.Type == "tool_result" {
				results[b.ToolUseID] = string(b.Content)
			}
		}
	}
	switch {
	case strings.Contains(last, "what did you find"):
		var out []struct{ Text string }
		json.Unmarshal([]byte(results["b1"]), &out)
		said := ""
		if len(out) > 0 {
			said = strings.TrimSpace(out[0].Text)
		}
		return fakeapi.Text(fmt.Sprintf("Earlier (%d messages before this one) wc said %s", len(req.Messages)-1, said))
	case upload == "":
		return fakeapi.Text("I did not get the file: " + task)
	case results["s1"] != "":
		return fakeapi.Text("## Result\nThere are **3 lines** in the file. See <!channel> & the CSV.")
	case results["b1"] != "":
		return fakeapi.ToolCalls("", fakeapi.ToolUse("s1", "share_file", map[string]any{"path": "/data/count.txt"}))
	case results["q1"] != "":
		if !strings.Contains(results["q1"], "rows") {
			return fakeapi.Text("the answer did not arrive: " + results["q1"])
		}
		return fakeapi.ToolCalls("Counting.", fakeapi.ToolUse("b1", "bash",
			map[string]any{"command": "wc -l < " + upload + " > /data/count.txt && cat /data/count.txt"}))
	}
	return fakeapi.ToolCalls("Let me plan.",
		fakeapi.ToolUse("t1", "todo", map[string]any{"items": []map[string]any{
			{"content": "Ask what to count", "status": "in_progress"}, {"content": "Count it", "status": "pending"}}}),
		fakeapi.ToolUse("q1", "ask_user", map[string]any{"question": "Count rows or columns?", "choices": []string{"rows", "columns"}}))
}

// A whole thread with the fake model and a fake Slack: mention with a
// file → question with buttons → click → tool run → file uploaded back;
// people and channels off the allowlists start nothing.
func TestSlackThread(t *testing.T) {
	e := startEnv(t, fakeapi.ResponderFunc(scriptedModel), nil, Config{
		Users: []string{"U1"}, Channels: []string{"C1"}, SessionBudgetUSD: 1, UserBudgetUSD: 5,
		MaxSandboxes: 1, DashboardURL: "http://127.0.0.1:8792",
	})
	ctx, fake, bot, host, model := e.ctx, e.fake, e.bot, e.host, e.model

	// Someone not on the allowlist, and an allowed user in another channel.
	stranger := fake.Event("app_mention", "U2", "C1", "", "<@UBOT> train something", nil)
	elsewhere := fake.Event("app_mention", "U1", "C2", "", "<@UBOT> train something", nil)
	fake.WaitFor("two refusals", 10*time.Second, func(msgs []slacktest.Message, _ []slacktest.Upload) bool {
		n := 0
		for _, m := range msgs {
			if m.User == "UBOT" && strings.HasPrefix(m.Text, "Sorry") && (m.ThreadTS == stranger || m.ThreadTS == elsewhere) {
				n++
			}
		}
		return n == 2
	})

	file := fake.AddFile("labels.csv", []byte("id,label\n1,cat\n2,dog\n"))
	root := fake.Event("app_mention", "U1", "C1", "", "<@UBOT> count the labels in this file", []map[string]any{file})

	var question slacktest.Message
	fake.WaitFor("a question with buttons", 60*time.Second, func(msgs []slacktest.Message, _ []slacktest.Upload) bool {
		for _, m := range msgs {
			if m.ThreadTS == root && strings.HasPrefix(m.Text, "❓") && strings.Contains(string(m.Blocks), `"mlagent_answer"`) {
				question = m
				return true
			}
		}
		return false
	})
	var blocks []map[string]any
	json.Unmarshal(question.Blocks, &blocks)
	var values []string
	for _, b := range blocks {
		if els, ok := b["elements"].([]any); ok && b["type"] == "actions" {
			for _, e := range els {
				values = append(values, e.(map[string]any)["value"].(string))
			}
		}
	}
	if len(values) != 2 || !strings.HasPrefix(values[0], "q1|") {
		t.Fatalf("buttons %v; want one per choice", values)
	}
	// One sandbox at most: a second thread is told to wait.
	second := fake.Event("app_mention", "U1", "C1", "", "<@UBOT> another task", nil)
	fake.WaitText(second, "all 1 sandboxes are busy", 10*time.Second)
	fake.Event("message", "U1", "C1", root, "<@UBOT> status", nil) // a mention in the thread: app_mention handles it
	fake.Event("app_mention", "U1", "C1", root, "<@UBOT> status", nil)
	fake.Click("U2", question, "mlagent_answer", values[1]) // not allowed: no effect
	fake.Click("U1", question, "mlagent_answer", values[0])

	fake.WaitFor("the CSV uploaded to the thread", 60*time.Second, func(_ []slacktest.Message, ups []slacktest.Upload) bool {
		return len(ups) == 1
	})
	up := fake.Uploads()[0]
	if up.Channel != "C1" || up.ThreadTS != root || up.Filename != "count.txt" || strings.TrimSpace(string(up.Data)) != "3" {
		t.Errorf("upload %+v (%q); want count.txt with 3 in the thread", up, up.Data)
	}
	fake.WaitText(root, "*3 lines*", 30*time.Second)
	bot.shutdownWait(t)

	// The sandbox ends; a reply in the thread (no mention needed) resumes
	// the session in a new one, with its transcript.
	th := bot.threads["C1/"+root]
	th.stop()
	waitNoAgent(t, th)
	fake.Event("message", "U1", "C1", root, "what did you find?", nil)
	fake.WaitText(root, "wc said 3", 60*time.Second)
	bot.shutdownWait(t)
	th.stop()
	waitNoAgent(t, th)

	// The user's budget is spent: a new thread is refused before any sandbox.
	if err := host.Sessions().RecordTurn(ctx, th.sessionID, 6); err != nil {
		t.Fatal(err)
	}
	broke := fake.Event("app_mention", "U1", "C1", "", "<@UBOT> one more", nil)
	fake.WaitText(broke, "has used the Slack budget of $5.00", 10*time.Second)

	// The cost the agent reports is the sandbox's word; a forged negative
	// one must not give the budget back: the gateway's ledger counts.
	var booked float64
	usage, err := host.Gateway().Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range usage {
		booked += u.CostUSD
	}
	if booked <= 0 {
		t.Fatalf("the gateway booked $%v for the thread; want its model calls' cost", booked)
	}
	if err := host.Sessions().RecordTurn(ctx, th.sessionID, -1000); err != nil {
		t.Fatal(err)
	}
	if spent, err := bot.userSpend(ctx, "U1"); err != nil || spent < booked {
		t.Errorf("after a forged cost of -$1000 the user has spent $%v (%v); want at least the $%v the gateway booked", spent, err, booked)
	}

	var text strings.Builder
	for _, m := range fake.Messages() {
		if m.ThreadTS == root && m.User == "UBOT" {
			text.WriteString(m.Text + "\n")
		}
	}
	all := text.String()
	if os.Getenv("SLACK_DUMP") != "" {
		t.Log(all)
	}
	for _, want := range []string{
		"📎 saved for the agent: /data/uploads/",
		"*Plan*\n▶ Ask what to count\n☐ Count it",
		"→ <@U1>: rows",
		"✓ *bash*  `wc -l",
		"✓ *share_file*",
		"*Result*\nThere are *3 lines* in the file. See &lt;!channel&gt; &amp; the CSV.",
		"*Session* `",
		"*Dashboard* http://127.0.0.1:8792",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("the thread lacks %q:\n%s", want, all)
		}
	}
	if strings.Count(all, "*Session* `") != 1 {
		t.Errorf("status answered %d times; want once (the mention's message event is not a second request)", strings.Count(all, "*Session* `"))
	}
	if fake.RateLimited != 0 {
		t.Errorf("%d chat.update calls were rate limited; want updates spaced as Slack requires", fake.RateLimited)
	}
	list, err := host.Sessions().List(ctx, 10)
	if err != nil || len(list) != 1 {
		t.Errorf("sessions = %v, %v; want exactly the allowed thread's", list, err)
	}
	for _, r := range model.Requests() {
		if strings.Contains(string(r.Body), fake.BotToken) || strings.Contains(string(r.Body), fake.AppToken) {
			t.Error("a Slack token reached the model")
		}
	}
	e.cancel()
	select {
	case <-e.done:
	case <-time.After(30 * time.Second):
		t.Error("Run did not return after ctx ended")
	}
}

type testEnv struct {
	ctx    context.Context
	cancel context.CancelFunc
	model  *fakeapi.Server
	host   *launch.Host
	fake   *slacktest.Fake
	bot    *Bot
	done   chan error
}

// startEnv starts a host on the fake model (with services as its gateway's
// extra routes), a fake Slack and the bot on it, connected.
func startEnv(t *testing.T, model fakeapi.Responder, services []gateway.Service, c Config) *testEnv {
	t.Helper()
	sandboxtest.RequireBwrap(t)
	e := &testEnv{done: make(chan error, 1)}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	t.Cleanup(e.cancel)
	e.model = fakeapi.Start(fakeapi.Options{APIKey: modelKey, Responder: model})
	t.Cleanup(e.model.Close)
	home, err := os.MkdirTemp("", "mls") // short: socket paths live under it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	cfg := config.Defaults()
	cfg.Home = home
	e.host, err = launch.Start(e.ctx, launch.Options{Config: cfg, Upstream: e.model.URL(), ModelKey: modelKey,
		Binary: testbin.Path(t), Services: services})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.host.Close() })
	e.fake = slacktest.New(t)
	c.BotToken, c.AppToken, c.APIURL = e.fake.BotToken, e.fake.AppToken, e.fake.APIURL()
	c.MaxTurns = 20 // Model "": StartAgent picks the newest Sonnet-class one
	e.bot, err = New(e.ctx, c, e.host, volume.New(cfg.VolumesDir()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	go func() { e.done <- e.bot.Run(e.ctx) }()
	if !e.fake.WaitConnected(10 * time.Second) {
		t.Fatal("the bot did not open a Socket Mode connection")
	}
	return e
}

func waitNoAgent(t *testing.T, th *thread) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		th.mu.Lock()
		a := th.agent
		th.mu.Unlock()
		if a == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the thread's agent did not end")
}

// shutdownWait waits for the thread's agent to finish its turn's messages.
func (b *Bot) shutdownWait(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	var threads []*thread
	for _, th := range b.threads {
		threads = append(threads, th)
	}
	b.mu.Unlock()
	for _, th := range threads {
		th.mu.Lock()
		r := th.r
		th.mu.Unlock()
		if r != nil {
			r.Flush()
		}
	}
}

func TestMrkdwn(t *testing.T) {
	tests := []struct{ in, want string }{
		{"**bold** and <@U123> <!here>", "*bold* and &lt;@U123&gt; &lt;!here&gt;"},
		{"## Head\ntext", "*Head*\ntext"},
		{"[card](https://hf.co/x) [bad](javascript:alert(1))", "<https://hf.co/x|card> [bad](javascript:alert(1))"},
		{"a\n| x | y |\n| 1 | 2 |\nb", "a\n```\n| x | y |\n| 1 | 2 |\n```\nb"},
		{"esc \x1b[31mred\x1b[0m", "esc red"},
		// Link text that reads as another address: the real one is shown.
		{"[https://huggingface.co/you/model](https://evil.example/x)", "https://huggingface.co/you/model (<https://evil.example/x>)"},
		{"[huggingface.co/you](https://evil.example/x)", "huggingface.co/you (<https://evil.example/x>)"},
		{"[https://hf.co/x](https://hf.co/x)", "<https://hf.co/x|https://hf.co/x>"},
		// Bidirectional overrides could reorder what the user reads.
		{"Allow \u202eexe.fdp\u202c now", "Allow exe.fdp now"},
	}
	for _, tt := range tests {
		if got := mrkdwn(tt.in); got != tt.want {
			t.Errorf("mrkdwn(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestSafeFileName(t *testing.T) {
	for in, want := range map[string]string{
		"labels.csv": "labels.csv", "../../etc/passwd": "file-F1_.._etc_passwd", ".bashrc": "file-F1bashrc",
		"a/b": "a_b", "": "file-F1", "x\x00y": "x_y",
		"report\u202efdp.exe": "report_fdp.exe", "a\u0085b": "a_b", "\u2067x": "_x",
	} {
		if got := safeFileName(in, "F1"); got != want {
			t.Errorf("safeFileName(%q) = %q; want %q", in, got, want)
		}
	}
}

// TestFreeName: a taken name gets a number; a lookup failing for another
// reason than "no such file" ends the search. It used to loop for good (a
// core busy, the thread stuck) when the sandbox made the session's upload
// directory unreadable (EACCES for a host user that is not root) or
// swapped a file in for it (ENOTDIR, here).
func TestFreeName(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	os.MkdirAll(filepath.Join(dir, "up"), 0o755)
	os.WriteFile(filepath.Join(dir, "up", "a.csv"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "up", "a-2.csv"), nil, 0o644)
	if got, err := freeName(root, "up", "a.csv"); got != "up/a-3.csv" || err != nil {
		t.Errorf("freeName = %q, %v; want up/a-3.csv", got, err)
	}
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o644)
	done := make(chan error, 1)
	go func() {
		_, err := freeName(root, "file", "a.csv")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("freeName under a file: no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("freeName under a file still looping after 5s")
	}
	for i := 3; i <= 101; i++ {
		os.WriteFile(filepath.Join(dir, "up", fmt.Sprintf("a-%d.csv", i)), nil, 0o644)
	}
	if got, err := freeName(root, "up", "a.csv"); err == nil {
		t.Errorf("freeName with 100 taken = %q; want an error", got)
	}
}
