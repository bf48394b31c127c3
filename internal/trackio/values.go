package trackio

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// Values decodes a row's numeric scalars. Trackio's "NaN", "Infinity" and
// "-Infinity" strings become the float values; everything else that is not
// a number (media objects, strings, nested tables, numbers out of float64
// range) is skipped. A key given twice takes its last value, as
// encoding/json does.
func Values(raw json.RawMessage) (map[string]float64, error) {
	if !json.Valid(raw) {
		return nil, fmt.Errorf("trackio values: %w", errInvalid)
	}
	return valuesOfValid(raw)
}

// Values decodes the row's numeric scalars (see Values); a Reader's rows
// are valid JSON already, so they are not checked again.
func (r Row) Values() (map[string]float64, error) { return valuesOfValid(r.Raw) }

var errInvalid = errors.New("not valid JSON")

// valuesOfValid scans a valid JSON text without building every value: the
// dashboard decodes each of millions of rows once, and encoding/json's
// map of raw messages cost ten times as much. Anything unusual (escapes or
// invalid UTF-8 in a key) goes through encoding/json for that key.
func valuesOfValid(raw []byte) (map[string]float64, error) {
	i := skipWS(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return nil, fmt.Errorf("trackio values: not a JSON object")
	}
	out := map[string]float64{}
	i = skipWS(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return out, nil
	}
	for i < len(raw) {
		// Key.
		end := skipString(raw, i)
		key, err := decodeKey(raw[i:end])
		if err != nil {
			return nil, err
		}
		i = skipWS(raw, end)
		i = skipWS(raw, i+1) // ':'
		// Value.
		vend := skipValue(raw, i)
		tok := raw[i:vend]
		if v, ok := scalar(tok); ok {
			out[key] = v
		} else {
			delete(out, key) // a later non-number replaces an earlier number
		}
		i = skipWS(raw, vend)
		if i >= len(raw) || raw[i] == '}' {
			break
		}
		i = skipWS(raw, i+1) // ','
	}
	return out, nil
}

// scalar is the float a value token stands for, if it is a number or one
// of Trackio's non-finite strings.
func scalar(tok []byte) (float64, bool) {
	if len(tok) == 0 {
		return 0, false
	}
	switch tok[0] {
	case '"':
		switch string(tok) {
		case `"NaN"`:
			return math.NaN(), true
		case `"Infinity"`:
			return math.Inf(1), true
		case `"-Infinity"`:
			return math.Inf(-1), true
		}
		return 0, false
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		f, err := strconv.ParseFloat(string(tok), 64)
		if err != nil { // out of range: encoding/json refuses it too
			return 0, false
		}
		return f, true
	}
	return 0, false
}

func decodeKey(tok []byte) (string, error) {
	plain := true
	for _, c := range tok[1 : len(tok)-1] {
		if c == '\\' || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain {
		return string(tok[1 : len(tok)-1]), nil
	}
	var s string
	if err := json.Unmarshal(tok, &s); err != nil {
		return "", fmt.Errorf("trackio values: %w", err)
	}
	return s, nil
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] ('"').
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = skipString(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	return j
}
