package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/gateway"
	"github.com/mlagent/mlagent/internal/sessions"
	"github.com/mlagent/mlagent/internal/store"
)

// usage --by session adds up a session's sandboxes across resumes (and
// keeps the usage of sandboxes outside any session apart); --by day adds
// up each UTC day.
func TestUsageBySessionAndDay(t *testing.T) {
	ctx := context.Background()
	env, out, errb := testEnv(t)
	db, err := store.Open(ctx, env.Config.StorePath())
	if err != nil {
		t.Fatal(err)
	}
	if err := gateway.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	idx, err := sessions.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 29, 23, 0, 0, 0, time.UTC)
	for _, s := range []sessions.Session{
		{ID: "20261129-230000-aaaa", Title: "train \x1b]0;evil\x07eurosat", Started: now, Sandbox: "mlagent-20261129-230000-aaaa"},
		// An older session whose sandbox was not named after it.
		{ID: "20261001-100000-bbbb", Title: "old", Started: now, Sandbox: "mlagent-k3x9"},
	} {
		if err := idx.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	tokens := []struct{ id, sandbox string }{
		{"tok_1", "mlagent-20261129-230000-aaaa"}, // the first run
		{"tok_2", "mlagent-20261129-230000-aaaa"}, // its resume
		{"tok_3", "mlagent-k3x9"},
		{"tok_4", "sb-scratch"}, // sandbox run: no session
	}
	for i, tk := range tokens {
		if _, err := db.ExecContext(ctx, `INSERT INTO gateway_tokens (id, hash, sandbox, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?)`, tk.id, []byte{byte(i)}, tk.sandbox, now.Format(time.RFC3339Nano),
			now.Add(time.Hour).Format(time.RFC3339Nano)); err != nil {
			t.Fatal(err)
		}
	}
	rows := []struct {
		token string
		at    time.Time
		cost  float64
	}{
		{"tok_1", now, 1},
		{"tok_2", now.Add(2 * time.Hour), 2}, // the next UTC day
		{"tok_3", now, 4},
		{"tok_4", now.Add(2 * time.Hour), 8},
	}
	for _, r := range rows {
		if _, err := db.ExecContext(ctx, `INSERT INTO gateway_usage (token_id, time, route, status, input_tokens, output_tokens, cost_usd)
			VALUES (?, ?, 'messages', 200, 10, 5, ?)`, r.token, r.at.Format(time.RFC3339Nano), r.cost); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	if code := runUsage(ctx, env, []string{"--by", "session", "--json"}); code != ExitOK {
		t.Fatalf("usage --by session exited %d: %s", code, errb)
	}
	var groups []sessionUsage
	if err := json.Unmarshal(out.Bytes(), &groups); err != nil {
		t.Fatalf("--json: %v: %s", err, out)
	}
	got := map[string]float64{}
	for _, g := range groups {
		got[g.Session+"|"+g.Sandbox] = g.CostUSD
	}
	want := map[string]float64{"20261129-230000-aaaa|": 3, "20261001-100000-bbbb|": 4, "|sb-scratch": 8}
	if len(got) != len(want) {
		t.Fatalf("groups = %v; want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("group %s cost %v; want %v (all: %v)", k, got[k], v, got)
		}
	}

	out.Reset()
	if code := runUsage(ctx, env, []string{"--by", "session"}); code != ExitOK {
		t.Fatalf("usage --by session exited %d: %s", code, errb)
	}
	if strings.ContainsAny(out.String(), "\x1b\x07") || !strings.Contains(out.String(), "total $15.0000") {
		t.Errorf("session table:\n%q", out.String())
	}

	out.Reset()
	if code := runUsage(ctx, env, []string{"--by", "day", "--json"}); code != ExitOK {
		t.Fatalf("usage --by day exited %d: %s", code, errb)
	}
	var days []gateway.DayUsage
	if err := json.Unmarshal(out.Bytes(), &days); err != nil {
		t.Fatalf("--json: %v: %s", err, out)
	}
	if len(days) != 2 || days[0].Day != "2026-11-29" || days[0].CostUSD != 5 || days[0].Tokens != 2 ||
		days[1].Day != "2026-11-30" || days[1].CostUSD != 10 || days[1].Requests != 2 {
		t.Errorf("days = %+v; want 2026-11-29 $5 over 2 tokens, 2026-11-30 $10 over 2 requests", days)
	}

	errb.Reset()
	if code := runUsage(ctx, env, []string{"--by", "week"}); code != ExitUsage || !strings.Contains(errb.String(), "want token, session or day") {
		t.Errorf("--by week: exit %d, %q; want %d and the choices", code, errb, ExitUsage)
	}
}
