package tools

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func newTestShell(t *testing.T) *Shell {
	t.Helper()
	s, err := NewShell(t.TempDir(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func runJSON(t *testing.T, tool Tool, input any) Result {
	t.Helper()
	b, err := json.Marshal(input)
	if err != nil {
		t.Fatal(err)
	}
	return tool.Run(context.Background(), b)
}

func TestBashPersistentState(t *testing.T) {
	sh := newTestShell(t)
	bash := &BashTool{Shell: sh}
	steps := []struct {
		cmd, want string
		isErr     bool
	}{
		{"mkdir -p sub && cd sub && export FOO=bar && greet() { echo hello \"$1\"; }", "(no output)", false},
		{"pwd", sh.Dir + "/sub\n", false},
		{"echo $FOO; greet you", "bar\nhello you\n", false},
		{"cd .. && unset FOO; exit 3", "\n[exit code 3]", true},
		{"pwd; echo \"[$FOO]\"", sh.Dir + "\n[]\n", false},
		{"if then", "syntax error", true},
		{"echo still alive", "still alive\n", false},
		{"cat", "(no output)", false}, // stdin is /dev/null: must not hang
	}
	for _, st := range steps {
		t.Run(st.cmd, func(t *testing.T) {
			r := runJSON(t, bash, map[string]any{"command": st.cmd})
			if r.IsError != st.isErr || !strings.Contains(r.Output, st.want) {
				t.Errorf("got %q (error %v); want %q (error %v)", r.Output, r.IsError, st.want, st.isErr)
			}
		})
	}
}

func TestBashTimeoutKillsGroup(t *testing.T) {
	sh := newTestShell(t)
	bash := &BashTool{Shell: sh}
	r := runJSON(t, bash, map[string]any{"command": "echo start; sleep 30 & sleep 30", "timeout_seconds": 1})
	if !r.IsError || !strings.Contains(r.Output, "timed out") || !strings.Contains(r.Output, "start") {
		t.Errorf("got %q; want a timeout error keeping the output", r.Output)
	}
}

func TestBashInterrupt(t *testing.T) {
	sh := newTestShell(t)
	bash := &BashTool{Shell: sh}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result)
	go func() { done <- bash.Run(ctx, json.RawMessage(`{"command":"echo go; sleep 60"}`)) }()
	// Cancel once the command has started writing.
	for i := 0; i < 200; i++ {
		time.Sleep(10 * time.Millisecond)
		if sh.fg.TryLock() {
			sh.fg.Unlock()
			continue
		}
		break
	}
	cancel()
	r := <-done
	if !r.IsError || !strings.Contains(r.Output, "interrupted") {
		t.Errorf("got %q; want interrupted error", r.Output)
	}
}

func TestBashOutputCapped(t *testing.T) {
	sh := newTestShell(t)
	sh.MaxOutput = 1000
	bash := &BashTool{Shell: sh}
	r := runJSON(t, bash, map[string]any{"command": "echo FIRST; seq 1 100000; echo LAST"})
	if len(r.Output) > 1100 || !strings.HasPrefix(r.Output, "FIRST") || !strings.HasSuffix(r.Output, "LAST\n") || !strings.Contains(r.Output, "bytes omitted") {
		t.Errorf("got %d bytes %q…; want head FIRST, tail LAST, ≤1100 bytes", len(r.Output), r.Output[:min(80, len(r.Output))])
	}
}

func TestBackgroundJob(t *testing.T) {
	sh := newTestShell(t)
	bash := &BashTool{Shell: sh}
	jobs := &JobsTool{Shell: sh}
	runJSON(t, bash, map[string]any{"command": "export STEP=epoch"})
	r := runJSON(t, bash, map[string]any{"command": "for i in 1 2 3; do echo $STEP $i; done; exit 4", "background": true})
	if r.IsError || !strings.Contains(r.Output, "job1") {
		t.Fatalf("start: got %q", r.Output)
	}
	r = runJSON(t, jobs, map[string]any{"action": "output", "id": "job1", "wait_seconds": 30})
	want := "[job1: exited 4]\nepoch 1\nepoch 2\nepoch 3\n"
	if r.Output != want {
		t.Errorf("output: got %q; want %q", r.Output, want)
	}
	r = runJSON(t, jobs, map[string]any{"action": "output", "id": "job1"})
	if !strings.Contains(r.Output, "(no new output)") {
		t.Errorf("second poll: got %q; want no new output", r.Output)
	}
	r = runJSON(t, jobs, map[string]any{"action": "list"})
	if !strings.Contains(r.Output, "job1\texited 4") {
		t.Errorf("list: got %q", r.Output)
	}
	r = runJSON(t, bash, map[string]any{"command": "sleep 60", "background": true})
	if !strings.Contains(r.Output, "job2") {
		t.Fatalf("start 2: got %q", r.Output)
	}
	r = runJSON(t, jobs, map[string]any{"action": "stop", "id": "job2"})
	if !strings.Contains(r.Output, "stopped") {
		t.Errorf("stop: got %q", r.Output)
	}
	if j, _ := sh.Job("job2"); j.Running() {
		t.Error("job2 still running after stop")
	}
	r = runJSON(t, jobs, map[string]any{"action": "output", "id": "nope"})
	if !r.IsError {
		t.Errorf("unknown job: got %q; want error", r.Output)
	}
}

func TestHeadTail(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"short", 10, "short"},
		{"0123456789abcdef", 8, "0123\n[... 8 bytes omitted ...]\ncdef"},
		{"ééééé", 4, "é\n[... 6 bytes omitted ...]\né"},
	}
	for _, tt := range tests {
		if got := HeadTail(tt.in, tt.max); got != tt.want {
			t.Errorf("HeadTail(%q, %d) = %q; want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

// The shell state file lives on the persistent volume: the sandbox token
// and proxy URLs (which embed it) must not be written there, yet commands
// still see them.
func TestShellStateKeepsNoToken(t *testing.T) {
	sh := newTestShell(t)
	sh.Env = []string{"PATH=/usr/bin:/bin", "ANTHROPIC_API_KEY=sbx-secret-1", "HF_TOKEN=sbx-secret-2", "HTTPS_PROXY=http://mlagent:sbx-secret-3@127.0.0.1:8790"}
	bash := &BashTool{Shell: sh}
	r := runJSON(t, bash, map[string]any{"command": "export MY_VAR=kept; echo $HF_TOKEN"})
	if r.Output != "sbx-secret-2\n" {
		t.Fatalf("got %q; want the token visible to commands", r.Output)
	}
	state, err := os.ReadFile(sh.statePath())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(state), "sbx-secret") {
		t.Errorf("state file holds a token:\n%s", state)
	}
	if !strings.Contains(string(state), "MY_VAR") {
		t.Errorf("state file lost MY_VAR:\n%s", state)
	}
	r = runJSON(t, bash, map[string]any{"command": "echo $MY_VAR $ANTHROPIC_API_KEY"})
	if r.Output != "kept sbx-secret-1\n" {
		t.Errorf("got %q", r.Output)
	}
}

// TestJobEvents: a job is reported running, then ended; a new shell on
// the same state numbers on rather than overwriting job1's log.
func TestJobEvents(t *testing.T) {
	state := t.TempDir()
	sh, err := NewShell(t.TempDir(), state)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	sh.OnJob = func(j *Job) {
		mu.Lock()
		seen = append(seen, j.ID+" "+j.Status())
		mu.Unlock()
	}
	j, err := sh.Start("exit 3")
	if err != nil {
		t.Fatal(err)
	}
	j.Wait(context.Background())
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == 2 || time.Now().After(deadline) {
			break
		}
	}
	mu.Lock()
	if strings.Join(seen, ",") != "job1 running,job1 exited 3" {
		t.Errorf("job events: got %q; want running then exited 3", seen)
	}
	mu.Unlock()
	sh2, err := NewShell(t.TempDir(), state)
	if err != nil {
		t.Fatal(err)
	}
	j2, err := sh2.Start("true")
	if err != nil {
		t.Fatal(err)
	}
	if j2.ID != "job2" {
		t.Errorf("the next shell's first job is %s; want job2", j2.ID)
	}
	j2.Wait(context.Background())
}
