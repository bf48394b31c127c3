package demo

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mlagent/mlagent/internal/fakeapi"
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/testbin"
)

// TestSkillsSession is the second scripted session: asked how to build a
// system like this one and watch its training, the model loads the
// mlagent-sandbox and trackio skills, and its answer depends on what the
// skill bodies said (the script checks them).
func TestSkillsSession(t *testing.T) {
	bin := testbin.Path(t)
	var sawSandbox, sawTrackio bool
	script := &fakeapi.Script{Steps: []func(*fakeapi.Request) *fakeapi.Reply{
		func(*fakeapi.Request) *fakeapi.Reply {
			return fakeapi.ToolCalls("Loading the two relevant skills.",
				fakeapi.ToolUse("toolu_s1", "skill", map[string]any{"name": "mlagent-sandbox"}),
				fakeapi.ToolUse("toolu_s2", "skill", map[string]any{"name": "trackio"}))
		},
		func(req *fakeapi.Request) *fakeapi.Reply {
			for _, b := range req.LastToolResults() {
				text := req.ToolResultText(b)
				switch b.ToolUseID {
				case "toolu_s1":
					sawSandbox = !b.IsError && strings.Contains(text, "gateway") && strings.Contains(text, "bubblewrap")
				case "toolu_s2":
					sawTrackio = !b.IsError && strings.Contains(text, "trackio.init") && strings.Contains(text, "TRACKIO_DIR")
				}
			}
			if !sawSandbox || !sawTrackio {
				return fakeapi.Text("the skills did not say what I needed")
			}
			return fakeapi.Text("Sandbox behind a credential-swapping gateway; metrics via trackio.log into $TRACKIO_DIR.")
		},
	}}
	up := fakeapi.Start(fakeapi.Options{APIKey: "sk-test-token", Responder: script})
	defer up.Close()

	dir := t.TempDir()
	cmd := exec.Command(bin, "agent", "--sessions-dir", filepath.Join(dir, "sessions"),
		"--workdir", dir, "--skills-dir", filepath.Join(dir, "skills"))
	cmd.Env = append(os.Environ(), "ANTHROPIC_BASE_URL="+up.URL(), "ANTHROPIC_API_KEY=sk-test-token",
		"HF_ENDPOINT=http://127.0.0.1:1", "MLAGENT_HOME="+dir)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	json.NewEncoder(stdin).Encode(protocol.Input{V: protocol.Version, Type: protocol.InputUserMessage,
		Text: "How would I build a sandbox like yours, and how do I watch training metrics?"})
	var loaded []string
	var text strings.Builder
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev protocol.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("bad event %q: %v", sc.Text(), err)
		}
		switch ev.Type {
		case protocol.EventToolEnd:
			if ev.Name == "skill" && ev.OK != nil && *ev.OK {
				loaded = append(loaded, ev.Summary)
			}
		case protocol.EventTextDelta:
			text.WriteString(ev.Text)
		}
		if ev.Type == protocol.EventTurnEnd {
			break
		}
	}
	stdin.Close()
	cmd.Wait()
	if len(loaded) != 2 {
		t.Errorf("skills loaded: %v; want mlagent-sandbox and trackio", loaded)
	}
	if !sawSandbox || !sawTrackio {
		t.Errorf("skill bodies reached the model: sandbox=%v trackio=%v", sawSandbox, sawTrackio)
	}
	if !strings.Contains(text.String(), "credential-swapping gateway") {
		t.Errorf("final text = %q", text.String())
	}
}
