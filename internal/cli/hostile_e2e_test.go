package cli_test

// End-to-end tests of `mlagent run` against a hostile sandbox: the agent's
// own tool commands attack the host's side of the protocol.

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mlagent/mlagent/internal/fakeapi"
	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
)

// attackAgent runs sandboxtest.AttackAgent with the agent's bash tool, so
// as a child of the agent.
const attackAgent = "/usr/bin/python3 - <<'PY'\n" + sandboxtest.AttackAgent + "PY"

func hostileModel(req *fakeapi.Request) *fakeapi.Reply {
	last := req.Messages[len(req.Messages)-1]
	for _, b := range last.Content {
		if b.Type == "tool_result" {
			return fakeapi.Text("REPORT " + strings.ReplaceAll(string(b.Content), "\n", " | "))
		}
	}
	return fakeapi.ToolCalls("", fakeapi.ToolUse("a1", "bash", map[string]any{"command": attackAgent}))
}

// TestToolCannotWriteIntoTheProtocol: a tool command cannot open the
// agent's stdout (the agent is not dumpable) and inherits none of the
// agent's descriptors beyond its own stdio.
func TestToolCannotWriteIntoTheProtocol(t *testing.T) {
	e := newE2EWith(t, fakeapi.ResponderFunc(hostileModel))
	out, errs, code := e.run(true, e.chatArgs("run", "-p", "--output-format", "stream-json", "attack")...)
	if code != 0 {
		t.Fatalf("run: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	var report string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev struct{ Type, Text, Output string }
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("stream-json line %q: %v", line, err)
		}
		if ev.Type == "text_delta" && ev.Text == "INJECTED" {
			t.Errorf("an event written by a tool reached the CLI:\n%s", out)
		}
		if ev.Type == "tool_end" {
			report = ev.Output
		}
	}
	if report != sandboxtest.AttackAgentRefused {
		t.Errorf("the tool's report: got %q; want %q", report, sandboxtest.AttackAgentRefused)
	}
}
