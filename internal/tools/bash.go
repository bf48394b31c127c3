package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mlagent/mlagent/internal/protocol"
)

// Shell runs commands for the bash and jobs tools. Each command runs in a
// fresh `bash` process in its own process group (so a timeout or an
// interrupt kills everything it started), and the shell's state — working
// directory, exported variables, functions — is saved after each command
// and restored before the next, which makes it behave like one persistent
// shell without a long-lived process that a runaway command could wedge.
//
// A Shell is safe for concurrent use; foreground commands are serialised
// because they share the state.
type Shell struct {
	Dir            string        // initial working directory
	StateDir       string        // where the state file and job logs live
	DefaultTimeout time.Duration // per call when the model gives none
	MaxTimeout     time.Duration
	MaxOutput      int      // bytes of output returned (head+tail kept)
	Env            []string // process environment; nil = os.Environ()
	// OnJob, when set, is told when a background job starts and when it
	// ends (from the goroutine that saw it).
	OnJob func(*Job)

	fg   sync.Mutex
	mu   sync.Mutex
	jobs map[string]*Job
	next int
}

// NewShell returns a Shell starting in dir, keeping its files in stateDir.
func NewShell(dir, stateDir string) (*Shell, error) {
	if err := os.MkdirAll(filepath.Join(stateDir, "jobs"), 0o700); err != nil {
		return nil, fmt.Errorf("shell state dir: %w", err)
	}
	return &Shell{
		Dir: dir, StateDir: stateDir,
		DefaultTimeout: 2 * time.Minute, MaxTimeout: 10 * time.Minute,
		MaxOutput: 30000, jobs: map[string]*Job{}, next: lastJob(stateDir),
	}, nil
}

// lastJob is the highest job number with a log in stateDir: a resumed
// session's shell numbers on, so that job1's log from before stays job1's.
func lastJob(stateDir string) int {
	ents, _ := os.ReadDir(filepath.Join(stateDir, "jobs"))
	n := 0
	for _, e := range ents {
		s, ok := strings.CutSuffix(strings.TrimPrefix(e.Name(), "job"), ".log")
		if k, err := strconv.Atoi(s); ok && err == nil && k > n {
			n = k
		}
	}
	return n
}

func (s *Shell) statePath() string { return filepath.Join(s.StateDir, "shell.state") }

// script wraps the user's command: restore state, run it with stdin from
// /dev/null (a command reading stdin would hang), save state on any exit.
// Credential-like variables (the sandbox token, proxy URLs carrying it) are
// not saved: the state file lives on the persistent volume, and those
// variables come from the process environment on every call anyway.
// Neither are MLAGENT_* ones: they describe the sandbox (its image), which
// a resumed session may not share.
// The command is passed as $1 and run with eval so a syntax error in it is
// reported like any other failure.
const script = `__mlagent_state="$MLAGENT_SHELL_STATE"; unset MLAGENT_SHELL_STATE
cd "$MLAGENT_SHELL_START" 2>/dev/null; unset MLAGENT_SHELL_START
if [ -f "$__mlagent_state" ]; then . "$__mlagent_state" >/dev/null 2>&1; fi
__mlagent_save() {
  __rc=$?
  if [ -n "$__mlagent_save_state" ]; then
    { export -p | grep -v -E -e ' (BASHOPTS|SHELLOPTS|BASH_[A-Z_]*)=' -e ' [A-Za-z0-9_]*(TOKEN|KEY|SECRET|PASSWORD|PROXY|proxy)[A-Za-z0-9_]*=' -e ' MLAGENT_[A-Z_]*=' ; for __f in $(compgen -A function); do case $__f in __mlagent*) ;; *) declare -f "$__f";; esac; done; printf 'cd %q\n' "$PWD"; } > "$__mlagent_state.tmp" 2>/dev/null && mv -f "$__mlagent_state.tmp" "$__mlagent_state"
  fi
  exit $__rc
}
__mlagent_save_state=$MLAGENT_SAVE_STATE; unset MLAGENT_SAVE_STATE
trap __mlagent_save EXIT
__mlagent_cmd=$1; shift
eval "$__mlagent_cmd" </dev/null
`

func (s *Shell) command(ctx context.Context, cmdline string, saveState bool) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-c", script, "bash", cmdline)
	env := s.Env
	if env == nil {
		env = os.Environ()
	}
	env = append(env[:len(env):len(env)],
		"MLAGENT_SHELL_STATE="+s.statePath(),
		"MLAGENT_SHELL_START="+s.Dir,
	)
	if saveState {
		env = append(env, "MLAGENT_SAVE_STATE=1")
	}
	cmd.Env = env
	cmd.Dir = s.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// Kill the whole group: the command's children too.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// Exec runs cmdline in the foreground and returns its combined output
// (capped) and exit code. timedOut reports that timeout killed it.
func (s *Shell) Exec(ctx context.Context, cmdline string, timeout time.Duration) (out string, code int, timedOut bool, err error) {
	s.fg.Lock()
	defer s.fg.Unlock()
	if timeout <= 0 {
		timeout = s.DefaultTimeout
	}
	if s.MaxTimeout > 0 && timeout > s.MaxTimeout {
		timeout = s.MaxTimeout
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	buf := newCapBuffer(s.MaxOutput)
	cmd := s.command(tctx, cmdline, true)
	cmd.Stdout = buf
	cmd.Stderr = buf
	err = cmd.Run()
	out = buf.String()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return out, -1, false, ctx.Err()
	case tctx.Err() != nil:
		return out, -1, true, nil
	case errors.As(err, &exit):
		return out, exit.ExitCode(), false, nil
	case err != nil:
		return out, -1, false, fmt.Errorf("run bash: %w", err)
	}
	return out, 0, false, nil
}

// Job is a background command.
type Job struct {
	ID      string
	Command string
	Log     string // combined output file
	Started time.Time

	cmd    *exec.Cmd
	done   chan struct{}
	mu     sync.Mutex
	code   int
	err    error
	offset int64 // bytes of output already returned by Poll
}

// Start runs cmdline in the background; its output goes to a log file. It
// inherits the shell state but does not change it.
func (s *Shell) Start(cmdline string) (*Job, error) {
	s.mu.Lock()
	s.next++
	id := "job" + strconv.Itoa(s.next)
	s.mu.Unlock()
	logPath := filepath.Join(s.StateDir, "jobs", id+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("job log: %w", err)
	}
	// Background jobs outlive the call (and a user interrupt), so they
	// are not bound to the call's context; Stop or Close ends them.
	cmd := s.command(context.Background(), cmdline, false)
	cmd.Stdout = f
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start job: %w", err)
	}
	j := &Job{ID: id, Command: cmdline, Log: logPath, Started: time.Now(), cmd: cmd, done: make(chan struct{})}
	s.mu.Lock()
	s.jobs[id] = j
	s.mu.Unlock()
	// Told before the job can be seen to end, so "running" comes first.
	if s.OnJob != nil {
		s.OnJob(j)
	}
	go func() {
		err := cmd.Wait()
		f.Close()
		j.mu.Lock()
		j.code = 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			j.code = exit.ExitCode()
		} else if err != nil {
			j.code, j.err = -1, err
		}
		j.mu.Unlock()
		close(j.done)
		if s.OnJob != nil {
			s.OnJob(j)
		}
	}()
	return j, nil
}

// Job returns a background job by id.
func (s *Shell) Job(id string) (*Job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	return j, ok
}

// Jobs returns all jobs, oldest first.
func (s *Shell) Jobs() []*Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	js := make([]*Job, 0, len(s.jobs))
	for _, j := range s.jobs {
		js = append(js, j)
	}
	sort.Slice(js, func(a, b int) bool {
		return js[a].Started.Before(js[b].Started) || js[a].Started.Equal(js[b].Started) && js[a].ID < js[b].ID
	})
	return js
}

// Status returns "running" or "exited N".
func (j *Job) Status() string {
	select {
	case <-j.done:
		j.mu.Lock()
		defer j.mu.Unlock()
		if j.err != nil {
			return "failed: " + j.err.Error()
		}
		return "exited " + strconv.Itoa(j.code)
	default:
		return "running"
	}
}

// Running reports whether the job has not exited.
func (j *Job) Running() bool {
	select {
	case <-j.done:
		return false
	default:
		return true
	}
}

// Wait blocks until the job exits or ctx ends.
func (j *Job) Wait(ctx context.Context) error {
	select {
	case <-j.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Poll returns the output written since the last Poll, capped at max
// bytes (the tail is kept: the newest lines matter when watching training).
func (j *Job) Poll(max int) (string, error) {
	f, err := os.Open(j.Log)
	if err != nil {
		return "", fmt.Errorf("job log: %w", err)
	}
	defer f.Close()
	j.mu.Lock()
	defer j.mu.Unlock()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("job log: %w", err)
	}
	size := st.Size()
	from := j.offset
	skipped := int64(0)
	if max > 0 && size-from > int64(max) {
		skipped = size - int64(max) - from
		from = size - int64(max)
	}
	b := make([]byte, size-from)
	if _, err := f.ReadAt(b, from); err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("job log: %w", err)
	}
	j.offset = size
	out := string(b)
	if skipped > 0 {
		out = fmt.Sprintf("[... %d earlier bytes skipped; full log at %s ...]\n", skipped, j.Log) + validUTF8Suffix(out)
	}
	return out, nil
}

// Stop kills the job's process group.
func (j *Job) Stop() {
	if j.Running() {
		_ = syscall.Kill(-j.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-j.done:
		case <-time.After(3 * time.Second):
			_ = syscall.Kill(-j.cmd.Process.Pid, syscall.SIGKILL)
			<-j.done
		}
	}
}

// Close stops every background job (on agent shutdown).
func (s *Shell) Close() {
	for _, j := range s.Jobs() {
		j.Stop()
	}
}

// capBuffer keeps the first and last max/2 bytes written.
type capBuffer struct {
	mu    sync.Mutex
	max   int
	head  []byte
	tail  []byte // ring of the last bytes
	total int
}

func newCapBuffer(max int) *capBuffer {
	if max <= 0 {
		max = 30000
	}
	return &capBuffer{max: max}
}

func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total += len(p)
	n := len(p)
	if room := c.max/2 - len(c.head); room > 0 {
		k := min(room, len(p))
		c.head = append(c.head, p[:k]...)
		p = p[k:]
	}
	if len(p) > 0 {
		keep := c.max - c.max/2
		c.tail = append(c.tail, p...)
		if len(c.tail) > keep {
			c.tail = append(c.tail[:0], c.tail[len(c.tail)-keep:]...)
		}
	}
	return n, nil
}

func (c *capBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	omitted := c.total - len(c.head) - len(c.tail)
	if omitted <= 0 {
		return string(c.head) + string(c.tail)
	}
	return validUTF8Prefix(string(c.head)) + fmt.Sprintf("\n[... %d bytes omitted ...]\n", omitted) + validUTF8Suffix(string(c.tail))
}

// BashTool is the "bash" tool.
type BashTool struct {
	Shell *Shell
	// Approver, when set, must approve each command before it runs.
	Approver Approver
}

// Approver asks the person before an action runs. It returns nil to go
// ahead, or an error saying why not (given to the model). It must return
// when ctx ends.
type Approver interface {
	Approve(ctx context.Context, id string, a protocol.Action) error
}

type bashInput struct {
	Command        string `json:"command"`
	TimeoutSeconds int    `json:"timeout_seconds,omitempty"`
	Background     bool   `json:"background,omitempty"`
	Description    string `json:"description,omitempty"`
}

func (t *BashTool) Info() Info {
	return Info{
		Name: "bash",
		Description: `Run a bash command. The shell is persistent: the working directory, exported variables and functions carry over to the next call. Stdin is /dev/null; stdout and stderr are combined and long output is cut in the middle (head and tail kept).
Foreground calls time out after timeout_seconds (default 120, max 600) and the command is killed.
For anything long (training, large downloads, servers) set background=true: the call returns a job id at once, and you watch it with the jobs tool (action "output" returns new output since the last look; "stop" kills it). Background jobs keep running when the user interrupts a turn.`,
		Schema: Schema{
			Properties: map[string]any{
				"command":         map[string]any{"type": "string", "description": "The command line to run."},
				"timeout_seconds": map[string]any{"type": "integer", "description": "Foreground timeout in seconds (default 120, max 600)."},
				"background":      map[string]any{"type": "boolean", "description": "Run as a background job and return its id immediately."},
				"description":     map[string]any{"type": "string", "description": "A few words saying what the command does, shown to the user."},
			},
			Required: []string{"command"},
		},
	}
}

func (t *BashTool) Summarize(input json.RawMessage) string {
	var in bashInput
	if Decode(input, &in) != nil {
		return ""
	}
	s := in.Command
	if in.Description != "" {
		s = in.Description + ": " + s
	}
	if in.Background {
		s = "[background] " + s
	}
	return oneLine(s, 120)
}

func (t *BashTool) Run(ctx context.Context, input json.RawMessage) Result {
	var in bashInput
	if err := Decode(input, &in); err != nil {
		return Errorf("%v", err)
	}
	if strings.TrimSpace(in.Command) == "" {
		return Errorf("command is required")
	}
	if in.TimeoutSeconds < 0 {
		return Errorf("timeout_seconds must be positive")
	}
	if t.Approver != nil {
		err := t.Approver.Approve(ctx, ToolUseID(ctx), protocol.Action{Kind: "bash", Target: in.Command, Detail: in.Description})
		switch {
		case err != nil && ctx.Err() != nil:
			return Result{Output: "[interrupted by the user before the command ran]", IsError: true, Summary: "interrupted"}
		case err != nil:
			return Result{Output: "The user did not approve this command, so it did not run: " + err.Error() + ". Do not retry it as it is; ask the user or do something else.", IsError: true, Summary: "not approved"}
		}
	}
	if in.Background {
		j, err := t.Shell.Start(in.Command)
		if err != nil {
			return Errorf("%v", err)
		}
		return Result{
			Output:  fmt.Sprintf("started background job %s (log: %s). Use the jobs tool with action \"output\" and id %q to watch it.", j.ID, j.Log, j.ID),
			Summary: "started " + j.ID,
		}
	}
	out, code, timedOut, err := t.Shell.Exec(ctx, in.Command, time.Duration(in.TimeoutSeconds)*time.Second)
	switch {
	case err != nil && ctx.Err() != nil:
		return Result{Output: out + "\n[interrupted by the user]", IsError: true, Summary: "interrupted"}
	case err != nil:
		return Errorf("%v", err)
	case timedOut:
		return Result{Output: out + "\n[timed out and killed; use background=true for long commands]", IsError: true, Summary: "timed out"}
	}
	if out == "" {
		out = "(no output)"
	}
	if code != 0 {
		return Result{Output: out + fmt.Sprintf("\n[exit code %d]", code), IsError: true, Summary: fmt.Sprintf("exit %d", code)}
	}
	return Result{Output: out, Summary: "exit 0"}
}

// JobsTool is the "jobs" tool: list, watch and stop background jobs.
type JobsTool struct{ Shell *Shell }

type jobsInput struct {
	Action   string `json:"action"`
	ID       string `json:"id,omitempty"`
	MaxBytes int    `json:"max_bytes,omitempty"`
	WaitSecs int    `json:"wait_seconds,omitempty"`
}

func (t *JobsTool) Info() Info {
	return Info{
		Name: "jobs",
		Description: `Manage background jobs started with bash background=true.
action "list": every job with its status.
action "output": the output of job id written since the last "output" call (newest bytes kept when large) and its status; wait_seconds (max 300) waits for the job to finish or for that long first, which is how to check on training without busy polling.
action "stop": kill job id and everything it started.`,
		Schema: Schema{
			Properties: map[string]any{
				"action":       map[string]any{"type": "string", "enum": []string{"list", "output", "stop"}},
				"id":           map[string]any{"type": "string", "description": "Job id, e.g. job1 (output, stop)."},
				"max_bytes":    map[string]any{"type": "integer", "description": "Most output bytes to return (default 20000)."},
				"wait_seconds": map[string]any{"type": "integer", "description": "output: wait up to this long for the job to exit first."},
			},
			Required: []string{"action"},
		},
		Parallel: true,
	}
}

func (t *JobsTool) Summarize(input json.RawMessage) string {
	var in jobsInput
	if Decode(input, &in) != nil {
		return ""
	}
	return strings.TrimSpace(in.Action + " " + in.ID)
}

func (t *JobsTool) Run(ctx context.Context, input json.RawMessage) Result {
	var in jobsInput
	if err := Decode(input, &in); err != nil {
		return Errorf("%v", err)
	}
	if in.Action == "list" {
		js := t.Shell.Jobs()
		if len(js) == 0 {
			return Result{Output: "no background jobs", Summary: "0 jobs"}
		}
		var b strings.Builder
		for _, j := range js {
			fmt.Fprintf(&b, "%s\t%s\tstarted %s\t%s\n", j.ID, j.Status(), j.Started.UTC().Format(time.RFC3339), oneLine(j.Command, 100))
		}
		return Result{Output: b.String(), Summary: fmt.Sprintf("%d jobs", len(js))}
	}
	if in.Action != "output" && in.Action != "stop" {
		return Errorf("action must be list, output or stop; got %q", in.Action)
	}
	j, ok := t.Shell.Job(in.ID)
	if !ok {
		return Errorf("no job %q (use action \"list\")", in.ID)
	}
	if in.Action == "stop" {
		j.Stop()
		out, _ := j.Poll(4000)
		return Result{Output: fmt.Sprintf("%s stopped (%s)\n%s", j.ID, j.Status(), out), Summary: "stopped " + j.ID}
	}
	if in.WaitSecs > 0 {
		w := min(in.WaitSecs, 300)
		wctx, cancel := context.WithTimeout(ctx, time.Duration(w)*time.Second)
		_ = j.Wait(wctx)
		cancel()
		if ctx.Err() != nil {
			return Result{Output: "[interrupted by the user]", IsError: true, Summary: "interrupted"}
		}
	}
	max := in.MaxBytes
	if max <= 0 {
		max = 20000
	}
	out, err := j.Poll(max)
	if err != nil {
		return Errorf("%v", err)
	}
	if out == "" {
		out = "(no new output)"
	}
	st := j.Status()
	return Result{Output: fmt.Sprintf("[%s: %s]\n%s", j.ID, st, out), Summary: j.ID + " " + st}
}
