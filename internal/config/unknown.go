package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// unknownKeys reports the keys of a config file that no setting takes
// (a typo like listne = … would otherwise be ignored without a word):
// which ones (the TOML library's Undecoded), on which line (found here:
// the library keeps positions to itself), and the setting meant where one
// is close.
func unknownKeys(path string, data []byte, md toml.MetaData) error {
	undecoded := map[string]bool{}
	for _, k := range md.Undecoded() {
		undecoded[k.String()] = true
	}
	var keys []string
	for k := range undecoded {
		parent, skip := k, false
		for i := strings.LastIndexByte(parent, '.'); i > 0; i = strings.LastIndexByte(parent, '.') {
			parent = parent[:i]
			if undecoded[parent] {
				skip = true // reported with its table
				break
			}
		}
		if !skip {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	lines := keyLines(string(data))
	known := knownKeys(reflect.TypeOf(Config{}), "")
	sort.Slice(keys, func(i, j int) bool {
		li, lj := lineOf(keys[i], lines), lineOf(keys[j], lines)
		return li < lj || li == lj && keys[i] < keys[j]
	})
	var msgs []string
	for _, k := range keys {
		msg := fmt.Sprintf("unknown key %q", k)
		if md.Type(strings.Split(k, ".")...) == "Hash" {
			msg = fmt.Sprintf("unknown table %q", k)
		}
		if s := suggest(k, known); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		msgs = append(msgs, fmt.Sprintf("%s:%d: %s", path, lineOf(k, lines), msg))
	}
	return fmt.Errorf("%s", strings.Join(msgs, "\n"))
}

// lineOf is the line that defines key, or else the nearest of its
// parents (a key inside an inline table).
func lineOf(key string, lines map[string]int) int {
	for k := key; k != ""; {
		if n, ok := lines[k]; ok {
			return n
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

// keyLines maps each key a TOML document defines (dotted, from its
// table) to the line, from 1, that first defines it: key = value lines
// and [table] / [[array]] headers, skipping comments, multi-line strings
// and arrays or inline tables spanning lines.
func keyLines(doc string) map[string]int {
	out := map[string]int{}
	note := func(parts []string, line int) {
		for i := range parts {
			k := strings.Join(parts[:i+1], ".")
			if _, ok := out[k]; !ok {
				out[k] = line
			}
		}
	}
	var table []string
	var inString string // the closing quote of a multi-line string
	depth := 0          // open brackets of a value spanning lines
	for i, line := range strings.Split(doc, "\n") {
		n := i + 1
		rest := line
		if inString != "" {
			j := strings.Index(rest, inString)
			if j < 0 {
				continue
			}
			rest = rest[j+len(inString):]
			inString = ""
		} else if depth == 0 {
			t := strings.TrimSpace(rest)
			switch {
			case t == "" || t[0] == '#':
				continue
			case t[0] == '[':
				header := strings.TrimPrefix(t, "[")
				header = strings.TrimPrefix(header, "[")
				if j := strings.IndexByte(header, ']'); j >= 0 {
					table = splitKey(header[:j])
					note(table, n)
				}
				continue
			}
			eq := keyEnd(t)
			if eq < 0 {
				continue
			}
			note(append(append([]string(nil), table...), splitKey(t[:eq])...), n)
			rest = t[eq+1:]
		}
		inString, depth = scanValue(rest, depth)
	}
	return out
}

// keyEnd is the index of the '=' that ends the key at the start of s,
// outside quotes; -1 when there is none.
func keyEnd(s string) int {
	var quote byte
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '=':
			return i
		}
	}
	return -1
}

// splitKey splits a (dotted, maybe quoted) key into its parts.
func splitKey(s string) []string {
	var parts []string
	var b strings.Builder
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				b.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '.':
			parts = append(parts, strings.TrimSpace(b.String()))
			b.Reset()
		default:
			b.WriteByte(c)
		}
	}
	return append(parts, strings.TrimSpace(b.String()))
}

// scanValue follows a value over one line: the brackets it leaves open
// and a multi-line string it leaves open (its closing quote).
func scanValue(s string, depth int) (inString string, _ int) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '#':
			return "", depth
		case '[', '{':
			depth++
		case ']', '}':
			depth = max(depth-1, 0)
		case '"', '\'':
			q := string(c)
			if strings.HasPrefix(s[i:], q+q+q) {
				end := strings.Index(s[i+3:], q+q+q)
				if end < 0 {
					return q + q + q, depth
				}
				i += 3 + end + 2
				continue
			}
			for i++; i < len(s) && s[i] != c; i++ {
				if c == '"' && s[i] == '\\' {
					i++
				}
			}
		}
	}
	return "", depth
}

// knownKeys lists the dotted keys the config struct takes.
func knownKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		out = append(out, prefix+name)
		if f.Type.Kind() == reflect.Struct {
			out = append(out, knownKeys(f.Type, prefix+name+".")...)
		}
	}
	return out
}

// suggest is the known key in the same table closest to key, within two
// edits; "" when none is.
func suggest(key string, known []string) string {
	table, name := "", key
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		table, name = key[:i+1], key[i+1:]
	}
	best, bestD := "", 3
	for _, k := range known {
		if !strings.HasPrefix(k, table) || strings.Contains(k[len(table):], ".") {
			continue
		}
		if d := editDistance(name, k[len(table):]); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
