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

	// What a reply cut short (client gone, upstream cut) is charged from:
	// started is message_start seen, final the final message_delta's
	// usage; deltaBytes bounds the output delivered (every token decodes
	// to at least one byte, and the JSON-escaped text is no shorter);
	// hidden is a thinking block, whose tokens need not be delivered.
	started, final bool
	deltaBytes     int64
	hidden         bool
}

// complete says whether the reply carried its final usage: the
// message_delta of a stream, the usage object of a JSON body.
func (s *usageScanner) complete() bool {
	if s.stream {
		return s.final
	}
	return s.sawUsage
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
	case "", "message_start", "message_delta", "error", "content_block_delta", "content_block_start":
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
	CacheCreation       *struct {
		Ephemeral1h *int64 `json:"ephemeral_1h_input_tokens"`
	} `json:"cache_creation"`
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
	if w.CacheCreation != nil {
		set(&s.usage.CacheCreation1hTokens, w.CacheCreation.Ephemeral1h)
	}
}

// countContent adds to deltaBytes the text a content block event
// carries and notes thinking blocks, reading the event without decoding
// it: the escaped length of a string is never less than its bytes.
func (s *usageScanner) countContent(data []byte) {
	topFields(data, func(key, val []byte) {
		switch string(key) {
		case "delta", "content_block":
			topFields(val, func(k, v []byte) {
				switch string(k) {
				case "text", "partial_json", "thinking":
					if len(v) >= 2 && v[0] == '"' {
						s.deltaBytes += int64(len(v) - 2)
					}
				case "type":
					if string(v) == `"thinking"` || string(v) == `"redacted_thinking"` {
						s.hidden = true
					}
				}
			})
		}
	})
}

// dispatch ends an SSE event (blank line).
func (s *usageScanner) dispatch() {
	if s.hasData && (string(s.event) == "content_block_delta" || string(s.event) == "content_block_start") {
		s.countContent(s.data)
	} else if s.hasData {
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
				s.started = true
				if ev.Message != nil {
					s.model = ev.Message.Model
					s.merge(ev.Message.Usage)
				}
			case "message_delta":
				if ev.Usage != nil && ev.Usage.OutputTokens != nil {
					s.final = true
				}
				s.merge(ev.Usage)
			case "content_block_delta", "content_block_start":
				s.countContent(s.data)
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
		case "cache_creation":
			// Only its 1-hour part is priced apart; anything but a plain
			// object of integers goes to encoding/json.
			if string(v) == "null" {
				w.CacheCreation = nil
				return
			}
			if v[0] != '{' || w.CacheCreation != nil {
				ok = false // not an object, or a repeat (encoding/json merges)
				return
			}
			w.CacheCreation = &struct {
				Ephemeral1h *int64 `json:"ephemeral_1h_input_tokens"`
			}{}
			topFields(v, func(k, n []byte) {
				if !bytes.EqualFold(k, []byte("ephemeral_1h_input_tokens")) {
					return
				}
				x, isInt := jsonInt(n)
				if !isInt || string(k) != "ephemeral_1h_input_tokens" {
					ok = false
					return
				}
				w.CacheCreation.Ephemeral1h = &x
			})
			return
		default:
			// encoding/json matches names case-insensitively.
			for _, k := range []string{"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "cache_creation"} {
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
