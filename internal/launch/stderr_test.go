package launch

import (
	"strings"
	"testing"
)

// The agent's stderr is quoted when it dies; the sandbox can write there.
func TestAgentExitedQuotesStderrSafely(t *testing.T) {
	const hostile = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b]0;pwned\x1b\\\x1b[2K\rforged\u009b2J"
	err := agentExited(1, "starting\n"+hostile+"\npanic: boom\n")
	for i, r := range err.Error() {
		if (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			t.Fatalf("control character %U at %d in %q", r, i, err)
		}
	}
	if !strings.Contains(err.Error(), "forged") || !strings.Contains(err.Error(), "panic: boom") {
		t.Errorf("got %q; want the text of the last lines kept", err)
	}
}

func TestTailBufferKeepsTheEnd(t *testing.T) {
	b := &tailBuffer{max: 10}
	b.Write([]byte("0123456789"))
	b.Write([]byte("abc"))
	if got := b.String(); got != "3456789abc" {
		t.Errorf("got %q; want the last 10 bytes", got)
	}
}
