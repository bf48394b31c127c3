package slackbot

import (
	"context"
	"time"

	"github.com/mlagent/mlagent/internal/store"
)

// The thread → session map survives restarts, so a thread continues its
// session (in a new sandbox) after `mlagent slack` was restarted.
var migrations = []store.Migration{
	{Name: "slack/001_threads", SQL: `
CREATE TABLE slack_threads (
	channel   TEXT NOT NULL,
	thread_ts TEXT NOT NULL,
	session   TEXT NOT NULL,
	user_id   TEXT NOT NULL, -- who started it; their budget pays for it
	created   TEXT NOT NULL,
	PRIMARY KEY (channel, thread_ts)
);
CREATE INDEX slack_threads_user ON slack_threads(user_id);`},
}

func (b *Bot) lookupThread(ctx context.Context, channel, ts string) (session, user string, err error) {
	err = b.db.QueryRowContext(ctx, `SELECT session, user_id FROM slack_threads WHERE channel = ? AND thread_ts = ?`,
		channel, ts).Scan(&session, &user)
	return session, user, err
}

func (b *Bot) saveThread(ctx context.Context, channel, ts, session, user string) error {
	_, err := b.db.ExecContext(ctx, `INSERT OR IGNORE INTO slack_threads(channel, thread_ts, session, user_id, created) VALUES (?, ?, ?, ?, ?)`,
		channel, ts, session, user, time.Now().UTC().Format(time.RFC3339))
	return err
}

// userSpend is what a user's Slack sessions have cost. The sessions index
// holds the cost each turn's agent reported, and the agent runs in the
// sandbox: what it reports is untrusted (a negative cost would give the
// budget back). The gateway's ledger is the gateway's own count of what
// each sandbox token spent; a session counts for the larger of the two.
func (b *Bot) userSpend(ctx context.Context, user string) (float64, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT session FROM slack_threads WHERE user_id = ?`, user)
	if err != nil {
		return 0, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	ledger, err := b.host.Ledger(ctx)
	if err != nil {
		return 0, err
	}
	var total float64
	for _, id := range ids {
		s, err := b.host.Sessions().Get(ctx, id)
		if err != nil {
			continue
		}
		total += ledger.SessionCost(s)
	}
	return total, nil
}
