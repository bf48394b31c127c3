package protocol

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The front ends' side of the protocol: what a chat, a bot or the session
// bookkeeping reads from the agent and writes to it.

// The agent's events cross from the sandbox to the host, and whatever runs
// in the sandbox is untrusted: a reader of them bounds every line, the
// lines that are not events, and the events and bytes of one turn, and
// stops at the first breach with ErrViolation. Legitimate streams stay far
// below these: a text delta is a few dozen bytes, a tool_end output is
// cut to about 2 KB, and a turn of 200 model requests of 16k output
// tokens each is about 3 million events and 300 MB.
const (
	MaxEventLine  = 1 << 20 // bytes in one event line
	MaxBadLines   = 1000    // lines that are not events, in the whole stream
	MaxTurnEvents = 8 << 20 // events between two turn_end events
	MaxTurnBytes  = 1 << 30 // bytes between two turn_end events
)

// ErrViolation is the reason an EventReader stops reading a stream that
// breaks the protocol's limits.
var ErrViolation = errors.New("the agent's event stream broke the protocol")

// Limits bound an EventReader; a zero field takes the default above.
type Limits struct {
	MaxLine       int
	MaxBadLines   int
	MaxTurnEvents int
	MaxTurnBytes  int64
}

// EventReader reads the agent's events from its stdout under Limits.
// It is not safe for concurrent use.
type EventReader struct {
	s   *bufio.Scanner
	l   Limits
	err error

	bad        int
	turnEvents int
	turnBytes  int64
}

// NewEventReader returns a reader of the agent's events on r, under the
// default limits.
func NewEventReader(r io.Reader) *EventReader { return NewLimitedEventReader(r, Limits{}) }

// NewLimitedEventReader returns a reader of events on r under l.
func NewLimitedEventReader(r io.Reader, l Limits) *EventReader {
	if l.MaxLine <= 0 {
		l.MaxLine = MaxEventLine
	}
	if l.MaxBadLines <= 0 {
		l.MaxBadLines = MaxBadLines
	}
	if l.MaxTurnEvents <= 0 {
		l.MaxTurnEvents = MaxTurnEvents
	}
	if l.MaxTurnBytes <= 0 {
		l.MaxTurnBytes = MaxTurnBytes
	}
	s := bufio.NewScanner(r)
	// The limit is the larger of max and the buffer's capacity.
	s.Buffer(make([]byte, 0, min(64<<10, l.MaxLine)), l.MaxLine)
	return &EventReader{s: s, l: l}
}

// Next returns the next event and its line (with the newline, for front
// ends that pass events on). It returns io.EOF at the end of the stream,
// an error wrapping ErrViolation when the stream breaks a limit, or
// another error when reading fails; after any error it returns the same
// error again. Lines that are not events are skipped (and counted).
func (r *EventReader) Next() (Event, []byte, error) {
	if r.err != nil {
		return Event{}, nil, r.err
	}
	for r.s.Scan() {
		line := r.s.Bytes()
		r.turnBytes += int64(len(line)) + 1
		if r.turnBytes > r.l.MaxTurnBytes {
			return r.fail(fmt.Errorf("%w: more than %d bytes in one turn", ErrViolation, r.l.MaxTurnBytes))
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		ev, err := ParseEvent(line)
		if err != nil {
			if r.bad++; r.bad > r.l.MaxBadLines {
				return r.fail(fmt.Errorf("%w: more than %d lines that are not events (last: %v)", ErrViolation, r.l.MaxBadLines, err))
			}
			continue
		}
		if r.turnEvents++; r.turnEvents > r.l.MaxTurnEvents {
			return r.fail(fmt.Errorf("%w: more than %d events in one turn", ErrViolation, r.l.MaxTurnEvents))
		}
		if ev.Type == EventTurnEnd {
			r.turnEvents, r.turnBytes = 0, 0
		}
		return ev, append(append([]byte(nil), line...), '\n'), nil
	}
	err := r.s.Err()
	switch {
	case errors.Is(err, bufio.ErrTooLong):
		err = fmt.Errorf("%w: a line longer than %d bytes", ErrViolation, r.l.MaxLine)
	case err == nil:
		err = io.EOF
	}
	return r.fail(err)
}

func (r *EventReader) fail(err error) (Event, []byte, error) {
	r.err = err
	return Event{}, nil, err
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
