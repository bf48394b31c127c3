package fakeapi

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
)

// Reply is what the fake answers to one request.
type Reply struct {
	// Status >= 400 answers with the error JSON (ErrorType defaults from
	// the status, ErrorMessage from its text).
	Status                  int
	ErrorType, ErrorMessage string
	Header                  http.Header // extra response headers

	Content []ReplyBlock
	// StopReason defaults to end_turn, or tool_use when Content has a
	// tool_use block.
	StopReason string
	// Usage nil is computed: input ~ bytes/4 with a prefix-cache model
	// (a cache_control breakpoint whose prefix was seen before is read
	// from the cache, a new one is written), output ~ content bytes/4.
	Usage *Usage

	// ErrorEventAfter > 0: while streaming, after that many events send an
	// SSE `error` event (overloaded_error) and end the stream.
	ErrorEventAfter int
	// CutAfterEvents > 0: while streaming, drop the connection after that
	// many events.
	CutAfterEvents int
}

// ReplyBlock is one content block of a reply: text, tool_use or thinking.
type ReplyBlock struct {
	Type, Text, ID, Name, Thinking, Signature string
	Input                                     any
}

// Usage is the API's token accounting.
type Usage struct {
	InputTokens              int `json:"input_tokens"`
	OutputTokens             int `json:"output_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
}

// Text is a reply of one text block.
func Text(s string) *Reply {
	return &Reply{Content: []ReplyBlock{{Type: "text", Text: s}}}
}

// ToolCalls is a reply with an optional text block followed by tool calls.
func ToolCalls(text string, calls ...ReplyBlock) *Reply {
	r := &Reply{StopReason: "tool_use"}
	if text != "" {
		r.Content = append(r.Content, ReplyBlock{Type: "text", Text: text})
	}
	r.Content = append(r.Content, calls...)
	return r
}

// ToolUse is a tool_use block; input is marshalled to JSON.
func ToolUse(id, name string, input any) ReplyBlock {
	return ReplyBlock{Type: "tool_use", ID: id, Name: name, Input: input}
}

// Thinking is a thinking block with its signature.
func Thinking(thinking, signature string) ReplyBlock {
	return ReplyBlock{Type: "thinking", Thinking: thinking, Signature: signature}
}

func (r *Reply) stopReason() string {
	if r.StopReason != "" {
		return r.StopReason
	}
	for _, b := range r.Content {
		if b.Type == "tool_use" {
			return "tool_use"
		}
	}
	return "end_turn"
}

func (b ReplyBlock) inputJSON() string {
	if b.Input == nil {
		return "{}"
	}
	if raw, ok := b.Input.(json.RawMessage); ok {
		return string(raw)
	}
	j, err := json.Marshal(b.Input)
	if err != nil {
		return "{}"
	}
	return string(j)
}

func (r *Reply) outputTokens() int {
	n := 0
	for _, b := range r.Content {
		n += len(b.Text) + len(b.Thinking) + len(b.Name) + len(b.inputJSON())
	}
	return max(1, n/4)
}

// wire is the block as the API sends it in a full message.
func (b ReplyBlock) wire() map[string]any {
	switch b.Type {
	case "tool_use":
		return map[string]any{"type": "tool_use", "id": b.ID, "name": b.Name, "input": json.RawMessage(b.inputJSON())}
	case "thinking":
		return map[string]any{"type": "thinking", "thinking": b.Thinking, "signature": b.Signature}
	default:
		return map[string]any{"type": "text", "text": b.Text}
	}
}

// promptUsage models the prompt cache: the request is a sequence of
// segments (tools, system blocks, message blocks); each cache_control
// marks a breakpoint whose prefix is looked up and then remembered.
func (s *Server) promptUsage(req *Request) Usage {
	h := sha256.New()
	total := 0
	var points []struct {
		sum [32]byte
		n   int
	}
	add := func(seg []byte, cache bool) {
		h.Write(seg)
		total += len(seg)
		if cache {
			var sum [32]byte
			copy(sum[:], h.Sum(nil))
			points = append(points, struct {
				sum [32]byte
				n   int
			}{sum, total})
		}
	}
	type cc struct {
		CacheControl json.RawMessage `json:"cache_control"`
	}
	for _, t := range req.Tools {
		var c cc
		json.Unmarshal(t, &c)
		add(t, len(c.CacheControl) > 0 && string(c.CacheControl) != "null")
	}
	if len(req.System) > 0 {
		var blocks []json.RawMessage
		if json.Unmarshal(req.System, &blocks) == nil {
			for _, b := range blocks {
				var c cc
				json.Unmarshal(b, &c)
				add(b, len(c.CacheControl) > 0 && string(c.CacheControl) != "null")
			}
		} else {
			add(req.System, false)
		}
	}
	for _, m := range req.Messages {
		for _, b := range m.Content {
			// The cache is keyed on content, not on where the breakpoints
			// are: a breakpoint that moves on must not change the prefix.
			hashed := b
			hashed.CacheControl = nil
			seg, _ := json.Marshal(struct {
				Role string
				B    Block
			}{m.Role, hashed})
			add(seg, len(b.CacheControl) > 0 && string(b.CacheControl) != "null")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	read, cached := 0, 0
	for _, p := range points {
		if s.cache[p.sum] {
			read = p.n
		}
		cached = p.n
		s.cache[p.sum] = true
	}
	u := Usage{
		CacheReadInputTokens:     read / 4,
		CacheCreationInputTokens: (cached - read) / 4,
	}
	u.InputTokens = max(1, (total-cached)/4)
	return u
}

type wireMessageOut struct {
	ID           string           `json:"id"`
	Type         string           `json:"type"`
	Role         string           `json:"role"`
	Model        string           `json:"model"`
	Content      []map[string]any `json:"content"`
	StopReason   *string          `json:"stop_reason"`
	StopSequence *string          `json:"stop_sequence"`
	Usage        Usage            `json:"usage"`
}

func writeMessage(w http.ResponseWriter, req *Request, reply *Reply, u Usage) {
	stop := reply.stopReason()
	out := wireMessageOut{ID: newID("msg_"), Type: "message", Role: "assistant", Model: req.Model,
		Content: []map[string]any{}, StopReason: &stop, Usage: u}
	for _, b := range reply.Content {
		out.Content = append(out.Content, b.wire())
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// chunks splits s into n roughly equal pieces (at least one).
func chunks(s string, n int) []string {
	if len(s) <= 1 || n <= 1 {
		return []string{s}
	}
	size := (len(s) + n - 1) / n
	var out []string
	for len(s) > size {
		out = append(out, s[:size])
		s = s[size:]
	}
	return append(out, s)
}

// writeStream sends the real event sequence of a streamed message.
func writeStream(ctx context.Context, w http.ResponseWriter, req *Request, reply *Reply, u Usage) {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(200)
	fl, _ := w.(http.Flusher)
	n := 0
	send := func(event string, data any) bool {
		if ctx.Err() != nil {
			return false
		}
		if reply.CutAfterEvents > 0 && n >= reply.CutAfterEvents {
			if fl != nil {
				fl.Flush()
			}
			panic(http.ErrAbortHandler) // drops the connection mid-stream
		}
		if reply.ErrorEventAfter > 0 && n >= reply.ErrorEventAfter {
			fmt.Fprint(w, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n")
			if fl != nil {
				fl.Flush()
			}
			return false
		}
		b, _ := json.Marshal(data)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b)
		if fl != nil {
			fl.Flush()
		}
		n++
		return true
	}
	start := u
	start.OutputTokens = 1
	msg := wireMessageOut{ID: newID("msg_"), Type: "message", Role: "assistant", Model: req.Model,
		Content: []map[string]any{}, Usage: start}
	if !send("message_start", map[string]any{"type": "message_start", "message": msg}) {
		return
	}
	if !send("ping", map[string]any{"type": "ping"}) {
		return
	}
	for i, b := range reply.Content {
		var startBlock map[string]any
		var deltas []map[string]any
		switch b.Type {
		case "tool_use":
			startBlock = map[string]any{"type": "tool_use", "id": b.ID, "name": b.Name, "input": map[string]any{}}
			deltas = append(deltas, map[string]any{"type": "input_json_delta", "partial_json": ""})
			for _, c := range chunks(b.inputJSON(), 3) {
				deltas = append(deltas, map[string]any{"type": "input_json_delta", "partial_json": c})
			}
		case "thinking":
			startBlock = map[string]any{"type": "thinking", "thinking": "", "signature": ""}
			for _, c := range chunks(b.Thinking, 2) {
				deltas = append(deltas, map[string]any{"type": "thinking_delta", "thinking": c})
			}
			deltas = append(deltas, map[string]any{"type": "signature_delta", "signature": b.Signature})
		default:
			startBlock = map[string]any{"type": "text", "text": ""}
			for _, c := range chunks(b.Text, 3) {
				deltas = append(deltas, map[string]any{"type": "text_delta", "text": c})
			}
		}
		if !send("content_block_start", map[string]any{"type": "content_block_start", "index": i, "content_block": startBlock}) {
			return
		}
		for _, d := range deltas {
			if !send("content_block_delta", map[string]any{"type": "content_block_delta", "index": i, "delta": d}) {
				return
			}
		}
		if !send("content_block_stop", map[string]any{"type": "content_block_stop", "index": i}) {
			return
		}
	}
	if !send("message_delta", map[string]any{"type": "message_delta",
		"delta": map[string]any{"stop_reason": reply.stopReason(), "stop_sequence": nil},
		"usage": map[string]any{"output_tokens": u.OutputTokens}}) {
		return
	}
	send("message_stop", map[string]any{"type": "message_stop"})
}
