// Package permission decides which actions need the user's approval
// before they happen: the permission mode (--permission-mode) and the
// allow-rules (--allow, and "always allow" answers). Inside the sandbox
// everything runs freely, the sandbox being the protection; what leaves it
// (a Hub write, a git push) waits for the user, and in ask-all mode so
// does every command. Front ends share it; the gateway holds the requests.
package permission

import (
	"fmt"
	"strings"
	"sync"

	"github.com/mlagent/mlagent/internal/protocol"
)

// Mode is how much is asked.
type Mode string

const (
	// Default asks before each action with an effect outside the sandbox.
	Default Mode = "default"
	// AskAll also asks before each bash command.
	AskAll Mode = "ask-all"
	// Bypass never asks.
	Bypass Mode = "bypass"
)

// ParseMode reads a --permission-mode value; "" is Default.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "":
		return Default, nil
	case Default, AskAll, Bypass:
		return m, nil
	}
	return "", fmt.Errorf("permission mode %q: want default, ask-all or bypass", s)
}

// KindBash is the action kind of a command the agent runs.
const KindBash = "bash"

// Rule allows actions without asking. Its text is a kind and a target
// pattern, "hub:push you/*", a bare kind, "git:push" (any target), or a
// command pattern, "bash(python3 *)". In patterns * stands for any text,
// "/" included.
type Rule struct {
	Kind, Pattern string
}

// ParseRule reads an --allow value.
func ParseRule(s string) (Rule, error) {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, KindBash+"("); ok {
		if !strings.HasSuffix(rest, ")") || strings.TrimSpace(rest[:len(rest)-1]) == "" {
			return Rule{}, fmt.Errorf("allow rule %q: want bash(COMMAND PATTERN), e.g. bash(python3 *)", s)
		}
		return Rule{Kind: KindBash, Pattern: strings.TrimSpace(rest[:len(rest)-1])}, nil
	}
	kind, pat, _ := strings.Cut(s, " ")
	pat = strings.TrimSpace(pat)
	if kind == "" || !strings.Contains(kind, ":") {
		return Rule{}, fmt.Errorf("allow rule %q: want KIND[ TARGET], e.g. \"hub:push you/*\" or \"git:push\", or bash(COMMAND)", s)
	}
	if pat == "" {
		pat = "*"
	}
	return Rule{Kind: kind, Pattern: pat}, nil
}

// String is the rule as it is written.
func (r Rule) String() string {
	if r.Kind == KindBash {
		return "bash(" + r.Pattern + ")"
	}
	if r.Pattern == "*" {
		return r.Kind
	}
	return r.Kind + " " + r.Pattern
}

// Matches reports whether the rule allows a.
func (r Rule) Matches(a protocol.Action) bool {
	return glob(r.Kind, a.Kind) && glob(r.Pattern, a.Target)
}

// glob matches s against a pattern in which * is any text.
func glob(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// Policy is a chat's mode and rules, the rules growing with "always"
// answers. Safe for concurrent use.
type Policy struct {
	mode  Mode
	mu    sync.Mutex
	rules []Rule
}

// NewPolicy returns a policy; the zero Mode is Default.
func NewPolicy(mode Mode, rules []Rule) *Policy {
	if mode == "" {
		mode = Default
	}
	return &Policy{mode: mode, rules: append([]Rule(nil), rules...)}
}

// Mode is the policy's mode.
func (p *Policy) Mode() Mode { return p.mode }

// AsksBash reports whether commands need approval (ask-all).
func (p *Policy) AsksBash() bool { return p.mode == AskAll }

// Allowed reports whether a may go ahead without asking.
func (p *Policy) Allowed(a protocol.Action) bool {
	switch {
	case p.mode == Bypass:
		return true
	case a.Kind == KindBash && p.mode != AskAll:
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if a.Kind == KindBash {
		return p.allowsCommand(a.Target)
	}
	for _, r := range p.rules {
		if r.Matches(a) {
			return true
		}
	}
	return false
}

// allowsCommand reports whether every simple command of a command line
// is allowed, so that "bash(python3 *)" does not let
// "python3 x.py; curl …" through. The split ignores quoting: a quoted
// separator only makes it ask when it need not. Command substitution is
// never allowed by a rule.
func (p *Policy) allowsCommand(cmd string) bool {
	if strings.Contains(cmd, "$(") || strings.Contains(cmd, "`") {
		return false
	}
	segs := strings.FieldsFunc(cmd, func(r rune) bool { return r == ';' || r == '&' || r == '|' || r == '\n' })
	if len(segs) == 0 {
		return false
	}
	for _, seg := range segs {
		seg = strings.TrimSpace(seg)
		ok := false
		for _, r := range p.rules {
			if r.Kind == KindBash && glob(r.Pattern, seg) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// Always adds the rule that "always allow this" means for a, and returns
// it: for a command, every command with the same program
// ("bash(python3 *)"); otherwise the same kind on the same target.
func (p *Policy) Always(a protocol.Action) Rule {
	r := AlwaysRule(a)
	p.mu.Lock()
	p.rules = append(p.rules, r)
	p.mu.Unlock()
	return r
}

// AlwaysRule is the rule Always would add for a.
func AlwaysRule(a protocol.Action) Rule {
	if a.Kind == KindBash {
		prog, _, _ := strings.Cut(strings.TrimSpace(a.Target), " ")
		return Rule{Kind: KindBash, Pattern: prog + " *"}
	}
	if a.Target == "" {
		return Rule{Kind: a.Kind, Pattern: "*"}
	}
	return Rule{Kind: a.Kind, Pattern: a.Target}
}
