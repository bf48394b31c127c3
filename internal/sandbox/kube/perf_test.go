package kube_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/config"
	"github.com/mlagent/mlagent/internal/fakeapi"
	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/kube"
	"github.com/mlagent/mlagent/internal/sessions"
)

// BenchmarkAgentStart measures what `mlagent run --backend kubernetes`
// waits for before the first agent event, by phase, on the test bed: the
// pod created, scheduled with its image ready and the install container
// running, the binary delivered, the boot files written, the sandbox
// container running, init answering, `mlagent agent` ready (its first
// event), and the first streamed text of a reply (the model is a fake on
// this host, behind the gateway). Each phase is reported in ms:
//
//	go test -run '^$' -bench AgentStart -benchtime 10x ./internal/sandbox/kube/
func BenchmarkAgentStart(b *testing.B) {
	e := newEnv(b)
	e.c.Volume(b, e.ns, "mlagent-data", "1Gi")
	e.c.Volume(b, e.ns, "mlagent-trackio", "1Gi")
	up := fakeapi.Start(fakeapi.Options{APIKey: "sk-ant-bench", Responder: fakeapi.ResponderFunc(func(*fakeapi.Request) *fakeapi.Reply {
		return fakeapi.Text("ready to train")
	})})
	defer up.Close()
	// Two hosts, one delivering mlagent gzip-compressed (the default), one
	// plain, used in turn so that the machine's load falls on both alike.
	hosts := map[string]*launch.Host{}
	for _, mode := range []string{"gzip", "plain"} {
		cfg := config.Defaults()
		cfg.Home = b.TempDir()
		cfg.Kubernetes.GatewayListen = e.c.HostIP + ":0"
		backend := e.backend(b, func(o *kube.Options) { o.PlainDelivery = mode == "plain" })
		h, err := launch.Start(context.Background(), launch.Options{Config: cfg, Upstream: up.URL(), ModelKey: "sk-ant-bench", Backend: backend})
		if err != nil {
			b.Fatal(err)
		}
		defer h.Close()
		hosts[mode] = h
	}
	phases := map[string][]time.Duration{}
	var order []string
	add := func(name string, d time.Duration) {
		if _, ok := phases[name]; !ok {
			order = append(order, name)
		}
		phases[name] = append(phases[name], d)
	}
	b.ResetTimer()
	for i := range b.N {
		mode := []string{"gzip", "plain"}[i%2]
		h := hosts[mode]
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		t0 := time.Now()
		a, err := h.StartAgent(ctx, launch.AgentRequest{Session: sessions.Session{
			ID: sessions.NewID(time.Now()), Model: "claude-sonnet-5-5", Volumes: sandbox.DefaultMounts(),
		}})
		if err != nil {
			cancel()
			b.Fatal(err)
		}
		events := protocol.NewEventReader(a.Events())
		ev, _, err := events.Next()
		tReady := time.Now()
		if err != nil || ev.Type != protocol.EventReady {
			b.Fatalf("first event: %+v, %v (agent: %v)", ev, err, a.Wait(ctx))
		}
		a.Send(protocol.Input{Type: protocol.InputUserMessage, Text: "hello"})
		var seen []string
		for {
			var line []byte
			ev, line, err = events.Next()
			if err != nil {
				b.Fatalf("%v after %s (agent: %v)", err, seen, a.Wait(ctx))
			}
			seen = append(seen, string(line))
			if ev.Type == protocol.EventTextDelta {
				break
			}
		}
		tText := time.Now()
		ks, ok := a.Sandbox.Sandbox.(*kube.Sandbox)
		if !ok {
			b.Fatalf("sandbox %T is not a pod", a.Sandbox.Sandbox)
		}
		prev := t0
		add(mode+": token issued, spec checked", ks.Phases[0].At.Sub(t0))
		for _, p := range ks.Phases[1:] {
			add(mode+": "+p.Name, p.At.Sub(prev))
			prev = p.At
		}
		add(mode+": agent started (first event)", tReady.Sub(prev))
		add(mode+": first streamed text of a reply", tText.Sub(tReady))
		add(mode+": total to the first event", tReady.Sub(t0))
		a.Terminate(context.Background())
		cancel()
	}
	b.StopTimer()
	var report []string
	for _, name := range order {
		ds := phases[name]
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		med := ds[len(ds)/2]
		b.ReportMetric(float64(med.Microseconds())/1000, strings.NewReplacer(" ", "_", ":", "", ",", "").Replace(name)+"-ms")
		report = append(report, fmt.Sprintf("%-50s median %7.0f ms  (min %.0f, max %.0f, n=%d)", name, ms(med), ms(ds[0]), ms(ds[len(ds)-1]), len(ds)))
	}
	fmt.Fprintln(os.Stderr, strings.Join(report, "\n"))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
