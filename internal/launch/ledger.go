package launch

import (
	"context"
	"fmt"
	"math"

	"github.com/mlagent/mlagent/internal/sessions"
)

// Ledger is what the host's own gateway booked for sandbox tokens: the
// gateway's count of their model calls, which the sandbox cannot change,
// as opposed to the cost the agent inside reports. Its maps are empty
// with a shared gateway (the host keeps no ledger then).
type Ledger struct {
	ByToken   map[string]float64 // token id → cost booked
	BySandbox map[string]float64 // sandbox name → cost booked, all its tokens
}

// Ledger reads the in-process gateway's ledger.
func (h *Host) Ledger(ctx context.Context) (Ledger, error) {
	l := Ledger{ByToken: map[string]float64{}, BySandbox: map[string]float64{}}
	if h.gw == nil {
		return l, nil
	}
	usage, err := h.gw.Usage(ctx)
	if err != nil {
		return l, fmt.Errorf("gateway ledger: %w", err)
	}
	for _, u := range usage {
		l.ByToken[u.ID] += u.CostUSD
		l.BySandbox[u.Sandbox] += u.CostUSD
	}
	return l, nil
}

// SessionCost is what a session has cost: the larger of the index's
// count (booked from what its agents reported, never below zero) and
// what the ledger booked for the sandboxes the session ran in.
func (l Ledger) SessionCost(s sessions.Session) float64 {
	booked := l.BySandbox[SandboxName(s, true)]
	if name := SandboxName(s, false); name != SandboxName(s, true) {
		booked += l.BySandbox[name]
	}
	c := s.CostUSD
	if math.IsNaN(c) || math.IsInf(c, 0) {
		c = 0
	}
	return max(c, booked, 0)
}
