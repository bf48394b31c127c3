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
	CacheWrite float64 `json:"cache_write" toml:"cache_write"`
	CacheRead  float64 `json:"cache_read" toml:"cache_read"`
}

// Table maps model-id prefixes to prices; the longest matching prefix
// wins and the "" entry is the default. A nil table means Default.
type Table map[string]Price

// SonnetPrice is the default for unknown models (including local models
// behind --upstream): overcharging a budget is safer than undercharging.
var SonnetPrice = Price{Input: 3, Output: 15, CacheWrite: 3.75, CacheRead: 0.30}

// Default is Anthropic's list price per MTok (5-minute cache writes).
func Default() Table {
	return Table{
		"":                  SonnetPrice,
		"claude-sonnet":     SonnetPrice,
		"claude-3-5-sonnet": SonnetPrice,
		"claude-3-7-sonnet": SonnetPrice,
		"claude-opus":       {Input: 15, Output: 75, CacheWrite: 18.75, CacheRead: 1.50},
		"claude-3-opus":     {Input: 15, Output: 75, CacheWrite: 18.75, CacheRead: 1.50},
		"claude-opus-4-5":   {Input: 5, Output: 25, CacheWrite: 6.25, CacheRead: 0.50},
		"claude-haiku-4-5":  {Input: 1, Output: 5, CacheWrite: 1.25, CacheRead: 0.10},
		"claude-3-5-haiku":  {Input: 0.80, Output: 4, CacheWrite: 1, CacheRead: 0.08},
		"claude-3-haiku":    {Input: 0.25, Output: 1.25, CacheWrite: 0.30, CacheRead: 0.03},
	}
}

// Lookup returns the price of model by longest prefix.
func (t Table) Lookup(model string) Price {
	if t == nil {
		t = Default()
	}
	best, bestLen := SonnetPrice, -1
	for prefix, p := range t {
		if len(prefix) > bestLen && strings.HasPrefix(model, prefix) {
			best, bestLen = p, len(prefix)
		}
	}
	return best
}

// Usage is the token accounting of one reply (or a sum of them).
type Usage struct {
	InputTokens         int64 `json:"input_tokens"`
	OutputTokens        int64 `json:"output_tokens"`
	CacheCreationTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadTokens     int64 `json:"cache_read_input_tokens"`
}

// Total is every token the reply was billed for.
func (u Usage) Total() int64 {
	return u.InputTokens + u.OutputTokens + u.CacheCreationTokens + u.CacheReadTokens
}

// Cost is u priced at p, in USD.
func (p Price) Cost(u Usage) float64 {
	c := (float64(u.InputTokens)*p.Input + float64(u.OutputTokens)*p.Output +
		float64(u.CacheCreationTokens)*p.CacheWrite + float64(u.CacheReadTokens)*p.CacheRead) / 1e6
	if math.IsNaN(c) || c < 0 {
		return 0
	}
	return c
}
