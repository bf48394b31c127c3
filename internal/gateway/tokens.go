package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/mlagent/mlagent/internal/store"
)

var migrations = []store.Migration{
	{Name: "gateway/001_tokens", SQL: `
CREATE TABLE gateway_tokens (
	id            TEXT PRIMARY KEY,
	hash          BLOB NOT NULL UNIQUE,   -- SHA-256 of the token; the token itself is never stored
	sandbox       TEXT NOT NULL,
	budget_usd    REAL NOT NULL DEFAULT 0,    -- 0 = no limit
	budget_tokens INTEGER NOT NULL DEFAULT 0, -- 0 = no limit
	created_at    TEXT NOT NULL,
	expires_at    TEXT NOT NULL,
	revoked_at    TEXT
);
CREATE TABLE gateway_usage (
	id                    INTEGER PRIMARY KEY,
	token_id              TEXT NOT NULL,
	time                  TEXT NOT NULL,
	route                 TEXT NOT NULL,
	model                 TEXT NOT NULL DEFAULT '',
	status                INTEGER NOT NULL,
	input_tokens          INTEGER NOT NULL DEFAULT 0,
	output_tokens         INTEGER NOT NULL DEFAULT 0,
	cache_creation_tokens INTEGER NOT NULL DEFAULT 0,
	cache_read_tokens     INTEGER NOT NULL DEFAULT 0,
	cost_usd              REAL NOT NULL DEFAULT 0,
	duration_ms           REAL NOT NULL DEFAULT 0
);
CREATE INDEX gateway_usage_token ON gateway_usage(token_id);`},
	// The reservation a row settles: after a crash, the next gateway books
	// the journaled reservations that have no row (journal.go).
	{Name: "gateway/002_reservation", SQL: `
ALTER TABLE gateway_usage ADD COLUMN reservation TEXT;
CREATE INDEX gateway_usage_reservation ON gateway_usage(reservation) WHERE reservation IS NOT NULL;`},
	// The feed of revocations that every gateway sharing the store follows
	// (watchRevocations): a revocation in one process reaches the tokens
	// another has cached within a poll, found by primary key.
	{Name: "gateway/003_revocations", SQL: `
CREATE TABLE gateway_revocations (
	seq      INTEGER PRIMARY KEY AUTOINCREMENT,
	token_id TEXT NOT NULL
);`},
}

// Migrate creates the gateway's tables in db; New calls it, and so can
// readers such as `mlagent usage` that run without a gateway.
func Migrate(ctx context.Context, db *store.DB) error {
	return db.Migrate(ctx, migrations...)
}

// Token errors.
var (
	ErrUnknownToken = errors.New("unknown token")
	ErrNoSuchToken  = errors.New("no such token")
)

// TokenRequest asks for a sandbox token.
type TokenRequest struct {
	Sandbox      string
	BudgetUSD    float64 // 0 = no limit
	BudgetTokens int64   // 0 = no limit
	TTL          time.Duration
}

// IssuedToken is a new token; Token is shown once and never stored.
type IssuedToken struct {
	ID        string
	Token     string
	ExpiresAt time.Time
}

// MaxTTL bounds a token's lifetime.
const MaxTTL = 366 * 24 * time.Hour

func (r TokenRequest) validate() error {
	switch {
	case r.Sandbox == "" || len(r.Sandbox) > 128 || strings.ContainsAny(r.Sandbox, "\x00\n\r"):
		return errors.New("sandbox: want a name of 1 to 128 characters")
	case math.IsNaN(r.BudgetUSD) || math.IsInf(r.BudgetUSD, 0) || r.BudgetUSD < 0:
		return errors.New("budget_usd: want a non-negative number")
	case r.BudgetTokens < 0:
		return errors.New("budget_tokens: want a non-negative integer")
	case r.TTL <= 0 || r.TTL > MaxTTL:
		return fmt.Errorf("ttl: want a duration between 1ns and %s", MaxTTL)
	}
	return nil
}

// tokenPrefix marks mlagent tokens so scanners and people recognise them.
const tokenPrefix = "mlat_"

// token is a token's live state; the budget fields are guarded by mu.
type token struct {
	id, sandbox  string
	hash         [32]byte
	budgetUSD    float64
	budgetTokens int64
	expires      time.Time

	mu          sync.Mutex
	revoked     bool
	spentUSD    float64
	spentTokens int64
	resUSD      float64 // reserved by requests in flight
	resTokens   int64
}

func hashToken(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

// Issue creates a token for a sandbox.
func (g *Gateway) Issue(ctx context.Context, r TokenRequest) (IssuedToken, error) {
	if err := r.validate(); err != nil {
		return IssuedToken{}, fmt.Errorf("issue token: %w", err)
	}
	var secret [32]byte
	var idb [9]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return IssuedToken{}, fmt.Errorf("issue token: %w", err)
	}
	rand.Read(idb[:])
	tok := tokenPrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	t := &token{
		id: "tok_" + hex.EncodeToString(idb[:]), sandbox: r.Sandbox, hash: hashToken(tok),
		budgetUSD: r.BudgetUSD, budgetTokens: r.BudgetTokens,
		expires: time.Now().Add(r.TTL).UTC().Truncate(time.Millisecond),
	}
	now := time.Now().UTC()
	if _, err := g.db.ExecContext(ctx, `INSERT INTO gateway_tokens
		(id, hash, sandbox, budget_usd, budget_tokens, created_at, expires_at) VALUES (?,?,?,?,?,?,?)`,
		t.id, t.hash[:], t.sandbox, t.budgetUSD, t.budgetTokens, now.Format(time.RFC3339Nano), t.expires.Format(time.RFC3339Nano)); err != nil {
		return IssuedToken{}, fmt.Errorf("issue token: %w", err)
	}
	g.mu.Lock()
	g.tokens[t.hash] = t
	g.byID[t.id] = t
	g.mu.Unlock()
	g.log.Info("token issued", "token_id", t.id, "sandbox", t.sandbox, "expires_at", t.expires)
	return IssuedToken{ID: t.id, Token: tok, ExpiresAt: t.expires}, nil
}

// Revoke makes a token worthless from now on, in this process at once
// and in every other gateway sharing the store within revocationPoll.
func (g *Gateway) Revoke(ctx context.Context, id string) error {
	if err := g.revokeInStore(ctx, id); err != nil {
		return fmt.Errorf("revoke %s: %w", id, err)
	}
	g.markRevoked(id)
	g.log.Info("token revoked", "token_id", id)
	return nil
}

// revokeInStore sets the token's revoked_at and, the first time, appends
// it to the revocations feed, in one transaction.
func (g *Gateway) revokeInStore(ctx context.Context, id string) error {
	tx, err := g.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE gateway_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`,
		time.Now().UTC().Format(time.RFC3339Nano), id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM gateway_tokens WHERE id = ?`, id).Scan(&one); errors.Is(err, sql.ErrNoRows) {
			return ErrNoSuchToken
		} else if err != nil {
			return err
		}
		return nil // revoked before
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO gateway_revocations (token_id) VALUES (?)`, id); err != nil {
		return err
	}
	return tx.Commit()
}

// markRevoked refuses a cached token from now on.
func (g *Gateway) markRevoked(id string) {
	g.mu.RLock()
	t := g.byID[id]
	g.mu.RUnlock()
	if t != nil {
		t.mu.Lock()
		t.revoked = true
		t.mu.Unlock()
	}
}

// revocationPoll is how often a gateway reads the revocations that other
// processes sharing its store made: the most a revoked token stays usable
// here.
const revocationPoll = time.Second

// lastRevocation is the newest entry of the revocations feed; tokens
// loaded after it read revoked_at themselves.
func (g *Gateway) lastRevocation(ctx context.Context) (int64, error) {
	var seq int64
	err := g.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM gateway_revocations`).Scan(&seq)
	return seq, err
}

// watchRevocations follows the revocations feed from seq until stop is
// closed, marking the cached tokens it names revoked. It runs off the
// request path, which reads nothing more than the token's flag it sets.
func (g *Gateway) watchRevocations(seq int64, every time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		var err error
		if seq, err = g.readRevocations(context.Background(), seq); err != nil {
			g.log.Warn("read revocations", "err", err)
		}
	}
}

// readRevocations marks the tokens revoked after seq and returns the
// newest seq read.
func (g *Gateway) readRevocations(ctx context.Context, seq int64) (int64, error) {
	rows, err := g.db.QueryContext(ctx, `SELECT seq, token_id FROM gateway_revocations WHERE seq > ? ORDER BY seq`, seq)
	if err != nil {
		return seq, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&seq, &id); err != nil {
			return seq, err
		}
		g.markRevoked(id)
	}
	return seq, rows.Err()
}

// RevokeStored revokes the token id in the store, from a process without
// a gateway of its own; ErrNoSuchToken when the store has no such token
// (a shared gateway's lives in that gateway's store). Revoking a revoked
// token is not an error.
func RevokeStored(ctx context.Context, db *store.DB, id string) error {
	if err := Migrate(ctx, db); err != nil {
		return err
	}
	res, err := db.ExecContext(ctx, `UPDATE gateway_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`,
		time.Now().UTC().Format(time.RFC3339Nano), id)
	if err != nil {
		return fmt.Errorf("revoke %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("revoke %s: %w", id, ErrNoSuchToken)
	}
	return nil
}

// RevokeSandbox revokes, in the store, the tokens issued for the named
// sandbox no later than before: for a process without a gateway of its
// own that found the sandbox dead (its CLI was killed). A sandbox of the
// same name made since keeps its newer token. It returns how many it
// revoked. A gateway serving such a token already in memory sees the
// revocation only after a restart.
func RevokeSandbox(ctx context.Context, db *store.DB, sandbox string, before time.Time) (int, error) {
	if err := Migrate(ctx, db); err != nil {
		return 0, err
	}
	rows, err := db.QueryContext(ctx, `SELECT id, created_at FROM gateway_tokens WHERE sandbox = ? AND revoked_at IS NULL`, sandbox)
	if err != nil {
		return 0, fmt.Errorf("revoke tokens of %s: %w", sandbox, err)
	}
	var ids []string
	for rows.Next() {
		var id, created string
		if err := rows.Scan(&id, &created); err != nil {
			rows.Close()
			return 0, fmt.Errorf("revoke tokens of %s: %w", sandbox, err)
		}
		if t, err := time.Parse(time.RFC3339Nano, created); err == nil && !t.After(before) {
			ids = append(ids, id)
		}
	}
	rows.Close()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, id := range ids {
		if _, err := db.ExecContext(ctx, `UPDATE gateway_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, now, id); err != nil {
			return 0, fmt.Errorf("revoke %s: %w", id, err)
		}
	}
	return len(ids), nil
}

// lookup finds a live token. Tokens issued by another process sharing the
// store are found in the database on first use.
func (g *Gateway) lookup(ctx context.Context, tok string) (*token, error) {
	if tok == "" {
		return nil, ErrUnknownToken
	}
	h := hashToken(tok)
	g.mu.RLock()
	t := g.tokens[h]
	g.mu.RUnlock()
	if t == nil {
		var err error
		if t, err = g.loadToken(ctx, h); err != nil {
			return nil, err
		}
	}
	// The map is keyed by hash; compare again in constant time so that no
	// code path compares secrets byte by byte.
	if subtle.ConstantTimeCompare(t.hash[:], h[:]) != 1 {
		return nil, ErrUnknownToken
	}
	t.mu.Lock()
	revoked := t.revoked
	t.mu.Unlock()
	if revoked || time.Now().After(t.expires) {
		return nil, ErrUnknownToken
	}
	return t, nil
}

func (g *Gateway) loadToken(ctx context.Context, h [32]byte) (*token, error) {
	t := &token{hash: h}
	var exp string
	var revoked sql.NullString
	err := g.db.QueryRowContext(ctx, `SELECT t.id, t.sandbox, t.budget_usd, t.budget_tokens, t.expires_at, t.revoked_at,
		COALESCE(SUM(u.cost_usd),0), COALESCE(SUM(u.input_tokens+u.output_tokens+u.cache_creation_tokens+u.cache_read_tokens),0)
		FROM gateway_tokens t LEFT JOIN gateway_usage u ON u.token_id = t.id WHERE t.hash = ? GROUP BY t.id`, h[:]).
		Scan(&t.id, &t.sandbox, &t.budgetUSD, &t.budgetTokens, &exp, &revoked, &t.spentUSD, &t.spentTokens)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrUnknownToken
	}
	if err != nil {
		return nil, fmt.Errorf("look up token: %w", err)
	}
	t.revoked = revoked.Valid
	if t.expires, err = time.Parse(time.RFC3339Nano, exp); err != nil {
		return nil, fmt.Errorf("look up token %s: bad expires_at: %w", t.id, err)
	}
	g.mu.Lock()
	if old := g.tokens[h]; old != nil {
		t = old
	} else {
		g.tokens[h] = t
		g.byID[t.id] = t
	}
	g.mu.Unlock()
	return t, nil
}

// budgetError says which budget a token has used up.
type budgetError struct{ msg string }

func (e *budgetError) Error() string { return e.msg }

// reserve admits a request if the token's budget is neither spent nor
// fully reserved by requests in flight, and reserves the request's worst
// case. So N parallel requests overshoot at most by what was in flight
// when the budget ran out.
func (t *token) reserve(usd float64, toks int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.budgetUSD > 0 && t.spentUSD+t.resUSD >= t.budgetUSD {
		return &budgetError{fmt.Sprintf("token %s has spent its budget_usd of $%.4g (spent $%.4g, $%.4g reserved by requests in flight)",
			t.id, t.budgetUSD, t.spentUSD, t.resUSD)}
	}
	if t.budgetTokens > 0 && t.spentTokens+t.resTokens >= t.budgetTokens {
		return &budgetError{fmt.Sprintf("token %s has spent its budget_tokens of %d (spent %d, %d reserved by requests in flight)",
			t.id, t.budgetTokens, t.spentTokens, t.resTokens)}
	}
	t.resUSD += usd
	t.resTokens += toks
	return nil
}

// settle releases a reservation and books what the request really cost.
func (t *token) settle(resUSD float64, resToks int64, usd float64, toks int64) {
	t.mu.Lock()
	t.resUSD -= resUSD
	t.resTokens -= resToks
	if t.resUSD < 1e-12 {
		t.resUSD = 0
	}
	t.spentUSD += usd
	t.spentTokens += toks
	t.mu.Unlock()
}

func (t *token) hasBudget() bool { return t.budgetUSD > 0 || t.budgetTokens > 0 }
