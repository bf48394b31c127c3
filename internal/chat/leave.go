package chat

import (
	"sort"
	"strings"

	"github.com/mlagent/mlagent/internal/protocol"
)

// Leaving a chat while background jobs run: with a session host to keep
// them (Options.CanDetach), the person is asked whether to leave them
// running detached, stop them, or stay; without one they are told the
// jobs will stop.

// leaveQuestion is the type of the asks entry that asks how to leave.
const leaveQuestion = "leave"

// runningJobs lists the background jobs still running, by id.
func (d *driver) runningJobs() []protocol.Job {
	var js []protocol.Job
	for _, j := range d.jobs {
		js = append(js, j)
	}
	sort.Slice(js, func(a, b int) bool { return js[a].ID < js[b].ID })
	return js
}

// job keeps track of the agent's background jobs, and says when one ends.
func (d *driver) job(ev protocol.Event) {
	j := ev.Job
	if j == nil || j.ID == "" {
		return
	}
	if d.jobs == nil {
		d.jobs = map[string]protocol.Job{}
	}
	if j.Running() {
		d.jobs[j.ID] = *j
		d.r.jobs = len(d.jobs)
		return
	}
	if _, ok := d.jobs[j.ID]; ok {
		d.r.notice("background " + oneLine(j.ID, 20) + " (" + oneLine(j.Command, 80) + ") " + oneLine(j.Status, 60))
	}
	delete(d.jobs, j.ID)
	d.r.jobs = len(d.jobs)
}

// leave is asked to end the chat (/exit, Ctrl-D, a second Ctrl-C): true
// to end it now; false when the person is first asked what to do with
// the jobs still running.
func (d *driver) leave() bool {
	js := d.runningJobs()
	if len(js) == 0 || d.o.Print {
		return true
	}
	var names []string
	for _, j := range js {
		names = append(names, oneLine(j.ID, 20)+" ("+oneLine(j.Command, 60)+")")
	}
	what := strings.Join(names, ", ")
	if !d.o.CanDetach {
		d.r.warn("stopping the background job(s) still running: " + what)
		return true
	}
	for _, q := range d.asks {
		if q.Type == leaveQuestion {
			return false // already asked
		}
	}
	q := protocol.Event{Type: leaveQuestion, ID: leaveQuestion,
		Question: "Still running: " + what + ". Leave it running?",
		Choices: []string{
			"Yes: leave it running (mlagent attach " + d.res.Session + " to come back)",
			"No: stop it and exit",
			"Stay in the chat",
		}}
	d.asks = append([]protocol.Event{q}, d.asks...)
	d.showAsk()
	return false
}

// answerLeave reads the answer to the leave question.
func (d *driver) answerLeave(text string) (exit bool) {
	switch strings.ToLower(strings.TrimSpace(text)) {
	case "1", "y", "yes", "detach", "leave":
		d.popAsk()
		d.res.Detached = true
		return true
	case "2", "n", "no", "stop":
		d.popAsk()
		return true
	case "3", "stay", "s":
		d.popAsk()
		d.reprompt()
		return false
	}
	d.r.warn("answer 1 (leave it running), 2 (stop it and exit) or 3 (stay)")
	d.reprompt()
	return false
}

// detach leaves the session running without this chat.
func (d *driver) detach() {
	d.r.endText()
	d.r.clearSpinner()
	d.sendInput(protocol.Input{Type: protocol.InputDetach})
	d.closeAgentIn()
}
