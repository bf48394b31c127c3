package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/mlagent/mlagent/internal/gateway"
	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/secrets"
	"github.com/mlagent/mlagent/internal/store"
)

func init() {
	register(&Command{
		OwnSignals: true,
		Name:       "gateway",
		Service:    true,
		Summary:    "run the credential-swapping gateway (data and admin planes)",
		Run:        runGateway,
	})
}

const gatewayHelp = `Runs the gateway as a service. Sandboxes call the data plane (--listen) with
their per-sandbox token; the gateway swaps it for the real key (model API),
the Hugging Face token (/hf/...) or the GitHub token (/git/github.com/...), and
lets other HTTPS egress through a CONNECT proxy with a host allowlist
(config [gateway] allow). The admin plane (--admin-listen) issues and revokes
tokens and reports usage; it needs Authorization: Bearer <admin token>.

Secrets come from the environment, then the secret store (mlagent secret set
...): ANTHROPIC_API_KEY (may be empty for keyless local servers),
HF_TOKEN, GITHUB_TOKEN, MLAGENT_ADMIN_TOKEN. Without an admin token one is
generated and saved as secret "gateway-admin".

SIGINT/SIGTERM stop accepting requests and wait for open streams to finish
(a second signal stops at once). See docs/gateway.md.`

func runGateway(ctx context.Context, env *Env, args []string) int {
	gc := env.Config.Gateway
	fs := newFlagSet(env, "gateway", "gateway [flags]", gatewayHelp)
	listen := fs.String("listen", gc.Listen, "data plane address (env MLAGENT_GATEWAY_LISTEN)")
	adminListen := fs.String("admin-listen", gc.AdminListen, "admin plane address (env MLAGENT_ADMIN_LISTEN)")
	upstream := fs.String("upstream", gc.Upstream, "Anthropic-compatible API base URL (env MLAGENT_UPSTREAM)")
	hfUpstream := fs.String("hf-upstream", gc.HFUpstream, "Hugging Face Hub base URL (env MLAGENT_HF_UPSTREAM)")
	gitUpstream := fs.String("git-upstream", gc.GitUpstream, "base URL behind /git/github.com/")
	auditPath := fs.String("audit-log", env.Config.AuditLogPath(), "JSON-lines audit log file")
	unixSock := fs.String("unix", "", "also serve the data plane on this Unix socket")
	drain := fs.Duration("drain", 10*time.Minute, "how long shutdown waits for open streams")
	adminAuth := fs.String("admin-auth", "token", `admin plane authentication: token, or none for a loopback admin address only the operator's tools reach (a pod's loopback, reached through a port-forward the cluster's RBAC allows)`)
	serveBinary := fs.String("serve-binary", "", "serve this file at GET /_mlagent/mlagent on the data plane (the binary mlagent's in-cluster services start from)")
	if code := parseFlags(fs, args, env); code >= 0 {
		return code
	}
	switch *adminAuth {
	case "token":
	case "none":
		if !loopbackAddr(*adminListen) {
			fmt.Fprintf(env.Stderr, "mlagent gateway: --admin-auth none needs a loopback --admin-listen, not %s\n", *adminListen)
			return ExitUsage
		}
	default:
		fmt.Fprintf(env.Stderr, "mlagent gateway: --admin-auth %q: want token or none\n", *adminAuth)
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return ExitUsage
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(env.Stderr, "mlagent gateway: "+format+"\n", a...)
		return ExitFailure
	}

	st := secrets.Open(env.Config.SecretsPath())
	var keys [4]string
	for i, k := range []string{secrets.AnthropicKey, secrets.HFToken, secrets.GitHubToken, secrets.AdminToken} {
		v, err := st.Resolve(k, env.Getenv)
		if err != nil {
			return fail("%v", err)
		}
		keys[i] = v
	}
	apiKey, hfToken, ghToken, adminToken := keys[0], keys[1], keys[2], keys[3]
	if *adminAuth == "none" {
		// A token nobody is told: the handler below adds it to every
		// request that reached the loopback admin address.
		var b [32]byte
		rand.Read(b[:])
		adminToken = hex.EncodeToString(b[:])
	} else if adminToken == "" {
		var b [32]byte
		rand.Read(b[:])
		adminToken = hex.EncodeToString(b[:])
		if err := st.Set("gateway-admin", map[string]string{secrets.AdminToken: adminToken}); err != nil {
			return fail("save admin token: %v", err)
		}
		fmt.Fprintf(env.Stdout, "generated an admin token, saved as secret gateway-admin (%s) key %s\n", st.Path(), secrets.AdminToken)
		if f, ok := env.Stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			fmt.Fprintf(env.Stdout, "admin token (shown once): %s\n", adminToken)
		}
	}
	if apiKey == "" && strings.Contains(*upstream, "api.anthropic.com") {
		env.Log.Warn("no ANTHROPIC_API_KEY in the secret store or environment; upstream calls will fail", "upstream", *upstream)
	}

	db, err := store.Open(ctx, env.Config.StorePath())
	if err != nil {
		return fail("%v", err)
	}
	defer db.Close()
	if err := os.MkdirAll(filepath.Dir(*auditPath), 0o700); err != nil {
		return fail("audit log: %v", err)
	}
	audit, err := os.OpenFile(*auditPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fail("audit log: %v", err)
	}
	defer audit.Close()

	g, err := gateway.New(ctx, gateway.Config{
		Upstream: *upstream, HFUpstream: *hfUpstream, GitUpstream: *gitUpstream,
		APIKey: apiKey, HFToken: hfToken, GitHubToken: ghToken,
		Allow: gc.Allow, DB: db, Audit: audit, Log: env.Log,
		Services: launch.Services(ctx, env.Config, env.Log),
	})
	if err != nil {
		return fail("%v", err)
	}
	defer g.Close()

	type served struct {
		name string
		ln   net.Listener
		srv  *http.Server
	}
	newServer := func(h http.Handler) *http.Server {
		// No read/write timeouts: bodies and streams may be slow and long.
		// Idle keep-alive connections are closed after 15 minutes.
		return &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 15 * time.Minute}
	}
	var servers []served
	closeAll := func() {
		for _, s := range servers {
			s.ln.Close()
		}
	}
	dataLn, err := net.Listen("tcp", *listen)
	if err != nil {
		return fail("data plane: %v", err)
	}
	data := g.DataHandler()
	if *serveBinary != "" {
		data = withBinary(data, *serveBinary)
	}
	servers = append(servers, served{"data", dataLn, newServer(data)})
	adminLn, err := net.Listen("tcp", *adminListen)
	if err != nil {
		closeAll()
		return fail("admin plane: %v", err)
	}
	admin := g.AdminHandler(adminToken)
	if *adminAuth == "none" {
		admin = withAdminToken(admin, adminToken)
	}
	servers = append(servers, served{"admin", adminLn, newServer(admin)})
	if *unixSock != "" {
		os.Remove(*unixSock)
		uln, err := net.Listen("unix", *unixSock)
		if err != nil {
			closeAll()
			return fail("unix socket: %v", err)
		}
		os.Chmod(*unixSock, 0o600)
		servers = append(servers, served{"data (unix)", uln, newServer(g.DataHandler())})
	}
	for _, s := range servers {
		fmt.Fprintf(env.Stdout, "%s plane listening on %s\n", s.name, s.ln.Addr())
	}
	fmt.Fprintf(env.Stdout, "upstream %s; audit log %s\n", *upstream, *auditPath)

	if path := env.Getenv("MLAGENT_GATEWAY_CPUPROFILE"); path != "" {
		// For bench/gateway's out-of-process runs: where the gateway
		// process spends its CPU, written at shutdown.
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	sigCtx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() {
			if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s plane: %w", s.name, err)
			}
		}()
	}
	code := ExitOK
	select {
	case <-sigCtx.Done():
	case err := <-errc:
		env.Log.Error("server failed", "err", err)
		code = ExitFailure
	}
	stop()
	env.Log.Info("shutting down; draining open streams", "max_wait", *drain)
	// A second signal cuts the drain short.
	hard := make(chan os.Signal, 1)
	signal.Notify(hard, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(hard)
	dctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	go func() {
		select {
		case <-hard:
			cancel()
		case <-dctx.Done():
		}
	}()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.srv.Shutdown(dctx); err != nil {
				s.srv.Close()
			}
		}()
	}
	wg.Wait()
	if err := g.Close(); err != nil {
		env.Log.Error("close gateway", "err", err)
	}
	if *unixSock != "" {
		os.Remove(*unixSock)
	}
	env.Log.Info("gateway stopped")
	return code
}

// loopbackAddr reports whether addr (host:port) listens on loopback only.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// withAdminToken authorises every request with the admin token: for an
// admin plane on loopback whose callers the platform already checked.
func withAdminToken(h http.Handler, token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+token)
		h.ServeHTTP(w, r)
	})
}

// binaryPath is where the data plane serves the mlagent binary the
// cluster's dashboard and syncer start from (it is not secret; the
// gateway's keys never pass through here).
const binaryPath = "/_mlagent/mlagent"

func withBinary(h http.Handler, file string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != binaryPath {
			h.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeFile(w, r, file)
	})
}
