package cli

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mlagent/mlagent/internal/fakeapi"
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/testbin"
)

// buildMlagent returns the real binary, built once per test process.
func buildMlagent(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the mlagent binary; skipped with -short")
	}
	return testbin.Path(t)
}

// agentProc is a running `mlagent agent`.
type agentProc struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	events chan protocol.Event
	stderr *strings.Builder
}

func startAgent(t *testing.T, bin string, env []string, args ...string) *agentProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"agent"}, args...)...)
	cmd.Env = env
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &agentProc{cmd: cmd, in: in, events: make(chan protocol.Event, 256), stderr: &strings.Builder{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	go func() {
		s := bufio.NewScanner(out)
		s.Buffer(make([]byte, 1<<20), 1<<24)
		for s.Scan() {
			var ev protocol.Event
			if err := json.Unmarshal(s.Bytes(), &ev); err != nil {
				t.Errorf("stdout line is not an event: %q", s.Text())
				continue
			}
			p.events <- ev
		}
		close(p.events)
	}()
	return p
}

func (p *agentProc) send(t *testing.T, in protocol.Input) {
	t.Helper()
	b, _ := json.Marshal(in)
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
}

// until collects events up to and including the first of type typ.
func (p *agentProc) until(t *testing.T, typ string) []protocol.Event {
	t.Helper()
	var got []protocol.Event
	for ev := range p.events {
		got = append(got, ev)
		if ev.Type == typ {
			return got
		}
	}
	t.Fatalf("agent exited before %s; events %+v\nstderr:\n%s", typ, got, p.stderr)
	return nil
}

func findEvent(evs []protocol.Event, typ string) *protocol.Event {
	for i := range evs {
		if evs[i].Type == typ {
			return &evs[i]
		}
	}
	return nil
}

// TestAgentProcess runs the built binary as a plain process against the
// fake Messages API and a fake Hub: a task with several tools, a
// background job and a question to the user; then a second process resumes
// the transcript.
func TestAgentProcess(t *testing.T) {
	bin := buildMlagent(t)
	const token = "sbx-tok-123"
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token || r.URL.Path != "/api/datasets" {
			http.Error(w, `{"error":"bad request"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `[{"_id":"1","id":"stanfordnlp/imdb","likes":300,"downloads":120000,"tags":["task_categories:text-classification","license:other","size_categories:10K<n<100K"]}]`)
	}))
	defer hub.Close()

	var toolTexts []string
	script := &fakeapi.Script{Steps: []func(*fakeapi.Request) *fakeapi.Reply{
		func(r *fakeapi.Request) *fakeapi.Reply {
			return fakeapi.ToolCalls("Let me look.",
				fakeapi.ToolUse("t1", "todo", map[string]any{"items": []map[string]string{{"content": "choose data", "status": "in_progress"}, {"content": "train", "status": "pending"}}}),
				fakeapi.ToolUse("t2", "hf_search", map[string]any{"kind": "datasets", "search": "imdb"}))
		},
		func(r *fakeapi.Request) *fakeapi.Reply {
			for _, b := range r.LastToolResults() {
				toolTexts = append(toolTexts, r.ToolResultText(b))
			}
			return fakeapi.ToolCalls("", fakeapi.ToolUse("t3", "ask_user", map[string]any{"question": "Which dataset?", "choices": []string{"stanfordnlp/imdb"}}))
		},
		func(r *fakeapi.Request) *fakeapi.Reply {
			for _, b := range r.LastToolResults() {
				toolTexts = append(toolTexts, r.ToolResultText(b))
			}
			return fakeapi.ToolCalls("", fakeapi.ToolUse("t4", "bash", map[string]any{"command": "for i in 1 2 3; do echo epoch $i loss 0.$((9-i)); done > /dev/stdout; echo trained > model.txt", "background": true}))
		},
		func(r *fakeapi.Request) *fakeapi.Reply {
			return fakeapi.ToolCalls("", fakeapi.ToolUse("t5", "jobs", map[string]any{"action": "output", "id": "job1", "wait_seconds": 60}))
		},
		func(r *fakeapi.Request) *fakeapi.Reply {
			for _, b := range r.LastToolResults() {
				toolTexts = append(toolTexts, r.ToolResultText(b))
			}
			return fakeapi.ToolCalls("", fakeapi.ToolUse("t6", "read", map[string]any{"path": "model.txt"}))
		},
		func(r *fakeapi.Request) *fakeapi.Reply {
			for _, b := range r.LastToolResults() {
				toolTexts = append(toolTexts, r.ToolResultText(b))
			}
			return fakeapi.Text("Trained on imdb.")
		},
		// The resumed process.
		func(r *fakeapi.Request) *fakeapi.Reply {
			return fakeapi.Text("Still here: " + r.LastUserText())
		},
	}}
	api := fakeapi.Start(fakeapi.Options{APIKey: token, Responder: script})
	defer api.Close()

	home, work, sessions := t.TempDir(), t.TempDir(), t.TempDir()
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home, "MLAGENT_HOME=" + home, "XDG_CONFIG_HOME=" + home,
		"ANTHROPIC_BASE_URL=" + api.URL(), "ANTHROPIC_API_KEY=" + token,
		"HF_ENDPOINT=" + hub.URL, "HF_TOKEN=" + token, "TRACKIO_DIR=" + filepath.Join(home, "trackio"),
	}
	args := []string{"--session", "e2e", "--sessions-dir", sessions, "--workdir", work, "--skills-dir", filepath.Join(home, "skills")}

	p := startAgent(t, bin, env, args...)
	ready := p.until(t, protocol.EventReady)
	if r := ready[len(ready)-1]; r.Session != "e2e" || r.ResumedMessages != 0 {
		t.Errorf("ready = %+v", r)
	}
	p.send(t, protocol.Input{Type: protocol.InputUserMessage, Text: "fine-tune a sentiment model"})
	evs := p.until(t, protocol.EventAskUser)
	if todo := findEvent(evs, protocol.EventTodo); todo == nil || len(todo.Items) != 2 {
		t.Errorf("todo event = %+v", todo)
	}
	ask := evs[len(evs)-1]
	if ask.ID != "t3" || ask.Question != "Which dataset?" {
		t.Errorf("ask_user = %+v", ask)
	}
	p.send(t, protocol.Input{Type: protocol.InputAnswer, ID: ask.ID, Text: "stanfordnlp/imdb"})
	evs = p.until(t, protocol.EventTurnEnd)
	if te := evs[len(evs)-1]; te.StopReason != "end_turn" {
		t.Errorf("turn_end = %+v\nstderr:\n%s", te, p.stderr)
	}
	u := findEvent(evs, protocol.EventUsage)
	if u == nil || u.Usage.Requests != 6 || u.Usage.CacheReadInputTokens == 0 || u.Usage.SessionCacheReadRatio <= 0 || u.Usage.CostUSD <= 0 {
		t.Errorf("usage = %+v; want 6 requests with cache reads", u)
	}
	wantTexts := []string{"plan updated: 2 items, 0 completed", "stanfordnlp/imdb\ttask=text-classification", "The user answered: stanfordnlp/imdb", "[job1: exited 0]\nepoch 1 loss 0.8\nepoch 2 loss 0.7\nepoch 3 loss 0.6\n", "     1\ttrained\n"}
	if len(toolTexts) != len(wantTexts) {
		t.Fatalf("tool results = %q", toolTexts)
	}
	for i, w := range wantTexts {
		if !strings.HasPrefix(toolTexts[i], w) {
			t.Errorf("tool result %d = %q; want prefix %q", i, toolTexts[i], w)
		}
	}
	p.send(t, protocol.Input{Type: protocol.InputShutdown})
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("agent exit: %v\nstderr:\n%s", err, p.stderr)
	}
	if strings.Contains(p.stderr.String(), token) {
		t.Errorf("the sandbox token leaked into the log:\n%s", p.stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(sessions, "e2e.jsonl")); strings.Contains(string(b), token) {
		t.Error("the sandbox token is in the transcript")
	}

	// Starting the same session without --resume is refused.
	again := exec.Command(bin, append([]string{"agent"}, args...)...)
	again.Env = env
	if out, err := again.CombinedOutput(); err == nil || !strings.Contains(string(out), "--resume") {
		t.Errorf("reusing a session without --resume: err %v, output %s", err, out)
	}

	// A new process resumes the transcript.
	p2 := startAgent(t, bin, env, append(args, "--resume")...)
	ready = p2.until(t, protocol.EventReady)
	if r := ready[len(ready)-1]; r.ResumedMessages != 12 {
		t.Errorf("resumed_messages = %d; want 12", r.ResumedMessages)
	}
	p2.send(t, protocol.Input{Type: protocol.InputUserMessage, Text: "are you there?"})
	evs = p2.until(t, protocol.EventTurnEnd)
	var text strings.Builder
	for _, e := range evs {
		if e.Type == protocol.EventTextDelta {
			text.WriteString(e.Text)
		}
	}
	if text.String() != "Still here: are you there?" {
		t.Errorf("resumed reply = %q", text.String())
	}
	reqs := api.Requests()
	last := reqs[len(reqs)-1]
	if len(last.Messages) != 13 || last.Messages[1].Content[0].Text != "Let me look." {
		t.Errorf("resumed request has %d messages; want the 12 of the transcript and the new one", len(last.Messages))
	}
	p2.in.Close() // end of input: the agent exits when idle
	if err := p2.cmd.Wait(); err != nil {
		t.Fatalf("resumed agent exit: %v\nstderr:\n%s", err, p2.stderr)
	}
}

func TestSkillsLs(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "mine"), 0o755)
	os.WriteFile(filepath.Join(dir, "mine", "SKILL.md"), []byte("---\nname: mine\ndescription: My own skill.\n---\nDo it.\n"), 0o644)
	var out, errb strings.Builder
	env := &Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string {
		if k == "MLAGENT_HOME" || k == "XDG_CONFIG_HOME" {
			return dir
		}
		return ""
	}}
	if code := run(t.Context(), env, []string{"skills", "ls", "--skills-dir", dir}); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "mine                 user     My own skill.") || !strings.Contains(out.String(), "bundled") {
		t.Errorf("skills ls output:\n%s", out.String())
	}
	out.Reset()
	if code := run(t.Context(), env, []string{"skills", "show", "mine", "--skills-dir", dir}); code != 0 || !strings.Contains(out.String(), "Do it.") {
		t.Errorf("skills show: exit %d output %q stderr %q", code, out.String(), errb.String())
	}
}
