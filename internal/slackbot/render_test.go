package slackbot

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/slack-go/slack"
)

// lastPoster keeps the last text written.
type lastPoster struct {
	mu   sync.Mutex
	last string
}

func (p *lastPoster) post(_ context.Context, _, _, text string, _ []slack.Block) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = text
	return "1.0", nil
}

func (p *lastPoster) update(_ context.Context, _, _, text string, _ []slack.Block) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = text
	return nil
}

// TestToolLinesAreBounded: the tool calls come from the sandbox's agent;
// 3,000 in one group made one message of every line, rebuilt at
// every call (quadratic), far past what Slack takes in a message.
func TestToolLinesAreBounded(t *testing.T) {
	p := &lastPoster{}
	r := newRenderer(context.Background(), p, "C1", "1.0", time.Millisecond, func(err error) { t.Error(err) })
	const calls = 3000
	start := time.Now()
	for i := range calls {
		r.ToolStart("id", "bash", strings.Repeat("y", 200)+string(rune('a'+i%26)))
	}
	r.Flush()
	p.mu.Lock()
	last := p.last
	p.mu.Unlock()
	if n := strings.Count(last, "\n") + 1; n > maxGroupLines+1 || len(last) > 40000 {
		t.Errorf("the tool message has %d lines, %d bytes; want at most %d lines", n, len(last), maxGroupLines+1)
	}
	if !strings.Contains(last, "… and 2970 more") {
		t.Errorf("the tool message does not count the calls not shown: …%s", last[max(0, len(last)-200):])
	}
	t.Logf("%d tool calls rendered in %v", calls, time.Since(start))
}

// TestPlanIsBounded: the plan comes from the sandbox's agent; 5,000
// items made a message Slack refuses, rebuilt at every todo event.
func TestPlanIsBounded(t *testing.T) {
	p := &lastPoster{}
	r := newRenderer(context.Background(), p, "C1", "1.0", time.Millisecond, func(err error) { t.Error(err) })
	items := make([]protocol.TodoItem, 5000)
	for i := range items {
		items[i] = protocol.TodoItem{Content: strings.Repeat("step ", 20), Status: "pending"}
	}
	r.Plan(items)
	r.Flush()
	p.mu.Lock()
	last := p.last
	p.mu.Unlock()
	if n := strings.Count(last, "\n"); n > maxPlanItems+1 || !strings.HasSuffix(last, "… and 4950 more") {
		t.Errorf("the plan message has %d lines, %d bytes, ending …%s; want %d items and a count of the rest",
			n, len(last), last[max(0, len(last)-40):], maxPlanItems)
	}
}
