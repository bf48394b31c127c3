package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/prices"
)

// cutUpstream streams message_start and then text deltas (textBytes in
// all), optionally after a thinking block, and then either waits for
// the client to go away or, with cut, drops the connection: it never
// sends the final message_delta.
func cutUpstream(t *testing.T, textBytes int, thinking, cut bool) *countingUpstream {
	chunk := strings.Repeat("lorem ipsum dolor sit amet ", 37)[:999] // 999 bytes a delta
	return newCountingUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		fmt.Fprint(w, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-5-5\",\"usage\":{\"input_tokens\":50,\"output_tokens\":1}}}\n\n")
		if thinking {
			fmt.Fprint(w, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n")
			fmt.Fprint(w, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"c2ln\"}}\n\n")
		}
		fmt.Fprint(w, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n")
		for sent := 0; sent < textBytes; sent += len(chunk) {
			fmt.Fprintf(w, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":%q}}\n\n", chunk)
			fl.Flush()
		}
		if cut {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		select { // the rest of the reply never comes before the client leaves
		case <-r.Context().Done():
		case <-time.After(20 * time.Second):
		}
	})
}

// readAndDrop sends a streamed request and reads until it has at least
// want bytes of reply, then closes the connection. It returns the status
// and the bytes read.
func readAndDrop(t *testing.T, url, tok string, want int) (int, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := `{"model":"claude-sonnet-5-5","max_tokens":32000,"stream":true,"messages":[{"role":"user","content":"write a lot"}]}`
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v1/messages", strings.NewReader(body))
	req.Header.Set("x-api-key", tok)
	req.Header.Set("anthropic-version", "2023-06-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, 0
	}
	buf := make([]byte, 32<<10)
	got := 0
	for got < want {
		n, err := resp.Body.Read(buf)
		got += n
		if err != nil {
			break
		}
	}
	return 200, got
}

// TestDroppedStreamsCannotBypassBudget is the bypass of issue 11 (High
// 1): a client that reads most of each streamed reply and then closes
// the socket was booked one output token a reply, so 12 replies of ~90
// KB got through a $0.50 budget for $0.01. A reply without its final
// usage is now charged at least what was delivered, and the budget holds.
func TestDroppedStreamsCannotBypassBudget(t *testing.T) {
	up := cutUpstream(t, 90_000, false, false)
	e := newEnv(t, nil, func(c *Config) { c.Upstream = up.URL })
	const budget = 0.50
	tok := e.issue(t, TokenRequest{Sandbox: "a", BudgetUSD: budget})
	admitted, delivered := 0, 0
	for i := 0; i < 12; i++ {
		status, n := readAndDrop(t, e.data.URL, tok.Token, 80_000)
		if status == http.StatusForbidden {
			continue
		}
		if status != 200 {
			t.Fatalf("request %d: status %d", i, status)
		}
		admitted++
		delivered += n
	}
	if err := e.g.flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	us, err := e.g.Usage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// What the delivered text cost upstream, generously counted (4 bytes
	// a token), is the least the ledger may show.
	p := prices.Default()["claude-sonnet-5-5"]
	floor := p.Cost(Usage{OutputTokens: int64(delivered / 4)})
	if us[0].CostUSD < floor {
		t.Errorf("ledger $%.4f for %d bytes delivered in %d replies; want at least $%.4f", us[0].CostUSD, delivered, admitted, floor)
	}
	// Once the ledger reaches the budget nothing more is admitted: at
	// most what was in flight (here one request at a time) goes over.
	if admitted > 2 {
		t.Errorf("%d of 12 dropped streams admitted on a $%.2f budget (ledger $%.4f); want at most 2", admitted, budget, us[0].CostUSD)
	}
}

// TestIncompleteReplyCharges: each way a reply can end without its final
// usage is charged at least the output delivered, and the whole
// max_tokens where output may have been made unseen.
func TestIncompleteReplyCharges(t *testing.T) {
	for _, tc := range []struct {
		name          string
		thinking, cut bool
		budget        bool
		wantOut       func(delivered int64) bool
	}{
		// Delivered: at least the text in the 15 KB read (deltas are 92%
		// text), at most the 20 KB sent (one token a byte), never over
		// max_tokens.
		{"client gone", false, false, true, func(d int64) bool { return d >= 12_500 && d <= 21_000 }},
		{"upstream cut", false, true, true, func(d int64) bool { return d >= 19_980 && d <= 21_000 }},
		// Thinking tokens need not be delivered: all of max_tokens.
		{"thinking, client gone", true, false, true, func(d int64) bool { return d == 32000 }},
		{"no budget, upstream cut", false, true, false, func(d int64) bool { return d >= 19_980 && d <= 21_000 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := cutUpstream(t, 20_000, tc.thinking, tc.cut)
			e := newEnv(t, nil, func(c *Config) { c.Upstream = up.URL })
			r := TokenRequest{Sandbox: "a"}
			if tc.budget {
				r.BudgetUSD = 100
			}
			tok := e.issue(t, r)
			readAndDrop(t, e.data.URL, tok.Token, 15_000)
			var out int64
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				us, err := e.g.Usage(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if us[0].Requests == 1 {
					out = us[0].OutputTokens
					if us[0].InputTokens != 50 {
						t.Errorf("input tokens %d; want the 50 of message_start", us[0].InputTokens)
					}
					break
				}
			}
			if !tc.wantOut(out) {
				t.Errorf("charged %d output tokens", out)
			}
		})
	}
}
