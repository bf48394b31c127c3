// Command gateway benchmarks the mlagent gateway on loopback against a
// minimal fake upstream, side by side with direct calls and a plain
// httputil reverse proxy: added latency at one client (non-streamed, 1 KB
// reply), throughput at 64 concurrent clients, and the delay added to each
// streamed event. Client, proxies and upstream share this process's cores.
//
//	go run ./bench/gateway [-n 3000] [-dur 3s] [-clients 64] [-rounds 1]
//
// With -process BINARY it also measures `BINARY gateway` run as its own
// process (ledger and audit log on, as a user runs it) with this process
// as its client: the figure a user meets. -gwprofile FILE writes that
// process's CPU profile.
//
//	go build -o /tmp/mlagent ./cmd/mlagent && go run ./bench/gateway -process /tmp/mlagent
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mlagent/mlagent/internal/gateway"
	"github.com/mlagent/mlagent/internal/store"
)

var epoch = time.Now()

func since() int64 { return int64(time.Since(epoch)) }

// upstream answers like the Messages API: a ~1 KB JSON message, or a
// stream of events each stamped with its send time.
func upstream(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	if r.URL.Query().Get("stream") == "" {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("request-id", "req_bench")
		w.Write(reply1K)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	fmt.Fprint(w, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-5-5\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n")
	fl.Flush()
	for i := 0; i < streamEvents; i++ {
		time.Sleep(eventGap)
		fmt.Fprintf(w, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"t=%d\"}}\n\n", since())
		fl.Flush()
	}
	fmt.Fprint(w, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":20}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
}

var reply1K = func() []byte {
	text := strings.Repeat("lorem ipsum ", 70)
	return []byte(`{"id":"msg_bench","type":"message","role":"assistant","model":"claude-sonnet-5-5","content":[{"type":"text","text":"` +
		text + `"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":200,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}`)
}()

const (
	streamEvents = 20
	eventGap     = 2 * time.Millisecond
)

var reqBody = []byte(`{"model":"claude-sonnet-5-5","max_tokens":1024,"messages":[{"role":"user","content":"Say something about loopback benchmarks."}]}`)

// serve serves h on loopback; its goroutines carry the pprof label
// part=name, so a profile splits by part (-tagfocus part=gateway).
func serve(name string, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	pprof.Do(context.Background(), pprof.Labels("part", name), func(context.Context) {
		go (&http.Server{Handler: h}).Serve(ln)
	})
	return "http://" + ln.Addr().String()
}

type target struct {
	name, url, token string
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, DisableCompression: true}}

func call(t target, query string) (time.Duration, error) {
	req, _ := http.NewRequest("POST", t.url+"/v1/messages"+query, bytes.NewReader(reqBody))
	req.Header.Set("x-api-key", t.token)
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("content-type", "application/json")
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	return time.Since(start), err
}

func pct(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[int(float64(len(d)-1)*p)]
}

// eventDelays returns, for every streamed event, arrival minus send time.
func eventDelays(t target, streams int) []time.Duration {
	var out []time.Duration
	for s := 0; s < streams; s++ {
		req, _ := http.NewRequest("POST", t.url+"/v1/messages?stream=1", bytes.NewReader(reqBody))
		req.Header.Set("x-api-key", t.token)
		req.Header.Set("anthropic-version", "2023-06-01")
		resp, err := client.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		buf := make([]byte, 64<<10)
		var pending []byte
		for {
			n, err := resp.Body.Read(buf)
			now := since()
			pending = append(pending, buf[:n]...)
			for {
				i := bytes.Index(pending, []byte("t="))
				if i < 0 {
					break
				}
				j := bytes.IndexByte(pending[i:], '"')
				if j < 0 {
					break
				}
				sent, _ := strconv.ParseInt(string(pending[i+2:i+j]), 10, 64)
				out = append(out, time.Duration(now-sent))
				pending = pending[i+j:]
			}
			if err != nil {
				break
			}
		}
		resp.Body.Close()
	}
	return out
}

func throughput(t target, clients int, dur time.Duration) (rps float64, errs int64) {
	var done, failed atomic.Int64
	stop := time.Now().Add(dur)
	var wg sync.WaitGroup
	pprof.Do(context.Background(), pprof.Labels("part", "client"), func(context.Context) {
		for i := 0; i < clients; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					if _, err := call(t, ""); err != nil {
						failed.Add(1)
					} else {
						done.Add(1)
					}
				}
			}()
		}
	})
	wg.Wait()
	return float64(done.Load()) / dur.Seconds(), failed.Load()
}

func main() {
	n := flag.Int("n", 3000, "sequential requests per target for the latency test")
	dur := flag.Duration("dur", 3*time.Second, "duration of each throughput run")
	clients := flag.Int("clients", 64, "concurrent clients for the throughput test")
	streams := flag.Int("streams", 30, "streams per target for the per-event delay test")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	rounds := flag.Int("rounds", 1, "split the throughput test into this many interleaved rounds")
	memprofile := flag.String("memprofile", "", "write an allocation profile of the whole run to this file")
	tputprofile := flag.String("tputprofile", "", "write a CPU profile of the gateway's throughput run only to this file")
	process := flag.String("process", "", "also measure `mlagent gateway` run as its own process from this binary")
	gwprofile := flag.String("gwprofile", "", "with -process: write the gateway process's CPU profile to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if *memprofile != "" {
		defer func() {
			f, err := os.Create(*memprofile)
			if err != nil {
				log.Fatal(err)
			}
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}()
	}
	ctx := context.Background()

	up := serve("upstream", http.HandlerFunc(upstream))
	upURL, _ := url.Parse(up)
	simple := httputil.NewSingleHostReverseProxy(upURL)
	simple.FlushInterval = 0 // as the gateway: SSE still flushes per write
	simple.Transport = gateway.NewTransport()
	simpleURL := serve("httputil", simple)

	dir, _ := os.MkdirTemp("", "gwbench")
	defer os.RemoveAll(dir)
	db, err := store.Open(ctx, filepath.Join(dir, "bench.db"))
	if err != nil {
		log.Fatal(err)
	}
	audit, _ := os.Create(filepath.Join(dir, "audit.jsonl"))
	var g *gateway.Gateway
	pprof.Do(ctx, pprof.Labels("part", "gateway"), func(ctx context.Context) { // its ledger writer
		g, err = gateway.New(ctx, gateway.Config{Upstream: up, APIKey: "sk-bench", DB: db, Audit: audit})
	})
	if err != nil {
		log.Fatal(err)
	}
	tok, err := g.Issue(ctx, gateway.TokenRequest{Sandbox: "bench", BudgetUSD: 1e9, TTL: time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	gwURL := serve("gateway", g.DataHandler())
	targets := []target{{"direct", up, "sk-bench"}, {"gateway", gwURL, tok.Token}, {"httputil proxy", simpleURL, "sk-bench"}}
	if *process != "" {
		url, token, stop := startProcess(*process, up, *gwprofile)
		defer stop()
		targets = append(targets, target{"gateway process", url, token})
	}

	fmt.Printf("gateway benchmark: GOMAXPROCS=%d, %s, loopback, client+proxy+upstream in one process\n\n", runtime.GOMAXPROCS(0), runtime.Version())

	// 1 client, interleaved so that drift hits all targets alike.
	lat := make([][]time.Duration, len(targets))
	for i := 0; i < 200; i++ {
		for _, t := range targets {
			call(t, "")
		}
	}
	for i := 0; i < *n; i++ {
		for k, t := range targets {
			d, err := call(t, "")
			if err != nil {
				log.Fatalf("%s: %v", t.name, err)
			}
			lat[k] = append(lat[k], d)
		}
	}
	fmt.Printf("1 client, non-streamed 1 KB reply, %d requests each\n", *n)
	p50d, p99d := pct(lat[0], 0.5), pct(lat[0], 0.99)
	for k, t := range targets {
		p50, p99 := pct(lat[k], 0.5), pct(lat[k], 0.99)
		fmt.Printf("  %-15s p50 %8.1f µs  p99 %8.1f µs", t.name, us(p50), us(p99))
		if k > 0 {
			fmt.Printf("   added p50 %+7.1f µs  p99 %+7.1f µs", us(p50-p50d), us(p99-p99d))
		}
		fmt.Println()
	}

	// With -rounds N the targets take turns N times, dur/N each, so that
	// load from outside this process hits them alike.
	per := *dur / time.Duration(*rounds)
	if *rounds == 1 {
		fmt.Printf("\n%d concurrent clients, %s each\n", *clients, *dur)
	} else {
		fmt.Printf("\n%d concurrent clients, %s each in %d interleaved rounds of %s\n", *clients, *dur, *rounds, per)
	}
	rps := make([][]float64, len(targets))
	errs := make([]int64, len(targets))
	for r := 0; r < *rounds; r++ {
		for k, t := range targets {
			var prof *os.File
			if t.name == "gateway" && r == 0 && *tputprofile != "" && *cpuprofile == "" {
				if prof, err = os.Create(*tputprofile); err != nil {
					log.Fatal(err)
				}
				pprof.StartCPUProfile(prof)
			}
			v, e := throughput(t, *clients, per)
			if prof != nil {
				pprof.StopCPUProfile()
				prof.Close()
			}
			rps[k] = append(rps[k], v)
			errs[k] += e
		}
	}
	mean := func(v []float64) float64 {
		var s float64
		for _, x := range v {
			s += x
		}
		return s / float64(len(v))
	}
	direct := mean(rps[0])
	for k, t := range targets {
		fmt.Printf("  %-15s %8.0f req/s  errors %d  (%.0f%% of direct", t.name, mean(rps[k]), errs[k], 100*mean(rps[k])/direct)
		if *rounds > 1 && k > 0 {
			ratios := make([]float64, *rounds)
			for r := range ratios {
				ratios[r] = rps[k][r] / rps[0][r]
			}
			slices.Sort(ratios)
			fmt.Printf("; per round median %.0f%%, range %.0f..%.0f%%", 100*ratios[len(ratios)/2], 100*ratios[0], 100*ratios[len(ratios)-1])
		}
		fmt.Println(")")
	}

	fmt.Printf("\nstreamed events: %d streams x %d events, %s apart\n", *streams, streamEvents, eventGap)
	var med0 time.Duration
	for k, t := range targets {
		d := eventDelays(t, *streams)
		m := pct(d, 0.5)
		if k == 0 {
			med0 = m
		}
		fmt.Printf("  %-15s delivery delay median %7.1f µs  p99 %7.1f µs", t.name, us(m), us(pct(d, 0.99)))
		if k > 0 {
			fmt.Printf("   added per event %+7.1f µs", us(m-med0))
		}
		fmt.Println()
	}
	g.Close()
	us2, _ := gateway.ReadUsage(ctx, db)
	if len(us2) == 1 {
		fmt.Printf("\nledger: %d requests booked through the gateway, $%.2f\n", us2[0].Requests, us2[0].CostUSD)
	}
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

// startProcess runs `bin gateway` on loopback with its own MLAGENT_HOME
// (SQLite ledger, audit log and reservation journal on) and issues a
// token through its admin plane.
func startProcess(bin, upstream, profile string) (url, token string, stop func()) {
	home, err := os.MkdirTemp("", "gwbench-proc")
	if err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(bin, "gateway", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--upstream", upstream)
	cmd.Env = []string{"MLAGENT_HOME=" + home, "HOME=" + home, "ANTHROPIC_API_KEY=sk-bench",
		"MLAGENT_ADMIN_TOKEN=bench-admin", "MLAGENT_LOG_LEVEL=warn", "MLAGENT_GATEWAY_CPUPROFILE=" + profile}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	var data, admin string
	sc := bufio.NewScanner(out)
	for (data == "" || admin == "") && sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "data plane listening on "); ok {
			data = "http://" + a
		} else if a, ok := strings.CutPrefix(sc.Text(), "admin plane listening on "); ok {
			admin = "http://" + a
		}
	}
	if data == "" || admin == "" {
		log.Fatal("the gateway process did not say where it listens")
	}
	go io.Copy(io.Discard, out)
	it, err := gateway.NewAdminClient(admin, "bench-admin").Issue(context.Background(),
		gateway.TokenRequest{Sandbox: "bench", BudgetUSD: 1e9, TTL: time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	return data, it.Token, func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		os.RemoveAll(home)
	}
}
