package slackbot

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sanitize"
	"github.com/mlagent/mlagent/internal/sessions"
	"github.com/mlagent/mlagent/internal/volume"
)

// thread is one Slack thread and its session. Its agent runs while the
// thread is active; when it has ended (or the bot restarted), the next
// message resumes the session in a new sandbox.
type thread struct {
	bot         *Bot
	channel, ts string

	mu        sync.Mutex
	loaded    bool
	owner     string // who started it (their budget pays)
	sessionID string
	known     bool // the session exists in the index (resume it)
	agent     *launch.AgentSession
	cancel    context.CancelFunc
	r         *renderer
	busy      bool     // a turn is running
	queue     []string // messages that arrived during a turn
	ask       *pendingAsk
	approvals map[string]*pendingApproval
	turnStart time.Time
	costUSD   float64
	plan      []protocol.TodoItem
	tools     map[string]string // tool_use id → tool name, this turn
	lastTool  string
}

// pendingAsk is a question of the agent waiting for an answer.
type pendingAsk struct {
	id, msgTS, question string
	choices             []string
}

// pendingApproval is an approval waiting for a click: a command in
// ask-all mode, or a write the gateway holds (Hub, git, Drive, Notion);
// both are answered with an approval input.
type pendingApproval struct {
	id, msgTS string
	action    protocol.Action
}

// load reads the thread's session from the store, once.
func (t *thread) load(ctx context.Context) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.loaded {
		return
	}
	t.loaded = true
	if id, user, err := t.bot.lookupThread(ctx, t.channel, t.ts); err == nil {
		t.sessionID, t.owner, t.known = id, user, true
		if s, err := t.bot.host.Sessions().Get(ctx, id); err == nil {
			t.costUSD = s.CostUSD
		}
	}
}

func (t *thread) say(ctx context.Context, text string) {
	t.bot.say(ctx, t.channel, t.ts, text)
}

// userMessage handles a person's message in the thread.
func (t *thread) userMessage(ctx context.Context, user, text string, files []slack.File) {
	t.mu.Lock()
	if t.ask != nil && text != "" && len(files) == 0 {
		// A free-text answer to the pending question.
		a := t.ask
		t.ask = nil
		agent := t.agent
		t.mu.Unlock()
		t.answered(ctx, a, user, text)
		if agent != nil {
			agent.Send(protocol.Input{Type: protocol.InputAnswer, ID: a.id, Text: text})
		}
		return
	}
	t.mu.Unlock()
	if err := t.ensureAgent(ctx, user); err != nil {
		t.say(ctx, err.Error())
		return
	}
	if len(files) > 0 {
		saved, problems := t.download(ctx, volume.Data, files)
		var note strings.Builder
		if len(saved) > 0 {
			note.WriteString("\n\n[The user attached files; they are saved on the data volume: " + strings.Join(saved, ", ") + "]")
			t.say(ctx, "📎 saved for the agent: "+strings.Join(saved, ", "))
		}
		for _, p := range problems {
			t.say(ctx, "📎 "+escape(p))
		}
		text += note.String()
	}
	if strings.TrimSpace(text) == "" {
		return
	}
	t.mu.Lock()
	if t.busy {
		t.queue = append(t.queue, text)
		t.mu.Unlock()
		return
	}
	t.busy, t.turnStart = true, time.Now()
	agent := t.agent
	t.mu.Unlock()
	if err := agent.Send(protocol.Input{Type: protocol.InputUserMessage, Text: text}); err != nil {
		t.say(ctx, "⚠ could not reach the agent: "+escape(err.Error()))
	}
}

// ensureAgent starts (or resumes) the thread's agent in a sandbox, within
// the user's budget and the bot's sandbox cap.
func (t *thread) ensureAgent(ctx context.Context, user string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.agent != nil {
		return nil
	}
	b := t.bot
	owner := t.owner
	if owner == "" {
		owner = user
	}
	budget := b.cfg.SessionBudgetUSD
	if b.cfg.UserBudgetUSD > 0 {
		spent, err := b.userSpend(ctx, owner)
		if err != nil {
			return fmt.Errorf("⚠ could not read the budget: %v", err)
		}
		left := b.cfg.UserBudgetUSD - spent
		if left <= 0.01 {
			//lint:ignore ST1005 posted to the thread as written
			return fmt.Errorf("Sorry, <@%s> has used the Slack budget of $%.2f ($%.2f spent). Whoever runs `mlagent slack` can raise `user_budget_usd`.", owner, b.cfg.UserBudgetUSD, spent)
		}
		if budget == 0 || left < budget {
			budget = left
		}
	}
	if !b.acquire() {
		//lint:ignore ST1005 posted to the thread as written
		return fmt.Errorf("Sorry, all %d sandboxes are busy with other threads. Try again when one finishes (`@mlagent status` in a thread says how it is going).", b.cfg.MaxSandboxes)
	}
	if t.sessionID == "" {
		t.sessionID = sessions.NewID(time.Now())
		t.owner = owner
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a, err := b.host.StartAgent(runCtx, launch.AgentRequest{
		Session: sessions.Session{ID: t.sessionID, Model: b.cfg.Model, Volumes: sandbox.DefaultMounts(), GPU: "none",
			Title: "slack thread " + t.channel + "/" + t.ts},
		Resume: t.known, MaxTurns: b.cfg.MaxTurns, BudgetUSD: budget,
		CPUs: b.cfg.CPUs, MemoryBytes: b.cfg.MemoryBytes, HoldWrites: true,
	})
	if err != nil {
		cancel()
		b.release()
		b.log.Warn("slack: start agent", "session", t.sessionID, "err", err)
		return fmt.Errorf("⚠ could not start a sandbox: %s", escape(sanitize.Line(err.Error(), 300)))
	}
	if !t.known {
		if err := b.saveThread(ctx, t.channel, t.ts, t.sessionID, t.owner); err != nil {
			b.log.Warn("slack: save thread", "err", err)
		}
		t.known = true
	}
	t.agent, t.cancel = a, cancel
	t.r = newRenderer(runCtx, b.p, t.channel, t.ts, b.cfg.UpdateInterval, func(err error) { b.log.Warn("slack render", "err", err) })
	t.approvals = map[string]*pendingApproval{}
	t.tools = map[string]string{}
	b.wg.Add(1)
	go t.follow(runCtx, a)
	return nil
}

// stop ends the thread's sandbox (the session can be resumed later).
func (t *thread) stop() {
	t.mu.Lock()
	a, cancel := t.agent, t.cancel
	t.mu.Unlock()
	if a != nil {
		a.Terminate(context.Background())
	}
	if cancel != nil {
		cancel()
	}
}

// follow renders the agent's events until it exits.
func (t *thread) follow(ctx context.Context, a *launch.AgentSession) {
	defer t.bot.wg.Done()
	r := protocol.NewEventReader(a.Events())
	for {
		ev, _, err := r.Next()
		if err != nil {
			break
		}
		t.event(ctx, a, ev)
	}
	t.r.Flush()
	werr := a.Wait(context.Background())
	a.Terminate(context.Background())
	t.mu.Lock()
	t.agent, t.busy, t.queue, t.ask = nil, false, nil, nil
	t.approvals = nil
	cancel := t.cancel
	t.cancel = nil
	t.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	t.bot.release()
	if werr != nil && ctx.Err() == nil {
		t.say(context.Background(), "⚠ the sandbox stopped: "+escape(sanitize.Line(werr.Error(), 300))+". Reply in this thread to continue the session.")
	}
}

// event renders one agent event.
func (t *thread) event(ctx context.Context, a *launch.AgentSession, ev protocol.Event) {
	r := t.r
	switch ev.Type {
	case protocol.EventTextDelta:
		r.Text(ev.Text)
	case protocol.EventToolStart:
		t.mu.Lock()
		if len(t.tools) < maxTurnTools {
			t.tools[ev.ID] = ev.Name
		}
		t.lastTool = ev.Name + " " + sanitize.Line(ev.Summary, 80)
		t.mu.Unlock()
		if ev.Name != "ask_user" && ev.Name != "todo" { // shown as the question and the checklist
			r.ToolStart(ev.ID, ev.Name, ev.Summary)
		}
	case protocol.EventToolEnd:
		t.mu.Lock()
		name := t.tools[ev.ID]
		t.mu.Unlock()
		ok := ev.OK != nil && *ev.OK
		r.ToolEnd(ev.ID, ok, ev.Summary)
		if name == "share_file" && ok {
			if err := t.share(ctx, a.Sandbox, ev.Summary); err != nil {
				t.say(ctx, "⚠ could not share "+escape(sanitize.Line(ev.Summary, 200))+": "+escape(sanitize.Line(err.Error(), 300)))
			}
		}
	case protocol.EventTodo:
		t.mu.Lock()
		t.plan = ev.Items
		t.mu.Unlock()
		r.Plan(ev.Items)
	case protocol.EventAskUser:
		r.Break()
		r.Flush()
		t.postAsk(ctx, ev)
	case protocol.EventApproval:
		switch {
		case ev.Withdrawn:
			t.mu.Lock()
			p := t.approvals[ev.ID]
			delete(t.approvals, ev.ID)
			t.mu.Unlock()
			if p != nil {
				t.bot.p.update(ctx, t.channel, p.msgTS, "🔐 "+escape(sanitize.Line(p.action.String(), 300))+" — withdrawn (the sandbox stopped waiting)", []slack.Block{})
			}
		case ev.Action != nil:
			r.Break()
			r.Flush()
			t.postApproval(ctx, ev.ID, *ev.Action)
		}
	case protocol.EventUsage:
		if ev.Usage != nil {
			t.mu.Lock()
			t.costUSD = ev.Usage.SessionCostUSD
			t.mu.Unlock()
		}
	case protocol.EventError:
		r.Break()
		t.say(ctx, "⚠ "+escape(sanitize.Line(ev.Message, 500)))
	case protocol.EventTurnEnd:
		r.Break()
		r.Flush()
		t.mu.Lock()
		t.busy = false
		t.tools = map[string]string{}
		var next string
		if len(t.queue) > 0 {
			next, t.queue = t.queue[0], t.queue[1:]
			t.busy, t.turnStart = true, time.Now()
		}
		t.mu.Unlock()
		if next != "" {
			a.Send(protocol.Input{Type: protocol.InputUserMessage, Text: next})
		}
	}
}

// maxTurnTools bounds the tool calls a thread remembers in a turn (to
// know a share_file call when it ends): the events come from the sandbox.
const maxTurnTools = 1024

// Action ids of the bot's buttons; values are "<pending id>|<choice>".
const (
	actionAnswer  = "mlagent_answer"
	actionApprove = "mlagent_approve"
)

func button(actionID, label, value string, style slack.Style) *slack.ButtonBlockElement {
	if r := []rune(label); len(r) > 70 {
		label = string(r[:69]) + "…"
	}
	b := slack.NewButtonBlockElement(actionID+"-"+value, value, slack.NewTextBlockObject(slack.PlainTextType, label, false, false))
	b.ActionID = actionID
	if style != "" {
		b.Style = style
	}
	return b
}

func (t *thread) postAsk(ctx context.Context, ev protocol.Event) {
	q := escape(sanitize.Truncate(ev.Question, 2500))
	blocks := []slack.Block{slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "❓ "+q, false, false), nil, nil)}
	var els []slack.BlockElement
	for i, c := range ev.Choices {
		if i >= 20 {
			break
		}
		els = append(els, button(actionAnswer, sanitize.Line(c, 70), ev.ID+"|"+strconv.Itoa(i), ""))
	}
	if len(els) > 0 {
		blocks = append(blocks, slack.NewActionBlock("ask-"+ev.ID, els...))
	}
	blocks = append(blocks, slack.NewContextBlock("", slack.NewTextBlockObject(slack.MarkdownType, "Or reply in this thread with your own answer.", false, false)))
	ts, err := t.bot.p.post(ctx, t.channel, t.ts, "❓ "+q, blocks)
	if err != nil {
		t.bot.log.Warn("slack: post question", "err", err)
	}
	t.mu.Lock()
	t.ask = &pendingAsk{id: ev.ID, msgTS: ts, question: ev.Question, choices: ev.Choices}
	t.mu.Unlock()
}

// answered replaces a question's buttons with the answer given.
func (t *thread) answered(ctx context.Context, a *pendingAsk, user, answer string) {
	if a.msgTS == "" {
		return
	}
	text := "❓ " + escape(sanitize.Truncate(a.question, 2500)) + "\n→ <@" + user + ">: " + escape(sanitize.Line(answer, 300))
	blocks := []slack.Block{slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, text, false, false), nil, nil)}
	if err := t.bot.p.update(ctx, t.channel, a.msgTS, text, blocks); err != nil {
		t.bot.log.Warn("slack: update question", "err", err)
	}
}

func (t *thread) postApproval(ctx context.Context, id string, a protocol.Action) {
	desc := escape(sanitize.Line(a.String(), 300))
	// A held write is shown as the gateway holds it (launch drops the
	// agent's events that claim to be the gateway's).
	if d := a.Describe(); d != "" {
		desc += "  (" + escape(sanitize.Line(d, 300)) + ")"
	}
	text := "🔐 Allow *" + desc + "*?"
	blocks := []slack.Block{
		slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, text, false, false), nil, nil),
		slack.NewActionBlock("appr-"+id,
			button(actionApprove, "Allow", id+"|"+protocol.DecisionAllow, slack.StylePrimary),
			button(actionApprove, "Deny", id+"|"+protocol.DecisionDeny, slack.StyleDanger)),
	}
	ts, err := t.bot.p.post(ctx, t.channel, t.ts, text, blocks)
	if err != nil {
		t.bot.log.Warn("slack: post approval", "err", err)
	}
	t.mu.Lock()
	if t.approvals != nil {
		t.approvals[id] = &pendingApproval{id: id, msgTS: ts, action: a}
	}
	t.mu.Unlock()
}

// clicked handles a button press in the thread.
func (t *thread) clicked(ctx context.Context, user, actionID, value, msgTS string) {
	id, choice, ok := strings.Cut(value, "|")
	if !ok {
		return
	}
	t.mu.Lock()
	agent := t.agent
	switch actionID {
	case actionAnswer:
		a := t.ask
		if a == nil || a.id != id {
			t.mu.Unlock()
			return // answered already
		}
		i, err := strconv.Atoi(choice)
		if err != nil || i < 0 || i >= len(a.choices) {
			t.mu.Unlock()
			return
		}
		t.ask = nil
		t.mu.Unlock()
		t.answered(ctx, a, user, a.choices[i])
		if agent != nil {
			agent.Send(protocol.Input{Type: protocol.InputAnswer, ID: a.id, Text: a.choices[i]})
		}
	case actionApprove:
		p := t.approvals[id]
		if p == nil || (choice != protocol.DecisionAllow && choice != protocol.DecisionDeny) {
			t.mu.Unlock()
			return
		}
		delete(t.approvals, id)
		t.mu.Unlock()
		verdict := "✅ allowed"
		if choice == protocol.DecisionDeny {
			verdict = "🚫 denied"
		}
		text := "🔐 " + escape(sanitize.Line(p.action.String(), 300)) + " — " + verdict + " by <@" + user + ">"
		t.bot.p.update(ctx, t.channel, p.msgTS, text, []slack.Block{})
		if agent != nil {
			in := protocol.Input{Type: protocol.InputApproval, ID: id, Decision: choice}
			if choice == protocol.DecisionDeny {
				in.Text = "denied in Slack by " + user
			}
			agent.Send(in)
		}
	default:
		t.mu.Unlock()
	}
}

// status says how the thread's session is going.
func (t *thread) status(ctx context.Context) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sessionID == "" {
		return "No session in this thread yet. Mention me with a task to start one."
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*Session* `%s`", t.sessionID)
	switch {
	case t.agent == nil:
		b.WriteString(" · no sandbox running (reply to continue)")
	case t.ask != nil:
		b.WriteString(" · waiting for your answer")
	case t.busy:
		fmt.Fprintf(&b, " · working for %s", time.Since(t.turnStart).Round(time.Second))
		if t.lastTool != "" {
			b.WriteString(" · last: `" + strings.ReplaceAll(escape(t.lastTool), "`", "'") + "`")
		}
	default:
		b.WriteString(" · idle; background jobs (training) keep running")
	}
	fmt.Fprintf(&b, "\n*Spent* $%.2f", t.costUSD)
	if t.bot.cfg.SessionBudgetUSD > 0 {
		fmt.Fprintf(&b, " of $%.2f for this session", t.bot.cfg.SessionBudgetUSD)
	}
	if len(t.plan) > 0 {
		done := 0
		for _, it := range t.plan {
			if it.Status == "completed" {
				done++
			}
		}
		fmt.Fprintf(&b, "\n*Plan* %d/%d done", done, len(t.plan))
		for _, it := range t.plan {
			if it.Status == "in_progress" {
				b.WriteString(" · now: " + escape(sanitize.Line(it.Content, 120)))
			}
		}
	}
	if t.bot.cfg.DashboardURL != "" {
		b.WriteString("\n*Dashboard* " + t.bot.cfg.DashboardURL + " (on the host running mlagent)")
	}
	return b.String()
}
