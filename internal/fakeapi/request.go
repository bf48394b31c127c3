package fakeapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Request is one accepted request, parsed.
type Request struct {
	Header    http.Header
	Body      []byte
	Model     string
	Stream    bool
	MaxTokens int
	System    json.RawMessage
	Tools     []json.RawMessage
	Messages  []Message
}

// Message is one turn; string content is normalised to one text block.
type Message struct {
	Role    string
	Content []Block
}

// Block is one content block of a request message.
type Block struct {
	Type, Text, ID, Name, ToolUseID string
	Input, Content                  json.RawMessage
	IsError                         bool
	CacheControl                    json.RawMessage
}

type wireBlock struct {
	Type         string          `json:"type"`
	Text         *string         `json:"text"`
	ID           string          `json:"id"`
	Name         string          `json:"name"`
	ToolUseID    string          `json:"tool_use_id"`
	Input        json.RawMessage `json:"input"`
	Content      json.RawMessage `json:"content"`
	IsError      bool            `json:"is_error"`
	CacheControl json.RawMessage `json:"cache_control"`
	Thinking     *string         `json:"thinking"`
	Signature    *string         `json:"signature"`
	Data         string          `json:"data"`
	Source       json.RawMessage `json:"source"`
	Citations    json.RawMessage `json:"citations"`
}

type wireMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// knownFields are the top-level fields the real API accepts; it rejects
// others ("Extra inputs are not permitted").
var knownFields = map[string]bool{
	"model": true, "messages": true, "max_tokens": true, "system": true, "tools": true,
	"tool_choice": true, "stream": true, "temperature": true, "top_p": true, "top_k": true,
	"stop_sequences": true, "metadata": true, "thinking": true, "service_tier": true,
	"container": true, "mcp_servers": true, "context_management": true, "output_format": true,
	"output_config": true, "inference_geo": true,
}

var knownBlockTypes = map[string]bool{
	"text": true, "image": true, "document": true, "tool_use": true, "tool_result": true,
	"thinking": true, "redacted_thinking": true, "search_result": true,
	"server_tool_use": true, "web_search_tool_result": true, "web_fetch_tool_result": true,
	"code_execution_tool_result": true, "container_upload": true,
}

// parseRequest checks a request body as the real API does under the
// given anthropic-version.
func parseRequest(h http.Header, body []byte, countOnly bool, version string) (*Request, error) {
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&top); err != nil || top == nil {
		return nil, errors.New("request body is not a JSON object")
	}
	for k := range top {
		if !knownFields[k] {
			if countOnly && (k == "max_tokens" || k == "stream") {
				return nil, fmt.Errorf("%s: Extra inputs are not permitted", k)
			}
			return nil, fmt.Errorf("%s: Extra inputs are not permitted", k)
		}
	}
	if version == "2026-10-21" {
		// This version removed the sampling parameters: any value, even
		// the default, is refused.
		for _, k := range []string{"temperature", "top_p", "top_k"} {
			if _, ok := top[k]; ok {
				return nil, fmt.Errorf("%s: Extra inputs are not permitted", k)
			}
		}
	}
	req := &Request{Header: h.Clone(), Body: body}
	if err := json.Unmarshal(top["model"], &req.Model); err != nil || req.Model == "" {
		return nil, errors.New("model: Field required")
	}
	if !countOnly {
		raw, ok := top["max_tokens"]
		if !ok {
			return nil, errors.New("max_tokens: Field required")
		}
		if err := json.Unmarshal(raw, &req.MaxTokens); err != nil || req.MaxTokens < 1 {
			return nil, errors.New("max_tokens: Input should be a valid positive integer")
		}
		if raw, ok := top["stream"]; ok {
			if err := json.Unmarshal(raw, &req.Stream); err != nil {
				return nil, errors.New("stream: Input should be a valid boolean")
			}
		}
	} else if _, ok := top["max_tokens"]; ok {
		return nil, errors.New("max_tokens: Extra inputs are not permitted")
	}
	if raw, ok := top["system"]; ok {
		if err := checkSystem(raw); err != nil {
			return nil, err
		}
		req.System = raw
	}
	if raw, ok := top["tools"]; ok {
		if err := json.Unmarshal(raw, &req.Tools); err != nil {
			return nil, errors.New("tools: Input should be a valid list")
		}
		names := map[string]bool{}
		for i, t := range req.Tools {
			var tool struct {
				Name        string          `json:"name"`
				Type        string          `json:"type"`
				InputSchema json.RawMessage `json:"input_schema"`
			}
			if err := json.Unmarshal(t, &tool); err != nil || tool.Name == "" {
				return nil, fmt.Errorf("tools.%d.name: Field required", i)
			}
			if tool.Type == "" || tool.Type == "custom" {
				if len(tool.InputSchema) == 0 {
					return nil, fmt.Errorf("tools.%d.input_schema: Field required", i)
				}
			}
			if names[tool.Name] {
				//lint:ignore ST1005 the real API's message, verbatim
				return nil, fmt.Errorf("tools: Tool names must be unique.")
			}
			names[tool.Name] = true
		}
	}
	var msgs []wireMessage
	if err := json.Unmarshal(top["messages"], &msgs); err != nil {
		return nil, errors.New("messages: Field required")
	}
	if len(msgs) == 0 {
		return nil, errors.New("messages: at least one message is required")
	}
	for i, wm := range msgs {
		if wm.Role != "user" && wm.Role != "assistant" {
			return nil, fmt.Errorf("messages.%d.role: Input should be 'user' or 'assistant'", i)
		}
		m := Message{Role: wm.Role}
		var str string
		var blocks []wireBlock
		switch {
		case len(wm.Content) == 0:
			return nil, fmt.Errorf("messages.%d.content: Field required", i)
		case json.Unmarshal(wm.Content, &str) == nil:
			if str == "" && !(i == len(msgs)-1 && wm.Role == "assistant") {
				return nil, fmt.Errorf("messages.%d: all messages must have non-empty content except for the optional final assistant message", i)
			}
			if str != "" {
				m.Content = []Block{{Type: "text", Text: str}}
			}
		case json.Unmarshal(wm.Content, &blocks) == nil:
			if len(blocks) == 0 && !(i == len(msgs)-1 && wm.Role == "assistant") {
				return nil, fmt.Errorf("messages.%d: all messages must have non-empty content except for the optional final assistant message", i)
			}
			for j, wb := range blocks {
				b, err := convertBlock(wb, wm.Role, version)
				if err != nil {
					return nil, fmt.Errorf("messages.%d.content.%d: %v", i, j, err)
				}
				m.Content = append(m.Content, b)
			}
		default:
			return nil, fmt.Errorf("messages.%d.content: Input should be a valid string or list", i)
		}
		req.Messages = append(req.Messages, m)
	}
	if err := checkToolPairs(req.Messages); err != nil {
		return nil, err
	}
	return req, nil
}

func checkSystem(raw json.RawMessage) error {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return nil
	}
	var blocks []wireBlock
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return errors.New("system: Input should be a valid string or list of text blocks")
	}
	for i, b := range blocks {
		if b.Type != "text" {
			return fmt.Errorf("system.%d.type: Input should be 'text'", i)
		}
		if b.Text == nil || *b.Text == "" {
			return fmt.Errorf("system.%d: text content blocks must be non-empty", i)
		}
	}
	return nil
}

func convertBlock(wb wireBlock, role, version string) (Block, error) {
	if !knownBlockTypes[wb.Type] {
		return Block{}, fmt.Errorf("type: Input tag %q found using 'type' does not match any of the expected tags", wb.Type)
	}
	b := Block{Type: wb.Type, ID: wb.ID, Name: wb.Name, ToolUseID: wb.ToolUseID,
		Input: wb.Input, Content: wb.Content, IsError: wb.IsError, CacheControl: wb.CacheControl}
	if wb.Text != nil {
		b.Text = *wb.Text
	}
	if version == "2026-10-21" {
		switch {
		case wb.Type == "document" && role == "assistant":
			return b, errors.New("document blocks are not allowed in assistant messages")
		case wb.Type == "text" && role == "user" && len(wb.Citations) > 0 && string(wb.Citations) != "[]" && string(wb.Citations) != "null":
			return b, errors.New("text blocks in user messages cannot carry citations")
		}
	}
	switch wb.Type {
	case "text":
		if wb.Text == nil || *wb.Text == "" {
			return b, errors.New("text content blocks must be non-empty")
		}
	case "tool_use":
		if role != "assistant" {
			return b, errors.New("tool_use blocks are only allowed in assistant messages")
		}
		if wb.ID == "" || wb.Name == "" {
			return b, errors.New("tool_use: id and name are required")
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(wb.Input, &obj); err != nil || obj == nil {
			return b, errors.New("tool_use.input: Input should be a valid dictionary")
		}
	case "tool_result":
		if role != "user" {
			return b, errors.New("tool_result blocks are only allowed in user messages")
		}
		if wb.ToolUseID == "" {
			return b, errors.New("tool_use_id: Field required")
		}
	case "thinking":
		if role != "assistant" {
			return b, errors.New("thinking blocks are only allowed in assistant messages")
		}
		if wb.Signature == nil || wb.Thinking == nil {
			return b, errors.New("thinking: thinking and signature are required")
		}
		b.Text = *wb.Thinking
	}
	return b, nil
}

// checkToolPairs enforces the real API's rule: every tool_use of an
// assistant message is answered by a tool_result in the very next user
// message, and every tool_result answers a tool_use of the message before.
func checkToolPairs(msgs []Message) error {
	for i, m := range msgs {
		if m.Role == "user" {
			var prev map[string]bool
			if i > 0 && msgs[i-1].Role == "assistant" {
				prev = toolUseIDs(msgs[i-1])
			}
			for _, b := range m.Content {
				if b.Type == "tool_result" && !prev[b.ToolUseID] {
					//lint:ignore ST1005 the real API's message, verbatim
					return fmt.Errorf("messages.%d.content: unexpected `tool_use_id` found in `tool_result` blocks: %s. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.", i, b.ToolUseID)
				}
			}
			continue
		}
		ids := toolUseIDs(m)
		if len(ids) == 0 || i == len(msgs)-1 {
			continue
		}
		answered := map[string]bool{}
		if msgs[i+1].Role == "user" {
			for _, b := range msgs[i+1].Content {
				if b.Type == "tool_result" {
					answered[b.ToolUseID] = true
				}
			}
		}
		var missing []string
		for _, b := range m.Content {
			if b.Type == "tool_use" && !answered[b.ID] {
				missing = append(missing, b.ID)
			}
		}
		if len(missing) > 0 {
			//lint:ignore ST1005 the real API's message, verbatim
			return fmt.Errorf("messages.%d: `tool_use` ids were found without `tool_result` blocks immediately after: %s. Each `tool_use` block must have a corresponding `tool_result` block in the next message.", i, strings.Join(missing, ", "))
		}
	}
	return nil
}

func toolUseIDs(m Message) map[string]bool {
	ids := map[string]bool{}
	for _, b := range m.Content {
		if b.Type == "tool_use" {
			ids[b.ID] = true
		}
	}
	return ids
}

// LastToolResults returns the tool_result blocks of the final message when
// it is a user message.
func (r *Request) LastToolResults() []Block {
	if len(r.Messages) == 0 {
		return nil
	}
	m := r.Messages[len(r.Messages)-1]
	if m.Role != "user" {
		return nil
	}
	var out []Block
	for _, b := range m.Content {
		if b.Type == "tool_result" {
			out = append(out, b)
		}
	}
	return out
}

// ToolResultText is the text of a tool_result's content (a string, or the
// text blocks of a list, joined by newlines).
func (r *Request) ToolResultText(b Block) string {
	if len(b.Content) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(b.Content, &s) == nil {
		return s
	}
	var blocks []wireBlock
	if json.Unmarshal(b.Content, &blocks) != nil {
		return ""
	}
	var parts []string
	for _, wb := range blocks {
		if wb.Type == "text" && wb.Text != nil {
			parts = append(parts, *wb.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// LastUserText is the text of the last user message's text blocks.
func (r *Request) LastUserText() string {
	for i := len(r.Messages) - 1; i >= 0; i-- {
		m := r.Messages[i]
		if m.Role != "user" {
			continue
		}
		var parts []string
		for _, b := range m.Content {
			if b.Type == "text" {
				parts = append(parts, b.Text)
			}
		}
		return strings.Join(parts, "\n")
	}
	return ""
}
