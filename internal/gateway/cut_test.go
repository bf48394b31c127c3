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
	// A dropped stream is booked when the gateway notices the client
	// left, which may be after the client's next request.
	us := waitRequests(t, e.g, int64(admitted))
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
			// A client reading to the cut gets the whole 20 KB; one that
			// left first may not have let the gateway read it all.
			want := 15_000
			if tc.cut {
				want = 1 << 30
			}
			readAndDrop(t, e.data.URL, tok.Token, want)
			us := waitRequests(t, e.g, 1)
			out := us[0].OutputTokens
			if us[0].InputTokens != 50 {
				t.Errorf("input tokens %d; want the 50 of message_start", us[0].InputTokens)
			}
			if !tc.wantOut(out) {
				t.Errorf("charged %d output tokens", out)
			}
		})
	}
}

// waitRequests waits until the ledger holds n requests of g's one token,
// and returns its usage.
func waitRequests(t *testing.T, g *Gateway, n int64) []TokenUsage {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		us, err := g.Usage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(us) == 1 && us[0].Requests >= n {
			return us
		}
		if time.Now().After(deadline) {
			t.Fatalf("ledger %+v; want %d requests", us, n)
		}
	}
}

// TestCutJSONReplyChargesMaxTokens: a non-streamed reply that ends
// before its body does (the upstream cut it, or the client left) never
// shows its usage, and output may have been made that was not delivered:
// it is charged the request's whole max_tokens, and the reserved input.
func TestCutJSONReplyChargesMaxTokens(t *testing.T) {
	for _, cut := range []bool{true, false} {
		t.Run(fmt.Sprintf("upstream cut=%v", cut), func(t *testing.T) {
			text := strings.Repeat("lorem ipsum ", 2000)
			reply := `{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-5-5","content":[{"type":"text","text":"` +
				text + `"}],"stop_reason":"end_turn","usage":{"input_tokens":50,"output_tokens":6000}}`
			up := newCountingUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", fmt.Sprint(len(reply)))
				io.WriteString(w, reply[:len(reply)/2])
				w.(http.Flusher).Flush()
				if cut {
					conn, _, _ := w.(http.Hijacker).Hijack()
					conn.Close()
					return
				}
				select { // the rest never comes before the client leaves
				case <-r.Context().Done():
				case <-time.After(20 * time.Second):
				}
			})
			e := newEnv(t, nil, func(c *Config) { c.Upstream = up.URL })
			tok := e.issue(t, TokenRequest{Sandbox: "a", BudgetUSD: 100})
			body := `{"model":"claude-sonnet-5-5","max_tokens":8000,"messages":[{"role":"user","content":"write"}]}`
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, "POST", e.data.URL+"/v1/messages", strings.NewReader(body))
			req.Header.Set("x-api-key", tok.Token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, len(reply)/4)
			if _, err := io.ReadFull(resp.Body, buf); err != nil {
				t.Fatal(err)
			}
			if cut {
				if _, err := io.ReadAll(resp.Body); err == nil {
					t.Error("a cut JSON reply reached the client as complete")
				}
			}
			cancel()
			resp.Body.Close()
			us := waitRequests(t, e.g, 1)
			_, resToks := estimate(prices.Default()["claude-sonnet-5-5"], len(body), 8000)
			if us[0].OutputTokens != 8000 || us[0].InputTokens != resToks-8000 {
				t.Errorf("charged %d input and %d output tokens; want the reserved %d and max_tokens 8000",
					us[0].InputTokens, us[0].OutputTokens, resToks-8000)
			}
		})
	}
}
