package agent

import "strings"

// Price is USD per million tokens.
type Price struct {
	Input, Output, CacheWrite, CacheRead float64
}

// priceFor returns list prices by model family (cache writes 1.25x input,
// reads 0.1x). Unknown models (a local server) are priced as Sonnet so the
// estimate errs high rather than showing zero.
func priceFor(model string) Price {
	m := strings.ToLower(model)
	p := Price{Input: 3, Output: 15}
	switch {
	case strings.Contains(m, "opus-4-5"), strings.Contains(m, "opus-4-6"), strings.Contains(m, "opus-4-7"):
		p = Price{Input: 5, Output: 25}
	case strings.Contains(m, "opus"):
		p = Price{Input: 15, Output: 75}
	case strings.Contains(m, "haiku-4"), strings.Contains(m, "haiku-4-5"):
		p = Price{Input: 1, Output: 5}
	case strings.Contains(m, "haiku"):
		p = Price{Input: 0.8, Output: 4}
	}
	p.CacheWrite = p.Input * 1.25
	p.CacheRead = p.Input * 0.1
	return p
}

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

func (u usage) cost(p Price) float64 {
	return (float64(u.Input)*p.Input + float64(u.Output)*p.Output +
		float64(u.CacheWrite)*p.CacheWrite + float64(u.CacheRead)*p.CacheRead) / 1e6
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
