package chat

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/mlagent/mlagent/internal/permission"
	"github.com/mlagent/mlagent/internal/protocol"
)

// Answers an approval takes besides its choices' numbers.
var (
	yesWords    = map[string]bool{"y": true, "yes": true, "allow": true, "ok": true}
	noWords     = map[string]bool{"n": true, "no": true, "deny": true}
	alwaysWords = map[string]bool{"a": true, "always": true}
)

// approval handles an approval event, from the agent (a command in
// ask-all mode) or the gateway (a held write, Name protocol.GatewayName): the rules
// decide when they can, -p denies what they do not allow (nobody can
// answer), otherwise the person is asked.
func (d *driver) approval(ev protocol.Event) error {
	if ev.Withdrawn {
		d.withdraw(ev.ID)
		return nil
	}
	if ev.Action == nil {
		return d.decide(ev, protocol.DecisionDeny, "malformed approval request", false)
	}
	a := *ev.Action
	if d.perm.Allowed(a) {
		d.r.notice("✓ allowed by your rules: " + oneLine(a.String(), 200))
		return d.decide(ev, protocol.DecisionAllow, "", false)
	}
	if d.o.Print {
		rule := permission.AlwaysRule(a).String()
		fmt.Fprintf(d.o.Err, "mlagent: %s%s needs approval, which -p cannot ask for: denied (allow it with --allow %q, or --permission-mode bypass)\n", oneLine(a.String(), 200), heldRequest(a), rule)
		return d.decide(ev, protocol.DecisionDeny, "run with -p, nobody could approve it; the user can allow it with --allow "+strconv.Quote(rule), false)
	}
	q := ev
	q.Question = "Allow " + a.String() + "?" + heldRequest(a)
	q.Choices = []string{"Yes", "No", "Always: " + permission.AlwaysRule(a).String()}
	d.asks = append(d.asks, q)
	if len(d.asks) == 1 {
		d.showAsk()
	}
	return nil
}

// answerApproval reads the person's answer to the approval at the head
// of the queue: a choice's number, y/n/a, or other text, which denies
// and tells the agent what to do instead.
func (d *driver) answerApproval(q protocol.Event, text string) error {
	decision, reason := protocol.DecisionDeny, ""
	w := strings.ToLower(text)
	switch {
	case w == "1" || yesWords[w]:
		decision = protocol.DecisionAllow
	case w == "3" || alwaysWords[w]:
		decision = protocol.DecisionAlways
	case w == "2" || noWords[w]:
	default:
		if _, err := strconv.Atoi(w); err == nil {
			d.r.warn("answer 1 (yes), 2 (no) or 3 (always), or say what to do instead")
			d.reprompt()
			return nil
		}
		reason = "the user said: " + text
	}
	d.popAsk()
	return d.decide(q, decision, reason, true)
}

// decide answers an approval. reason (for a denial) is what the agent
// reads; say shows the decision in the chat.
func (d *driver) decide(ev protocol.Event, decision, reason string, say bool) error {
	switch decision {
	case protocol.DecisionAlways:
		r := d.perm.Always(*ev.Action)
		if say {
			d.r.notice("  → allowed, and " + oneLine(r.String(), 200) + " from now on in this chat")
		}
	case protocol.DecisionAllow:
		if say {
			d.r.notice("  → allowed")
		}
	case protocol.DecisionDeny:
		if reason == "" {
			reason = "the user said no"
		}
		if say {
			d.r.notice("  → denied")
		}
	}
	in := protocol.Input{Type: protocol.InputApproval, ID: ev.ID, Decision: decision}
	if decision == protocol.DecisionDeny {
		in.Text = reason
	}
	return d.sendInput(in)
}

// withdraw drops a held request the sandbox gave up on.
func (d *driver) withdraw(id string) {
	for i, q := range d.asks {
		if q.ID != id {
			continue
		}
		if i == 0 {
			d.popAsk()
		} else {
			d.asks = append(d.asks[:i], d.asks[i+1:]...)
		}
		what := "it"
		if q.Action != nil {
			what = oneLine(q.Action.String(), 200)
		}
		d.r.notice("(the request for " + what + " was withdrawn)")
		return
	}
}

// heldRequest shows a held write as the gateway holds it (method, host, path,
// size; launch drops the agent's events that claim to be the gateway's),
// or nothing for an agent's approval.
func heldRequest(a protocol.Action) string {
	if d := a.Describe(); d != "" {
		return "  (" + oneLine(d, 300) + ")"
	}
	return ""
}
