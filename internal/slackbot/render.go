package slackbot

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/sanitize"
)

// poster is what rendering needs of the Slack Web API. Safe for
// concurrent use.
type poster interface {
	post(ctx context.Context, channel, thread, text string, blocks []slack.Block) (string, error)
	update(ctx context.Context, channel, ts, text string, blocks []slack.Block) error
}

// webAPI is the poster on a real (or fake) Slack, retrying once on 429.
type webAPI struct{ api *slack.Client }

func (w webAPI) post(ctx context.Context, channel, thread, text string, blocks []slack.Block) (string, error) {
	opts := []slack.MsgOption{slack.MsgOptionText(text, false), slack.MsgOptionDisableLinkUnfurl()}
	if thread != "" {
		opts = append(opts, slack.MsgOptionTS(thread))
	}
	if len(blocks) > 0 {
		opts = append(opts, slack.MsgOptionBlocks(blocks...))
	}
	var ts string
	err := retry429(ctx, func() error {
		var err error
		_, ts, err = w.api.PostMessageContext(ctx, channel, opts...)
		return err
	})
	return ts, err
}

func (w webAPI) update(ctx context.Context, channel, ts, text string, blocks []slack.Block) error {
	opts := []slack.MsgOption{slack.MsgOptionText(text, false)}
	if blocks != nil {
		opts = append(opts, slack.MsgOptionBlocks(blocks...))
	}
	return retry429(ctx, func() error {
		_, _, _, err := w.api.UpdateMessageContext(ctx, channel, ts, opts...)
		return err
	})
}

// retry429 runs f again after Slack's Retry-After when it was rate limited.
func retry429(ctx context.Context, f func() error) error {
	for attempt := 0; ; attempt++ {
		err := f()
		var rl *slack.RateLimitedError
		if !errors.As(err, &rl) || attempt >= 3 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(rl.RetryAfter):
		}
	}
}

// maxMessage is where a streamed reply continues in a new message: below
// Slack's 4,000-character guidance for a readable message.
const maxMessage = 3500

// message is one bot message that may be edited as it grows; updates are
// spaced by the interval (Slack allows about one chat.update a second
// per message) and coalesced: the last state always gets written.
type message struct {
	r        *renderer
	ts       string
	text     string
	blocks   []slack.Block
	last     time.Time
	timer    *time.Timer
	dirty    bool
	inFlight bool
}

// renderer turns the agent's events into a Slack thread: streamed text in
// messages edited as it arrives, tool calls as compact lines grouped in
// one message, the plan as a checklist message. Safe for concurrent use.
type renderer struct {
	ctx             context.Context
	p               poster
	channel, thread string
	interval        time.Duration
	onErr           func(error)

	mu       sync.Mutex
	text     *message // the reply being streamed
	textBuf  strings.Builder
	activity *toolGroup // the current group of tool lines
	byID     map[string]*toolGroup
	plan     *message
	all      []*message // every message made, for Flush
	pending  sync.WaitGroup
}

// toolGroup is consecutive tool calls shown in one message.
type toolGroup struct {
	msg   *message
	lines []toolLine
	more  int // calls past maxGroupLines, counted, not shown
}

// maxPlanItems bounds the plan's checklist (the agent's todo list, from
// the sandbox) in its message.
const maxPlanItems = 50

// maxGroupLines bounds the tool lines of one message: the agent's events
// come from the sandbox, and each line is written again at every edit.
const maxGroupLines = 30

type toolLine struct {
	id, name, summary string
	done, ok          bool
	result            string
}

// newMessage starts a message this renderer tracks; r.mu held.
func (r *renderer) newMessage() *message {
	m := &message{r: r}
	r.all = append(r.all, m)
	return m
}

func newRenderer(ctx context.Context, p poster, channel, thread string, interval time.Duration, onErr func(error)) *renderer {
	return &renderer{ctx: ctx, p: p, channel: channel, thread: thread, interval: interval, onErr: onErr}
}

// set changes a message's content and writes it now or when the interval
// allows. A message without ts is posted first.
func (r *renderer) set(m *message, text string, blocks []slack.Block) {
	m.text, m.blocks, m.dirty = text, blocks, true
	r.schedule(m)
}

// schedule must be called with r.mu held.
func (r *renderer) schedule(m *message) {
	if m.inFlight || !m.dirty {
		return
	}
	wait := time.Until(m.last.Add(r.interval))
	if m.ts != "" && wait > 0 {
		if m.timer == nil {
			m.timer = time.AfterFunc(wait, func() {
				r.mu.Lock()
				m.timer = nil
				r.schedule(m)
				r.mu.Unlock()
			})
		}
		return
	}
	m.inFlight, m.dirty = true, false
	text, blocks, ts := m.text, m.blocks, m.ts
	if ts == "" {
		// New messages are posted in order, here, so the thread reads as
		// the agent worked; only edits go in the background.
		ts, err := r.p.post(r.ctx, r.channel, r.thread, text, blocks)
		if err != nil && r.onErr != nil {
			r.onErr(err)
		}
		m.ts, m.last, m.inFlight = ts, time.Now(), false
		if err != nil {
			return
		}
		r.schedule(m)
		return
	}
	r.pending.Add(1)
	go func() {
		defer r.pending.Done()
		err := r.p.update(r.ctx, r.channel, ts, text, blocks)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil && r.onErr != nil {
			r.onErr(err)
		}
		m.last, m.inFlight = time.Now(), false
		r.schedule(m)
	}()
}

// Text appends streamed assistant text.
func (r *renderer) Text(delta string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.activity = nil // text after tools starts below them
	if r.text == nil {
		r.text = r.newMessage()
		r.textBuf.Reset()
	}
	r.textBuf.WriteString(delta)
	s := r.textBuf.String()
	if len(s) > maxMessage {
		// Continue in a new message at a line break near the limit.
		cut := strings.LastIndexByte(s[:maxMessage], '\n')
		if cut < maxMessage/2 {
			cut = maxMessage
		}
		r.set(r.text, mrkdwn(s[:cut]), nil)
		r.text = r.newMessage()
		r.textBuf.Reset()
		r.textBuf.WriteString(strings.TrimLeft(s[cut:], "\n"))
		s = r.textBuf.String()
	}
	if strings.TrimSpace(s) != "" {
		r.set(r.text, mrkdwn(s), nil)
	}
}

// ToolStart shows a call as one compact line.
func (r *renderer) ToolStart(id, name, summary string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.text = nil // later text goes below the tools
	if r.activity == nil {
		r.activity = &toolGroup{msg: r.newMessage()}
	}
	if r.byID == nil {
		r.byID = map[string]*toolGroup{}
	}
	g := r.activity
	if len(g.lines) >= maxGroupLines {
		g.more++
	} else {
		g.lines = append(g.lines, toolLine{id: id, name: sanitize.Line(name, 60), summary: sanitize.Line(summary, 150)})
		r.byID[id] = g
	}
	r.set(g.msg, g.text(), nil)
}

// ToolEnd marks a call done.
func (r *renderer) ToolEnd(id string, ok bool, result string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.byID[id]
	if g == nil {
		return
	}
	delete(r.byID, id)
	for i := range g.lines {
		if g.lines[i].id == id {
			g.lines[i].done, g.lines[i].ok, g.lines[i].result = true, ok, sanitize.Line(result, 100)
		}
	}
	r.set(g.msg, g.text(), nil)
}

func (g *toolGroup) text() string {
	var b strings.Builder
	for i, t := range g.lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		mark := "⏳"
		if t.done {
			mark = "✓"
			if !t.ok {
				mark = "✗"
			}
		}
		b.WriteString(mark + " *" + escape(t.name) + "*")
		if t.summary != "" {
			b.WriteString("  `" + strings.ReplaceAll(escape(sanitize.Line(t.summary, 150)), "`", "'") + "`")
		}
		if t.done && t.result != "" {
			b.WriteString("  → " + escape(sanitize.Line(t.result, 100)))
		}
	}
	if g.more > 0 {
		fmt.Fprintf(&b, "\n… and %d more", g.more)
	}
	return b.String()
}

// Plan shows the agent's todo list as a checklist, in one message edited
// as it changes.
func (r *renderer) Plan(items []protocol.TodoItem) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.plan == nil {
		r.plan = r.newMessage()
	}
	var b strings.Builder
	b.WriteString("*Plan*")
	for i, it := range items {
		if i == maxPlanItems {
			fmt.Fprintf(&b, "\n… and %d more", len(items)-i)
			break
		}
		mark := "☐"
		switch it.Status {
		case "completed":
			mark = "☑"
		case "in_progress":
			mark = "▶"
		}
		b.WriteString("\n" + mark + " " + escape(sanitize.Line(it.Content, 200)))
	}
	r.set(r.plan, b.String(), nil)
}

// Break ends the current text and tool groups (a question, the turn's end).
func (r *renderer) Break() {
	r.mu.Lock()
	r.text, r.activity = nil, nil
	r.mu.Unlock()
}

// Flush waits until every message has its latest content written.
func (r *renderer) Flush() {
	for {
		r.mu.Lock()
		busy := false
		for _, m := range r.all {
			if m.dirty || m.inFlight {
				busy = true
			}
		}
		// Messages done with need no tracking any more.
		keep := r.all[:0]
		for _, m := range r.all {
			if m.dirty || m.inFlight || m == r.text || m == r.plan || (r.activity != nil && m == r.activity.msg) || m.timer != nil {
				keep = append(keep, m)
			}
		}
		r.all = keep
		r.mu.Unlock()
		r.pending.Wait()
		if !busy {
			return
		}
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// escape makes text from the sandbox inert in Slack: control sequences
// dropped, and &, <, > escaped so that it cannot mention people
// (<!channel>, <@U…>) or disguise links.
func escape(s string) string {
	s = strings.Map(func(r rune) rune {
		if isBidiControl(r) {
			return -1
		}
		return r
	}, sanitize.Text(s))
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// isBidiControl reports the explicit bidirectional formatting characters
// (embeddings, overrides, isolates, marks): in text from the sandbox they
// could reorder what the user reads, an approval prompt included.
func isBidiControl(r rune) bool {
	return r == 0x200e || r == 0x200f || r == 0x061c || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069
}

var (
	boldRE    = regexp.MustCompile(`\*\*([^*\n]+)\*\*`)
	headingRE = regexp.MustCompile(`(?m)^#{1,6}\s+(.+)$`)
	linkRE    = regexp.MustCompile(`\[([^\]\n]+)\]\((https?://[^\s)]+)\)`)
)

// addressRE matches text that names a web address or a domain.
var addressRE = regexp.MustCompile(`(?i)(://|www\.|\b[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}\b)`)

func looksLikeAddress(s string) bool { return addressRE.MatchString(s) }

// mrkdwn converts the agent's Markdown to Slack's mrkdwn after escaping:
// **bold** and headings become *bold*, [t](https://u) a link, and runs of
// table lines a code block (Slack has no tables).
func mrkdwn(s string) string {
	s = escape(s)
	s = headingRE.ReplaceAllString(s, "*$1*")
	s = boldRE.ReplaceAllString(s, "*$1*")
	s = linkRE.ReplaceAllStringFunc(s, func(m string) string {
		p := linkRE.FindStringSubmatch(m)
		if strings.ContainsAny(p[2], "|") {
			return m
		}
		// Link text that reads as an address shows the real one beside
		// it: "[https://huggingface.co/x](https://elsewhere)" must not
		// pass for a link to the Hub.
		if looksLikeAddress(p[1]) && p[1] != p[2] {
			return p[1] + " (<" + p[2] + ">)"
		}
		return "<" + p[2] + "|" + strings.ReplaceAll(p[1], "|", "/") + ">"
	})
	lines := strings.Split(s, "\n")
	var out []string
	inTable := false
	for _, l := range lines {
		isRow := strings.HasPrefix(strings.TrimSpace(l), "|")
		if isRow && !inTable {
			out = append(out, "```")
			inTable = true
		} else if !isRow && inTable {
			out = append(out, "```")
			inTable = false
		}
		out = append(out, l)
	}
	if inTable {
		out = append(out, "```")
	}
	return strings.Join(out, "\n")
}
