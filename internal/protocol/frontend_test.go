package protocol

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// The front ends' reader skips what is not an event (a sandboxed program
// may write anything on the agent's stdout), passes valid lines on
// verbatim, and ends on a line longer than MaxLine.
func TestEventReader(t *testing.T) {
	in := strings.Join([]string{
		`{"v":1,"type":"ready","session":"s"}`,
		`not json`,
		`{"v":1}`,
		`{"v":99,"type":"ready"}`,
		`{"v":1,"type":"text_delta","text":"hi","extra":1}`,
	}, "\n") + "\n"
	r := NewEventReader(strings.NewReader(in))
	var got []string
	for {
		ev, raw, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.Type+" "+string(raw))
	}
	want := []string{
		"ready " + `{"v":1,"type":"ready","session":"s"}` + "\n",
		"text_delta " + `{"v":1,"type":"text_delta","text":"hi","extra":1}` + "\n",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q; want %q", got, want)
	}

	long := `{"v":1,"type":"text_delta","text":"` + strings.Repeat("a", MaxLine) + `"}` + "\n"
	if _, _, err := NewEventReader(strings.NewReader(long)).Next(); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("line over MaxLine: got %v; want an error", err)
	}
}

func TestMarshalInput(t *testing.T) {
	b, err := MarshalInput(Input{Type: InputAnswer, ID: "q1", Text: "EuroSAT"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"v":1,"type":"answer","text":"EuroSAT","id":"q1"}` + "\n"; string(b) != want {
		t.Errorf("got %q; want %q", b, want)
	}
	if in, err := ParseInput(b); err != nil || in.Text != "EuroSAT" {
		t.Errorf("round trip: got %+v, %v", in, err)
	}
}
