package protocol

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// sampleEvents has one event of every type, as the agent writes them.
func sampleEvents() []Event {
	return []Event{
		{Type: EventReady, Session: "s-1", Model: "claude-sonnet-5-5", ResumedMessages: 4},
		{Type: EventTextDelta, Text: "Let me look at the data."},
		{Type: EventThinking, Text: "the user wants a classifier"},
		{Type: EventToolStart, ID: "toolu_1", Name: "bash", Summary: "ls /data"},
		{Type: EventToolEnd, ID: "toolu_1", Name: "bash", OK: Bool(true), Summary: "exit 0", Output: "hf-cache\nruns\n"},
		{Type: EventToolEnd, ID: "toolu_2", Name: "read", OK: Bool(false), Summary: "error", Output: "no such file"},
		{Type: EventTodo, Items: []TodoItem{{Content: "pick a model", Status: "completed"}, {Content: "train", Status: "in_progress"}}},
		{Type: EventAskUser, ID: "toolu_3", Question: "Which dataset?", Choices: []string{"imdb", "sst2"}},
		{Type: EventApproval, ID: "toolu_4", Action: &Action{Kind: "bash", Target: "rm -rf /workspace/old"}},
		{Type: EventApproval, ID: "gw-1", Withdrawn: true},
		{Type: EventJob, Job: &Job{ID: "job1", Command: "python3 train.py", Status: "running"}},
		{Type: EventAttached, Session: "s-1", Model: "claude-sonnet-4-5", Busy: true},
		{Type: EventUsage, Usage: &Usage{InputTokens: 120, OutputTokens: 80, CacheCreationInputTokens: 2000, CacheReadInputTokens: 9000, CostUSD: 0.0123, Requests: 3, SessionCostUSD: 0.05, SessionCacheReadRatio: 0.8}},
		{Type: EventCompaction, Compaction: &Compaction{MessagesBefore: 40, MessagesAfter: 7, TokensBefore: 170000, SummaryChars: 2400}},
		{Type: EventRetry, Attempt: 1, WaitMS: 2000, Message: "overloaded_error (529)"},
		{Type: EventError, Kind: ErrBudget, Message: "budget exhausted for this sandbox"},
		{Type: EventTurnEnd, StopReason: "end_turn"},
	}
}

func TestEventsGolden(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, ev := range sampleEvents() {
		if err := w.Emit(ev); err != nil {
			t.Fatal(err)
		}
	}
	golden(t, "events.golden.jsonl", buf.Bytes())
}

func TestInputsGolden(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "inputs.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	r := NewReader(bytes.NewReader(data))
	var out strings.Builder
	for {
		in, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			out.WriteString("error: " + err.Error() + "\n")
			continue
		}
		out.WriteString(in.Type + " id=" + in.ID + " text=" + in.Text)
		if in.Decision != "" {
			out.WriteString(" decision=" + in.Decision)
		}
		out.WriteString("\n")
	}
	golden(t, "inputs.golden.txt", []byte(out.String()))
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s mismatch:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestParseInput(t *testing.T) {
	tests := []struct {
		name, line string
		wantErr    bool
		want       Input
	}{
		{"user", `{"v":1,"type":"user_message","text":"hi"}`, false, Input{V: 1, Type: "user_message", Text: "hi"}},
		{"no version", `{"type":"interrupt"}`, false, Input{V: 1, Type: "interrupt"}},
		{"newer version", `{"v":2,"type":"interrupt"}`, true, Input{}},
		{"empty message", `{"type":"user_message"}`, true, Input{}},
		{"answer without id", `{"type":"answer","text":"x"}`, true, Input{}},
		{"unknown", `{"type":"dance"}`, true, Input{}},
		{"not json", `hello`, true, Input{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseInput([]byte(tt.line))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v; want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v; want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseInput(f *testing.F) {
	f.Add([]byte(`{"v":1,"type":"user_message","text":"hi"}`))
	f.Add([]byte(`{"type":"answer","id":"x","text":"y"}`))
	f.Add([]byte(`{"v":99}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		in, err := ParseInput(line)
		if err == nil && (in.V < 1 || in.V > Version) {
			t.Errorf("accepted version %d", in.V)
		}
	})
}

type errWriter struct{ n int }

func (e *errWriter) Write(p []byte) (int, error) {
	e.n++
	return 0, errors.New("broken pipe")
}

func TestWriterStickyError(t *testing.T) {
	ew := &errWriter{}
	w := NewWriter(ew)
	if err := w.Emit(Event{Type: EventTurnEnd}); err == nil {
		t.Fatal("got nil error; want broken pipe")
	}
	if err := w.Emit(Event{Type: EventTurnEnd}); err == nil {
		t.Fatal("second Emit: got nil error; want the first error")
	}
	if ew.n != 1 {
		t.Errorf("writes = %d; want 1", ew.n)
	}
}

func TestHeldRequestString(t *testing.T) {
	for _, c := range []struct {
		r    HeldRequest
		want string
	}{
		{HeldRequest{Method: "POST", Host: "huggingface.co", Path: "/api/models/you/m/commit/main", Size: 15}, "POST huggingface.co/api/models/you/m/commit/main, 15 bytes"},
		{HeldRequest{Method: "POST", Host: "github.com", Path: "/you/r.git/git-receive-pack", Size: -1}, "POST github.com/you/r.git/git-receive-pack, size not given"},
		{HeldRequest{Method: "PATCH", Host: "api.notion.com", Path: "/v1/pages/x", Size: 1234}, "PATCH api.notion.com/v1/pages/x, 1.2 kB"},
		{HeldRequest{Method: "PUT", Host: "h", Path: "/p", Size: 5_600_000}, "PUT h/p, 5.6 MB"},
		{HeldRequest{Method: "PUT", Host: "h", Path: "/p", Size: 7_000_000_000}, "PUT h/p, 7.0 GB"},
	} {
		if got := c.r.String(); got != c.want {
			t.Errorf("got %q; want %q", got, c.want)
		}
	}
	a := Action{Kind: "hub:push", Target: "you/m", Detail: "the sandbox's words"}
	if got := a.Describe(); got != "the sandbox's words" {
		t.Errorf("Describe without a request: got %q", got)
	}
	a.Request = &HeldRequest{Method: "POST", Host: "huggingface.co", Path: "/x", Size: 2}
	if got := a.Describe(); got != "POST huggingface.co/x, 2 bytes" {
		t.Errorf("Describe with a request: got %q", got)
	}
}

func TestIsGatewayApproval(t *testing.T) {
	for _, c := range []struct {
		ev   Event
		want bool
	}{
		{Event{Type: EventApproval, ID: "gw-abc"}, true},
		{Event{Type: EventApproval, ID: "toolu_1", Name: "gateway"}, true},
		{Event{Type: EventApproval, ID: "toolu_1", Name: "bash"}, false},
		{Event{Type: EventAskUser, ID: "gw-1", Name: "gateway"}, false},
	} {
		if got := IsGatewayApproval(c.ev); got != c.want {
			t.Errorf("IsGatewayApproval(%+v) = %v; want %v", c.ev, got, c.want)
		}
	}
}
