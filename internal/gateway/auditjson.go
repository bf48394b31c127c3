package gateway

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendRecord appends r as json.Marshal(&r) would, byte for byte (tested
// against it), without reflection: the ledger writer encodes one per
// request.
func appendRecord(b []byte, r *record) []byte {
	b = append(b, `{"time":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if r.TokenID != "" {
		b = appendJSONString(append(b, `,"token_id":`...), r.TokenID)
	}
	if r.Sandbox != "" {
		b = appendJSONString(append(b, `,"sandbox":`...), r.Sandbox)
	}
	b = appendJSONString(append(b, `,"route":`...), r.Route)
	b = appendJSONString(append(b, `,"method":`...), r.Method)
	if r.Target != "" {
		b = appendJSONString(append(b, `,"target":`...), r.Target)
	}
	if r.Model != "" {
		b = appendJSONString(append(b, `,"model":`...), r.Model)
	}
	b = strconv.AppendInt(append(b, `,"status":`...), int64(r.Status), 10)
	if u := r.Usage; u != nil {
		b = strconv.AppendInt(append(b, `,"usage":{"input_tokens":`...), u.InputTokens, 10)
		b = strconv.AppendInt(append(b, `,"output_tokens":`...), u.OutputTokens, 10)
		b = strconv.AppendInt(append(b, `,"cache_creation_input_tokens":`...), u.CacheCreationTokens, 10)
		b = strconv.AppendInt(append(b, `,"cache_read_input_tokens":`...), u.CacheReadTokens, 10)
		b = append(b, '}')
	}
	if r.CostUSD != 0 {
		b = appendJSONFloat(append(b, `,"cost_usd":`...), r.CostUSD)
	}
	b = appendJSONFloat(append(b, `,"duration_ms":`...), r.DurationMS)
	if r.Bytes != 0 {
		b = strconv.AppendInt(append(b, `,"bytes":`...), r.Bytes, 10)
	}
	if r.Stream {
		b = append(b, `,"stream":true`...)
	}
	if r.Error != "" {
		b = appendJSONString(append(b, `,"error":`...), r.Error)
	}
	return append(b, '}')
}

// appendJSONFloat is encoding/json's float64 encoding. NaN and ±Inf,
// which json.Marshal refuses, are written as 0.
func appendJSONFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, '0')
	}
	abs := math.Abs(f)
	fmt := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		fmt = 'e'
	}
	b = strconv.AppendFloat(b, f, fmt, -1, 64)
	if fmt == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendJSONString is encoding/json's string encoding, HTML escaping
// included.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
