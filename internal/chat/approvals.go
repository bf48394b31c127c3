package chat

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mlagent/mlagent/internal/permission"
	"github.com/mlagent/mlagent/internal/protocol"
)

// HostApprovals carries the actions the gateway holds (Hub writes, git
// pushes) into the chat, which decides by the permission rules or asks the
// person. It is the gateway's Approver for the chat's sandbox. Safe for
// concurrent use.
type HostApprovals struct {
	reqs      chan *hostRequest
	withdrawn chan string
	next      atomic.Int64
	closeOnce sync.Once
	closed    chan struct{}
}

type hostRequest struct {
	id     string
	action protocol.Action
	reply  chan error
}

// NewHostApprovals returns an empty carrier.
func NewHostApprovals() *HostApprovals {
	return &HostApprovals{reqs: make(chan *hostRequest), withdrawn: make(chan string, 16), closed: make(chan struct{})}
}

// errChatOver refuses what is asked when nobody is left to answer.
var errChatOver = errors.New("the chat has ended, so nobody can approve it")

// Approve hands the action to the chat and waits for its decision, or
// for ctx (the sandbox gave up on the request, which withdraws the
// question).
func (h *HostApprovals) Approve(ctx context.Context, a protocol.Action) error {
	req := &hostRequest{id: "gw-" + strconv.FormatInt(h.next.Add(1), 10), action: a, reply: make(chan error, 1)}
	select {
	case h.reqs <- req:
	case <-h.closed:
		return errChatOver
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.reply:
		return err
	case <-ctx.Done():
		select {
		case h.withdrawn <- req.id:
		default:
		}
		return ctx.Err()
	}
}

// Close refuses every later action: the chat is over.
func (h *HostApprovals) Close() { h.closeOnce.Do(func() { close(h.closed) }) }

// Answers an approval takes besides its choices' numbers.
var (
	yesWords    = map[string]bool{"y": true, "yes": true, "allow": true, "ok": true}
	noWords     = map[string]bool{"n": true, "no": true, "deny": true}
	alwaysWords = map[string]bool{"a": true, "always": true}
)

// approval handles an approval event, from the agent (a command in
// ask-all mode) or the gateway (host set): the rules decide when they
// can, -p denies what they do not allow (nobody can answer), otherwise
// the person is asked.
func (d *driver) approval(ev protocol.Event, host *hostRequest) error {
	if ev.Action == nil {
		return d.decide(ev, host, protocol.DecisionDeny, "malformed approval request", false)
	}
	a := *ev.Action
	if d.perm.Allowed(a) {
		d.r.notice("✓ allowed by your rules: " + oneLine(a.String(), 200))
		return d.decide(ev, host, protocol.DecisionAllow, "", false)
	}
	if d.o.Print {
		rule := permission.AlwaysRule(a).String()
		fmt.Fprintf(d.o.Err, "mlagent: %s needs approval, which -p cannot ask for: denied (allow it with --allow %q, or --permission-mode bypass)\n", oneLine(a.String(), 200), rule)
		return d.decide(ev, host, protocol.DecisionDeny, "run with -p, nobody could approve it; the user can allow it with --allow "+strconv.Quote(rule), false)
	}
	q := ev
	q.Question = "Allow " + a.String() + "?"
	if a.Detail != "" {
		q.Question += "  (" + a.Detail + ")"
	}
	q.Choices = []string{"Yes", "No", "Always: " + permission.AlwaysRule(a).String()}
	if host != nil {
		if d.hostReqs == nil {
			d.hostReqs = map[string]*hostRequest{}
		}
		d.hostReqs[ev.ID] = host
	}
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
	err := d.decide(q, d.hostReqs[q.ID], decision, reason, true)
	delete(d.hostReqs, q.ID)
	return err
}

// decide answers an approval: to the gateway for a held request, to the
// agent otherwise. reason (for a denial) is what the agent reads; say
// shows the decision in the chat.
func (d *driver) decide(ev protocol.Event, host *hostRequest, decision, reason string, say bool) error {
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
	if host != nil {
		var err error
		if decision == protocol.DecisionDeny {
			err = errors.New(reason)
		}
		host.reply <- err
		return nil
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
		delete(d.hostReqs, id)
		if i == 0 {
			d.popAsk()
		} else {
			d.asks = append(d.asks[:i], d.asks[i+1:]...)
		}
		d.r.notice("(the request for " + oneLine(q.Action.String(), 200) + " was withdrawn)")
		return
	}
}

// denyHeld answers every held request still waiting: the chat is ending.
func (d *driver) denyHeld() {
	for id, h := range d.hostReqs {
		h.reply <- errChatOver
		delete(d.hostReqs, id)
	}
}
