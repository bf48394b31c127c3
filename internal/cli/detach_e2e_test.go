package cli_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDetachAttachLogs: leaving a chat while training runs offers to
// leave it running; it goes on without the chat, its output can be read
// and followed (mlagent logs), and mlagent attach brings the chat back,
// from which the session can be stopped for good.
func TestDetachAttachLogs(t *testing.T) {
	e := newE2E(t)
	tm := startTerm(t, e.command(true, e.chatArgs("run", bgPrompt)...))
	tm.waitFor("Training started as job1.")
	tm.send("/exit\r")
	tm.waitFor("Still running: job1")
	tm.waitFor("Leave it running?")
	tm.send("1\r")
	if err := tm.cmd.Wait(); err != nil {
		t.Fatalf("mlagent run: %v\n%s", err, tm.all())
	}
	tm.waitFor("left running · mlagent attach")
	rows := e.sessions()
	if len(rows) != 1 {
		t.Fatalf("sessions: %+v", rows)
	}
	id := rows[0].ID
	if procs := processesMentioning(e.home); len(procs) == 0 {
		hostLog, _ := os.ReadFile(filepath.Join(e.home, "logs", "session-"+id+".log"))
		ps, _ := exec.Command("ps", "-ef", "--forest").CombinedOutput()
		t.Logf("ps:\n%s", ps)
		t.Fatalf("nothing runs after the detach: the training was lost\nhost log:\n%s\nterminal:\n%s", hostLog, tm.all())
	}

	// The job's output, while it runs, without attaching.
	var out string
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out, "epoch 3\n"); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("mlagent logs never showed epoch 3: %q", out)
		}
		out, _, _ = e.run(false, "logs", "--no-follow", id, "job1")
	}
	if !strings.HasPrefix(out, "epoch 1\nepoch 2\n") {
		t.Errorf("logs: got %q; want the job's output from the start", out[:min(len(out), 60)])
	}
	list, _, code := e.run(false, "logs", id)
	if code != 0 || !strings.Contains(list, "job1") {
		t.Errorf("logs SESSION: exit %d: %q; want job1 listed", code, list)
	}
	if _, errs, code := e.run(false, "logs", id, "../../etc/passwd"); code != 2 || !strings.Contains(errs, "not a job id") {
		t.Errorf("logs with a path: exit %d: %q; want 2, not a job id", code, errs)
	}

	// Back in the chat: it says where it is; stopping ends everything.
	tm2 := startTerm(t, e.command(false, "attach", "--dashboard-listen", "off"))
	tm2.waitFor("attached to session " + id)
	tm2.send("/exit\r")
	tm2.waitFor("Leave it running?")
	tm2.send("2\r")
	if err := tm2.cmd.Wait(); err != nil {
		t.Fatalf("mlagent attach: %v\n%s", err, tm2.all())
	}
	tm2.waitFor("saved · mlagent resume")
	for deadline := time.Now().Add(30 * time.Second); len(processesMentioning(e.home)) > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the session still runs after it was stopped: %q", processesMentioning(e.home))
		}
	}
	if _, errs, code := e.run(false, "attach", id); code != 1 || !strings.Contains(errs, "is not running") {
		t.Errorf("attach to an ended session: exit %d: %q", code, errs)
	}
	if socks, _ := filepath.Glob(filepath.Join(e.home, "run", "s-*")); len(socks) != 0 {
		t.Errorf("the session host left %q", socks)
	}
}

// TestRunDetachAndResumeWorkspace: run --detach starts the session
// without a chat; resume mounts the session's own /workspace, with the
// files written before.
func TestRunDetachAndResumeWorkspace(t *testing.T) {
	e := newE2E(t)
	answers := filepath.Join(t.TempDir(), "answers.json")
	os.WriteFile(answers, []byte(`{"which dataset": "EuroSAT"}`), 0o600)
	out, errs, code := e.run(true, e.chatArgs("run", "-p", "--answers", answers, trainPrompt)...)
	if code != 0 {
		t.Fatalf("run -p: exit %d: %s %s", code, out, errs)
	}
	id := e.sessions()[0].ID
	out, errs, code = e.run(true, e.chatArgs("resume", "-p", id, showPrompt)...)
	if code != 0 || !strings.Contains(out, "print('accuracy', round(0.5 + 0.41, 2))") {
		t.Fatalf("resume: exit %d; want train.py's text in the resumed /workspace\nstdout: %s\nstderr: %s", code, out, errs)
	}

	out, errs, code = e.run(true, e.chatArgs("run", "--detach", bgPrompt)...)
	if code != 0 || !strings.Contains(out, "running detached · mlagent attach") {
		t.Fatalf("run --detach: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	rows := e.sessions()
	var det string
	for _, r := range rows {
		if r.Title == bgPrompt {
			det = r.ID
		}
	}
	var logs string
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs, "epoch 2\n"); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the detached session's job never ran: %q", logs)
		}
		logs, _, _ = e.run(false, "logs", "--no-follow", det, "job1")
	}
	// Resuming a session that is still running says where it is.
	if _, errs, code := e.run(true, e.chatArgs("resume", "-p", det, "hi")...); code == 0 || !strings.Contains(errs, "already running: mlagent attach "+det) {
		t.Errorf("resume of a running session: exit %d: %s", code, errs)
	}
	// Stop it through the chat.
	tm := startTerm(t, e.command(false, "attach", "--dashboard-listen", "off", det))
	tm.waitFor("attached to session " + det)
	tm.send("/exit\r")
	tm.waitFor("Leave it running?")
	tm.send("2\r")
	done := make(chan error, 1)
	go func() { done <- tm.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		hostLog, _ := os.ReadFile(filepath.Join(e.home, "logs", "session-"+det+".log"))
		t.Fatalf("attach did not end after \"stop it\"\nhost log:\n%s\nterminal:\n%s", hostLog, tm.all())
	}
	for deadline := time.Now().Add(30 * time.Second); len(processesMentioning(e.home)) > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still running: %q", processesMentioning(e.home))
		}
	}
}

// TestWrongKeyIsNamed: the model API refusing the user's own key is said
// once, as such, naming where the key came from (not as the gateway
// refusing the sandbox's token).
func TestWrongKeyIsNamed(t *testing.T) {
	e := newE2E(t)
	cmd := e.command(false, e.chatArgs("run", "-p", "hello")...)
	cmd.Env = append(cmd.Env, "ANTHROPIC_API_KEY=sk-ant-wrong-key")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("got exit %d; want 1", code)
	}
	want := "the model API rejected your API key (from $ANTHROPIC_API_KEY)"
	if n := strings.Count(errb.String(), want); n != 1 {
		t.Errorf("stderr says %q %d times; want once:\n%s", want, n, errb.String())
	}
	if strings.Contains(errb.String(), "sandbox's token") || strings.Contains(errb.String(), "sk-ant-wrong-key") {
		t.Errorf("stderr blames the token or shows the key:\n%s", errb.String())
	}
}

// TestStdinPromptJSONAndContinue: a prompt piped on stdin, one JSON
// result, and run --continue reopening the latest session.
func TestStdinPromptJSONAndContinue(t *testing.T) {
	e := newE2E(t)
	answers := filepath.Join(t.TempDir(), "answers.json")
	os.WriteFile(answers, []byte(`{"which dataset": "EuroSAT"}`), 0o600)
	cmd := e.command(true, e.chatArgs("run", "-p", "--output-format", "json", "--answers", answers)...)
	cmd.Stdin = strings.NewReader(trainPrompt + "\n")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("run -p < prompt: %v\n%s", err, errb.String())
	}
	var r struct {
		Type    string  `json:"type"`
		IsError bool    `json:"is_error"`
		Result  string  `json:"result"`
		Session string  `json:"session_id"`
		Turns   int     `json:"num_turns"`
		Cost    float64 `json:"cost_usd"`
	}
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil || r.Type != "result" || r.IsError ||
		r.Result != "Training finished: accuracy 0.91 on EuroSAT." || r.Turns != 1 || r.Cost <= 0 {
		t.Fatalf("got %q (%v); want one result object", out.String(), err)
	}
	if rows := e.sessions(); len(rows) != 1 || rows[0].ID != r.Session || rows[0].Title != trainPrompt {
		t.Errorf("sessions %+v; want the piped prompt as the title of %s", rows, r.Session)
	}
	stdout, stderr, code := e.run(true, e.chatArgs("run", "--continue", "-p", recallPrompt)...)
	if code != 0 || !strings.Contains(stdout, "Recalled: dataset=true accuracy=true") {
		t.Fatalf("run --continue: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if rows := e.sessions(); len(rows) != 1 || rows[0].Turns != 2 {
		t.Errorf("after --continue: %+v; want the one session with 2 turns", rows)
	}
}

// TestMountUserDirectory: --mount binds the user's directory inside,
// read-only unless :rw, and its AGENTS.md is project memory.
func TestMountUserDirectory(t *testing.T) {
	e := newE2E(t)
	proj := filepath.Join(t.TempDir(), "proj")
	os.MkdirAll(proj, 0o755)
	os.WriteFile(filepath.Join(proj, "notes.txt"), []byte("hello from the host\n"), 0o644)
	os.WriteFile(filepath.Join(proj, "AGENTS.md"), []byte("Always use seed 7.\n"), 0o644)
	for _, c := range []struct{ mount, want string }{
		{proj, "READ-ONLY"},
		{proj + ":rw", "WROTE"},
	} {
		out, errs, code := e.run(true, e.chatArgs("run", "-p", "--mount", c.mount, mountPrompt)...)
		if code != 0 || !strings.Contains(out, "hello from the host") || !strings.Contains(out, c.want) || !strings.HasSuffix(out, "memory=true\n") {
			t.Errorf("--mount %s: exit %d, stdout %q, stderr %s; want the file, %s and the memory", c.mount, code, out, errs, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(proj, "new")); err != nil {
		t.Errorf("the :rw mount did not write to the host directory: %v", err)
	}
	for _, bad := range []string{"/", e.home, filepath.Dir(e.home), filepath.Join(proj, "missing")} {
		_, errs, code := e.run(true, e.chatArgs("run", "-p", "--mount", bad, mountPrompt)...)
		if code != 2 || !strings.Contains(errs, "--mount "+bad+": ") {
			t.Errorf("--mount %s: exit %d, stderr %q; want 2 and why", bad, code, errs)
		}
	}
}
