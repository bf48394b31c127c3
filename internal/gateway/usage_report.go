package gateway

import (
	"context"
	"fmt"

	"github.com/mlagent/mlagent/internal/store"
)

// DayUsage is what the ledger booked on one UTC day, over every token.
type DayUsage struct {
	Day      string `json:"day"`    // YYYY-MM-DD, UTC
	Tokens   int64  `json:"tokens"` // distinct gateway tokens (sandboxes) that booked
	Requests int64  `json:"requests"`
	Usage
	CostUSD float64 `json:"cost_usd"`
}

// ReadUsageByDay sums the ledger per UTC day, oldest day first. Like
// ReadUsage it needs no running gateway.
func ReadUsageByDay(ctx context.Context, db *store.DB) ([]DayUsage, error) {
	if err := Migrate(ctx, db); err != nil {
		return nil, err
	}
	// Ledger times are RFC 3339 in UTC, so the first ten bytes are the day.
	rows, err := db.QueryContext(ctx, `SELECT substr(time, 1, 10) AS day, COUNT(DISTINCT token_id), COUNT(*),
		SUM(input_tokens), SUM(output_tokens), SUM(cache_creation_tokens), SUM(cache_read_tokens), SUM(cost_usd)
		FROM gateway_usage GROUP BY day ORDER BY day`)
	if err != nil {
		return nil, fmt.Errorf("read usage by day: %w", err)
	}
	defer rows.Close()
	var out []DayUsage
	for rows.Next() {
		var d DayUsage
		if err := rows.Scan(&d.Day, &d.Tokens, &d.Requests, &d.InputTokens, &d.OutputTokens,
			&d.CacheCreationTokens, &d.CacheReadTokens, &d.CostUSD); err != nil {
			return nil, fmt.Errorf("read usage by day: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}
