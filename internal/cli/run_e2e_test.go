package cli_test

// End-to-end tests of `mlagent run`, `sessions` and `resume`: the real
// binary, a real bubblewrap sandbox, the in-process gateway, and a
// scripted fake model (internal/fakeapi) that the agent reaches only
// through the gateway.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/mlagent/mlagent/internal/fakeapi"
	"github.com/mlagent/mlagent/internal/gateway"
	"github.com/mlagent/mlagent/internal/image/imagetest"
	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
	"github.com/mlagent/mlagent/internal/store"
	"github.com/mlagent/mlagent/internal/testbin"
)

var binary string

func TestMain(m *testing.M) {
	var err error
	if binary, err = testbin.Build(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(testbin.Main(m))
}

const fakeKey = "sk-ant-e2e-REAL-key-stays-outside"

// createRepoCmd creates a Hub repo the way huggingface_hub does, through
// the gateway's /hf route.
const createRepoCmd = `/usr/bin/python3 -c "
import os, urllib.request as u, urllib.error as e
r = u.Request(os.environ['HF_ENDPOINT'] + '/api/repos/create', data=b'{\"name\":\"eurosat-cnn\",\"organization\":\"you\"}', method='POST',
    headers={'Authorization': 'Bearer ' + os.environ['HF_TOKEN'], 'content-type': 'application/json'})
try:
    print(u.urlopen(r).read().decode())
except e.HTTPError as x:
    print('HTTP', x.code, x.headers.get('X-Error-Message'))
"`

const (
	bgPrompt     = "Train in the background"
	mountPrompt  = "Look at my files"
	showPrompt   = "Show train.py"
	pushPrompt   = "Create the Hub repo for the model"
	trainPrompt  = "Train a tiny classifier on satellite tiles"
	sleepPrompt  = "sleep please"
	recallPrompt = "What was the accuracy?"
	imagePrompt  = "Which image do you run on?"
)

// scriptedModel decides each reply from the conversation so far, so the
// same fake serves every invocation (run, resume after a kill…): it asks
// which dataset, writes a Python file, runs it with bash, and reports
// what the run printed; "sleep please" runs a long command; the recall
// prompt answers from the whole history.
func scriptedModel(req *fakeapi.Request) *fakeapi.Reply {
	last := req.Messages[len(req.Messages)-1]
	var text string
	results := map[string]string{}
	for _, b := range last.Content {
		switch b.Type {
		case "text":
			text += b.Text
		case "tool_result":
			results[b.ToolUseID] = string(b.Content)
		}
	}
	switch {
	case strings.Contains(text, trainPrompt):
		return fakeapi.ToolCalls("First, a question.", fakeapi.ToolUse("q1", "ask_user",
			map[string]any{"question": "Which dataset should I use?", "choices": []string{"EuroSAT", "BigEarthNet"}}))
	case strings.Contains(text, mountPrompt):
		return fakeapi.ToolCalls("", fakeapi.ToolUse("m1", "bash", map[string]any{"command": "cat /workspace/proj/notes.txt; touch /workspace/proj/new 2>/dev/null && echo WROTE || echo READ-ONLY"}))
	case strings.Contains(text, bgPrompt):
		return fakeapi.ToolCalls("", fakeapi.ToolUse("g1", "bash", map[string]any{"command": "for i in $(seq 1 900); do echo epoch $i; sleep 0.1; done", "background": true}))
	case strings.Contains(text, showPrompt):
		return fakeapi.ToolCalls("", fakeapi.ToolUse("c1", "bash", map[string]any{"command": "cat /workspace/train.py"}))
	case strings.Contains(text, pushPrompt):
		return fakeapi.ToolCalls("", fakeapi.ToolUse("h1", "bash", map[string]any{"command": createRepoCmd}))
	case strings.Contains(text, sleepPrompt):
		return fakeapi.ToolCalls("", fakeapi.ToolUse("s1", "bash", map[string]any{"command": "echo started; sleep 300"}))
	case strings.Contains(text, imagePrompt):
		return fakeapi.ToolCalls("", fakeapi.ToolUse("i1", "bash", map[string]any{"command": `echo "image=$MLAGENT_IMAGE"; cat /etc/added-by-layer-2 || true`}))
	case strings.Contains(text, recallPrompt):
		var dataset, acc, slept bool
		for _, m := range req.Messages {
			for _, b := range m.Content {
				c := string(b.Content)
				dataset = dataset || b.ToolUseID == "q1" && strings.Contains(c, "EuroSAT")
				acc = acc || b.ToolUseID == "b1" && strings.Contains(c, "accuracy 0.91")
				slept = slept || b.Type == "text" && m.Role == "user" && strings.Contains(b.Text, sleepPrompt)
			}
		}
		return fakeapi.Text(fmt.Sprintf("Recalled: dataset=%v accuracy=%v sleep-turn=%v.", dataset, acc, slept))
	}
	if r, ok := results["i1"]; ok {
		return fakeapi.Text("Seen: " + strings.Join(strings.Fields(r), " "))
	}
	if r, ok := results["g1"]; ok {
		if i := strings.Index(r, "started background job "); i >= 0 {
			return fakeapi.Text("Training started as " + strings.Fields(r[i+len("started background job "):])[0] + ".")
		}
		return fakeapi.Text("the job did not start: " + r)
	}
	if r, ok := results["m1"]; ok {
		memory := strings.Contains(string(req.System), "From /workspace/proj/AGENTS.md:") && strings.Contains(string(req.System), "Always use seed 7.")
		return fakeapi.Text(fmt.Sprintf("Mounted: %s memory=%v", strings.Join(strings.Fields(r), " "), memory))
	}
	if r, ok := results["c1"]; ok {
		return fakeapi.Text("File: " + r)
	}
	if r, ok := results["h1"]; ok {
		return fakeapi.Text("Hub replied: " + strings.TrimSpace(r))
	}
	if r, ok := results["q1"]; ok {
		if !strings.Contains(r, "EuroSAT") {
			return fakeapi.Text("the answer did not arrive: " + r)
		}
		return fakeapi.ToolCalls("Writing the script.", fakeapi.ToolUse("w1", "write",
			map[string]any{"path": "train.py", "content": "print('accuracy', round(0.5 + 0.41, 2))\n"}))
	}
	if _, ok := results["w1"]; ok {
		// The token is saved to the data volume only so that the test can
		// check, after exit, that the gateway refuses it.
		return fakeapi.ToolCalls("", fakeapi.ToolUse("b1", "bash",
			map[string]any{"command": "/usr/bin/python3 train.py && printenv ANTHROPIC_API_KEY > /data/e2e-token"}))
	}
	if r, ok := results["b1"]; ok {
		if i := strings.Index(r, "accuracy"); i >= 0 {
			return fakeapi.Text("Training finished: " + strings.TrimSpace(r[i:i+13]) + " on EuroSAT.")
		}
		return fakeapi.Text("the run failed: " + r)
	}
	return fakeapi.Text("I do not know what to do with that.")
}

type e2e struct {
	t    *testing.T
	home string // MLAGENT_HOME
	env  []string
	api  *fakeapi.Server
}

func newE2E(t *testing.T) *e2e {
	t.Helper()
	return newE2EWith(t, fakeapi.ResponderFunc(scriptedModel))
}

// newE2EWith is newE2E with a model of the test's own.
func newE2EWith(t *testing.T, model fakeapi.Responder) *e2e {
	t.Helper()
	sandboxtest.RequireBwrap(t)
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("/usr/bin/python3 is not installed")
	}
	// Short: the gateway's Unix socket path lives under it.
	root, err := os.MkdirTemp("", "mle")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	t.Cleanup(func() { stopProcessesOf(filepath.Join(root, "home")) })
	api := fakeapi.Start(fakeapi.Options{APIKey: fakeKey, Responder: model})
	t.Cleanup(api.Close)
	e := &e2e{t: t, home: filepath.Join(root, "home"), api: api}
	e.env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + root,
		"MLAGENT_HOME=" + e.home,
		"XDG_CONFIG_HOME=" + filepath.Join(root, "config"),
		"XDG_DATA_HOME=" + filepath.Join(root, "data"),
		"MLAGENT_LOG_LEVEL=warn",
		"TERM=xterm",
	}
	return e
}

func (e *e2e) command(withKey bool, args ...string) *exec.Cmd {
	cmd := exec.Command(binary, args...)
	cmd.Env = e.env
	if withKey {
		cmd.Env = append(cmd.Env, "ANTHROPIC_API_KEY="+fakeKey)
	}
	return cmd
}

// chatArgs are the flags every chat in these tests uses.
func (e *e2e) chatArgs(cmd string, args ...string) []string {
	return append([]string{cmd, "--base-url", e.api.URL(), "--dashboard-listen", "off"}, args...)
}

func (e *e2e) run(withKey bool, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	cmd := e.command(withKey, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		e.t.Fatalf("%v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

type sessionRow struct {
	ID    string  `json:"id"`
	Title string  `json:"title"`
	Turns int     `json:"turns"`
	Cost  float64 `json:"cost_usd"`
}

func (e *e2e) sessions() []sessionRow {
	e.t.Helper()
	out, errs, code := e.run(false, "sessions", "--json")
	if code != 0 {
		e.t.Fatalf("sessions: exit %d: %s", code, errs)
	}
	var rows []sessionRow
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var r sessionRow
		if err := dec.Decode(&r); err != nil {
			e.t.Fatalf("sessions --json: %v in %q", err, out)
		}
		rows = append(rows, r)
	}
	return rows
}

// checkCleanExit: no process refers to this home any more (bwrap, the
// agent, its tools), and the token the sandbox held is refused by a
// gateway on the same store.
func (e *e2e) checkCleanExit() {
	e.t.Helper()
	if procs := processesMentioning(e.home); len(procs) > 0 {
		e.t.Errorf("processes still running after exit: %q", procs)
	}
	tok, err := os.ReadFile(filepath.Join(e.home, "volumes", "data", "e2e-token"))
	if err != nil || !strings.HasPrefix(string(tok), "mlat_") {
		e.t.Fatalf("sandbox token not found (%v): %q", err, tok)
	}
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(e.home, "mlagent.db"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer db.Close()
	gw, err := gateway.New(ctx, gateway.Config{Upstream: e.api.URL(), APIKey: fakeKey, DB: db})
	if err != nil {
		e.t.Fatal(err)
	}
	defer gw.Close()
	req := httptest.NewRequest("POST", "/v1/messages", strings.NewReader(`{"model":"claude-sonnet-5-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("x-api-key", strings.TrimSpace(string(tok)))
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("content-type", "application/json")
	rec := httptest.NewRecorder()
	gw.DataHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		e.t.Errorf("the exited sandbox's token: status %d; want 401 (revoked): %s", rec.Code, rec.Body.String())
	}
}

// processesMentioning lists the processes with s in their command line
// or environment: a test's sandboxes and session hosts, whose $MLAGENT_HOME
// is s (bubblewrap's own arguments come through a descriptor).
func processesMentioning(s string) []string {
	var found []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		env, _ := os.ReadFile(filepath.Join(d, "environ"))
		if bytes.Contains(b, []byte(s)) || bytes.Contains(env, []byte("MLAGENT_HOME="+s+"\x00")) {
			found = append(found, string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
		}
	}
	return found
}

// stopProcessesOf ends whatever a test left running under its home
// (a session host left detached by a failed test).
func stopProcessesOf(home string) {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		env, _ := os.ReadFile(filepath.Join(d, "environ"))
		if !bytes.Contains(env, []byte("MLAGENT_HOME="+home+"\x00")) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(d)); err == nil && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// term is a pseudo-terminal session with the CLI.
type term struct {
	t   *testing.T
	f   *os.File
	cmd *exec.Cmd
	mu  sync.Mutex
	out bytes.Buffer
	pos int // waitFor searches from here
}

func startTerm(t *testing.T, cmd *exec.Cmd) *term {
	t.Helper()
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 160})
	if err != nil {
		t.Fatal(err)
	}
	tm := &term{t: t, f: f, cmd: cmd}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			tm.mu.Lock()
			tm.out.Write(buf[:n])
			tm.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		f.Close()
	})
	return tm
}

// waitFor waits (generously: this is not a timing assertion) for s to
// appear after what earlier waits consumed.
func (tm *term) waitFor(s string) {
	tm.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		tm.mu.Lock()
		all := tm.out.String()
		tm.mu.Unlock()
		if i := strings.Index(all[tm.pos:], s); i >= 0 {
			tm.pos += i + len(s)
			return
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("waiting for %q; the terminal shows:\n%s", s, all)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (tm *term) send(s string) {
	tm.t.Helper()
	if _, err := tm.f.Write([]byte(s)); err != nil {
		tm.t.Fatal(err)
	}
}

func (tm *term) all() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.out.String()
}

func TestRunInTerminal(t *testing.T) {
	e := newE2E(t)
	tm := startTerm(t, e.command(true, e.chatArgs("run", trainPrompt)...))

	// No --model: the newest Sonnet-class model the key can use, listed
	// through the gateway (not the retired claude-sonnet-4-5).
	tm.waitFor("· model claude-sonnet-5-5")

	// The question, with its choices; answer with the number.
	tm.waitFor("Which dataset should I use?")
	tm.waitFor("2) BigEarthNet")
	tm.waitFor("answer> ")
	tm.send("1\r")
	tm.waitFor("write")
	tm.waitFor("python3 train.py")
	tm.waitFor("Training finished: accuracy 0.91 on EuroSAT.")
	tm.waitFor("this turn")
	tm.waitFor("> ")

	// Ctrl-C during a running tool interrupts the turn, not the CLI.
	tm.send(sleepPrompt + "\r")
	tm.waitFor("sleep 300")
	tm.send("\x03")
	tm.waitFor("^C interrupting the turn")
	tm.waitFor("(turn ended: interrupted)")

	tm.send("/cost\r")
	tm.waitFor("2 turn(s)")
	tm.send("/exit\r")
	if err := tm.cmd.Wait(); err != nil {
		t.Fatalf("mlagent run: %v\n%s", err, tm.all())
	}
	tm.waitFor("saved · mlagent resume")
	if os.Getenv("E2E_SHOW") != "" {
		t.Log(tm.all())
	}
	e.checkCleanExit()

	rows := e.sessions()
	if len(rows) != 1 || rows[0].Title != trainPrompt || rows[0].Turns != 2 {
		t.Fatalf("sessions: got %+v; want one session titled by the prompt with 2 turns", rows)
	}
	out, _, _ := e.run(false, "sessions")
	if !strings.Contains(out, rows[0].ID) || !strings.Contains(out, trainPrompt) {
		t.Errorf("sessions table lacks the session:\n%s", out)
	}

	// resume (the latest session) continues with the whole transcript.
	out, errs, code := e.run(true, e.chatArgs("resume", "-p", "latest", recallPrompt)...)
	if code != 0 || !strings.Contains(out, "Recalled: dataset=true accuracy=true sleep-turn=true.") {
		t.Fatalf("resume: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if rows := e.sessions(); rows[0].Turns != 3 {
		t.Errorf("after resume: got %d turns; want 3", rows[0].Turns)
	}
	for _, r := range e.api.Requests() {
		if r.Model != "claude-sonnet-5-5" {
			t.Errorf("a request named model %q; want claude-sonnet-5-5", r.Model)
		}
	}
	if _, err := os.Stat(filepath.Join(e.home, "models.json")); err != nil {
		t.Errorf("the list of models was not cached: %v", err)
	}
}

func TestPrintModeKillAndResume(t *testing.T) {
	e := newE2E(t)
	answers := filepath.Join(t.TempDir(), "answers.json")
	os.WriteFile(answers, []byte(`{"which dataset": "EuroSAT"}`), 0o600)

	// Without --answers the question fails the run.
	out, errs, code := e.run(true, e.chatArgs("run", "-p", trainPrompt)...)
	if code == 0 || !strings.Contains(errs, "Which dataset should I use?") || !strings.Contains(errs, "--answers") {
		t.Fatalf("unanswered: exit %d; want non-zero with the question named\nstdout: %s\nstderr: %s", code, out, errs)
	}

	out, errs, code = e.run(true, e.chatArgs("run", "-p", "--answers", answers, trainPrompt)...)
	if code != 0 || strings.TrimSpace(out) != "Training finished: accuracy 0.91 on EuroSAT." {
		t.Fatalf("run -p: exit %d\nstdout: %q\nstderr: %s", code, out, errs)
	}
	e.checkCleanExit()
	rows := e.sessions()
	if len(rows) != 2 {
		t.Fatalf("got sessions %+v; want 2", rows)
	}
	id := rows[0].ID

	// Kill -9 the CLI while the agent runs a tool.
	cmd := e.command(true, e.chatArgs("resume", "-p", "--output-format", "stream-json", id, sleepPrompt)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var seen []string
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if strings.Contains(sc.Text(), `"type":"tool_start"`) && strings.Contains(sc.Text(), "sleep 300") {
			break
		}
	}
	if len(seen) == 0 || !strings.Contains(seen[len(seen)-1], "sleep 300") {
		t.Fatalf("no tool_start for the sleep; got %q\nstderr: %s", seen, stderr.String())
	}
	cmd.Process.Signal(syscall.SIGKILL)
	io.Copy(io.Discard, stdout)
	cmd.Wait()
	// The sandbox dies with the CLI (bwrap's parent-death signal); wait
	// for it, generously.
	for deadline := time.Now().Add(30 * time.Second); len(processesMentioning(e.home)) > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("sandbox processes outlived the killed CLI: %q", processesMentioning(e.home))
		}
	}

	// Resume: every answered turn is still there.
	out, errs, code = e.run(true, e.chatArgs("resume", "-p", id, recallPrompt)...)
	if code != 0 || !strings.Contains(out, "Recalled: dataset=true accuracy=true sleep-turn=true.") {
		t.Fatalf("resume after kill: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
}

func TestInterruptPrintMode(t *testing.T) {
	e := newE2E(t)
	cmd := e.command(true, e.chatArgs("run", "-p", "--output-format", "stream-json", sleepPrompt)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var interrupted bool
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, `"type":"tool_start"`) {
			cmd.Process.Signal(os.Interrupt)
		}
		if strings.Contains(line, `"type":"turn_end"`) {
			interrupted = strings.Contains(line, `"stop_reason":"interrupted"`)
		}
	}
	cmd.Wait()
	if !interrupted {
		t.Fatalf("no turn_end with stop_reason interrupted after Ctrl-C")
	}
	if code := cmd.ProcessState.ExitCode(); code == 0 {
		t.Errorf("exit code 0 after an interrupted -p run; want non-zero")
	}
	if procs := processesMentioning(e.home); len(procs) > 0 {
		t.Errorf("processes still running after exit: %q", procs)
	}
}

func TestRunWithoutKey(t *testing.T) {
	e := newE2E(t)
	out, errs, code := e.run(false, "run", "--dashboard-listen", "off", "hello")
	if code != 2 {
		t.Errorf("got exit %d; want 2", code)
	}
	for _, s := range []string{"no model key", "mlagent secret set anthropic ANTHROPIC_API_KEY=", "export ANTHROPIC_API_KEY=", "--base-url"} {
		if !strings.Contains(errs, s) {
			t.Errorf("stderr lacks %q:\n%s", s, errs)
		}
	}
	if out != "" {
		t.Errorf("got stdout %q; want none", out)
	}
	// No sandbox, no session, nothing started.
	if entries, _ := os.ReadDir(filepath.Join(e.home, "sandboxes")); len(entries) > 0 {
		t.Errorf("sandboxes were created: %v", entries)
	}
	if rows := e.sessions(); len(rows) != 0 {
		t.Errorf("got sessions %+v; want none", rows)
	}
}

// TestRunOnImage runs the agent in a sandbox on an image (--image), and
// resumes the session on the same image unless --image names another.
func TestRunOnImage(t *testing.T) {
	e := newE2E(t)
	layout := imagetest.WriteLayout(t, filepath.Join(t.TempDir(), "py"), imagetest.PythonImage(t), "1")
	onImage := `image=oci:` + layout + `\nlayer 2`
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"run --image", []string{"run", "-p", "--image", layout, imagePrompt}, onImage},
		{"resume keeps the image", []string{"resume", "-p", "latest", imagePrompt}, onImage},
		{"resume --image '' goes back to the host", []string{"resume", "-p", "--image", "", "latest", imagePrompt}, `image=\n`},
	} {
		out, errs, code := e.run(true, e.chatArgs(c.args[0], c.args[1:]...)...)
		// The tool result comes back as JSON text blocks: \n is escaped.
		if code != 0 || !strings.Contains(out, c.want) || c.want == `image=\n` && strings.Contains(out, "layer 2") {
			t.Errorf("%s: exit %d, stdout %q (stderr %s); want %q", c.name, code, out, errs, c.want)
		}
	}
	// An image without bash: a clear error before the agent starts.
	noBash, err := mutate.AppendLayers(imagetest.PythonImage(t), imagetest.Layer(t, imagetest.LayerTar(t, []imagetest.Entry{{Name: "usr/bin/.wh.bash"}})))
	if err != nil {
		t.Fatal(err)
	}
	dir := imagetest.WriteLayout(t, filepath.Join(t.TempDir(), "nobash"), noBash, "1")
	_, errs, code := e.run(true, e.chatArgs("run", "-p", "--image", dir, imagePrompt)...)
	if code != 1 || !strings.Contains(errs, "has no bash") {
		t.Errorf("an image without bash: exit %d, stderr %q; want 1 and the reason", code, errs)
	}
}
