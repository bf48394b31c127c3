package prices

import (
	"math"
	"testing"
)

func TestLookupLongestPrefix(t *testing.T) {
	tab := Default()
	for _, tc := range []struct {
		model string
		want  Price
	}{
		{"claude-sonnet-4-5", SonnetPrice},
		{"claude-opus-4-5-20251101", tab["claude-opus-4-5"]},
		{"claude-opus-4-1", tab["claude-opus"]},
		{"claude-haiku-4-5", tab["claude-haiku-4-5"]},
		{"qwen3-coder", SonnetPrice}, // local models: priced high, never free
	} {
		if got := tab.Lookup(tc.model); got != tc.want {
			t.Errorf("Lookup(%q) = %+v; want %+v", tc.model, got, tc.want)
		}
	}
}

func TestCost(t *testing.T) {
	u := Usage{InputTokens: 1e6, OutputTokens: 1e6, CacheCreationTokens: 1e6, CacheReadTokens: 1e6}
	if got, want := SonnetPrice.Cost(u), 3+15+3.75+0.30; math.Abs(got-want) > 1e-9 {
		t.Errorf("Cost = %v; want %v", got, want)
	}
	if got := SonnetPrice.Cost(Usage{InputTokens: -5}); got != 0 {
		t.Errorf("negative usage costs %v; want 0", got)
	}
}
