package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/mlagent/mlagent/internal/dashboard"
)

func init() {
	register(&Command{
		Name:    "dashboard",
		Service: true,
		Summary: "serve the live training dashboard (Trackio metrics) on loopback",
		Run:     runDashboard,
	})
}

const dashboardHelp = `Serves a web page charting the Trackio databases that training code writes
with the trackio package, live: one chart per metric, grouped by prefix, one
line per run, with hover values, drag to zoom, log scale, a choice of x axis
(step, wall time, relative time, any metric), smoothing, each run's status and
config, and a view comparing runs. New rows appear within about a second,
without reloading; the view is kept in the page's URL. Works offline; binds to
loopback unless --listen says otherwise.`

func runDashboard(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "dashboard", "dashboard [--dir TRACKIO_DIR] [--listen ADDR]", dashboardHelp)
	dir := env.Config.Dashboard.Dir
	if dir == "" {
		dir = trackioDir(env.Config)
	}
	fs.StringVar(&dir, "dir", dir, "Trackio directory to read (default: the trackio volume; config [dashboard] dir)")
	listen := fs.String("listen", env.Config.Dashboard.Listen, "address to serve on (env MLAGENT_DASHBOARD_LISTEN)")
	if code := parseFlags(fs, args, env); code >= 0 {
		return code
	}
	if dir == trackioDir(env.Config) {
		warnTrackioInCluster(env, "dashboard")
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return ExitUsage
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent dashboard: %v\n", err)
		return ExitFailure
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		env.Log.Warn("dashboard listening beyond loopback; anyone who can reach it sees your metrics", "addr", ln.Addr())
	}
	srv, err := dashboard.New(dir, env.Log)
	if err != nil {
		ln.Close()
		fmt.Fprintf(env.Stderr, "mlagent dashboard: %v\n", err)
		return ExitFailure
	}
	defer srv.Close()
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(env.Stdout, "dashboard: http://%s/ (reading %s)\n", ln.Addr(), dir)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	// Ctrl-C stops serving cleanly (Main already handles SIGTERM).
	sigctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	select {
	case <-sigctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(env.Stderr, "mlagent dashboard: %v\n", err)
			return ExitFailure
		}
	}
	shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Close() // ends event streams so Shutdown need not wait for them
	hs.Shutdown(shut)
	return ExitOK
}
