// Package agent is the engine of `mlagent agent`: the Messages API tool
// loop with streaming, parallel tool calls, retries with backoff, prompt
// caching, compaction of long conversations and a crash-safe transcript.
// It talks only to the gateway, with the sandbox's own token.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/mlagent/mlagent/internal/models"
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/tools"
)

// Config configures an Agent.
type Config struct {
	BaseURL    string // the gateway, e.g. http://127.0.0.1:8790
	APIKey     string // the sandbox token
	HTTPClient *http.Client

	Model     string
	MaxTokens int64 // per response; default 16384
	// MaxTurns bounds the model requests of one user turn; default 200.
	MaxTurns int
	System   string
	Tools    *tools.Registry

	SessionID  string
	Transcript *Transcript // nil: nothing is persisted (tests)
	History    []Message   // a resumed conversation, already repaired

	Emit func(protocol.Event) // nil: events are dropped
	Log  *slog.Logger

	MaxRetries int     // per request; default 8
	Backoff    Backoff // default 1s doubling up to 60s
	// ContextWindow and CompactAt decide compaction: when a request's
	// prompt exceeds CompactAt*ContextWindow tokens the older turns are
	// summarised. Defaults 200000 and 0.8.
	ContextWindow int64
	CompactAt     float64
	// KeepMessages is how many recent messages survive compaction
	// verbatim (at least); default 6.
	KeepMessages int
	// ToolOutputMax caps a tool result sent to the model; default 100000
	// bytes. EventOutputMax caps the copy in tool_end events; default 2000.
	ToolOutputMax  int
	EventOutputMax int
}

// Agent runs a conversation. Turn must not be called concurrently.
type Agent struct {
	cfg     Config
	client  anthropic.Client
	tools   []anthropic.ToolUnionParam
	system  []anthropic.TextBlockParam
	history []Message

	mu         sync.Mutex // guards the counters below (read by Usage)
	session    usage
	requests   int
	lastPrompt int64
}

// New returns an Agent.
func New(cfg Config) (*Agent, error) {
	if cfg.Model == "" {
		return nil, errors.New("agent: model is required")
	}
	if cfg.Tools == nil {
		cfg.Tools = tools.NewRegistry()
	}
	if cfg.MaxTokens <= 0 {
		cfg.MaxTokens = 16384
	}
	if cfg.MaxTurns <= 0 {
		cfg.MaxTurns = 200
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 8
	}
	if cfg.Backoff.Base == 0 {
		cfg.Backoff.Base = time.Second
	}
	if cfg.ContextWindow <= 0 {
		cfg.ContextWindow = 200000
	}
	if cfg.CompactAt <= 0 || cfg.CompactAt >= 1 {
		cfg.CompactAt = 0.8
	}
	if cfg.KeepMessages <= 0 {
		cfg.KeepMessages = 6
	}
	if cfg.ToolOutputMax <= 0 {
		cfg.ToolOutputMax = 100000
	}
	if cfg.EventOutputMax <= 0 {
		cfg.EventOutputMax = 2000
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	opts := []option.RequestOption{
		option.WithAPIKey(cfg.APIKey),
		// The loop retries itself (with events the user sees and the
		// whole stream replayed), so the SDK must not.
		option.WithMaxRetries(0),
	}
	if cfg.BaseURL != "" {
		opts = append(opts, option.WithBaseURL(cfg.BaseURL))
	}
	if cfg.HTTPClient != nil {
		opts = append(opts, option.WithHTTPClient(cfg.HTTPClient))
	}
	a := &Agent{cfg: cfg, client: anthropic.NewClient(opts...), history: append([]Message(nil), cfg.History...)}
	ts := cfg.Tools.Tools()
	for i, t := range ts {
		info := t.Info()
		tp := anthropic.ToolParam{
			Name:        info.Name,
			Description: anthropic.String(info.Description),
			InputSchema: anthropic.ToolInputSchemaParam{Properties: info.Schema.Properties, Required: info.Schema.Required},
		}
		if i == len(ts)-1 {
			tp.CacheControl = anthropic.NewCacheControlEphemeralParam()
		}
		a.tools = append(a.tools, anthropic.ToolUnionParam{OfTool: &tp})
	}
	if cfg.System != "" {
		a.system = []anthropic.TextBlockParam{{Text: cfg.System, CacheControl: anthropic.NewCacheControlEphemeralParam()}}
	}
	return a, nil
}

// History returns a copy of the conversation.
func (a *Agent) History() []Message { return append([]Message(nil), a.history...) }

func (a *Agent) emit(ev protocol.Event) {
	if a.cfg.Emit != nil {
		a.cfg.Emit(ev)
	}
}

// appendMessage adds m to the history and the transcript. The transcript
// write comes first: the next request must not go out before it is on disk.
func (a *Agent) appendMessage(m Message) error {
	if a.cfg.Transcript != nil {
		if err := a.cfg.Transcript.AppendMessage(m); err != nil {
			return err
		}
	}
	a.history = append(a.history, m)
	return nil
}

// Stop reasons of a turn (turn_end's stop_reason).
const (
	StopEndTurn     = "end_turn"
	StopInterrupted = "interrupted"
	StopMaxTurns    = "max_turns"
	StopRefusal     = "refusal"
	StopError       = "error"
	StopBudget      = "budget"
)

// Turn handles one user message: it calls the model and runs tools until
// the model ends its turn, then emits usage and turn_end. Cancelling ctx
// interrupts it (running tools are killed and answered "interrupted").
func (a *Agent) Turn(ctx context.Context, text string) string {
	var turn usage
	requests := 0
	stop := a.turn(ctx, text, &turn, &requests)
	a.mu.Lock()
	sess, ratio := a.session.cost(priceFor(a.cfg.Model)), a.session.cacheReadRatio()
	a.mu.Unlock()
	a.emit(protocol.Event{Type: protocol.EventUsage, Usage: &protocol.Usage{
		InputTokens: turn.Input, OutputTokens: turn.Output,
		CacheCreationInputTokens: turn.CacheWrite, CacheReadInputTokens: turn.CacheRead,
		CostUSD: turn.cost(priceFor(a.cfg.Model)), Requests: requests,
		SessionCostUSD: sess, SessionCacheReadRatio: ratio,
	}})
	a.emit(protocol.Event{Type: protocol.EventTurnEnd, StopReason: stop})
	return stop
}

func (a *Agent) turn(ctx context.Context, text string, turn *usage, requests *int) string {
	if err := a.appendMessage(Message{Role: "user", Content: []Block{TextBlock(text)}}); err != nil {
		a.emit(protocol.Event{Type: protocol.EventError, Kind: protocol.ErrTranscript, Message: err.Error()})
		return StopError
	}
	forced := false
	for i := 0; ; i++ {
		if i >= a.cfg.MaxTurns {
			a.emit(protocol.Event{Type: protocol.EventError, Kind: protocol.ErrMaxTurns,
				Message: fmt.Sprintf("stopped after %d model requests in this turn (--max-turns); send a message to continue", a.cfg.MaxTurns)})
			return StopMaxTurns
		}
		if a.needsCompaction() {
			if err := a.compact(ctx, turn, requests); err != nil {
				if ctx.Err() != nil {
					return StopInterrupted
				}
				a.cfg.Log.Warn("compaction failed", "err", err)
				a.emit(protocol.Event{Type: protocol.EventError, Kind: protocol.ErrAPI, Message: "compaction failed: " + err.Error()})
			}
		}
		msg, err := a.request(ctx, a.history, true, turn, requests)
		if err != nil && !forced && promptTooLong(err) {
			// Our estimate missed (a huge tool result): compact now and
			// try once more.
			forced = true
			if cerr := a.compact(ctx, turn, requests); cerr == nil {
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return StopInterrupted
			}
			ce := classify(err)
			text := errorText(ce)
			if ce.Status == http.StatusNotFound && strings.Contains(text, "model: ") {
				text += "; " + a.usableModels(ctx)
			}
			a.emit(protocol.Event{Type: protocol.EventError, Kind: ce.Kind, Message: text})
			if ce.Kind == protocol.ErrBudget {
				return StopBudget
			}
			return StopError
		}
		am := fromSDK(msg)
		if len(am.Content) > 0 {
			if err := a.appendMessage(am); err != nil {
				a.emit(protocol.Event{Type: protocol.EventError, Kind: protocol.ErrTranscript, Message: err.Error()})
				return StopError
			}
		}
		switch msg.StopReason {
		case anthropic.StopReasonToolUse, anthropic.StopReasonMaxTokens:
			uses := am.ToolUses()
			if len(uses) == 0 {
				// Cut off mid-text: ask for the rest.
				if err := a.appendMessage(Message{Role: "user", Content: []Block{TextBlock("Your last response hit the output token limit. Continue exactly where you stopped.")}}); err != nil {
					a.emit(protocol.Event{Type: protocol.EventError, Kind: protocol.ErrTranscript, Message: err.Error()})
					return StopError
				}
				continue
			}
			results := a.runTools(ctx, uses)
			if err := a.appendMessage(Message{Role: "user", Content: results}); err != nil {
				a.emit(protocol.Event{Type: protocol.EventError, Kind: protocol.ErrTranscript, Message: err.Error()})
				return StopError
			}
			if ctx.Err() != nil {
				return StopInterrupted
			}
		case anthropic.StopReasonPauseTurn:
			// A long server-side turn paused; sending the conversation
			// back as is lets the model continue.
			if len(am.Content) == 0 {
				return StopEndTurn
			}
		case anthropic.StopReasonRefusal:
			a.emit(protocol.Event{Type: protocol.EventError, Kind: protocol.ErrRefusal, Message: "the model declined to continue this request"})
			return StopRefusal
		default: // end_turn, stop_sequence
			return StopEndTurn
		}
	}
}

// usableModels says which models the key can use, for a request the API
// refused for its model (unknown, or past its end of life).
func (a *Agent) usableModels(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	pager := a.client.Models.ListAutoPaging(ctx, anthropic.ModelListParams{Limit: anthropic.Int(1000)})
	var list []models.Info
	for pager.Next() && len(list) < 1000 {
		m := pager.Current()
		list = append(list, models.Info{ID: m.ID, Line: string(m.Line), Lifecycle: string(m.Lifecycle), Created: m.CreatedAt})
	}
	if err := pager.Err(); err != nil {
		return "listing the models this key can use failed too: " + err.Error()
	}
	hint := "models this key can use: " + models.IDs(list)
	if def, ok := models.PickDefault(list); ok {
		hint += "; mlagent run --model " + def + " (or no --model: the newest Sonnet-class one)"
	}
	return hint
}

func errorText(ce *callError) string {
	switch ce.Kind {
	case protocol.ErrBudget:
		return "the gateway refused the request (budget exhausted or token revoked): " + ce.Err.Error()
	case protocol.ErrAuth:
		return "the gateway did not accept this sandbox's token: " + ce.Err.Error()
	case protocol.ErrKey:
		return "the model API rejected the API key (401): " + ce.Err.Error()
	}
	return ce.Err.Error()
}

// buildParams assembles a request: tools and system (static, each ending
// in a cache breakpoint) and the normalised messages with the moving
// breakpoints.
func (a *Agent) buildParams(history []Message) (anthropic.MessageNewParams, error) {
	msgs := normalize(history)
	markCache(msgs)
	p, err := toParams(msgs)
	if err != nil {
		return anthropic.MessageNewParams{}, err
	}
	return anthropic.MessageNewParams{
		Model:     anthropic.Model(a.cfg.Model),
		MaxTokens: a.cfg.MaxTokens,
		System:    a.system,
		Tools:     a.tools,
		Messages:  p,
	}, nil
}

// request sends history with retries. live streams text to the user.
func (a *Agent) request(ctx context.Context, history []Message, live bool, turn *usage, requests *int) (*anthropic.Message, error) {
	params, err := a.buildParams(history)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		msg, err := a.once(ctx, params, live)
		if msg != nil {
			u := usage{Input: msg.Usage.InputTokens, Output: msg.Usage.OutputTokens,
				CacheWrite: msg.Usage.CacheCreationInputTokens, CacheRead: msg.Usage.CacheReadInputTokens}
			turn.add(u)
			*requests++
			a.mu.Lock()
			a.session.add(u)
			a.requests++
			a.lastPrompt = u.promptTokens()
			a.mu.Unlock()
		}
		if err == nil {
			return msg, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		ce := classify(err)
		if !ce.Retryable || attempt >= a.cfg.MaxRetries {
			return nil, err
		}
		d := a.cfg.Backoff.Delay(attempt+1, ce.RetryAfter)
		a.cfg.Log.Warn("model request failed; retrying", "attempt", attempt+1, "wait", d, "err", ce.Err)
		a.emit(protocol.Event{Type: protocol.EventRetry, Attempt: attempt + 1, WaitMS: d.Milliseconds(), Message: ce.Err.Error()})
		if err := sleep(ctx, d); err != nil {
			return nil, err
		}
	}
}

// once makes one streaming request. A stream that breaks off is an error
// even when the SSE reader saw a clean EOF.
func (a *Agent) once(ctx context.Context, params anthropic.MessageNewParams, live bool) (*anthropic.Message, error) {
	stream := a.client.Messages.NewStreaming(ctx, params)
	defer stream.Close()
	var acc anthropic.Message
	done := false
	for stream.Next() {
		ev := stream.Current()
		if err := acc.Accumulate(ev); err != nil {
			return nil, fmt.Errorf("accumulate stream: %w", err)
		}
		switch ev.Type {
		case "content_block_delta":
			if !live {
				continue
			}
			switch ev.Delta.Type {
			case "text_delta":
				a.emit(protocol.Event{Type: protocol.EventTextDelta, Text: ev.Delta.Text})
			case "thinking_delta":
				a.emit(protocol.Event{Type: protocol.EventThinking, Text: ev.Delta.Thinking})
			}
		case "message_stop":
			done = true
		}
	}
	if err := stream.Err(); err != nil {
		return nil, err
	}
	if !done {
		return nil, errIncomplete
	}
	return &acc, nil
}

// runTools runs one response's tool calls and returns their results in
// call order. Consecutive parallel-safe calls run concurrently; the others
// one at a time, because they share the shell and the files.
func (a *Agent) runTools(ctx context.Context, uses []Block) []Block {
	results := make([]Block, len(uses))
	for i := 0; i < len(uses); {
		j := i + 1
		if a.parallel(uses[i].Name) {
			for j < len(uses) && a.parallel(uses[j].Name) {
				j++
			}
		}
		var wg sync.WaitGroup
		for k := i; k < j; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[k] = a.runTool(ctx, uses[k])
			}()
		}
		wg.Wait()
		i = j
	}
	return results
}

func (a *Agent) parallel(name string) bool {
	t, ok := a.cfg.Tools.Get(name)
	return ok && t.Info().Parallel
}

func (a *Agent) runTool(ctx context.Context, use Block) (res Block) {
	t, ok := a.cfg.Tools.Get(use.Name)
	summary := ""
	if s, isS := t.(tools.Summarizer); ok && isS {
		summary = s.Summarize(use.Input)
	}
	a.emit(protocol.Event{Type: protocol.EventToolStart, ID: use.ID, Name: use.Name, Summary: summary})
	var r tools.Result
	switch {
	case !ok:
		r = tools.Errorf("unknown tool %q; available: %v", use.Name, a.cfg.Tools.Names())
	case ctx.Err() != nil:
		r = tools.Result{Output: "interrupted by the user before this tool ran", IsError: true, Summary: "interrupted"}
	case !json.Valid(use.Input):
		r = tools.Errorf("input is not valid JSON")
	default:
		r = a.safeRun(ctx, t, use)
	}
	if r.Summary == "" {
		r.Summary = "ok"
		if r.IsError {
			r.Summary = "error"
		}
	}
	a.emit(protocol.Event{Type: protocol.EventToolEnd, ID: use.ID, Name: use.Name, OK: protocol.Bool(!r.IsError),
		Summary: r.Summary, Output: tools.HeadTail(r.Output, a.cfg.EventOutputMax)})
	return ToolResult(use.ID, tools.HeadTail(r.Output, a.cfg.ToolOutputMax), r.IsError)
}

// safeRun turns a tool's panic into an error result: one broken tool must
// not take the session down.
func (a *Agent) safeRun(ctx context.Context, t tools.Tool, use Block) (r tools.Result) {
	defer func() {
		if p := recover(); p != nil {
			a.cfg.Log.Error("tool panicked", "tool", use.Name, "panic", p, "stack", string(debug.Stack()))
			r = tools.Errorf("internal error in tool %s: %v", use.Name, p)
		}
	}()
	return t.Run(tools.WithToolUseID(ctx, use.ID), use.Input)
}

// Usage returns the session's totals: cost in USD, cache-read ratio and the
// number of model requests.
func (a *Agent) Usage() (costUSD, cacheReadRatio float64, requests int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.session.cost(priceFor(a.cfg.Model)), a.session.cacheReadRatio(), a.requests
}

// SetModel makes the next requests use model (the chat's /model).
// Called between turns.
func (a *Agent) SetModel(model string) {
	a.mu.Lock()
	a.cfg.Model = model
	a.mu.Unlock()
}

// Model is the model the next request uses.
func (a *Agent) Model() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg.Model
}

// Clear forgets the conversation (the chat's /clear); the transcript
// records it, so that a resume starts from there too. Called between
// turns.
func (a *Agent) Clear() error {
	if a.cfg.Transcript != nil {
		if err := a.cfg.Transcript.AppendCompaction([]Message{}); err != nil {
			return err
		}
	}
	n := len(a.history)
	a.history = nil
	a.mu.Lock()
	a.lastPrompt = 0
	a.mu.Unlock()
	a.emit(protocol.Event{Type: protocol.EventCompaction, Compaction: &protocol.Compaction{MessagesBefore: n}})
	return nil
}

// CompactTurn summarises the conversation now (the chat's /compact), as
// a turn of its own: a compaction event when there was enough to
// summarise, then usage and turn_end.
func (a *Agent) CompactTurn(ctx context.Context) string {
	var turn usage
	requests := 0
	stop := StopEndTurn
	if err := a.compact(ctx, &turn, &requests); err != nil {
		if ctx.Err() != nil {
			stop = StopInterrupted
		} else {
			a.emit(protocol.Event{Type: protocol.EventError, Kind: protocol.ErrAPI, Message: "compaction failed: " + err.Error()})
			stop = StopError
		}
	}
	a.mu.Lock()
	model := a.cfg.Model
	sess, ratio := a.session.cost(priceFor(model)), a.session.cacheReadRatio()
	a.mu.Unlock()
	a.emit(protocol.Event{Type: protocol.EventUsage, Usage: &protocol.Usage{
		InputTokens: turn.Input, OutputTokens: turn.Output,
		CacheCreationInputTokens: turn.CacheWrite, CacheReadInputTokens: turn.CacheRead,
		CostUSD: turn.cost(priceFor(model)), Requests: requests,
		SessionCostUSD: sess, SessionCacheReadRatio: ratio,
	}})
	a.emit(protocol.Event{Type: protocol.EventTurnEnd, StopReason: stop})
	return stop
}

func (a *Agent) needsCompaction() bool {
	a.mu.Lock()
	last := a.lastPrompt
	a.mu.Unlock()
	return float64(last) > a.cfg.CompactAt*float64(a.cfg.ContextWindow)
}

const compactInstruction = `The conversation is about to be compacted to fit the context window. Write a summary that lets you continue the work without the earlier messages: the user's goal and every decision they made (dataset, model, Hugging Face username, constraints), what has been done (files written, commands run, background jobs and their ids, runs under /data/runs and their results), what failed and why, and the next steps. Be specific: paths, ids, numbers. Answer with the summary only, no tool calls.`

// promptTooLong reports the API's 400 for a prompt over the context window.
func promptTooLong(err error) bool {
	var apiErr *anthropic.Error
	return errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusBadRequest &&
		strings.Contains(strings.ToLower(apiErr.RawJSON()), "prompt is too long")
}

// compact replaces the older part of the history with a summary written by
// the model, keeping the last KeepMessages (or a few more, to start at an
// assistant message so tool calls and results stay paired).
func (a *Agent) compact(ctx context.Context, turn *usage, requests *int) error {
	n := len(a.history)
	split := -1
	for i := n - a.cfg.KeepMessages; i > 1; i-- {
		if a.history[i].Role == "assistant" {
			split = i
			break
		}
	}
	if split < 0 {
		return nil // too short to compact; the request will say if it is too long
	}
	a.mu.Lock()
	before := a.lastPrompt
	a.mu.Unlock()
	req := append(append([]Message(nil), a.history[:split]...), Message{Role: "user", Content: []Block{TextBlock(compactInstruction)}})
	msg, err := a.request(ctx, req, false, turn, requests)
	if err != nil {
		return err
	}
	summary := fromSDK(msg).Text()
	if summary == "" {
		return errors.New("the model returned an empty summary")
	}
	next := []Message{{Role: "user", Content: []Block{TextBlock("This session was compacted to fit the context window. Summary of the conversation so far:\n\n" + summary)}}}
	next = append(next, a.history[split:]...)
	if a.cfg.Transcript != nil {
		if err := a.cfg.Transcript.AppendCompaction(next); err != nil {
			return err
		}
	}
	a.emit(protocol.Event{Type: protocol.EventCompaction, Compaction: &protocol.Compaction{
		MessagesBefore: n, MessagesAfter: len(next), TokensBefore: before, SummaryChars: len(summary)}})
	a.history = next
	a.mu.Lock()
	a.lastPrompt = 0 // unknown until the next request; do not compact again at once
	a.mu.Unlock()
	return nil
}
