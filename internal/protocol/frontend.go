package protocol

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The front ends' side of the protocol: what a chat, a bot or the session
// bookkeeping reads from the agent and writes to it.

// EventReader reads the agent's events.
type EventReader struct{ s *bufio.Scanner }

// NewEventReader returns an EventReader on the agent's stdout.
func NewEventReader(r io.Reader) *EventReader {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), MaxLine)
	return &EventReader{s: s}
}

// Next returns the next event and its line (with the newline, for front
// ends that pass events on verbatim). A line that is not a valid event is
// skipped: the agent logs to stderr, but a sandboxed program could write
// anything. It returns io.EOF at the end; a line over MaxLine ends the
// stream with an error.
func (r *EventReader) Next() (Event, []byte, error) {
	for r.s.Scan() {
		ev, err := ParseEvent(r.s.Bytes())
		if err != nil {
			continue
		}
		return ev, append(append([]byte(nil), r.s.Bytes()...), '\n'), nil
	}
	if err := r.s.Err(); err != nil {
		return Event{}, nil, err
	}
	return Event{}, nil, io.EOF
}

// ParseEvent decodes one line of the agent's output.
func ParseEvent(line []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(line, &ev); err != nil {
		return ev, fmt.Errorf("bad event line: %w", err)
	}
	if ev.V > Version {
		return ev, fmt.Errorf("event v=%d: %w", ev.V, ErrVersion)
	}
	if ev.Type == "" {
		return ev, errors.New("bad event line: no type")
	}
	return ev, nil
}

// MarshalInput encodes an input as one line, setting its version.
func MarshalInput(in Input) ([]byte, error) {
	in.V = Version
	b, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("encode input: %w", err)
	}
	return append(b, '\n'), nil
}
