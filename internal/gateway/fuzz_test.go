package gateway

import (
	"encoding/json"
	"testing"
	"time"
)

const sampleStream = "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-opus-4-1\",\"usage\":{\"input_tokens\":12,\"cache_creation_input_tokens\":3,\"cache_read_input_tokens\":4,\"output_tokens\":1}}}\r\n\r\n" +
	"event: ping\ndata: {\"type\": \"ping\"}\n\n" +
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi \\\"usage\\\"\"}}\n\n" +
	"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":42}}\n\n" +
	"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"

func TestUsageScanner(t *testing.T) {
	want := Usage{InputTokens: 12, OutputTokens: 42, CacheCreationTokens: 3, CacheReadTokens: 4}
	for split := 0; split <= len(sampleStream); split++ {
		s := usageScanner{stream: true}
		s.Write([]byte(sampleStream[:split]))
		s.Write([]byte(sampleStream[split:]))
		s.finish()
		if s.usage != want || s.model != "claude-opus-4-1" {
			t.Fatalf("split at %d: got %+v %q; want %+v", split, s.usage, s.model, want)
		}
	}
	s := usageScanner{}
	s.Write([]byte(`{"model":"claude-haiku-4-5","content":[{"type":"text","text":"x"}],"usage":{"input_tokens":5,"output_tokens":6}}`))
	s.finish()
	if s.usage != (Usage{InputTokens: 5, OutputTokens: 6}) || s.model != "claude-haiku-4-5" {
		t.Errorf("json body: got %+v %q", s.usage, s.model)
	}
}

// FuzzUsageScanner: any bytes, split anywhere, give the same result as in
// one piece and never panic.
func FuzzUsageScanner(f *testing.F) {
	f.Add([]byte(sampleStream), uint16(10))
	f.Add([]byte("data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":1}}\n\n"), uint16(3))
	f.Add([]byte("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n"), uint16(7))
	f.Add([]byte("event:message_start\ndata:{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":-5}}}"), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		k := int(split) % (len(data) + 1)
		whole := usageScanner{stream: true}
		whole.Write(data)
		whole.finish()
		parts := usageScanner{stream: true}
		parts.Write(data[:k])
		parts.Write(data[k:])
		parts.finish()
		if whole.usage != parts.usage || whole.model != parts.model || whole.errType != parts.errType {
			t.Fatalf("split at %d changed the result: %+v vs %+v", k, whole.usage, parts.usage)
		}
		if whole.usage.InputTokens < 0 || whole.usage.OutputTokens < 0 {
			t.Fatalf("negative usage %+v", whole.usage)
		}
	})
}

// FuzzScanTop: on any JSON object scanTop agrees with a real decoder.
func FuzzScanTop(f *testing.F) {
	f.Add([]byte(`{"max_tokens":1000,"messages":[{"role":"user","content":"a \" } ] { model"}],"model":"claude-sonnet-5-5"}`))
	f.Add([]byte(`{"model":"a","model":"b","max_tokens":5,"max_tokens":7}`))
	f.Add([]byte(`{"m\u006fdel":"x","max_\u0074okens":9}`))
	f.Add([]byte(`{"max_tokens":1e3, "nested":{"model":"no"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		model, maxTok := scanTop(b)
		var ref map[string]json.RawMessage
		if json.Unmarshal(b, &ref) != nil {
			return
		}
		var wantModel string
		json.Unmarshal(ref["model"], &wantModel)
		var f float64
		var wantMax int64
		if json.Unmarshal(ref["max_tokens"], &f) == nil && f > 0 {
			wantMax = int64(min(f, 1<<40))
		}
		if model != wantModel || maxTok != wantMax {
			t.Fatalf("scanTop(%s) = %q, %d; want %q, %d", b, model, maxTok, wantModel, wantMax)
		}
	})
}

// FuzzTokenRequest: the admin API's JSON either fails cleanly or yields a
// request that passes validation.
func FuzzTokenRequest(f *testing.F) {
	f.Add([]byte(`{"sandbox":"name","budget_usd":2.5,"budget_tokens":0,"ttl":"24h"}`))
	f.Add([]byte(`{"sandbox":"a","budget_usd":-1}`))
	f.Add([]byte(`{"sandbox":"a","ttl":"-5m"}`))
	f.Add([]byte(`{"sandbox":"a"} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseTokenRequest(b)
		if err != nil {
			return
		}
		if r.validate() != nil || r.TTL <= 0 || r.BudgetUSD < 0 || r.BudgetTokens < 0 || r.Sandbox == "" {
			t.Fatalf("accepted an invalid request %+v", r)
		}
	})
}

// FuzzFastUsage: where fastUsage decodes a usage object, it agrees with
// encoding/json.
func FuzzFastUsage(f *testing.F) {
	f.Add([]byte(`{"input_tokens":25,"output_tokens":200,"cache_creation_input_tokens":0,"cache_read_input_tokens":null}`))
	f.Add([]byte(`{"Input_Tokens":5,"server_tool_use":{"web_search_requests":1},"service_tier":"standard"}`))
	f.Add([]byte(`{"input_tokens":1.0,"output_tokens":-3,"input_tokens":7}`))
	f.Add([]byte(`{"output_tokens":99999999999999999999}`))
	f.Add([]byte(`{"input_tokens":3,"cache_creation":{"ephemeral_5m_input_tokens":4,"ephemeral_1h_input_tokens":6}}`))
	f.Add([]byte(`{"cache_creation":{"ephemeral_1h_input_tokens":1},"cache_creation":{"ephemeral_5m_input_tokens":2}}`))
	f.Add([]byte(`{"cache_creation":null,"cache_creation":5}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast wireUsage
		if !fastUsage(b, &fast) {
			return
		}
		var ref wireUsage
		if err := json.Unmarshal(b, &ref); err != nil {
			t.Fatalf("fastUsage accepted %s, encoding/json: %v", b, err)
		}
		deref := func(p *int64) any {
			if p == nil {
				return nil
			}
			return *p
		}
		oneHour := func(w wireUsage) *int64 {
			if w.CacheCreation == nil {
				return nil
			}
			return w.CacheCreation.Ephemeral1h
		}
		if (fast.CacheCreation == nil) != (ref.CacheCreation == nil) {
			t.Fatalf("%s: cache_creation nil %v; encoding/json nil %v", b, fast.CacheCreation == nil, ref.CacheCreation == nil)
		}
		for i, pair := range [][2]*int64{{fast.InputTokens, ref.InputTokens}, {fast.OutputTokens, ref.OutputTokens},
			{fast.CacheCreationTokens, ref.CacheCreationTokens}, {fast.CacheReadTokens, ref.CacheReadTokens},
			{oneHour(fast), oneHour(ref)}} {
			if deref(pair[0]) != deref(pair[1]) {
				t.Fatalf("%s: field %d = %v; encoding/json %v", b, i, deref(pair[0]), deref(pair[1]))
			}
		}
	})
}

// TestAppendRecord: the audit encoder writes what json.Marshal writes,
// for every field set (a field added to record or Usage fails this).
func TestAppendRecord(t *testing.T) {
	full := record{Time: time.Date(2025, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600)), TokenID: "tok_1", Sandbox: "s<&>\"\\\n\u2028é\xff",
		Route: "/v1/messages", Method: "POST", Target: "a:443", Model: "claude", Status: 200,
		Usage:   &Usage{InputTokens: 1, OutputTokens: 2, CacheCreationTokens: 3, CacheReadTokens: 4},
		CostUSD: 1.5e-7, DurationMS: 12.345, Bytes: 99, Stream: true, Error: "e\x01"}
	for _, r := range []record{full, {Time: time.Unix(0, 0).UTC()}, {CostUSD: 1e21, DurationMS: 123456789.125}} {
		want, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendRecord(nil, &r); string(got) != string(want) {
			t.Errorf("appendRecord = %s\njson.Marshal = %s", got, want)
		}
	}
}

func FuzzAppendRecord(f *testing.F) {
	f.Add("sandbox", "claude-sonnet-5-5", "err <&>", 12.5, 0.003, int64(5))
	f.Add("\xff\xfe\u2029", "\x00", "", 1e-9, 1e22, int64(-1))
	f.Fuzz(func(t *testing.T, sandbox, model, errText string, dur, cost float64, n int64) {
		r := record{Time: time.Unix(n, n).UTC(), Sandbox: sandbox, Model: model, Error: errText, DurationMS: dur, CostUSD: cost, Bytes: n,
			Usage: &Usage{InputTokens: n, OutputTokens: -n}}
		want, err := json.Marshal(&r)
		if err != nil {
			return // NaN, ±Inf, a year past 9999
		}
		if got := appendRecord(nil, &r); string(got) != string(want) {
			t.Fatalf("appendRecord = %s\njson.Marshal = %s", got, want)
		}
	})
}
