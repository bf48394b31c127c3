package protocol

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestEventReaderLimits(t *testing.T) {
	delta := `{"v":1,"type":"text_delta","text":"hi"}` + "\n"
	end := `{"v":1,"type":"turn_end","stop_reason":"end_turn"}` + "\n"
	small := Limits{MaxLine: 200, MaxBadLines: 3, MaxTurnEvents: 5, MaxTurnBytes: 1000}
	for _, c := range []struct {
		name   string
		stream string
		events int    // read before the error
		want   string // "" = io.EOF
	}{
		{"fine", delta + delta + end, 3, ""},
		{"long line", delta + `{"v":1,"type":"text_delta","text":"` + strings.Repeat("x", 300) + "\"}\n", 1, "a line longer than 200 bytes"},
		{"long line without newline", strings.Repeat("x", 300), 0, "a line longer than 200 bytes"},
		{"bad lines are skipped", "junk\n{}\n[1]\n" + delta, 1, ""},
		{"too many bad lines", "junk\njunk\njunk\njunk\n" + delta, 0, "more than 3 lines that are not events"},
		{"too many events in a turn", strings.Repeat(delta, 6), 5, "more than 5 events in one turn"},
		{"turn_end resets the count", strings.Repeat(delta, 4) + end + strings.Repeat(delta, 4) + end, 10, ""},
		{"too many bytes in a turn", strings.Repeat(`{"v":1,"type":"x"}`+strings.Repeat(" ", 180)+"\n", 6), 5, "more than 1000 bytes in one turn"},
		{"newer version skipped as bad", `{"v":99,"type":"text_delta"}` + "\n" + delta, 1, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := NewLimitedEventReader(strings.NewReader(c.stream), small)
			n := 0
			var err error
			for {
				if _, _, err = r.Next(); err != nil {
					break
				}
				n++
			}
			if n != c.events {
				t.Errorf("events read: got %d; want %d", n, c.events)
			}
			switch {
			case c.want == "" && err != io.EOF:
				t.Errorf("got error %v; want io.EOF", err)
			case c.want != "" && (!errors.Is(err, ErrViolation) || !strings.Contains(err.Error(), c.want)):
				t.Errorf("got error %v; want a violation saying %q", err, c.want)
			}
			if _, _, again := r.Next(); again != err {
				t.Errorf("Next after the end: got %v; want the same %v", again, err)
			}
		})
	}
}

func TestEventReaderDefaults(t *testing.T) {
	r := NewEventReader(strings.NewReader(`{"v":1,"type":"text_delta","text":"` + strings.Repeat("x", MaxEventLine) + `"}` + "\n"))
	if _, _, err := r.Next(); !errors.Is(err, ErrViolation) {
		t.Errorf("a line over MaxEventLine: got %v; want ErrViolation", err)
	}
}
