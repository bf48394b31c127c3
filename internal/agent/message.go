package agent

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/anthropics/anthropic-sdk-go/v2"
)

// Message is one conversation message as the Messages API takes it. The
// engine keeps its history in this form (it is also the transcript line
// format) and converts to the SDK's params per request; a plain struct is
// easy to persist, compare and compact.
type Message struct {
	Role    string  `json:"role"`
	Content []Block `json:"content"`
}

// Block is one content block: text, thinking, redacted_thinking, tool_use
// or tool_result. Its JSON is the API's wire form.
type Block struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   []Block         `json:"content,omitempty"` // tool_result: text blocks
	IsError   bool            `json:"is_error,omitempty"`
	Thinking  string          `json:"thinking,omitempty"`
	Signature string          `json:"signature,omitempty"`
	Data      string          `json:"data,omitempty"` // redacted_thinking

	CacheControl *cacheControl `json:"cache_control,omitempty"`
}

type cacheControl struct {
	Type string `json:"type"`
}

var ephemeral = &cacheControl{Type: "ephemeral"}

// TextBlock returns a text block.
func TextBlock(s string) Block { return Block{Type: "text", Text: s} }

// ToolResult returns a tool_result block. Empty output is sent without
// content (an empty text block is invalid).
func ToolResult(id, output string, isError bool) Block {
	b := Block{Type: "tool_result", ToolUseID: id, IsError: isError}
	if output != "" {
		b.Content = []Block{TextBlock(output)}
	}
	return b
}

// ToolUses returns the tool_use blocks of m.
func (m Message) ToolUses() []Block {
	var out []Block
	for _, b := range m.Content {
		if b.Type == "tool_use" {
			out = append(out, b)
		}
	}
	return out
}

// Text returns the concatenated text blocks of m.
func (m Message) Text() string {
	var parts []string
	for _, b := range m.Content {
		if b.Type == "text" && b.Text != "" {
			parts = append(parts, b.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// fromSDK converts an accumulated response into a Message.
func fromSDK(msg *anthropic.Message) Message {
	m := Message{Role: "assistant"}
	for _, c := range msg.Content {
		switch c.Type {
		case "text":
			if c.Text != "" {
				m.Content = append(m.Content, TextBlock(c.Text))
			}
		case "thinking":
			m.Content = append(m.Content, Block{Type: "thinking", Thinking: c.Thinking, Signature: c.Signature})
		case "redacted_thinking":
			m.Content = append(m.Content, Block{Type: "redacted_thinking", Data: c.Data})
		case "tool_use":
			in := json.RawMessage(c.Input)
			if !json.Valid(in) || len(in) == 0 {
				in = json.RawMessage(`{}`)
			}
			m.Content = append(m.Content, Block{Type: "tool_use", ID: c.ID, Name: c.Name, Input: in})
		}
	}
	return m
}

// normalize returns the messages ready to send: consecutive messages of
// the same role merged (an interrupted turn can leave two user messages in
// a row), deep-copied so cache breakpoints can be set without touching the
// history.
func normalize(history []Message) []Message {
	out := make([]Message, 0, len(history))
	for _, m := range history {
		if len(m.Content) == 0 {
			continue
		}
		c := make([]Block, len(m.Content))
		copy(c, m.Content)
		for i := range c {
			c[i].CacheControl = nil
		}
		if n := len(out); n > 0 && out[n-1].Role == m.Role {
			out[n-1].Content = append(out[n-1].Content, c...)
			continue
		}
		out = append(out, Message{Role: m.Role, Content: c})
	}
	return out
}

// markCache sets the moving cache breakpoints: on the last block of the
// last message (this request's whole prefix gets written) and on the last
// block of the previous user message (the end of the previous request's
// prefix, so it is read even when a turn adds more blocks than the API's
// 20-block lookback).
func markCache(msgs []Message) {
	if len(msgs) == 0 {
		return
	}
	last := len(msgs) - 1
	setCache(&msgs[last])
	for i := last - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			setCache(&msgs[i])
			break
		}
	}
}

// setCache marks the last block that may carry cache_control (thinking
// blocks may not).
func setCache(m *Message) {
	for i := len(m.Content) - 1; i >= 0; i-- {
		switch m.Content[i].Type {
		case "thinking", "redacted_thinking":
			continue
		}
		m.Content[i].CacheControl = ephemeral
		return
	}
}

// toParams converts messages to the SDK's params through their JSON, which
// is the wire form both share.
func toParams(msgs []Message) ([]anthropic.MessageParam, error) {
	b, err := json.Marshal(msgs)
	if err != nil {
		return nil, fmt.Errorf("encode messages: %w", err)
	}
	var p []anthropic.MessageParam
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("convert messages: %w", err)
	}
	return p, nil
}

func jsonUnmarshalString(s string, v any) error { return json.Unmarshal([]byte(s), v) }
