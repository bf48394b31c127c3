package prices

import (
	"math"
	"testing"
)

func TestLookup(t *testing.T) {
	tab := Default()
	high := tab.Highest()
	for _, tc := range []struct {
		model string
		want  Price
	}{
		{"claude-sonnet-5-5", tab["claude-sonnet-5-5"]},
		{"claude-opus-5-5", tab["claude-opus-5-5"]},
		{"claude-fable-5-2", tab["claude-fable-5-2"]},
		{"claude-haiku-4-5-20251001", tab["claude-haiku-4-5"]}, // dated snapshot of an alias
		{"claude-opus-4-5-20251101", tab["claude-opus-4-5"]},
		{"claude-sonnet-4-20250514", tab["claude-sonnet-4"]},
		{"claude-3-haiku-20240307", tab["claude-3-haiku"]},
		// Unknown names, including ones that share a prefix with a cheap
		// model, pay the highest rates: a budget never under-counts.
		{"claude-sonnet-5-5-fast", high},
		{"claude-haiku-9", high},
		{"claude-mythos-5-2", high},
		{"claude-sonnet-5-5-2026", high},
		{"qwen3-coder", high},
		{"", high},
	} {
		if got := tab.Lookup(tc.model); got != tc.want {
			t.Errorf("Lookup(%q) = %+v; want %+v", tc.model, got, tc.want)
		}
	}
}

// TestHighestCoversEveryModel: no known model, in any band, has a rate
// above what an unknown one pays.
func TestHighestCoversEveryModel(t *testing.T) {
	tab := Default()
	h := tab.Highest()
	u := Usage{InputTokens: 3e5, OutputTokens: 1e5, CacheCreationTokens: 2e5, CacheCreation1hTokens: 1e5, CacheReadTokens: 4e5}
	small := Usage{InputTokens: 100, OutputTokens: 10, CacheCreationTokens: 20, CacheReadTokens: 30}
	for id, p := range tab {
		for _, us := range []Usage{u, small} {
			if p.Cost(us) > h.Cost(us) {
				t.Errorf("%s costs %v for %+v; the unknown-model price only %v", id, p.Cost(us), us, h.Cost(us))
			}
			if p.Cost(us) > p.Worst().Cost(us) {
				t.Errorf("%s: Worst() costs less than the price itself", id)
			}
		}
	}
	if h.Output != 75 || h.Input != 15 {
		t.Errorf("Highest = %+v; want the Opus 4.1 rates ($15 / $75)", h)
	}
}

func TestCost(t *testing.T) {
	sonnet := Default()["claude-sonnet-4-5"]
	u := Usage{InputTokens: 1e6, OutputTokens: 1e6, CacheCreationTokens: 1e6, CacheReadTokens: 1e6}
	if got, want := sonnet.Cost(u), 3+15+3.75+0.30; math.Abs(got-want) > 1e-9 {
		t.Errorf("Cost = %v; want %v", got, want)
	}
	u.CacheCreation1hTokens = 4e5 // 0.6M at 3.75, 0.4M at 6
	if got, want := sonnet.Cost(u), 3+15+0.6*3.75+0.4*6+0.30; math.Abs(got-want) > 1e-9 {
		t.Errorf("Cost with 1h writes = %v; want %v", got, want)
	}
	if got := sonnet.Cost(Usage{InputTokens: -5}); got != 0 {
		t.Errorf("negative usage costs %v; want 0", got)
	}
	haiku := Default()["claude-haiku-5-5"]
	short := Usage{InputTokens: 100_000, OutputTokens: 1e6}
	if got, want := haiku.Cost(short), 0.1*0.10+0.50; math.Abs(got-want) > 1e-9 {
		t.Errorf("Haiku 5.5 at 100k prompt = %v; want %v (lower band)", got, want)
	}
	long := Usage{InputTokens: 60_000, CacheReadTokens: 40_001, OutputTokens: 1e6}
	if got, want := haiku.Cost(long), 0.06*0.50+0.040001*0.05+2.50; math.Abs(got-want) > 1e-9 {
		t.Errorf("Haiku 5.5 over 100k prompt = %v; want %v (every token at the higher band)", got, want)
	}
}
