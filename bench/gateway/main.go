// Command gateway benchmarks the mlagent gateway on loopback against a
// minimal fake upstream, side by side with direct calls and a plain
// httputil reverse proxy: added latency at one client (non-streamed, 1 KB
// reply), throughput at 64 concurrent clients, and the delay added to each
// streamed event. Client, proxies and upstream share this process's cores.
//
//	go run ./bench/gateway [-n 3000] [-dur 3s] [-clients 64] [-rounds 1]
//
// With -process BINARY it also measures `BINARY gateway` run as its own
// process (ledger, audit log and reservation journal on, as a user runs
// it) with this process as its client: the figure a user meets; and, to
// tell the cost of a process boundary from the gateway's own, a bare
// httputil.ReverseProxy run as its own process (this binary again). For
// each process it reports, per request of the latency test, the CPU its
// threads used, the time they waited for a CPU while runnable, and how
// many times they were scheduled (from /proc/PID/task/*/schedstat).
// -gwprofile FILE writes the gateway process's CPU profile. -parts picks
// the tests to run.
//
//	go build -o /tmp/mlagent ./cmd/mlagent && go run ./bench/gateway -process /tmp/mlagent -parts latency
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
	pid              int // a separate process, or 0
}

// schedStat is the sum over a process's threads of
// /proc/PID/task/TID/schedstat: time on a CPU, time runnable but waiting
// for one, and the number of times scheduled.
type schedStat struct{ run, wait, slices int64 }

func readSchedStat(pid int) schedStat {
	var s schedStat
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that ended
		}
		var run, wait, slices int64
		if n, _ := fmt.Sscan(string(b), &run, &wait, &slices); n == 3 {
			s.run += run
			s.wait += wait
			s.slices += slices
		}
	}
	return s
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
	process := flag.String("process", "", "also measure `mlagent gateway` run as its own process from this binary, and a bare reverse proxy process")
	gwprofile := flag.String("gwprofile", "", "with -process: write the gateway process's CPU profile to this file")
	parts := flag.String("parts", "latency,throughput,stream", "the tests to run, comma-separated")
	flag.IntVar(&procMaxProcs, "procs", 0, "with -process: GOMAXPROCS of the separate processes (0: their default)")
	flag.Parse()
	if up := os.Getenv(bareProxyEnv); up != "" {
		serveBareProxy(up)
		return
	}
	run := map[string]bool{}
	for _, p := range strings.Split(*parts, ",") {
		run[strings.TrimSpace(p)] = true
	}
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
	targets := []target{{"direct", up, "sk-bench", 0}, {"gateway", gwURL, tok.Token, 0}, {"httputil proxy", simpleURL, "sk-bench", 0}}
	if *process != "" {
		url, token, pid, stop := startProcess(*process, up, *gwprofile)
		defer stop()
		targets = append(targets, target{"gateway process", url, token, pid})
		burl, bpid, bstop := startBareProxy(up)
		defer bstop()
		targets = append(targets, target{"httputil process", burl, "sk-bench", bpid})
	}

	fmt.Printf("gateway benchmark: GOMAXPROCS=%d, %s, loopback, client+proxy+upstream in one process\n\n", runtime.GOMAXPROCS(0), runtime.Version())
	if run["latency"] {
		latency(targets, *n)
	}
	if run["throughput"] {
		throughputs(targets, *clients, *dur, *rounds, *tputprofile, *cpuprofile)
	}
	if run["stream"] {
		streamDelays(targets, *streams)
	}
	g.Close()
	us2, _ := gateway.ReadUsage(ctx, db)
	if len(us2) == 1 {
		fmt.Printf("\nledger: %d requests booked through the gateway, $%.2f\n", us2[0].Requests, us2[0].CostUSD)
	}
}

// latency: 1 client, the targets interleaved request by request so that
// drift and outside load hit them alike.
func latency(targets []target, n int) {
	lat := make([][]time.Duration, len(targets))
	for i := 0; i < 200; i++ {
		for _, t := range targets {
			call(t, "")
		}
	}
	before := make([]schedStat, len(targets))
	self := readSchedStat(os.Getpid())
	for k, t := range targets {
		if t.pid != 0 {
			before[k] = readSchedStat(t.pid)
		}
	}
	for i := 0; i < n; i++ {
		for k, t := range targets {
			d, err := call(t, "")
			if err != nil {
				log.Fatalf("%s: %v", t.name, err)
			}
			lat[k] = append(lat[k], d)
		}
	}
	after := readSchedStat(os.Getpid())
	fmt.Printf("1 client, non-streamed 1 KB reply, %d requests each\n", n)
	p50d, p99d := pct(lat[0], 0.5), pct(lat[0], 0.99)
	for k, t := range targets {
		p50, p99 := pct(lat[k], 0.5), pct(lat[k], 0.99)
		fmt.Printf("  %-16s p50 %8.1f µs  p99 %8.1f µs", t.name, us(p50), us(p99))
		if k > 0 {
			fmt.Printf("   added p50 %+7.1f µs  p99 %+7.1f µs", us(p50-p50d), us(p99-p99d))
		}
		fmt.Println()
	}
	// Where a separate process's time goes, per request it served.
	perReq := func(a, b schedStat, reqs int) string {
		r := float64(reqs)
		return fmt.Sprintf("on CPU %6.1f µs, runnable but waiting %6.1f µs, scheduled %4.1f times",
			float64(b.run-a.run)/r/1e3, float64(b.wait-a.wait)/r/1e3, float64(b.slices-a.slices)/r)
	}
	fmt.Printf("  per request of the latency test (/proc schedstat):\n")
	fmt.Printf("    %-16s %s (client, upstream and in-process proxies, all targets)\n", "this process", perReq(self, after, n*len(targets)))
	for k, t := range targets {
		if t.pid != 0 {
			fmt.Printf("    %-16s %s\n", t.name, perReq(before[k], readSchedStat(t.pid), n))
		}
	}
}

// throughputs: 64 clients. With rounds N the targets take turns N times,
// dur/N each, so that load from outside this process hits them alike.
func throughputs(targets []target, clients int, dur time.Duration, rounds int, tputprofile, cpuprofile string) {
	per := dur / time.Duration(rounds)
	if rounds == 1 {
		fmt.Printf("\n%d concurrent clients, %s each\n", clients, dur)
	} else {
		fmt.Printf("\n%d concurrent clients, %s each in %d interleaved rounds of %s\n", clients, dur, rounds, per)
	}
	rps := make([][]float64, len(targets))
	errs := make([]int64, len(targets))
	for r := 0; r < rounds; r++ {
		for k, t := range targets {
			var prof *os.File
			if t.name == "gateway" && r == 0 && tputprofile != "" && cpuprofile == "" {
				var err error
				if prof, err = os.Create(tputprofile); err != nil {
					log.Fatal(err)
				}
				pprof.StartCPUProfile(prof)
			}
			v, e := throughput(t, clients, per)
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
		fmt.Printf("  %-16s %8.0f req/s  errors %d  (%.0f%% of direct", t.name, mean(rps[k]), errs[k], 100*mean(rps[k])/direct)
		if rounds > 1 && k > 0 {
			ratios := make([]float64, rounds)
			for r := range ratios {
				ratios[r] = rps[k][r] / rps[0][r]
			}
			slices.Sort(ratios)
			fmt.Printf("; per round median %.0f%%, range %.0f..%.0f%%", 100*ratios[len(ratios)/2], 100*ratios[0], 100*ratios[len(ratios)-1])
		}
		fmt.Println(")")
	}
}

// streamDelays: the delay each streamed event gets.
func streamDelays(targets []target, streams int) {
	fmt.Printf("\nstreamed events: %d streams x %d events, %s apart\n", streams, streamEvents, eventGap)
	var med0 time.Duration
	for k, t := range targets {
		d := eventDelays(t, streams)
		m := pct(d, 0.5)
		if k == 0 {
			med0 = m
		}
		fmt.Printf("  %-16s delivery delay median %7.1f µs  p99 %7.1f µs", t.name, us(m), us(pct(d, 0.99)))
		if k > 0 {
			fmt.Printf("   added per event %+7.1f µs", us(m-med0))
		}
		fmt.Println()
	}
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

// procMaxProcs is GOMAXPROCS for the separate processes (0: default).
var procMaxProcs int

// procEnv is the environment of a separate process.
func procEnv(env []string) []string {
	if procMaxProcs > 0 {
		env = append(env, fmt.Sprintf("GOMAXPROCS=%d", procMaxProcs))
	}
	return env
}

// bareProxyEnv makes this binary a bare httputil.ReverseProxy process
// (startBareProxy).
const bareProxyEnv = "MLAGENT_BENCH_BARE_PROXY"

// serveBareProxy serves a ReverseProxy to upstream on loopback, as the
// in-process "httputil proxy" target, and says where on stdout.
func serveBareProxy(upstream string) {
	u, err := url.Parse(upstream)
	if err != nil {
		log.Fatal(err)
	}
	p := httputil.NewSingleHostReverseProxy(u)
	p.Transport = gateway.NewTransport()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	log.Fatal((&http.Server{Handler: p}).Serve(ln))
}

// startCmd starts cmd with its stderr on ours; sc reads its stdout, and
// rest drains what sc leaves.
func startCmd(cmd *exec.Cmd) (sc *bufio.Scanner, rest func()) {
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	return bufio.NewScanner(out), func() { io.Copy(io.Discard, out) }
}

// startBareProxy runs this binary again as a bare reverse proxy process.
func startBareProxy(upstream string) (url string, pid int, stop func()) {
	self, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = procEnv(append(os.Environ(), bareProxyEnv+"="+upstream))
	sc, rest := startCmd(cmd)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "listening on ") {
		log.Fatal("the bare proxy process did not say where it listens")
	}
	go rest()
	return "http://" + strings.TrimPrefix(sc.Text(), "listening on "), cmd.Process.Pid, func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
}

// startProcess runs `bin gateway` on loopback with its own MLAGENT_HOME
// (SQLite ledger, audit log and reservation journal on) and issues a
// token through its admin plane.
func startProcess(bin, upstream, profile string) (url, token string, pid int, stop func()) {
	home, err := os.MkdirTemp("", "gwbench-proc")
	if err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(bin, "gateway", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--upstream", upstream)
	cmd.Env = procEnv([]string{"MLAGENT_HOME=" + home, "HOME=" + home, "ANTHROPIC_API_KEY=sk-bench",
		"MLAGENT_ADMIN_TOKEN=bench-admin", "MLAGENT_LOG_LEVEL=warn", "MLAGENT_GATEWAY_CPUPROFILE=" + profile})
	sc, rest := startCmd(cmd)
	var data, admin string
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
	go rest()
	it, err := gateway.NewAdminClient(admin, "bench-admin").Issue(context.Background(),
		gateway.TokenRequest{Sandbox: "bench", BudgetUSD: 1e9, TTL: time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	return data, it.Token, cmd.Process.Pid, func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		os.RemoveAll(home)
	}
}
