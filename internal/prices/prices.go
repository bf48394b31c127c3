// Package prices is the one table of model prices, in USD per million
// tokens, that the gateway's ledger and budgets and the agent's per-turn
// cost estimate share.
package prices

import (
	"math"
	"strings"
)

// Price is a model's cost in USD per million tokens.
type Price struct {
	Input      float64 `json:"input" toml:"input"`
	Output     float64 `json:"output" toml:"output"`
	CacheWrite float64 `json:"cache_write" toml:"cache_write"` // 5-minute cache writes
	// CacheWrite1h prices cache writes with a 1-hour TTL; 0 means CacheWrite.
	CacheWrite1h float64 `json:"cache_write_1h" toml:"cache_write_1h"`
	CacheRead    float64 `json:"cache_read" toml:"cache_read"`
	// LongPrompt, when set, prices every token of a request whose prompt
	// (input + cache writes + cache reads) exceeds LongPromptTokens.
	LongPromptTokens int64  `json:"long_prompt_tokens,omitempty" toml:"long_prompt_tokens"`
	LongPrompt       *Price `json:"long_prompt,omitempty" toml:"long_prompt"`
}

// Table maps model ids to prices. A model it does not know is priced at
// the table's highest rates (Highest), so that a budget never
// under-counts: not a new model, not a misspelt one, not a local model
// behind --upstream. A nil table means Default.
type Table map[string]Price

// Default is Anthropic's list price per MTok, as published on
// https://platform.claude.com/docs/en/about-claude/pricing and each
// model's page (https://platform.claude.com/docs/en/models/…/overview),
// read on 2026-11-30. Model ids are those of anthropic-sdk-go v2.15.0
// (message.go) plus older snapshots still on the pricing page. Notes:
//   - claude-sonnet-5-5 cache reads were cut from $0.20 to $0.10 on
//     2026-10-07 (0.05x input, as Opus 5.5).
//   - claude-haiku-5-5 has two bands: a prompt over 100,000 tokens pays
//     the higher rates on every token of the request, output included.
//   - Mythos models are by invitation only; Mythos 5.2 has no published
//     price, so it is priced as an unknown model (the highest rates).
//   - Batch, fast mode and inference_geo "us" (1.1x) are not priced here.
func Default() Table {
	var (
		fable52  = Price{Input: 8, Output: 40, CacheWrite: 10, CacheWrite1h: 16, CacheRead: 0.20}
		fable51  = Price{Input: 10, Output: 50, CacheWrite: 12.50, CacheWrite1h: 20, CacheRead: 0.25}
		fable5   = Price{Input: 10, Output: 50, CacheWrite: 12.50, CacheWrite1h: 20, CacheRead: 1}
		opus55   = Price{Input: 4, Output: 20, CacheWrite: 5, CacheWrite1h: 8, CacheRead: 0.20}
		opus5    = Price{Input: 5, Output: 25, CacheWrite: 6.25, CacheWrite1h: 10, CacheRead: 0.50}
		opus41   = Price{Input: 15, Output: 75, CacheWrite: 18.75, CacheWrite1h: 30, CacheRead: 1.50}
		sonnet55 = Price{Input: 2, Output: 10, CacheWrite: 2.50, CacheWrite1h: 4, CacheRead: 0.10}
		sonnet5  = Price{Input: 2, Output: 10, CacheWrite: 2.50, CacheWrite1h: 4, CacheRead: 0.20}
		sonnet4  = Price{Input: 3, Output: 15, CacheWrite: 3.75, CacheWrite1h: 6, CacheRead: 0.30}
		haiku55  = Price{Input: 0.10, Output: 0.50, CacheWrite: 0.125, CacheWrite1h: 0.20, CacheRead: 0.01,
			LongPromptTokens: 100_000,
			LongPrompt:       &Price{Input: 0.50, Output: 2.50, CacheWrite: 0.625, CacheWrite1h: 1, CacheRead: 0.05}}
		haiku45 = Price{Input: 1, Output: 5, CacheWrite: 1.25, CacheWrite1h: 2, CacheRead: 0.10}
		haiku35 = Price{Input: 0.80, Output: 4, CacheWrite: 1, CacheWrite1h: 1.6, CacheRead: 0.08}
		haiku3  = Price{Input: 0.25, Output: 1.25, CacheWrite: 0.30, CacheWrite1h: 0.50, CacheRead: 0.03}
	)
	return Table{
		"claude-fable-5-2":  fable52,
		"claude-fable-5-1":  fable51,
		"claude-mythos-5-1": fable51,
		"claude-fable-5":    fable5,
		"claude-mythos-5":   fable5,
		"claude-opus-5-5":   opus55,
		"claude-opus-5":     opus5,
		"claude-opus-4-8":   opus5,
		"claude-opus-4-7":   opus5,
		"claude-opus-4-6":   opus5,
		"claude-opus-4-5":   opus5,
		"claude-opus-4-1":   opus41,
		"claude-opus-4-0":   opus41,
		"claude-opus-4":     opus41, // claude-opus-4-20250514
		"claude-sonnet-5-5": sonnet55,
		"claude-sonnet-5":   sonnet5,
		"claude-sonnet-4-6": sonnet4,
		"claude-sonnet-4-5": sonnet4,
		"claude-sonnet-4-0": sonnet4,
		"claude-sonnet-4":   sonnet4, // claude-sonnet-4-20250514
		"claude-3-7-sonnet": sonnet4,
		"claude-haiku-5-5":  haiku55,
		"claude-haiku-4-5":  haiku45,
		"claude-3-5-haiku":  haiku35,
		"claude-3-haiku":    haiku3,
	}
}

// Lookup returns the price of model: its own entry, or that of the alias
// a dated snapshot (model-YYYYMMDD) belongs to; any other name gets the
// highest rates in the table.
func (t Table) Lookup(model string) Price {
	if t == nil {
		t = Default()
	}
	if p, ok := t.Known(model); ok {
		return p
	}
	return t.Highest()
}

// Known returns model's entry (or its alias's, for a dated snapshot), and
// whether there is one.
func (t Table) Known(model string) (Price, bool) {
	if t == nil {
		t = Default()
	}
	if p, ok := t[model]; ok {
		return p, true
	}
	if i := strings.LastIndexByte(model, '-'); i > 0 && isDate(model[i+1:]) {
		p, ok := t[model[:i]]
		return p, ok
	}
	return Price{}, false
}

// isDate says whether s looks like a snapshot date, YYYYMMDD.
func isDate(s string) bool {
	if len(s) != 8 || (s[0] != '1' && s[0] != '2') {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Highest is, for each kind of token, the dearest rate in the table (long
// prompt bands included): what a model the table does not know costs.
func (t Table) Highest() Price {
	if t == nil {
		t = Default()
	}
	var h Price
	for _, p := range t {
		h = h.max(p)
		if p.LongPrompt != nil {
			h = h.max(*p.LongPrompt)
		}
	}
	return h
}

func (p Price) max(q Price) Price {
	return Price{
		Input: max(p.Input, q.Input), Output: max(p.Output, q.Output),
		CacheWrite: max(p.CacheWrite, q.CacheWrite), CacheWrite1h: max(p.cacheWrite1h(), q.cacheWrite1h()),
		CacheRead: max(p.CacheRead, q.CacheRead),
	}
}

// Worst is the dearest band of p: the long-prompt rates where they are
// higher. A reservation made before the prompt's size is known uses it.
func (p Price) Worst() Price {
	if p.LongPrompt == nil {
		return p
	}
	return Price{CacheWrite1h: p.cacheWrite1h()}.max(p).max(*p.LongPrompt)
}

func (p Price) cacheWrite1h() float64 {
	if p.CacheWrite1h == 0 {
		return p.CacheWrite
	}
	return p.CacheWrite1h
}

// Usage is the token accounting of one reply (or a sum of them).
type Usage struct {
	InputTokens         int64 `json:"input_tokens"`
	OutputTokens        int64 `json:"output_tokens"`
	CacheCreationTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadTokens     int64 `json:"cache_read_input_tokens"`
	// CacheCreation1hTokens is the part of CacheCreationTokens written with
	// a 1-hour TTL (usage.cache_creation.ephemeral_1h_input_tokens).
	CacheCreation1hTokens int64 `json:"cache_creation_1h_input_tokens,omitempty"`
}

// Total is every token the reply was billed for.
func (u Usage) Total() int64 {
	return u.InputTokens + u.OutputTokens + u.CacheCreationTokens + u.CacheReadTokens
}

// Prompt is the prompt's size: input, cache writes and cache reads.
func (u Usage) Prompt() int64 {
	return u.InputTokens + u.CacheCreationTokens + u.CacheReadTokens
}

// Cost is u priced at p, in USD.
func (p Price) Cost(u Usage) float64 {
	if p.LongPrompt != nil && u.Prompt() > p.LongPromptTokens {
		return p.LongPrompt.Cost(u)
	}
	long := min(max(u.CacheCreation1hTokens, 0), max(u.CacheCreationTokens, 0))
	c := (float64(u.InputTokens)*p.Input + float64(u.OutputTokens)*p.Output +
		float64(u.CacheCreationTokens-long)*p.CacheWrite + float64(long)*p.cacheWrite1h() +
		float64(u.CacheReadTokens)*p.CacheRead) / 1e6
	if math.IsNaN(c) || c < 0 {
		return 0
	}
	return c
}
