package chat

import (
	"fmt"
	"strings"

	"github.com/mlagent/mlagent/internal/protocol"
)

// slashCommand is one command typed in the chat. Adding a command is one
// entry in slashCommands; /help is generated from the table.
type slashCommand struct {
	name    string
	aliases []string
	help    string
	// run does the command; exit ends the chat.
	run func(d *driver, args string) (exit bool)
}

// slashCommands is set in init: /help reads the table it is in.
var slashCommands []slashCommand

func init() {
	slashCommands = []slashCommand{
		{name: "cost", help: "what this chat and the session have spent, and the budget left", run: func(d *driver, _ string) bool {
			d.r.line(d.costLine())
			return false
		}},
		{name: "todo", help: "the plan", run: func(d *driver, _ string) bool {
			d.r.showTodo()
			return false
		}},
		{name: "dashboard", help: "its URL", run: func(d *driver, _ string) bool {
			if d.o.DashboardURL == "" {
				d.r.line("no dashboard is running")
			} else {
				d.r.line("dashboard: " + d.o.DashboardURL)
			}
			return false
		}},
		{name: "model", help: "the model in use; /model NAME uses another from the next request", run: func(d *driver, args string) bool {
			switch {
			case args == "":
				d.r.line("model: " + oneLine(d.res.Model, 80) + " · /model NAME switches")
			case d.between("/model"):
				d.sendInput(protocol.Input{Type: protocol.InputSetModel, Text: args})
			}
			return false
		}},
		{name: "clear", help: "forget the conversation and start afresh (files and jobs stay)", run: func(d *driver, _ string) bool {
			if d.between("/clear") {
				d.sendInput(protocol.Input{Type: protocol.InputClear})
			}
			return false
		}},
		{name: "compact", help: "summarise the conversation now, to free context", run: func(d *driver, _ string) bool {
			if d.between("/compact") {
				d.compacting = true
				d.busy = true
				if d.ui != nil {
					d.r.busySince = d.o.Now()
					d.ui.setBusy(true)
				}
				d.sendInput(protocol.Input{Type: protocol.InputCompact})
			}
			return false
		}},
		{name: "help", help: "this list", run: func(d *driver, _ string) bool {
			d.r.line(slashHelp())
			return false
		}},
		{name: "detach", help: "leave the session running without this chat (mlagent attach comes back)", run: func(d *driver, _ string) bool {
			if !d.o.CanDetach {
				d.r.line("this chat cannot detach (-p and the demo run in this process)")
				return false
			}
			d.res.Detached = true
			return true
		}},
		{name: "exit", aliases: []string{"quit"}, help: "leave (also Ctrl-D); asks first while background jobs run", run: func(d *driver, _ string) bool {
			return d.leave()
		}},
	}
}

// slashHelp lists the commands, one a line, then the keys.
func slashHelp() string {
	var b strings.Builder
	for _, c := range slashCommands {
		fmt.Fprintf(&b, "/%-10s %s\n", c.name, c.help)
	}
	b.WriteString("Esc or Ctrl-C interrupts the turn; a second Ctrl-C within 2 s exits.")
	return b.String()
}

// between says whether a command that needs the agent between turns can
// run now, and says why not.
func (d *driver) between(cmd string) bool {
	if d.busy {
		d.r.line(cmd + " waits for the turn to end (Esc interrupts it)")
		return false
	}
	return true
}
