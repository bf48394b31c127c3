package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// journal makes the budget survive a crash of the gateway (kill -9, OOM):
// the ledger is written in batches off the request path, so without it a
// crash forgot the last ~50 ms of finished requests and every open
// stream. Before a budgeted request is forwarded its reservation is
// appended to this gateway's journal file ("R"); when any model request
// ends, its exact ledger row is appended ("D"). Both are one write(2) to
// a file in the page cache, which a killed process cannot lose (a power
// cut can: no fsync). Ledger rows carry their reservation id, so the next
// gateway on the same store books, for each entry of a dead gateway's
// journal that is not in the ledger, its exact row or else its whole
// reservation: a token can overshoot its budget by no more than what was
// in flight at the crash.
//
// Each gateway holds an exclusive flock on its own file; a file whose
// lock can be taken belongs to a dead gateway. The file is rewritten with
// only the unsettled entries when it grows past journalCompactAt.
type journal struct {
	dir  string
	id   string // this gateway's instance id
	next atomic.Uint64

	mu   sync.Mutex
	f    *os.File
	path string
	size int64
	open map[string][]byte // reservation id → its lines, until in the ledger
}

const (
	journalSuffix    = ".journal"
	journalCompactAt = 4 << 20
	maxJournalLine   = 4096
)

// openJournal creates this gateway's journal in dir.
func openJournal(dir string) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var b [6]byte
	rand.Read(b[:])
	j := &journal{dir: dir, id: hex.EncodeToString(b[:]), open: map[string][]byte{}}
	j.path = filepath.Join(dir, "gw-"+j.id+journalSuffix)
	f, err := createLocked(j.path)
	if err != nil {
		return nil, err
	}
	j.f = f
	return j, nil
}

// createLocked creates path (0600, never through a symlink) and takes an
// exclusive lock on it.
func createLocked(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// newID is a reservation id, unique across gateways.
func (j *journal) newID() string {
	return j.id + "-" + strconv.FormatUint(j.next.Add(1), 36)
}

// write appends line for reservation id and remembers it until settled.
func (j *journal) write(id string, line []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return errors.New("journal closed")
	}
	n, err := j.f.Write(line)
	j.size += int64(n)
	if err != nil {
		return err
	}
	j.open[id] = append(j.open[id], line...)
	return nil
}

// reserve records a reservation before its request is forwarded.
func (j *journal) reserve(id, tokenID, model string, usd float64, in, out int64) error {
	var buf [256]byte
	b := append(buf[:0], "R\t"...)
	b = append(b, id...)
	b = append(b, '\t')
	b = append(b, tokenID...)
	b = append(b, '\t')
	b = appendField(b, model)
	b = append(b, '\t')
	b = strconv.AppendFloat(b, usd, 'g', -1, 64)
	b = append(b, '\t')
	b = strconv.AppendInt(b, in, 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, out, 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
	b = append(b, '\n')
	return j.write(id, b)
}

// done records the ledger row of a finished request.
func (j *journal) done(r *record) error {
	var buf [384]byte
	u := Usage{}
	if r.Usage != nil {
		u = *r.Usage
	}
	b := append(buf[:0], "D\t"...)
	b = append(b, r.resID...)
	b = append(b, '\t')
	b = append(b, r.TokenID...)
	b = append(b, '\t')
	b = appendField(b, r.Model)
	b = append(b, '\t')
	b = appendField(b, r.Route)
	for _, n := range []int64{int64(r.Status), u.InputTokens, u.OutputTokens, u.CacheCreationTokens, u.CacheReadTokens, r.Time.UnixNano()} {
		b = append(b, '\t')
		b = strconv.AppendInt(b, n, 10)
	}
	b = append(b, '\t')
	b = strconv.AppendFloat(b, r.CostUSD, 'g', -1, 64)
	b = append(b, '\t')
	b = strconv.AppendFloat(b, r.DurationMS, 'g', -1, 64)
	b = append(b, '\n')
	return j.write(r.resID, b)
}

// appendField appends s with tabs, newlines and backslashes escaped.
func appendField(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	if len(s) > 200 { // a line stays far below maxJournalLine
		s = s[:200]
	}
	q := strconv.Quote(s)
	return append(b, q...)
}

func parseField(s string) string {
	if s == "-" {
		return ""
	}
	if u, err := strconv.Unquote(s); err == nil {
		return u
	}
	return ""
}

// settled forgets reservations whose rows are in the ledger, and rewrites
// the file when it has grown large.
func (j *journal) settled(ids []string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, id := range ids {
		delete(j.open, id)
	}
	if j.f == nil || j.size < journalCompactAt {
		return
	}
	tmp := j.path + ".tmp"
	os.Remove(tmp)
	f, err := createLocked(tmp)
	if err != nil {
		return
	}
	var size int64
	for _, lines := range j.open {
		n, err := f.Write(lines)
		size += int64(n)
		if err != nil {
			f.Close()
			os.Remove(tmp)
			return
		}
	}
	if err := os.Rename(tmp, j.path); err != nil {
		f.Close()
		os.Remove(tmp)
		return
	}
	j.f.Close()
	j.f, j.size = f, size
}

// close removes the journal of a gateway that shut down cleanly: every
// row it journaled is in the ledger by then.
func (j *journal) close(clean bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return
	}
	if clean && len(j.open) == 0 {
		os.Remove(j.path)
	}
	j.f.Close()
	j.f = nil
}

// journalEntry is what a dead gateway's journal says of one reservation.
type journalEntry struct {
	id, tokenID, model string
	usd                float64
	in, out            int64
	at                 time.Time
	done               *record
}

// readJournal parses a journal; a torn last line (the crash) is skipped.
func readJournal(r io.Reader) map[string]*journalEntry {
	out := map[string]*journalEntry{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, maxJournalLine), maxJournalLine)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		switch {
		case len(f) == 8 && f[0] == "R":
			e := entry(out, f[1])
			e.tokenID, e.model = f[2], parseField(f[3])
			e.usd, _ = strconv.ParseFloat(f[4], 64)
			e.in, _ = strconv.ParseInt(f[5], 10, 64)
			e.out, _ = strconv.ParseInt(f[6], 10, 64)
			ns, _ := strconv.ParseInt(f[7], 10, 64)
			e.at = time.Unix(0, ns)
		case len(f) == 13 && f[0] == "D":
			e := entry(out, f[1])
			var n [6]int64
			for i := range n {
				n[i], _ = strconv.ParseInt(f[5+i], 10, 64)
			}
			rec := &record{resID: f[1], TokenID: f[2], Model: parseField(f[3]), Route: parseField(f[4]), Status: int(n[0]),
				Usage: &Usage{InputTokens: n[1], OutputTokens: n[2], CacheCreationTokens: n[3], CacheReadTokens: n[4]},
				Time:  time.Unix(0, n[5]), ledger: true}
			rec.CostUSD, _ = strconv.ParseFloat(f[11], 64)
			rec.DurationMS, _ = strconv.ParseFloat(f[12], 64)
			e.tokenID = rec.TokenID
			e.done = rec
		}
	}
	return out
}

func entry(m map[string]*journalEntry, id string) *journalEntry {
	e := m[id]
	if e == nil {
		e = &journalEntry{id: id}
		m[id] = e
	}
	return e
}

// recoverJournals books what dead gateways' journals hold and the ledger
// lacks, then removes those journals. It runs before the gateway loads a
// token, so that the token's spending includes it.
func (g *Gateway) recoverJournals(ctx context.Context) error {
	names, err := filepath.Glob(filepath.Join(g.journal.dir, "*"+journalSuffix))
	if err != nil {
		return err
	}
	for _, name := range names {
		if name == g.journal.path {
			continue
		}
		f, err := os.OpenFile(name, os.O_RDWR|syscall.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
			f.Close()
			continue
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close() // a live gateway's
			continue
		}
		entries := readJournal(io.LimitReader(f, 1<<30))
		n, err := g.bookRecovered(ctx, entries)
		if err != nil {
			f.Close()
			return fmt.Errorf("recover %s: %w", name, err)
		}
		if n > 0 {
			g.log.Warn("booked the unsettled requests of a gateway that died", "journal", filepath.Base(name), "rows", n)
		}
		os.Remove(name)
		f.Close()
	}
	return nil
}

// bookRecovered inserts, in one transaction, a ledger row for each entry
// not already in the ledger: its journaled row, or its whole reservation.
func (g *Gateway) bookRecovered(ctx context.Context, entries map[string]*journalEntry) (int, error) {
	if len(entries) == 0 {
		return 0, nil
	}
	tx, err := g.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	booked := 0
	for id, e := range entries {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM gateway_usage WHERE reservation = ?`, id).Scan(&one)
		if err == nil {
			continue // its row made it into the ledger
		}
		rec := e.done
		if rec == nil {
			if e.tokenID == "" || (e.usd == 0 && e.in == 0 && e.out == 0) {
				continue
			}
			rec = &record{resID: id, TokenID: e.tokenID, Model: e.model, Route: "/v1/messages", Time: e.at,
				Usage: &Usage{InputTokens: e.in, OutputTokens: e.out}, CostUSD: e.usd, ledger: true}
		}
		u := *rec.Usage
		if _, err := tx.ExecContext(ctx, `INSERT INTO gateway_usage (token_id, time, route, model, status,
			input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens, cost_usd, duration_ms, reservation)
			VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
			rec.TokenID, rec.Time.UTC().Format(time.RFC3339Nano), rec.Route, rec.Model, rec.Status,
			u.InputTokens, u.OutputTokens, u.CacheCreationTokens, u.CacheReadTokens, rec.CostUSD, rec.DurationMS, id); err != nil {
			return 0, err
		}
		booked++
	}
	return booked, tx.Commit()
}
