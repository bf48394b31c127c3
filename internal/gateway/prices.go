package gateway

import "github.com/mlagent/mlagent/internal/prices"

// The gateway prices with the shared table.
type (
	Price      = prices.Price
	PriceTable = prices.Table
	Usage      = prices.Usage
)

// estimate is the most a request can cost, reserved before it is sent:
// every body byte counted as a third of a token at the dearest input
// price (tokenizers average ~4 bytes/token on prose, fewer on JSON), plus
// max_tokens of output, in the model's dearest band.
func estimate(p Price, bodyBytes int, maxTokens int64) (usd float64, tokens int64) {
	p = p.Worst()
	in := int64(bodyBytes/3 + 1)
	if maxTokens < 0 {
		maxTokens = 0
	}
	inPrice := max(p.Input, p.CacheWrite, p.CacheWrite1h, p.CacheRead)
	return (float64(in)*inPrice + float64(maxTokens)*p.Output) / 1e6, in + maxTokens
}
