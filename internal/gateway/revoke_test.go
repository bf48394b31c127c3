package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/fakeapi"
	"github.com/mlagent/mlagent/internal/store"
)

// sharedGateway is a gateway on the store at path with its own database
// handle, as a second `mlagent gateway` (or a CLI's in-process gateway)
// on the same MLAGENT_HOME has.
func sharedGateway(t *testing.T, path, upstream string) (*Gateway, *httptest.Server) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(ctx, Config{DB: db, Upstream: upstream, APIKey: realKey})
	if err != nil {
		t.Fatal(err)
	}
	data := httptest.NewServer(g.DataHandler())
	t.Cleanup(func() {
		data.Close()
		g.Close()
		db.Close()
	})
	return g, data
}

func postStatus(t *testing.T, url, tok string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/v1/messages", strings.NewReader(
		`{"model":"claude-sonnet-5-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("x-api-key", tok)
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRevocationReachesOtherGateways: a token revoked by one gateway is
// refused by another sharing the store within about a second, although
// the other had it cached (it served it just before). Before, it was
// refused there only after a restart.
func TestRevocationReachesOtherGateways(t *testing.T) {
	ctx := context.Background()
	up := fakeapi.Start(fakeapi.Options{APIKey: realKey})
	defer up.Close()
	path := filepath.Join(t.TempDir(), "m.db")
	a, _ := sharedGateway(t, path, up.URL())
	_, bURL := sharedGateway(t, path, up.URL())

	it, err := a.Issue(ctx, TokenRequest{Sandbox: "s", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if code := postStatus(t, bURL.URL, it.Token); code != 200 {
		t.Fatalf("the other gateway answered %d for a live token; want 200", code)
	}
	if err := a.Revoke(ctx, it.ID); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	for postStatus(t, bURL.URL, it.Token) != http.StatusUnauthorized {
		if time.Since(revoked) > 2*revocationPoll+time.Second {
			t.Fatalf("the other gateway still serves the token %s after its revocation", time.Since(revoked).Round(time.Millisecond))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("refused by the other gateway %s after the revocation", time.Since(revoked).Round(time.Millisecond))

	// Revoking again, or an unknown id, leaves the feed alone.
	if err := a.Revoke(ctx, it.ID); err != nil {
		t.Errorf("second revoke: %v", err)
	}
	if err := a.Revoke(ctx, "tok_nosuch"); err == nil || !strings.Contains(err.Error(), ErrNoSuchToken.Error()) {
		t.Errorf("revoke of an unknown id: %v; want %v", err, ErrNoSuchToken)
	}
	var n int
	if err := a.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM gateway_revocations`).Scan(&n); err != nil || n != 1 {
		t.Errorf("revocations feed holds %d entries (%v); want 1", n, err)
	}
}

// BenchmarkRevocationPoll is the cost of one poll of the revocations
// feed with nothing new, against a store of 10,000 revoked tokens: the
// whole price of cross-process revocation, paid once a second off the
// request path.
func BenchmarkRevocationPoll(b *testing.B) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(b.TempDir(), "m.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	g, err := New(ctx, Config{DB: db, Upstream: "http://127.0.0.1:1", JournalDir: "-"})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	for i := 0; i < 10000; i++ {
		it, err := g.Issue(ctx, TokenRequest{Sandbox: "s", TTL: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		if err := g.Revoke(ctx, it.ID); err != nil {
			b.Fatal(err)
		}
	}
	seq, err := g.lastRevocation(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := g.readRevocations(ctx, seq); err != nil {
			b.Fatal(err)
		}
	}
}
