package agent

import "github.com/mlagent/mlagent/internal/prices"

// priceFor is the model's list price from the table the gateway books
// with, so the agent's estimate and the ledger agree.
func priceFor(model string) prices.Price { return prices.Default().Lookup(model) }

// usage is one request's token counts.
type usage struct {
	Input, Output, CacheWrite, CacheRead int64
}

func (u *usage) add(o usage) {
	u.Input += o.Input
	u.Output += o.Output
	u.CacheWrite += o.CacheWrite
	u.CacheRead += o.CacheRead
}

func (u usage) cost(p prices.Price) float64 {
	return p.Cost(prices.Usage{InputTokens: u.Input, OutputTokens: u.Output,
		CacheCreationTokens: u.CacheWrite, CacheReadTokens: u.CacheRead})
}

// promptTokens is the whole prompt of the request: what counts against
// the context window.
func (u usage) promptTokens() int64 { return u.Input + u.CacheWrite + u.CacheRead }

func (u usage) cacheReadRatio() float64 {
	if t := u.promptTokens(); t > 0 {
		return float64(u.CacheRead) / float64(t)
	}
	return 0
}
