package gateway

import (
	"bytes"
	"encoding/json"
)

// scanTop reads "model" and "max_tokens" from a request body's top-level
// object without decoding the (possibly megabytes of) messages: strings
// are skipped with IndexByte. Keys match exactly, the last duplicate wins,
// and escaped keys are unescaped, as the API's own parser does, so a
// caller cannot hide max_tokens from the budget reservation.
func scanTop(b []byte) (model string, maxTokens int64) {
	topFields(b, func(key, val []byte) {
		switch string(key) {
		case "model":
			var m string
			if p, ok := plainString(val); ok {
				model = p
			} else if json.Unmarshal(val, &m) == nil {
				model = m
			}
		case "max_tokens":
			if n, ok := jsonInt(val); ok {
				maxTokens = min(max(n, 0), 1<<40)
				return
			}
			var f float64
			if json.Unmarshal(val, &f) == nil && f > 0 {
				if f > 1<<40 {
					f = 1 << 40
				}
				maxTokens = int64(f)
			}
		}
	})
	return model, maxTokens
}

// topFields calls fn with each key and raw value of the top-level object
// in b, in order, stopping at the first syntax error.
func topFields(b []byte, fn func(key, val []byte)) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return
	}
	i++
	for {
		i = skipWS(b, i)
		if i >= len(b) || b[i] != '"' {
			return
		}
		ks := i
		if i = skipString(b, i); i < 0 {
			return
		}
		key := b[ks+1 : i-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var k string
			if json.Unmarshal(b[ks:i], &k) != nil {
				return
			}
			key = []byte(k)
		}
		i = skipWS(b, i)
		if i >= len(b) || b[i] != ':' {
			return
		}
		i = skipWS(b, i+1)
		vs := i
		if i = skipValue(b, i); i < 0 {
			return
		}
		fn(key, b[vs:i])
		i = skipWS(b, i)
		if i < len(b) && b[i] == ',' {
			i++
			continue
		}
		return
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"',
// or -1.
func skipString(b []byte, i int) int {
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return -1
		}
		q := i + j
		n := 0
		for k := q - 1; k >= i && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return q + 1
		}
		i = q + 1
	}
}

// skipValue returns the index after the JSON value starting at b[i], or -1.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				if i = skipString(b, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	default:
		s := i
		for i < len(b) && !bytes.ContainsRune([]byte(",}] \t\r\n"), rune(b[i])) {
			i++
		}
		if i == s {
			return -1
		}
		return i
	}
}

// plainString is the value of a JSON string literal holding only
// printable ASCII and no escapes, the common case, without encoding/json;
// ok is false for anything else.
func plainString(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	for _, c := range v[1 : len(v)-1] {
		if c < 0x20 || c >= 0x7f || c == '\\' || c == '"' {
			return "", false
		}
	}
	return string(v[1 : len(v)-1]), true
}

// jsonInt is the value of a JSON integer literal of at most 18 digits
// (so it cannot overflow); ok is false for anything else (fractions,
// exponents, null), which callers hand to encoding/json.
func jsonInt(v []byte) (int64, bool) {
	d := v
	if len(d) > 0 && d[0] == '-' {
		d = d[1:]
	}
	if len(d) == 0 || len(d) > 18 || (d[0] == '0' && len(d) > 1) {
		return 0, false
	}
	var n int64
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if len(d) < len(v) {
		n = -n
	}
	return n, true
}
