package chat

// The agent's event stream comes out of the sandbox: these tests feed the
// driver what a hostile program there could write, and check that the CLI
// keeps bounded memory, stops cleanly with a clear error, and passes
// nothing to the terminal that a terminal would interpret.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/protocol"
)

// rawAgent answers the first user message with whatever write produces,
// written raw to the agent's stdout.
func rawAgent(t *testing.T, write func(w io.Writer)) (io.WriteCloser, *io.PipeReader) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	first := make(chan struct{})
	go func() {
		// Inputs are read all along, as a real agent's stdin would take
		// them in.
		r := protocol.NewReader(inR)
		for n := 0; ; n++ {
			if _, err := r.Next(); err != nil {
				if n == 0 {
					close(first)
				}
				return
			}
			if n == 0 {
				close(first)
			}
		}
	}()
	go func() {
		defer outW.Close()
		<-first
		write(outW)
	}()
	t.Cleanup(func() { inR.Close(); outR.Close() })
	return inW, outR
}

// A turn of 128 MiB of text deltas (a sandbox writing protocol lines into
// the agent's stdout) keeps only the last MiB: the heap stays far below
// the stream's size, and the final answer says it was cut.
func TestTurnTextIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 128 MiB")
	}
	const total = 128 << 20
	line := []byte(`{"v":1,"type":"text_delta","text":"` + strings.Repeat("A", 64<<10-40) + `"}` + "\n")
	in, out := rawAgent(t, func(w io.Writer) {
		for n := 0; n < total; n += len(line) {
			if _, err := w.Write(line); err != nil {
				return
			}
		}
		io.WriteString(w, `{"v":1,"type":"turn_end","stop_reason":"end_turn"}`+"\n")
	})
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	res, err := Run(context.Background(), Options{AgentIn: in, AgentOut: out, Out: io.Discard, Print: true, FirstPrompt: "go", ShutdownWait: time.Second})
	close(stop)
	<-sampled
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := len(res.Final); n > maxFinal+200 || !strings.Contains(res.Final, "cut here") {
		t.Errorf("final answer: got %d bytes (cut noted: %v); want at most %d and a note", n, strings.Contains(res.Final, "cut here"), maxFinal)
	}
	t.Logf("peak heap in use: %d MiB for a %d MiB turn", peak.Load()>>20, total>>20)
	if p := peak.Load(); p > 48<<20 {
		t.Errorf("peak heap in use: got %d MiB for a %d MiB turn; want under 48 MiB", p>>20, total>>20)
	}
}

// Streams that break the protocol end the chat with ErrViolation and a
// reason, and the agent's stdout is closed so its writer cannot block.
func TestProtocolViolationEndsTheChat(t *testing.T) {
	for _, c := range []struct {
		name  string
		write func(w io.Writer)
		want  string
	}{
		{"a line without end", func(w io.Writer) {
			w.Write([]byte(`{"v":1,"type":"text_delta","text":"`))
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			for i := 0; i < 64; i++ { // 4 MiB, well past the 1 MiB line limit
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}, "a line longer than"},
		{"garbage lines", func(w io.Writer) {
			for i := 0; i < 5000; i++ {
				if _, err := io.WriteString(w, "not an event\n"); err != nil {
					return
				}
			}
		}, "lines that are not events"},
		{"questions piling up", func(w io.Writer) {
			for i := 0; i < 100; i++ {
				if _, err := fmt.Fprintf(w, `{"v":1,"type":"ask_user","id":"q%d","question":"?"}`+"\n", i); err != nil {
					return
				}
			}
		}, "questions at once"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in, out := rawAgent(t, c.write)
			var buf bytes.Buffer
			_, err := Run(context.Background(), Options{AgentIn: in, AgentOut: out, Out: &buf, FirstPrompt: "go", ShutdownWait: time.Second})
			if !errors.Is(err, protocol.ErrViolation) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Run: got %v; want a protocol violation saying %q", err, c.want)
			}
		})
	}
}

// stream-json passes events on JSON-escaped: carriage returns between
// tokens and C1 controls or DEL inside strings never reach stdout raw.
func TestStreamJSONIsEscaped(t *testing.T) {
	in, out := rawAgent(t, func(w io.Writer) {
		io.WriteString(w, "{\"v\":1,\r\"type\":\"text_delta\",\"text\":\"a\u009b2Jb\x7f\"}\n")
		io.WriteString(w, `{"v":1,"type":"turn_end","stop_reason":"end_turn"}`+"\n")
	})
	var buf bytes.Buffer
	if _, err := Run(context.Background(), Options{AgentIn: in, AgentOut: out, Out: &buf, Print: true, FirstPrompt: "go", OutputFormat: FormatStreamJSON}); err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"type":"text_delta","text":"a\u009b2Jb\u007f"}` + "\n"
	if !strings.HasPrefix(buf.String(), want) {
		t.Errorf("stream-json: got %q; want it to start with %q", buf.String(), want)
	}
	checkNoForeignEscapes(t, buf.String())
}

// A table row that never ends is shown as text once it is too long to
// hold, rather than held (and re-copied) forever.
func TestMarkdownTableIsBounded(t *testing.T) {
	m := newMarkdown(true)
	var out int
	row := strings.Repeat("x", 1000)
	out += len(m.Write("| a | b |\n|---|---|\n| "))
	for i := 0; i < 100; i++ {
		out += len(m.Write(row))
	}
	if held := len(m.row); held > maxTableRow {
		t.Errorf("held row: got %d bytes; want at most %d", held, maxTableRow)
	}
	if out < 90*len(row) {
		t.Errorf("written: got %d bytes; want the row passed through", out)
	}
	for i := 0; i < 2*maxTableRows; i++ {
		m.Write("\n| r | s |")
	}
	if len(m.rows) > maxTableRows {
		t.Errorf("held rows: got %d; want at most %d", len(m.rows), maxTableRows)
	}
}
