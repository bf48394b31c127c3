package gateway

import (
	"bytes"
	"encoding/json"
)

// usageScanner reads usage out of a Messages API reply as its bytes are
// copied to the client: it sees each chunk once, keeps only the data of
// the few SSE events it needs (message_start, message_delta, error) and
// skips the rest with IndexByte, so it neither buffers nor re-encodes the
// stream. It is not safe for concurrent use.
type usageScanner struct {
	stream bool // SSE; otherwise a JSON body, captured up to maxJSONBody

	line    []byte // partial line carried between chunks
	skip    bool   // dropping the rest of the current line
	event   []byte // current SSE event name
	data    []byte // data of the current event, when wanted
	hasData bool

	usage    Usage
	model    string
	sawUsage bool
	errType  string // type of an SSE error event, if one came
}

const (
	maxSSELine  = 1 << 20 // a wanted event line longer than this is dropped
	maxJSONBody = 16 << 20
)

// Write feeds the scanner the next bytes of the reply; it never fails.
func (s *usageScanner) Write(p []byte) (int, error) {
	n := len(p)
	if !s.stream {
		if len(s.line)+len(p) <= maxJSONBody {
			s.line = append(s.line, p...)
		} else {
			s.skip = true
		}
		return n, nil
	}
	for len(p) > 0 {
		if s.skip {
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				return n, nil
			}
			p = p[i+1:]
			s.skip = false
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i >= 0 && len(s.line) == 0 {
			s.handleLine(p[:i]) // whole line in this chunk: no copy
			p = p[i+1:]
			continue
		}
		if i < 0 {
			s.line = append(s.line, p...)
			if !s.lineWanted(s.line) || len(s.line) > maxSSELine {
				s.line = s.line[:0]
				s.skip = true
			}
			return n, nil
		}
		s.line = append(s.line, p[:i]...)
		p = p[i+1:]
		s.handleLine(s.line)
		s.line = s.line[:0]
	}
	return n, nil
}

// lineWanted says, from a line's first bytes, whether it may matter.
func (s *usageScanner) lineWanted(l []byte) bool {
	switch {
	case bytes.HasPrefix(l, []byte("event:")), bytes.HasPrefix([]byte("event:"), l):
		return true
	case bytes.HasPrefix(l, []byte("data:")):
		return s.eventWanted()
	default:
		return bytes.HasPrefix([]byte("data:"), l)
	}
}

func (s *usageScanner) eventWanted() bool {
	switch string(s.event) {
	case "", "message_start", "message_delta", "error":
		return true
	}
	return false
}

func (s *usageScanner) handleLine(l []byte) {
	l = bytes.TrimSuffix(l, []byte("\r"))
	switch {
	case len(l) == 0:
		s.dispatch()
	case bytes.HasPrefix(l, []byte("event:")):
		s.event = append(s.event[:0], bytes.TrimSpace(l[6:])...)
	case bytes.HasPrefix(l, []byte("data:")):
		if !s.eventWanted() {
			return
		}
		v := l[5:]
		if len(v) > 0 && v[0] == ' ' {
			v = v[1:]
		}
		if s.hasData {
			s.data = append(s.data, '\n')
		}
		if len(s.data)+len(v) <= maxSSELine {
			s.data = append(s.data, v...)
		}
		s.hasData = true
	}
}

type wireUsage struct {
	InputTokens         *int64 `json:"input_tokens"`
	OutputTokens        *int64 `json:"output_tokens"`
	CacheCreationTokens *int64 `json:"cache_creation_input_tokens"`
	CacheReadTokens     *int64 `json:"cache_read_input_tokens"`
}

func (s *usageScanner) merge(w *wireUsage) {
	if w == nil {
		return
	}
	set := func(dst *int64, v *int64) {
		if v != nil && *v >= 0 {
			*dst = *v
			s.sawUsage = true
		}
	}
	set(&s.usage.InputTokens, w.InputTokens)
	set(&s.usage.OutputTokens, w.OutputTokens)
	set(&s.usage.CacheCreationTokens, w.CacheCreationTokens)
	set(&s.usage.CacheReadTokens, w.CacheReadTokens)
}

// dispatch ends an SSE event (blank line).
func (s *usageScanner) dispatch() {
	if s.hasData {
		var ev struct {
			Type    string `json:"type"`
			Message *struct {
				Model string     `json:"model"`
				Usage *wireUsage `json:"usage"`
			} `json:"message"`
			Usage *wireUsage `json:"usage"`
			Error *struct {
				Type string `json:"type"`
			} `json:"error"`
		}
		if json.Unmarshal(s.data, &ev) == nil {
			switch ev.Type {
			case "message_start":
				if ev.Message != nil {
					s.model = ev.Message.Model
					s.merge(ev.Message.Usage)
				}
			case "message_delta":
				s.merge(ev.Usage)
			case "error":
				s.errType = "error"
				if ev.Error != nil && ev.Error.Type != "" {
					s.errType = ev.Error.Type
				}
			}
		}
	}
	s.event = s.event[:0]
	s.data = s.data[:0]
	s.hasData = false
}

// finish ends the reply: it dispatches an unterminated event or parses the
// captured JSON body.
func (s *usageScanner) finish() {
	if s.stream {
		if len(s.line) > 0 && !s.skip {
			s.handleLine(s.line)
		}
		s.line = s.line[:0]
		s.dispatch()
		return
	}
	if s.skip {
		return
	}
	// Skip the content without decoding it; decode only the usage object.
	topFields(s.line, func(key, val []byte) {
		switch string(key) {
		case "model":
			var m string
			if p, ok := plainString(val); ok {
				s.model = p
			} else if json.Unmarshal(val, &m) == nil {
				s.model = m
			}
		case "usage":
			var w wireUsage
			if fastUsage(val, &w) || json.Unmarshal(val, &w) == nil {
				s.merge(&w)
			}
		}
	})
}

// fastUsage decodes a usage object as json.Unmarshal into a wireUsage
// would, without reflection, for the common shape: valid JSON whose four
// counters, where present, are integer literals or null under their exact
// names. It returns false, leaving w unspecified, for anything else, and
// the caller decodes with encoding/json.
func fastUsage(val []byte, w *wireUsage) bool {
	if len(val) == 0 || val[0] != '{' || !json.Valid(val) {
		return false
	}
	*w = wireUsage{}
	ok := true
	topFields(val, func(key, v []byte) {
		var dst **int64
		switch string(key) {
		case "input_tokens":
			dst = &w.InputTokens
		case "output_tokens":
			dst = &w.OutputTokens
		case "cache_creation_input_tokens":
			dst = &w.CacheCreationTokens
		case "cache_read_input_tokens":
			dst = &w.CacheReadTokens
		default:
			// encoding/json matches names case-insensitively.
			for _, k := range []string{"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"} {
				if bytes.EqualFold(key, []byte(k)) {
					ok = false
				}
			}
			return
		}
		if string(v) == "null" {
			*dst = nil
			return
		}
		n, isInt := jsonInt(v)
		if !isInt {
			ok = false
			return
		}
		*dst = &n
	})
	return ok
}
