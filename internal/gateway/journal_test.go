package gateway

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/store"
)

// TestJournalRecovery: what a dead gateway journaled and the ledger
// lacks is booked by the next gateway on the same store: a finished
// request's exact row, an open one's whole reservation; a row already in
// the ledger is not booked twice; a live gateway's journal is left alone.
func TestJournalRecovery(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(dir, "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	g1, err := New(ctx, Config{DB: db, Upstream: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	it, err := g1.Issue(ctx, TokenRequest{Sandbox: "s", BudgetUSD: 1, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	jdir := filepath.Join(dir, "gateway-journal")
	if g1.journal == nil || g1.journal.dir != jdir {
		t.Fatalf("journal = %+v; want one in %s", g1.journal, jdir)
	}

	// A "dead" gateway: its journal written, its lock released, its
	// ledger rows partly written.
	dead, err := openJournal(jdir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	dead.reserve("d-1", it.ID, "claude-sonnet-5-5", 0.25, 1000, 20000) // in flight: whole reservation
	dead.reserve("d-2", it.ID, "claude-sonnet-5-5", 0.25, 1000, 20000) // finished, row not in the ledger
	dead.done(&record{resID: "d-2", TokenID: it.ID, Model: "claude-sonnet-5-5", Route: "/v1/messages", Status: 200,
		Usage: &Usage{InputTokens: 40, OutputTokens: 500}, CostUSD: 0.00508, Time: now})
	dead.reserve("d-3", it.ID, "claude-sonnet-5-5", 0.25, 1000, 20000) // finished, row in the ledger
	dead.done(&record{resID: "d-3", TokenID: it.ID, Status: 200, Usage: &Usage{OutputTokens: 7}, CostUSD: 0.00007, Time: now})
	if _, err := db.ExecContext(ctx, `INSERT INTO gateway_usage (token_id, time, route, status, output_tokens, cost_usd, reservation)
		VALUES (?, ?, '/v1/messages', 200, 7, 0.00007, 'd-3')`, it.ID, now.UTC().Format(time.RFC3339Nano)); err != nil {
		t.Fatal(err)
	}
	// A torn last line, as a crash mid-write leaves.
	dead.f.WriteString("R\td-4\t" + it.ID + "\t-\t0.5")
	dead.close(false)
	g1.Close()

	// A live gateway's journal must survive the next start.
	live, err := openJournal(jdir)
	if err != nil {
		t.Fatal(err)
	}
	live.reserve("l-1", it.ID, "m", 0.5, 1, 1)
	defer live.close(false)

	g2, err := New(ctx, Config{DB: db, Upstream: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	us, err := g2.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 1 || us[0].Requests != 3 {
		t.Fatalf("usage = %+v; want 3 rows (d-1 reserved, d-2 exact, d-3 once)", us)
	}
	if want := 0.25 + 0.00508 + 0.00007; abs(us[0].CostUSD-want) > 1e-9 {
		t.Errorf("cost = %v; want %v", us[0].CostUSD, want)
	}
	if us[0].OutputTokens != 20000+500+7 {
		t.Errorf("output tokens = %d; want %d", us[0].OutputTokens, 20000+500+7)
	}
	if _, err := os.Stat(dead.path); !os.IsNotExist(err) {
		t.Errorf("the dead gateway's journal is still there (%v)", err)
	}
	if _, err := os.Stat(live.path); err != nil {
		t.Errorf("a live gateway's journal was taken: %v", err)
	}
	// The token's spending after the restart includes what was booked.
	tok, err := g2.lookup(ctx, it.Token)
	if err != nil {
		t.Fatal(err)
	}
	if abs(tok.spentUSD-us[0].CostUSD) > 1e-9 {
		t.Errorf("spent after restart $%v; want $%v", tok.spentUSD, us[0].CostUSD)
	}
	// A clean shutdown leaves no journal behind.
	g2.Close()
	names, _ := filepath.Glob(filepath.Join(jdir, "*.journal"))
	for _, n := range names {
		if n != live.path {
			t.Errorf("journal left after a clean Close: %s", n)
		}
	}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func TestJournalLines(t *testing.T) {
	var b strings.Builder
	b.WriteString(string(appendField(nil, "a\tb\nc")))
	if strings.ContainsAny(b.String(), "\t\n") || parseField(b.String()) != "a\tb\nc" {
		t.Errorf("field %q does not round-trip", b.String())
	}
	long := strings.Repeat("x", 10000)
	if got := appendField(nil, long); len(got) > 300 {
		t.Errorf("a model name of 10000 bytes makes a field of %d", len(got))
	}
}
