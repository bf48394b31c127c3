package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/mlagent/mlagent/internal/gateway"
	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/sanitize"
	"github.com/mlagent/mlagent/internal/sessions"
	"github.com/mlagent/mlagent/internal/store"
)

func init() {
	register(&Command{
		Name:    "usage",
		Summary: "show model usage and cost per token, session or day",
		Run:     runUsage,
	})
}

const usageHelp = `Shows the requests, input / output / cache-write / cache-read tokens and USD
cost booked in the gateway's usage ledger. --by token (the default) shows each
sandbox token with its budget and state; --by session adds up the tokens of
each chat session across its resumes (with its title); --by day adds up each
UTC day. Reads the store directly, so it works without a running gateway.
Prices: docs/gateway.md.`

func runUsage(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "usage", "usage [--by token|session|day] [--json]", usageHelp)
	asJSON := fs.Bool("json", false, "print JSON (an array of rows)")
	by := fs.String("by", "token", "group by token, session or day")
	if code := parseFlags(fs, args, env); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "mlagent usage: unexpected argument %q; see --help\n", fs.Arg(0))
		return ExitUsage
	}
	if *by != "token" && *by != "session" && *by != "day" {
		fmt.Fprintf(env.Stderr, "mlagent usage: --by %q: want token, session or day; see --help\n", *by)
		return ExitUsage
	}
	db, err := store.Open(ctx, env.Config.StorePath())
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent usage: %v\n", err)
		return ExitFailure
	}
	defer db.Close()
	var rows any
	var table func(*tabwriter.Writer) float64
	switch *by {
	case "day":
		days, err := gateway.ReadUsageByDay(ctx, db)
		if err != nil {
			fmt.Fprintf(env.Stderr, "mlagent usage: %v\n", err)
			return ExitFailure
		}
		rows, table = nonNil(days), func(tw *tabwriter.Writer) float64 { return dayTable(tw, days) }
	case "session":
		us, err := gateway.ReadUsage(ctx, db)
		if err == nil {
			var groups []sessionUsage
			if groups, err = usageBySession(ctx, db, us); err == nil {
				rows, table = nonNil(groups), func(tw *tabwriter.Writer) float64 { return sessionTable(tw, groups) }
			}
		}
		if err != nil {
			fmt.Fprintf(env.Stderr, "mlagent usage: %v\n", err)
			return ExitFailure
		}
	default:
		us, err := gateway.ReadUsage(ctx, db)
		if err != nil {
			fmt.Fprintf(env.Stderr, "mlagent usage: %v\n", err)
			return ExitFailure
		}
		rows, table = nonNil(us), func(tw *tabwriter.Writer) float64 { return tokenTable(tw, us) }
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rows)
		return ExitOK
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	total := table(tw)
	tw.Flush()
	fmt.Fprintf(env.Stdout, "total $%.4f\n", total)
	return ExitOK
}

// nonNil makes an empty result print as [] in JSON, not null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func tokenTable(tw *tabwriter.Writer, us []gateway.TokenUsage) (total float64) {
	fmt.Fprintln(tw, "TOKEN\tSANDBOX\tREQUESTS\tINPUT\tOUTPUT\tCACHE WRITE\tCACHE READ\tCOST USD\tBUDGET\tSTATE")
	for _, u := range us {
		budget := "-"
		switch {
		case u.BudgetUSD > 0 && u.BudgetTokens > 0:
			budget = fmt.Sprintf("$%.2f / %d tok", u.BudgetUSD, u.BudgetTokens)
		case u.BudgetUSD > 0:
			budget = fmt.Sprintf("$%.2f", u.BudgetUSD)
		case u.BudgetTokens > 0:
			budget = fmt.Sprintf("%d tok", u.BudgetTokens)
		}
		state := "active"
		switch {
		case u.RevokedAt != nil:
			state = "revoked"
		case time.Now().After(u.ExpiresAt):
			state = "expired"
		case (u.BudgetUSD > 0 && u.CostUSD >= u.BudgetUSD) || (u.BudgetTokens > 0 && u.Total() >= u.BudgetTokens):
			state = "spent"
		}
		total += u.CostUSD
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%.4f\t%s\t%s\n", u.ID, sanitize.Line(u.Sandbox, 63), u.Requests,
			u.InputTokens, u.OutputTokens, u.CacheCreationTokens, u.CacheReadTokens, u.CostUSD, budget, state)
	}
	return total
}

func dayTable(tw *tabwriter.Writer, days []gateway.DayUsage) (total float64) {
	fmt.Fprintln(tw, "DAY (UTC)\tSANDBOXES\tREQUESTS\tINPUT\tOUTPUT\tCACHE WRITE\tCACHE READ\tCOST USD")
	for _, d := range days {
		total += d.CostUSD
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.4f\n", d.Day, d.Tokens, d.Requests,
			d.InputTokens, d.OutputTokens, d.CacheCreationTokens, d.CacheReadTokens, d.CostUSD)
	}
	return total
}

// sessionUsage is the usage of one chat session over all its sandboxes,
// or of one sandbox that belongs to no session (`sandbox run`, the demo's
// own gateway tokens).
type sessionUsage struct {
	Session  string `json:"session,omitempty"`
	Title    string `json:"title,omitempty"`
	Sandbox  string `json:"sandbox,omitempty"` // only for usage outside any session
	Tokens   int    `json:"tokens"`
	Requests int64  `json:"requests"`
	gateway.Usage
	CostUSD float64 `json:"cost_usd"`
}

// usageBySession adds up token usage per session: a sandbox belongs to
// the session it is named after (launch.SandboxName) or that last ran in
// it (sessions from before sandboxes were named by session).
func usageBySession(ctx context.Context, db *store.DB, us []gateway.TokenUsage) ([]sessionUsage, error) {
	idx, err := sessions.Open(ctx, db)
	if err != nil {
		return nil, err
	}
	list, err := idx.List(ctx, 0)
	if err != nil {
		return nil, err
	}
	byID := map[string]sessions.Session{}
	bySandbox := map[string]string{}
	for _, s := range list {
		byID[s.ID] = s
		if s.Sandbox != "" {
			bySandbox[s.Sandbox] = s.ID
		}
	}
	var out []sessionUsage
	at := map[string]int{}
	for _, u := range us {
		key, g := "sandbox "+u.Sandbox, sessionUsage{Sandbox: u.Sandbox}
		id := launch.SessionOfSandbox(u.Sandbox)
		if _, ok := byID[id]; !ok {
			id = bySandbox[u.Sandbox]
		}
		if s, ok := byID[id]; ok {
			key, g = "session "+id, sessionUsage{Session: id, Title: s.Title}
		}
		i, ok := at[key]
		if !ok {
			i = len(out)
			at[key] = i
			out = append(out, g)
		}
		o := &out[i]
		o.Tokens++
		o.Requests += u.Requests
		o.InputTokens += u.InputTokens
		o.OutputTokens += u.OutputTokens
		o.CacheCreationTokens += u.CacheCreationTokens
		o.CacheReadTokens += u.CacheReadTokens
		o.CostUSD += u.CostUSD
	}
	return out, nil
}

func sessionTable(tw *tabwriter.Writer, groups []sessionUsage) (total float64) {
	fmt.Fprintln(tw, "SESSION\tTITLE\tSANDBOXES\tREQUESTS\tINPUT\tOUTPUT\tCACHE WRITE\tCACHE READ\tCOST USD")
	for _, g := range groups {
		name, title := g.Session, sanitize.Line(g.Title, 40)
		if name == "" {
			name, title = "-", "(sandbox "+sanitize.Line(g.Sandbox, 63)+")"
		}
		total += g.CostUSD
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.4f\n", name, title, g.Tokens, g.Requests,
			g.InputTokens, g.OutputTokens, g.CacheCreationTokens, g.CacheReadTokens, g.CostUSD)
	}
	return total
}
