package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/mlagent/mlagent/internal/gateway"
	"github.com/mlagent/mlagent/internal/store"
)

func init() {
	register(&Command{
		Name:    "usage",
		Summary: "show model usage and cost per sandbox token",
		Run:     runUsage,
	})
}

const usageHelp = `Shows, per gateway token, the requests, input / output / cache-write /
cache-read tokens and USD cost booked in the usage ledger, with each token's
budget and state. Reads the store directly, so it works without a running
gateway. Prices: docs/gateway.md.`

func runUsage(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "usage", "usage [--json]", usageHelp)
	asJSON := fs.Bool("json", false, "print JSON (an array of tokens)")
	if code := parseFlags(fs, args, env); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return ExitUsage
	}
	db, err := store.Open(ctx, env.Config.StorePath())
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent usage: %v\n", err)
		return ExitFailure
	}
	defer db.Close()
	us, err := gateway.ReadUsage(ctx, db)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent usage: %v\n", err)
		return ExitFailure
	}
	if *asJSON {
		if us == nil {
			us = []gateway.TokenUsage{}
		}
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(us)
		return ExitOK
	}
	if len(us) == 0 {
		fmt.Fprintln(env.Stdout, "no gateway tokens yet")
		return ExitOK
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOKEN\tSANDBOX\tREQUESTS\tINPUT\tOUTPUT\tCACHE WRITE\tCACHE READ\tCOST USD\tBUDGET\tSTATE")
	var total float64
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
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%.4f\t%s\t%s\n", u.ID, u.Sandbox, u.Requests,
			u.InputTokens, u.OutputTokens, u.CacheCreationTokens, u.CacheReadTokens, u.CostUSD, budget, state)
	}
	tw.Flush()
	fmt.Fprintf(env.Stdout, "total $%.4f\n", total)
	return ExitOK
}
