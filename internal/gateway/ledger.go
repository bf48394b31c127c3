package gateway

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/mlagent/mlagent/internal/store"
)

// record is one finished request: a ledger row (model routes) and an
// audit line. It never holds a body or a secret.
type record struct {
	Time       time.Time `json:"time"`
	TokenID    string    `json:"token_id,omitempty"`
	Sandbox    string    `json:"sandbox,omitempty"`
	Route      string    `json:"route"`
	Method     string    `json:"method"`
	Target     string    `json:"target,omitempty"` // CONNECT host:port
	Model      string    `json:"model,omitempty"`
	Status     int       `json:"status"`
	Usage      *Usage    `json:"usage,omitempty"`
	CostUSD    float64   `json:"cost_usd,omitempty"`
	DurationMS float64   `json:"duration_ms"`
	Bytes      int64     `json:"bytes,omitempty"`
	Stream     bool      `json:"stream,omitempty"`
	Error      string    `json:"error,omitempty"` // refusal reason or upstream error type

	ledger bool   // write a gateway_usage row
	resID  string // its journal entry (journal.go), if any
}

// batchWindow is how long the writer gathers records before writing them.
const batchWindow = 50 * time.Millisecond

// writer persists records off the request path: the response is finished
// before its row is written, and rows are batched into one transaction.
func (g *Gateway) writer() {
	defer close(g.writerDone)
	batch := make([]record, 0, 256)
	for {
		var flush chan struct{}
		select {
		case r, ok := <-g.records:
			if !ok {
				return
			}
			batch = append(batch[:0], r)
		case flush = <-g.flushes:
		}
		// Gather what arrives within a short window (unless a flush is
		// waiting), so a busy or a steady trickle of requests costs one
		// transaction and one audit write per window, not per request.
		var window <-chan time.Time
		var timer *time.Timer
		if flush == nil {
			timer = time.NewTimer(batchWindow)
			window = timer.C
		}
	more:
		for len(batch) < cap(batch) {
			if window == nil {
				select {
				case r, ok := <-g.records:
					if !ok {
						break more
					}
					batch = append(batch, r)
				default:
					break more
				}
				continue
			}
			select {
			case r, ok := <-g.records:
				if !ok {
					break more
				}
				batch = append(batch, r)
			case f := <-g.flushes:
				// Someone waits for everything so far: stop gathering.
				flush = f
				window = nil
			case <-window:
				break more
			}
		}
		if timer != nil {
			timer.Stop()
		}
		if len(batch) > 0 {
			g.persist(batch)
			batch = batch[:0]
		}
		if flush != nil {
			close(flush)
		}
	}
}

func (g *Gateway) persist(batch []record) {
	if g.audit != nil {
		// One write per batch: the audit file costs a syscall per flush,
		// not per request.
		buf := g.auditBuf[:0]
		for i := range batch {
			buf = append(appendRecord(buf, &batch[i]), '\n')
		}
		if _, err := g.audit.Write(buf); err != nil {
			g.log.Error("audit log write failed", "err", err)
		}
		g.auditBuf = buf
	}
	ctx := context.Background()
	if err := g.prepareInserts(ctx); err != nil {
		g.log.Error("usage ledger write failed", "err", err)
		return
	}
	tx, err := g.db.BeginTx(ctx, nil)
	if err != nil {
		g.log.Error("usage ledger write failed", "err", err)
		return
	}
	defer tx.Rollback()
	// Many rows per INSERT, with statements prepared once: one statement
	// per row costs more in database/sql and the driver, and parsing one
	// per batch more than SQLite's work.
	const cols = 12
	args := g.ledgerArgs[:0]
	settled := g.settledIDs[:0]
	for i := range batch {
		r := &batch[i]
		if !r.ledger || r.TokenID == "" {
			continue
		}
		var u Usage
		if r.Usage != nil {
			u = *r.Usage
		}
		var res any
		if r.resID != "" {
			res = r.resID
			settled = append(settled, r.resID)
		}
		args = append(args, r.TokenID, r.Time.UTC().Format(time.RFC3339Nano), r.Route, r.Model, r.Status,
			u.InputTokens, u.OutputTokens, u.CacheCreationTokens, u.CacheReadTokens, r.CostUSD, r.DurationMS, res)
	}
	defer func() {
		clear(args)
		g.ledgerArgs = args[:0]
	}()
	for off := 0; off < len(args); {
		rows := ledgerRowsPerInsert
		if len(args)-off < rows*cols {
			rows = 1
		}
		stmt := g.insertStmts[0]
		if rows == 1 {
			stmt = g.insertStmts[1]
		}
		if _, err := tx.StmtContext(ctx, stmt).ExecContext(ctx, args[off:off+rows*cols]...); err != nil {
			g.log.Error("usage ledger write failed", "err", err)
			return
		}
		off += rows * cols
	}
	if err := tx.Commit(); err != nil {
		g.log.Error("usage ledger write failed", "err", err)
		return
	}
	if g.journal != nil {
		g.journal.settled(settled)
	}
	clear(settled)
	g.settledIDs = settled[:0]
}

const ledgerRowsPerInsert = 64

// prepareInserts prepares the INSERTs of ledgerRowsPerInsert rows and of
// one row, once; it must run outside a transaction (an in-memory store
// has one connection).
func (g *Gateway) prepareInserts(ctx context.Context) error {
	for i, rows := range []int{ledgerRowsPerInsert, 1} {
		if g.insertStmts[i] != nil {
			continue
		}
		s, err := g.db.PrepareContext(ctx, insertUsageSQL(rows))
		if err != nil {
			return err
		}
		g.insertStmts[i] = s
	}
	return nil
}

// insertUsageSQL is an INSERT of n ledger rows.
func insertUsageSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO gateway_usage (token_id, time, route, model, status,
		input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens, cost_usd, duration_ms, reservation) VALUES `)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?)")
	}
	return b.String()
}

// emit queues a record; it blocks only when the writer is far behind.
func (g *Gateway) emit(r record) {
	g.closeMu.RLock()
	defer g.closeMu.RUnlock()
	if g.closed {
		return
	}
	g.records <- r
}

// flush waits until every record queued so far is persisted.
func (g *Gateway) flush(ctx context.Context) error {
	g.closeMu.RLock()
	if g.closed {
		g.closeMu.RUnlock()
		return nil
	}
	done := make(chan struct{})
	select {
	case g.flushes <- done:
	case <-ctx.Done():
		g.closeMu.RUnlock()
		return ctx.Err()
	}
	g.closeMu.RUnlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TokenUsage is one token's budget and what it has used.
type TokenUsage struct {
	ID           string     `json:"id"`
	Sandbox      string     `json:"sandbox"`
	CreatedAt    time.Time  `json:"created_at"`
	ExpiresAt    time.Time  `json:"expires_at"`
	RevokedAt    *time.Time `json:"revoked_at,omitempty"`
	BudgetUSD    float64    `json:"budget_usd"`
	BudgetTokens int64      `json:"budget_tokens"`
	Requests     int64      `json:"requests"`
	Usage
	CostUSD float64 `json:"cost_usd"`
}

// Usage returns every token's usage, oldest token first, including all
// requests finished before the call.
func (g *Gateway) Usage(ctx context.Context) ([]TokenUsage, error) {
	if err := g.flush(ctx); err != nil {
		return nil, err
	}
	return ReadUsage(ctx, g.db)
}

// ReadUsage reads the ledger from the store; it needs no running gateway.
func ReadUsage(ctx context.Context, db *store.DB) ([]TokenUsage, error) {
	if err := Migrate(ctx, db); err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, `SELECT t.id, t.sandbox, t.created_at, t.expires_at, t.revoked_at,
		t.budget_usd, t.budget_tokens, COUNT(u.id),
		COALESCE(SUM(u.input_tokens),0), COALESCE(SUM(u.output_tokens),0),
		COALESCE(SUM(u.cache_creation_tokens),0), COALESCE(SUM(u.cache_read_tokens),0), COALESCE(SUM(u.cost_usd),0)
		FROM gateway_tokens t LEFT JOIN gateway_usage u ON u.token_id = t.id
		GROUP BY t.id ORDER BY t.created_at, t.id`)
	if err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	defer rows.Close()
	var out []TokenUsage
	for rows.Next() {
		var u TokenUsage
		var created, expires string
		var revoked sql.NullString
		if err := rows.Scan(&u.ID, &u.Sandbox, &created, &expires, &revoked, &u.BudgetUSD, &u.BudgetTokens, &u.Requests,
			&u.InputTokens, &u.OutputTokens, &u.CacheCreationTokens, &u.CacheReadTokens, &u.CostUSD); err != nil {
			return nil, fmt.Errorf("read usage: %w", err)
		}
		u.CreatedAt, _ = time.Parse(time.RFC3339Nano, created)
		u.ExpiresAt, _ = time.Parse(time.RFC3339Nano, expires)
		if revoked.Valid {
			t, _ := time.Parse(time.RFC3339Nano, revoked.String)
			u.RevokedAt = &t
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
