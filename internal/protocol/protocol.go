// Package protocol defines the versioned JSON-lines protocol spoken between
// the mlagent CLI (outside the sandbox) and `mlagent agent` (inside it):
// inputs on the agent's stdin, events on its stdout, one JSON object a line.
// See docs/protocol.md.
package protocol

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// Version is the protocol version. Every line carries it as "v"; a reader
// rejects lines from a newer major version rather than misreading them.
const Version = 1

// Event types written by the agent on stdout.
const (
	EventReady      = "ready"      // agent started: session id, model, resumed message count
	EventTextDelta  = "text_delta" // a piece of assistant text
	EventThinking   = "thinking"   // a piece of assistant thinking (may be omitted by renderers)
	EventToolStart  = "tool_start" // a tool call began
	EventToolEnd    = "tool_end"   // a tool call finished
	EventTodo       = "todo"       // the agent's plan changed
	EventAskUser    = "ask_user"   // the agent asks the user; answer with an "answer" input
	EventApproval   = "approval"   // an action waits for the user's approval; answer with an "approval" input
	EventJob        = "job"        // a background job started or ended
	EventAttached   = "attached"   // a session host's greeting to a front end that attached (never from the agent)
	EventModel      = "model"      // the model changed (set_model): model
	EventUsage      = "usage"      // token usage and cost of the turn just finished
	EventCompaction = "compaction" // the conversation was summarised to fit the context window
	EventRetry      = "retry"      // a model request failed and is retried; drop partial text since the last message
	EventError      = "error"      // something failed; Kind says what
	EventTurnEnd    = "turn_end"   // the user's turn is complete; the agent waits for input
)

// Input types read by the agent on stdin.
const (
	InputUserMessage = "user_message"
	InputAnswer      = "answer"
	InputApproval    = "approval"
	InputInterrupt   = "interrupt"
	InputShutdown    = "shutdown"
	// Between turns: use another model from the next request on (text),
	// forget the conversation, or summarise it now (a turn of its own,
	// ended by turn_end).
	InputSetModel = "set_model"
	InputClear    = "clear"
	InputCompact  = "compact"
	// InputDetach is for a session host only (never the agent): the front
	// end leaves, and the session goes on without it until one attaches.
	InputDetach = "detach"
)

// Error kinds carried by EventError.
const (
	ErrBudget     = "budget"     // the gateway refused: budget exhausted or token revoked (403); not retried
	ErrAuth       = "auth"       // the gateway refused the sandbox's token (401)
	ErrKey        = "key"        // the model API refused the user's own key (401 from upstream)
	ErrAPI        = "api"        // the model API failed after all retries, or rejected the request
	ErrMaxTurns   = "max_turns"  // the turn hit --max-turns
	ErrRefusal    = "refusal"    // the model refused to continue
	ErrProtocol   = "protocol"   // a bad input line
	ErrTranscript = "transcript" // the transcript could not be written
	ErrInternal   = "internal"
)

// Approval decisions carried by an "approval" input.
const (
	DecisionAllow  = "allow"
	DecisionDeny   = "deny"   // Text may say why, or what to do instead
	DecisionAlways = "always" // allow, and actions like it for the rest of the chat
)

// Action is what an approval asks about: an action with an effect outside
// the sandbox (a Hub write, a git push), or in ask-all mode a command.
type Action struct {
	// Kind is "bash", "hub:push", "hub:create", "hub:delete", "hub:move",
	// "hub:write", "git:push", "git:write"…
	Kind string `json:"kind"`
	// Target is what it acts on: the command, a repo id, a repository.
	Target string `json:"target,omitempty"`
	// Detail says more, e.g. the request: "POST /api/models/you/x/commit/main".
	Detail string `json:"detail,omitempty"`
	// Request is the request a gateway approval holds, as the gateway
	// saw it; nil in the agent's own approvals.
	Request *HeldRequest `json:"request,omitempty"`
}

// HeldRequest is a request the gateway holds for the user's approval.
type HeldRequest struct {
	Method string `json:"method"`
	// Host is the upstream the request would go to ("huggingface.co").
	Host string `json:"host"`
	Path string `json:"path"`
	// Size is the body's length in bytes; -1 when the sandbox streams it
	// without saying.
	Size int64 `json:"size"`
}

// String is the request in a few words, as a front end shows it:
// "POST huggingface.co/api/models/you/m/commit/main, 1.2 MB".
func (r HeldRequest) String() string {
	s := r.Method + " " + r.Host + r.Path
	switch {
	case r.Size < 0:
		s += ", size not given"
	case r.Size < 1000:
		s += ", " + strconv.FormatInt(r.Size, 10) + " bytes"
	case r.Size < 1000*1000:
		s += ", " + strconv.FormatFloat(float64(r.Size)/1e3, 'f', 1, 64) + " kB"
	case r.Size < 1000*1000*1000:
		s += ", " + strconv.FormatFloat(float64(r.Size)/1e6, 'f', 1, 64) + " MB"
	default:
		s += ", " + strconv.FormatFloat(float64(r.Size)/1e9, 'f', 1, 64) + " GB"
	}
	return s
}

// Describe is what a front end shows about an action besides its
// String: for a held write, the request as the gateway holds it; else
// the Detail.
func (a Action) Describe() string {
	if a.Request != nil {
		return a.Request.String()
	}
	return a.Detail
}

// Gateway approvals are approval events the host writes into a session's
// event stream, named GatewayName, with ids that begin GatewayIDPrefix
// and go on with a random part the sandbox cannot guess. The host drops
// any event from the agent that looks like one (IsGatewayApproval), so a
// front end reading a session's stream can trust the name.
const (
	GatewayName     = "gateway"
	GatewayIDPrefix = "gw-"
)

// IsGatewayApproval reports whether ev claims to be a gateway approval.
func IsGatewayApproval(ev Event) bool {
	return ev.Type == EventApproval && (ev.Name == GatewayName || strings.HasPrefix(ev.ID, GatewayIDPrefix))
}

// String is the action in a few words: "hub:push you/model".
func (a Action) String() string {
	if a.Target == "" {
		return a.Kind
	}
	return a.Kind + " " + a.Target
}

// Exchange is where a resumed session left off, carried by its ready
// event: the last thing the user said, what the assistant answered, and
// the tool calls the end of the last run cut short.
type Exchange struct {
	User      string `json:"user,omitempty"`
	Assistant string `json:"assistant,omitempty"` // its end, when long
	// Interrupted are "name  summary" lines of the calls left without a
	// result, now answered "interrupted".
	Interrupted []string `json:"interrupted,omitempty"`
}

// Job is a background job, as carried by EventJob.
type Job struct {
	ID      string `json:"id"`
	Command string `json:"command"`
	// Status is "running", "exited N" or "failed: why".
	Status string `json:"status"`
}

// Running reports whether the job has not ended.
func (j Job) Running() bool { return j.Status == "running" }

// TodoItem is one entry of the agent's plan.
type TodoItem struct {
	Content string `json:"content"`
	Status  string `json:"status"` // pending, in_progress, completed
}

// Usage is the token accounting carried by EventUsage.
type Usage struct {
	InputTokens              int64   `json:"input_tokens"`
	OutputTokens             int64   `json:"output_tokens"`
	CacheCreationInputTokens int64   `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64   `json:"cache_read_input_tokens"`
	CostUSD                  float64 `json:"cost_usd"`
	Requests                 int     `json:"requests"`
	// Session totals since the agent started (including resumed turns'
	// usage only from this process).
	SessionCostUSD float64 `json:"session_cost_usd"`
	// SessionCacheReadRatio is cache-read tokens over all input tokens
	// (uncached + cache creation + cache read) for the session.
	SessionCacheReadRatio float64 `json:"session_cache_read_ratio"`
}

// Compaction describes a summarisation of the conversation.
type Compaction struct {
	MessagesBefore int   `json:"messages_before"`
	MessagesAfter  int   `json:"messages_after"`
	TokensBefore   int64 `json:"tokens_before"`
	SummaryChars   int   `json:"summary_chars"`
}

// Event is one line written by the agent. Fields not used by a Type are
// omitted.
type Event struct {
	V    int    `json:"v"`
	Type string `json:"type"`

	// ready
	Session         string `json:"session,omitempty"`
	Model           string `json:"model,omitempty"`
	ResumedMessages int    `json:"resumed_messages,omitempty"`
	// Last is where a resumed session left off.
	Last *Exchange `json:"last,omitempty"`

	// text_delta, thinking
	Text string `json:"text,omitempty"`

	// tool_start, tool_end, ask_user (ID is the tool_use id)
	ID      string `json:"id,omitempty"`
	Name    string `json:"name,omitempty"`
	Summary string `json:"summary,omitempty"`
	OK      *bool  `json:"ok,omitempty"`
	Output  string `json:"output,omitempty"`

	// todo
	Items []TodoItem `json:"items,omitempty"`

	// ask_user
	Question string   `json:"question,omitempty"`
	Choices  []string `json:"choices,omitempty"`

	// approval (ID names it in the answer); Withdrawn: the request was
	// given up, drop the question
	Action    *Action `json:"action,omitempty"`
	Withdrawn bool    `json:"withdrawn,omitempty"`

	// job
	Job *Job `json:"job,omitempty"`

	// attached: Busy says a turn is running; Session and Model as ready
	Busy bool `json:"busy,omitempty"`

	// usage
	Usage *Usage `json:"usage,omitempty"`

	// compaction
	Compaction *Compaction `json:"compaction,omitempty"`

	// retry
	Attempt int   `json:"attempt,omitempty"`
	WaitMS  int64 `json:"wait_ms,omitempty"`

	// error (Message also explains a retry)
	Kind    string `json:"kind,omitempty"`
	Message string `json:"message,omitempty"`

	// turn_end: end_turn, max_turns, interrupted, error, refusal, budget
	StopReason string `json:"stop_reason,omitempty"`
}

// Input is one line read by the agent.
type Input struct {
	V    int    `json:"v"`
	Type string `json:"type"`
	Text string `json:"text,omitempty"` // user_message, answer; approval: why it was denied
	ID   string `json:"id,omitempty"`   // answer: the ask_user id; approval: the approval's id
	// Decision answers an approval: allow, deny or always.
	Decision string `json:"decision,omitempty"`
}

// Bool returns a pointer to b, for Event.OK.
func Bool(b bool) *bool { return &b }

// Writer writes events as JSON lines. It is safe for concurrent use: tools
// running in parallel emit through the same Writer.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

// NewWriter returns a Writer on w. Each event is written with one Write call,
// so an unbuffered w (a pipe, os.Stdout) sees whole lines immediately.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Emit writes ev, setting its version. After the first write error every
// later Emit returns that error (the reader has gone).
func (w *Writer) Emit(ev Event) error {
	ev.V = Version
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	b = append(b, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if _, err := w.w.Write(b); err != nil {
		w.err = fmt.Errorf("write event: %w", err)
		return w.err
	}
	if f, ok := w.w.(interface{ Flush() error }); ok {
		if err := f.Flush(); err != nil {
			w.err = fmt.Errorf("flush event: %w", err)
			return w.err
		}
	}
	return nil
}

// MaxLine is the longest input line accepted (a pasted prompt can be long).
const MaxLine = 8 << 20

// ErrVersion is returned for a line from a newer protocol version.
var ErrVersion = errors.New("unsupported protocol version")

// ErrRead wraps a failure of the input stream itself (as opposed to one bad
// line): the Reader cannot go on.
var ErrRead = errors.New("read input")

// Reader reads input lines.
type Reader struct{ s *bufio.Scanner }

// NewReader returns a Reader on r.
func NewReader(r io.Reader) *Reader {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), MaxLine)
	return &Reader{s: s}
}

// Next returns the next input. It returns io.EOF at the end; a malformed
// line yields an error but the Reader can go on with the next line.
func (r *Reader) Next() (Input, error) {
	for r.s.Scan() {
		line := r.s.Bytes()
		if len(trimSpace(line)) == 0 {
			continue
		}
		return ParseInput(line)
	}
	if err := r.s.Err(); err != nil {
		return Input{}, fmt.Errorf("%w: %w", ErrRead, err)
	}
	return Input{}, io.EOF
}

// ParseInput decodes and validates one input line. A missing "v" is read as
// the current version so that hand-typed lines work.
func ParseInput(line []byte) (Input, error) {
	var in Input
	if err := json.Unmarshal(line, &in); err != nil {
		return Input{}, fmt.Errorf("bad input line: %w", err)
	}
	if in.V == 0 {
		in.V = Version
	}
	if in.V > Version {
		return Input{}, fmt.Errorf("input v=%d: %w (this agent speaks v%d)", in.V, ErrVersion, Version)
	}
	switch in.Type {
	case InputUserMessage:
		if in.Text == "" {
			return Input{}, errors.New("bad input line: user_message needs text")
		}
	case InputAnswer:
		if in.ID == "" {
			return Input{}, errors.New("bad input line: answer needs the ask_user id")
		}
	case InputApproval:
		if in.ID == "" {
			return Input{}, errors.New("bad input line: approval needs the approval's id")
		}
		switch in.Decision {
		case DecisionAllow, DecisionDeny, DecisionAlways:
		default:
			return Input{}, fmt.Errorf("bad input line: approval decision %q: want allow, deny or always", in.Decision)
		}
	case InputSetModel:
		if strings.TrimSpace(in.Text) == "" {
			return Input{}, errors.New("bad input line: set_model needs the model in text")
		}
	case InputInterrupt, InputShutdown, InputDetach, InputClear, InputCompact:
	default:
		return Input{}, fmt.Errorf("bad input line: unknown type %q", in.Type)
	}
	return in, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
