package fakeapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
)

const testKey = "sk-ant-test-key"

func post(t *testing.T, url, path string, hdr map[string]string, body string) (int, apiError) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e apiError
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &e)
	return resp.StatusCode, e
}

func TestStrict(t *testing.T) {
	s := Start(Options{APIKey: testKey})
	defer s.Close()
	good := map[string]string{"x-api-key": testKey, "anthropic-version": "2023-06-01", "content-type": "application/json"}
	with := func(k, v string) map[string]string {
		h := map[string]string{}
		for a, b := range good {
			h[a] = b
		}
		if v == "" {
			delete(h, k)
		} else {
			h[k] = v
		}
		return h
	}
	const ok = `{"model":"claude-sonnet-5-5","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	toolUse := `{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"bash","input":{"cmd":"ls"}}]}`
	tests := []struct {
		name       string
		path       string
		hdr        map[string]string
		body       string
		wantStatus int
		wantType   string
		wantMsg    string
	}{
		{"ok", "/v1/messages", good, ok, 200, "", ""},
		{"bearer key", "/v1/messages", hdrs(with("x-api-key", "")).withAuth("Bearer " + testKey), ok, 200, "", ""},
		{"missing version", "/v1/messages", with("anthropic-version", ""), ok, 400, "invalid_request_error", "anthropic-version"},
		{"bad version", "/v1/messages", with("anthropic-version", "2024-13-01"), ok, 400, "invalid_request_error", "anthropic-version"},
		{"missing key", "/v1/messages", with("x-api-key", ""), ok, 401, "authentication_error", "x-api-key"},
		{"wrong key", "/v1/messages", with("x-api-key", "sk-ant-other"), ok, 401, "authentication_error", "invalid"},
		{"unknown path", "/v1/complete", good, ok, 404, "not_found_error", ""},
		{"version 2026-10-21", "/v1/messages", with("anthropic-version", "2026-10-21"), ok, 200, "", ""},
		{"retired model", "/v1/messages", good, `{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`, 404, "not_found_error", "model: claude-sonnet-4-5"},
		{"unknown model", "/v1/messages", good, `{"model":"claude-sonnet-9","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`, 404, "not_found_error", "model: claude-sonnet-9"},
		{"deprecated alias", "/v1/messages", good, `{"model":"claude-opus-4-5","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`, 200, "", ""},
		{"temperature, 2023-06-01", "/v1/messages", good, `{"model":"claude-haiku-5-5","max_tokens":10,"temperature":1,"messages":[{"role":"user","content":"hi"}]}`, 200, "", ""},
		{"temperature, 2026-10-21", "/v1/messages", with("anthropic-version", "2026-10-21"), `{"model":"claude-haiku-5-5","max_tokens":10,"temperature":1,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request_error", "temperature: Extra inputs"},
		{"top_k, 2026-10-21", "/v1/messages", with("anthropic-version", "2026-10-21"), `{"model":"claude-haiku-5-5","max_tokens":10,"top_k":5,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request_error", "top_k"},
		{"assistant document, 2026-10-21", "/v1/messages", with("anthropic-version", "2026-10-21"), `{"model":"claude-haiku-5-5","max_tokens":10,"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"x"}}]},{"role":"user","content":"go on"}]}`, 400, "invalid_request_error", "document"},
		{"user citations, 2026-10-21", "/v1/messages", with("anthropic-version", "2026-10-21"), `{"model":"claude-haiku-5-5","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":"hi","citations":[{"type":"char_location"}]}]}]}`, 400, "invalid_request_error", "citations"},
		{"not json", "/v1/messages", good, `nope`, 400, "invalid_request_error", "JSON"},
		{"missing model", "/v1/messages", good, `{"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request_error", "model"},
		{"missing max_tokens", "/v1/messages", good, `{"model":"claude-haiku-5-5","messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request_error", "max_tokens"},
		{"extra field", "/v1/messages", good, `{"model":"claude-haiku-5-5","max_tokens":1,"bogus":1,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request_error", "Extra inputs"},
		{"bad role", "/v1/messages", good, `{"model":"claude-haiku-5-5","max_tokens":1,"messages":[{"role":"system","content":"hi"}]}`, 400, "invalid_request_error", "role"},
		{"empty text", "/v1/messages", good, `{"model":"claude-haiku-5-5","max_tokens":1,"messages":[{"role":"user","content":[{"type":"text","text":""}]}]}`, 400, "invalid_request_error", "non-empty"},
		{"orphan tool_result", "/v1/messages", good, `{"model":"claude-haiku-5-5","max_tokens":1,"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"ok"},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_9","content":"x"}]}]}`, 400, "invalid_request_error", "tool_use_id"},
		{"tool_use without result", "/v1/messages", good, `{"model":"claude-haiku-5-5","max_tokens":1,"messages":[{"role":"user","content":"hi"},` + toolUse + `,{"role":"user","content":"next"}]}`, 400, "invalid_request_error", "without `tool_result`"},
		{"paired tools", "/v1/messages", good, `{"model":"claude-haiku-5-5","max_tokens":1,"messages":[{"role":"user","content":"hi"},` + toolUse + `,{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"a b"}]}]}`, 200, "", ""},
		{"count_tokens", "/v1/messages/count_tokens", good, `{"model":"claude-haiku-5-5","messages":[{"role":"user","content":"hi"}]}`, 200, "", ""},
		{"count_tokens with max_tokens", "/v1/messages/count_tokens", good, ok, 400, "invalid_request_error", "max_tokens"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, e := post(t, s.URL(), tc.path, tc.hdr, tc.body)
			if status != tc.wantStatus {
				t.Fatalf("status = %d (%s: %s); want %d", status, e.Error.Type, e.Error.Message, tc.wantStatus)
			}
			if tc.wantType != "" && (e.Type != "error" || e.Error.Type != tc.wantType) {
				t.Errorf("error = %+v; want type %s", e, tc.wantType)
			}
			if !strings.Contains(e.Error.Message, tc.wantMsg) {
				t.Errorf("message = %q; want it to contain %q", e.Error.Message, tc.wantMsg)
			}
		})
	}
}

type hdrs map[string]string

func (h hdrs) withAuth(v string) map[string]string { h["Authorization"] = v; return h }

func client(s *Server) anthropic.Client {
	return anthropic.NewClient(option.WithBaseURL(s.URL()), option.WithAPIKey(testKey), option.WithMaxRetries(0))
}

func TestSDKStreamAccumulates(t *testing.T) {
	s := Start(Options{APIKey: testKey, Responder: ResponderFunc(func(r *Request) *Reply {
		rep := ToolCalls("Let me look.", ToolUse("toolu_1", "bash", map[string]any{"cmd": "ls -la /workspace"}))
		rep.Content = append([]ReplyBlock{Thinking("I should list the files first.", "sig-abc")}, rep.Content...)
		return rep
	})})
	defer s.Close()
	c := client(s)
	stream := c.Messages.NewStreaming(context.Background(), anthropic.MessageNewParams{
		Model: "claude-sonnet-5-5", MaxTokens: 100,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("list files"))},
	})
	var msg anthropic.Message
	seen := map[string]bool{}
	for stream.Next() {
		ev := stream.Current()
		seen[ev.Type] = true
		if ev.Type == "content_block_delta" {
			seen[ev.Delta.Type] = true
		}
		if err := msg.Accumulate(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"message_start", "content_block_start", "input_json_delta", "text_delta", "thinking_delta", "signature_delta", "message_delta", "message_stop"} {
		if !seen[want] {
			t.Errorf("stream lacked %s; saw %v", want, seen)
		}
	}
	if len(msg.Content) != 3 {
		t.Fatalf("got %d blocks; want 3", len(msg.Content))
	}
	if got := msg.Content[0].Thinking; got != "I should list the files first." {
		t.Errorf("thinking = %q", got)
	}
	if got := msg.Content[0].Signature; got != "sig-abc" {
		t.Errorf("signature = %q", got)
	}
	if got := msg.Content[1].Text; got != "Let me look." {
		t.Errorf("text = %q", got)
	}
	tu := msg.Content[2]
	if tu.Name != "bash" || tu.ID != "toolu_1" || string(tu.Input) != `{"cmd":"ls -la /workspace"}` {
		t.Errorf("tool_use = %s %s %s", tu.ID, tu.Name, tu.Input)
	}
	if msg.StopReason != "tool_use" || msg.Usage.OutputTokens < 1 || msg.Usage.InputTokens < 1 {
		t.Errorf("stop=%s usage=%+v", msg.StopReason, msg.Usage)
	}
	// The next turn, with the tool result, is accepted by the strict checks.
	_, err := c.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model: "claude-sonnet-5-5", MaxTokens: 100,
		Messages: []anthropic.MessageParam{
			anthropic.NewUserMessage(anthropic.NewTextBlock("list files")),
			msg.ToParam(),
			anthropic.NewUserMessage(anthropic.NewToolResultBlock("toolu_1", "a.txt", false)),
		},
	})
	if err != nil {
		t.Fatalf("follow-up: %v", err)
	}
	reqs := s.Requests()
	if len(reqs) != 2 {
		t.Fatalf("got %d requests; want 2", len(reqs))
	}
	last := reqs[1]
	if res := last.LastToolResults(); len(res) != 1 || last.ToolResultText(res[0]) != "a.txt" {
		t.Errorf("tool results = %+v", res)
	}
	if got := reqs[0].LastUserText(); got != "list files" {
		t.Errorf("LastUserText = %q", got)
	}
}

func TestStreamErrorEventAndCut(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply *Reply
	}{
		{"error event", &Reply{Content: []ReplyBlock{{Type: "text", Text: "hello there"}}, ErrorEventAfter: 3}},
		{"cut", &Reply{Content: []ReplyBlock{{Type: "text", Text: "hello there"}}, CutAfterEvents: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Start(Options{Responder: ResponderFunc(func(*Request) *Reply { return tc.reply })})
			defer s.Close()
			c := client(s)
			stream := c.Messages.NewStreaming(context.Background(), anthropic.MessageNewParams{
				Model: "claude-sonnet-5-5", MaxTokens: 100,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
			})
			n := 0
			for stream.Next() {
				n++
			}
			if stream.Err() == nil {
				t.Fatalf("stream ended without error after %d events", n)
			}
			if n != 2 { // the SDK drops the ping among the first three
				t.Errorf("got %d events before the error; want 2", n)
			}
		})
	}
}

func TestRawErrorEvent(t *testing.T) {
	s := Start(Options{Responder: ResponderFunc(func(*Request) *Reply {
		return &Reply{Content: []ReplyBlock{{Type: "text", Text: "x"}}, ErrorEventAfter: 2}
	})})
	defer s.Close()
	req, _ := http.NewRequest("POST", s.URL()+"/v1/messages", strings.NewReader(`{"model":"claude-haiku-5-5","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("x-api-key", "k")
	req.Header.Set("anthropic-version", "2023-06-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d; want 200", resp.StatusCode)
	}
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			events = append(events, ev)
		}
	}
	if got, want := strings.Join(events, ","), "message_start,ping,error"; got != want {
		t.Errorf("events = %s; want %s", got, want)
	}
}

func TestPromptCacheModel(t *testing.T) {
	s := Start(Options{})
	defer s.Close()
	c := client(s)
	long := strings.Repeat("You are a careful ML engineer. ", 100)
	params := anthropic.MessageNewParams{
		Model: "claude-sonnet-5-5", MaxTokens: 100,
		System:   []anthropic.TextBlockParam{{Text: long, CacheControl: anthropic.NewCacheControlEphemeralParam()}},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
	}
	first, err := c.Messages.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Messages.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	if first.Usage.CacheCreationInputTokens < 700 || first.Usage.CacheReadInputTokens != 0 {
		t.Errorf("first usage = %+v; want a cache write of ~800 and no read", first.Usage)
	}
	if second.Usage.CacheReadInputTokens != first.Usage.CacheCreationInputTokens || second.Usage.CacheCreationInputTokens != 0 {
		t.Errorf("second usage = %+v; want the first write (%d) read back", second.Usage, first.Usage.CacheCreationInputTokens)
	}
	count, err := c.Messages.CountTokens(context.Background(), anthropic.MessageCountTokensParams{
		Model:    "claude-sonnet-5-5",
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(strings.Repeat("a", 400)))},
	})
	if err != nil {
		t.Fatal(err)
	}
	if count.InputTokens < 100 {
		t.Errorf("count_tokens = %d; want ≥ 100", count.InputTokens)
	}
}

func TestScriptAndErrors(t *testing.T) {
	script := &Script{Steps: []func(*Request) *Reply{
		func(*Request) *Reply { return Text("one") },
		func(*Request) *Reply {
			return &Reply{Status: 429, ErrorMessage: "slow down", Header: http.Header{"Retry-After": {"1"}}}
		},
	}}
	s := Start(Options{Responder: script})
	defer s.Close()
	c := client(s)
	params := anthropic.MessageNewParams{Model: "claude-haiku-4-5", MaxTokens: 10,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}}
	m, err := c.Messages.New(context.Background(), params)
	if err != nil || m.Content[0].Text != "one" {
		t.Fatalf("step 1 = %v, %v", m, err)
	}
	for _, want := range []int{429, 500} {
		_, err = c.Messages.New(context.Background(), params)
		var apiErr *anthropic.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != want {
			t.Fatalf("got %v; want an *anthropic.Error with status %d", err, want)
		}
	}
	if script.Played() != 3 {
		t.Errorf("played %d; want 3", script.Played())
	}
	models, err := c.Models.List(context.Background(), anthropic.ModelListParams{Limit: anthropic.Int(100)})
	if err != nil || len(models.Data) != len(Models) {
		t.Fatalf("models = %v, %v", models, err)
	}
}

// A breakpoint that moves on to the newest message must still read the
// previous request's prefix: the cache is keyed on content, not on where
// the markers were (the agent marks only the last two user messages).
func TestPromptCacheMovingBreakpoint(t *testing.T) {
	s := Start(Options{})
	defer s.Close()
	c := client(s)
	text := func(s string, mark bool) anthropic.ContentBlockParamUnion {
		b := anthropic.NewTextBlock(s)
		if mark {
			b.OfText.CacheControl = anthropic.NewCacheControlEphemeralParam()
		}
		return b
	}
	u1 := strings.Repeat("a long first message ", 200)
	u2 := strings.Repeat("a long second message ", 200)
	r1, err := c.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model: "claude-sonnet-5-5", MaxTokens: 100,
		Messages: []anthropic.MessageParam{
			anthropic.NewUserMessage(text(u1, true)),
			anthropic.NewAssistantMessage(text("ok", false)),
			anthropic.NewUserMessage(text(u2, true)),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := c.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model: "claude-sonnet-5-5", MaxTokens: 100,
		Messages: []anthropic.MessageParam{
			anthropic.NewUserMessage(text(u1, false)), // its marker moved on
			anthropic.NewAssistantMessage(text("ok", false)),
			anthropic.NewUserMessage(text(u2, true)),
			anthropic.NewAssistantMessage(text("ok", false)),
			anthropic.NewUserMessage(text("and a follow-up", true)),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	written := r1.Usage.CacheCreationInputTokens + r1.Usage.CacheReadInputTokens
	if written < 500 || r2.Usage.CacheReadInputTokens != written {
		t.Errorf("second request read %d cached tokens; want the first request's %d", r2.Usage.CacheReadInputTokens, written)
	}
}

// TestModelsList: GET /v1/models pages as the real API does, newest
// first, and refuses what it refuses; the SDK's auto-pager reads every
// page.
func TestModelsList(t *testing.T) {
	s := Start(Options{APIKey: testKey})
	defer s.Close()
	get := func(query string, key string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", s.URL()+"/v1/models"+query, nil)
		req.Header.Set("anthropic-version", "2026-10-21")
		if key != "" {
			req.Header.Set("x-api-key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		query, key string
		status     int
		want       string
	}{
		{"", "", 401, "authentication_error"},
		{"", "sk-ant-other", 401, "authentication_error"},
		{"?limit=0", testKey, 400, "limit"},
		{"?limit=1001", testKey, 400, "limit"},
		{"?limit=x", testKey, 400, "limit"},
		{"?page=2", testKey, 400, "page: Extra inputs"},
		{"?after_id=a&before_id=b", testKey, 400, "mutually exclusive"},
		{"?after_id=claude-nope", testKey, 400, "after_id"},
		{"?lifecycle[]=gone", testKey, 400, "lifecycle"},
		{"?limit=2", testKey, 200, `"has_more":true,"first_id":"claude-fable-5-2","last_id":"claude-haiku-5-5"`},
		{"?limit=2&after_id=claude-haiku-5-5", testKey, 200, `"first_id":"claude-sonnet-5-5","last_id":"claude-fable-5-1"`},
		{"?limit=2&before_id=claude-sonnet-5-5", testKey, 200, `"has_more":false,"first_id":"claude-fable-5-2","last_id":"claude-haiku-5-5"`},
		{"?lifecycle[]=retired", testKey, 200, `"id":"claude-sonnet-4-5-20250929"`},
		{"/claude-opus-4-5", testKey, 200, `"lifecycle":"deprecated","deprecated_at":"2026-11-23T00:00:00Z","retires_at":"2027-01-22T00:00:00Z"`},
		{"/claude-nope", testKey, 404, "model: claude-nope"},
	} {
		status, body := get(tc.query, tc.key)
		if status != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("GET /v1/models%s: %d %s; want %d with %q", tc.query, status, body, tc.status, tc.want)
		}
	}
	if _, body := get("", testKey); strings.Contains(body, "claude-sonnet-4-5") {
		t.Errorf("the default list shows a retired model: %s", body)
	}

	c := anthropic.NewClient(option.WithBaseURL(s.URL()), option.WithAPIKey(testKey), option.WithMaxRetries(0))
	var ids []string
	pager := c.Models.ListAutoPaging(context.Background(), anthropic.ModelListParams{Limit: anthropic.Int(3)})
	for pager.Next() {
		m := pager.Current()
		ids = append(ids, m.ID)
		if m.ID == "claude-sonnet-5-5" && (m.Line != anthropic.ModelLineSonnet || m.Lifecycle != anthropic.ModelInfoLifecycleActive) {
			t.Errorf("claude-sonnet-5-5 = %+v; want line sonnet, active", m)
		}
	}
	if err := pager.Err(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(ids, ",") != strings.Join(Models, ",") {
		t.Errorf("auto-paged ids = %v; want %v", ids, Models)
	}
}
