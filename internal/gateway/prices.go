package gateway

import "github.com/mlagent/mlagent/internal/prices"

// The gateway prices with the shared table; these names keep its API.
type (
	Price      = prices.Price
	PriceTable = prices.Table
	Usage      = prices.Usage
)

// SonnetPrice is the default for unknown models.
var SonnetPrice = prices.SonnetPrice

// DefaultPrices is the shared list-price table.
func DefaultPrices() PriceTable { return prices.Default() }

// estimate is the most a request can cost, reserved before it is sent:
// every body byte counted as a third of a token at the dearest input
// price (tokenizers average ~4 bytes/token on prose, fewer on JSON), plus
// max_tokens of output.
func estimate(p Price, bodyBytes int, maxTokens int64) (usd float64, tokens int64) {
	in := int64(bodyBytes/3 + 1)
	if maxTokens < 0 {
		maxTokens = 0
	}
	inPrice := max(p.Input, p.CacheWrite, p.CacheRead)
	return (float64(in)*inPrice + float64(maxTokens)*p.Output) / 1e6, in + maxTokens
}
