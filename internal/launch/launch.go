// Package launch wires the parts a chat needs into one host: the gateway
// (in-process, or a shared one reached through its admin plane), a
// sandbox backend, and a per-sandbox token that is issued when a sandbox is
// created and revoked when it ends. It is the only place where the real
// keys and the sandboxes meet, and the keys stay on this side.
package launch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/mlagent/mlagent/internal/config"
	"github.com/mlagent/mlagent/internal/gateway"
	"github.com/mlagent/mlagent/internal/models"
	"github.com/mlagent/mlagent/internal/relay"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/kube"
	"github.com/mlagent/mlagent/internal/secrets"
	"github.com/mlagent/mlagent/internal/sessions"
	"github.com/mlagent/mlagent/internal/store"
)

// Options configures a Host.
type Options struct {
	Config *config.Config
	Log    *slog.Logger
	// Upstream is the model API base URL; "" means Config.Gateway.Upstream.
	Upstream string
	// ModelKey is the real model key; "" is allowed for keyless local
	// servers (Ollama, llama.cpp).
	ModelKey             string
	HFToken, GitHubToken string
	// HFUpstream overrides Config.Gateway.HFUpstream.
	HFUpstream string
	// RemoteGateway is a shared gateway's data-plane URL; AdminURL and
	// AdminToken reach its admin plane. Empty: run the gateway in-process.
	RemoteGateway, AdminURL, AdminToken string
	// Backend overrides the sandbox backend chosen by Config.Sandbox.Backend.
	Backend sandbox.Backend
	// Services are the gateway's third-party routes (Drive, Notion); nil
	// builds them from the secret store and config (Services).
	Services []gateway.Service
	// Binary is the mlagent binary bound into sandboxes; "" = os.Executable().
	Binary string
}

// tokenIssuer is what a Host needs of a gateway: the in-process one and
// the admin client of a shared one both provide it.
type tokenIssuer interface {
	Issue(ctx context.Context, r gateway.TokenRequest) (gateway.IssuedToken, error)
	Revoke(ctx context.Context, id string) error
	Usage(ctx context.Context) ([]gateway.TokenUsage, error)
}

// TokenLabel is the sandbox label that names its gateway token, so that
// the token of a sandbox found dead is revoked exactly, even on a shared
// gateway where another host may use the same sandbox name.
const TokenLabel = "mlagent-token-id"

// Host owns a gateway connection, the way sandboxes reach it (a Unix
// socket, or an address), and a sandbox backend. Safe for concurrent use.
type Host struct {
	opts   Options
	log    *slog.Logger
	db     *store.DB
	gw     *gateway.Gateway // nil with a remote gateway
	tokens tokenIssuer
	access sandbox.GatewayAccess // without the token
	// here is how this host reaches the data plane the sandboxes use
	// (the socket, the listener, or a port-forward to a deployed one).
	here   sandbox.GatewayAccess
	socket string
	ln     net.Listener
	srv    *http.Server
	// closeGateway ends the port-forward to a deployed gateway.
	closeGateway func()
	backend      sandbox.Backend
	sessions     *sessions.Index

	mu     sync.Mutex
	closed bool
}

// Keys are the real secrets a host passes to its gateway, and the admin
// token of a shared gateway.
type Keys struct {
	Model, HF, GitHub, Admin string
	// ModelSource says where Model came from: "$ANTHROPIC_API_KEY" or
	// `secret "anthropic"`; for messages about the key, never its value.
	ModelSource string
	// Notes are for the user: an exported key hiding a different stored
	// one.
	Notes []string
}

// ResolveKeys reads the model key, HF token, GitHub token and a shared
// gateway's admin token: an exported variable wins over the secret
// store, as with the Anthropic SDK and Claude Code.
func ResolveKeys(cfg *config.Config, getenv func(string) string) (Keys, error) {
	st := secrets.Open(cfg.SecretsPath())
	var k Keys
	m, err := st.ResolveFrom(secrets.AnthropicKey, getenv)
	if err != nil {
		return Keys{}, err
	}
	k.Model, k.ModelSource = m.Value, m.Source
	if m.Shadowed != "" {
		k.Notes = append(k.Notes, fmt.Sprintf("using $%s from the environment; it differs from the key in %s", secrets.AnthropicKey, m.Shadowed))
	}
	if k.HF, err = st.Resolve(secrets.HFToken, getenv); err != nil {
		return Keys{}, err
	}
	if k.GitHub, err = st.Resolve(secrets.GitHubToken, getenv); err != nil {
		return Keys{}, err
	}
	if k.Admin, err = st.Resolve(secrets.AdminToken, getenv); err != nil {
		return Keys{}, err
	}
	return k, nil
}

// networkGateway is a backend whose sandboxes reach the gateway by
// address rather than through a host socket (pods), and that can find the
// gateway deployed for them.
type networkGateway interface {
	// Gateway returns where sandboxes reach the deployed gateway's data
	// plane, and where this host reaches both its planes (port-forwards,
	// ended by the endpoints' Close).
	Gateway(ctx context.Context) (kube.Endpoints, error)
}

// Start opens the store, creates the sandbox backend, and starts (or
// connects to) the gateway where the backend's sandboxes reach it: a
// private Unix socket for local sandboxes; for pods, the gateway deployed
// in the cluster, or one run here on a TCP address the pods reach.
func Start(ctx context.Context, o Options) (_ *Host, err error) {
	if o.Config == nil {
		return nil, errors.New("launch: no config")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h := &Host{opts: o, log: o.Log}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	if h.db, err = store.Open(ctx, o.Config.StorePath()); err != nil {
		return nil, err
	}
	if h.sessions, err = sessions.Open(ctx, h.db); err != nil {
		return nil, err
	}
	if h.backend = o.Backend; h.backend == nil {
		if h.backend, err = NewBackend(ctx, o.Config, h.db, o.Binary, o.Log); err != nil {
			return nil, err
		}
	}
	netGW, byAddress := h.backend.(networkGateway)
	switch {
	case o.RemoteGateway != "":
		if o.AdminURL == "" {
			return nil, errors.New("launch: --gateway needs the admin plane URL too (--gateway-admin)")
		}
		h.tokens = gateway.NewAdminClient(o.AdminURL, o.AdminToken)
		addr, err := hostPort(o.RemoteGateway)
		if err != nil {
			return nil, err
		}
		if byAddress {
			h.access = sandbox.GatewayAccess{Network: "tcp", Address: addr}
			h.here = h.access
			break
		}
		ln, err := h.listenSocket()
		if err != nil {
			return nil, err
		}
		go relay.Serve(context.WithoutCancel(ctx), ln, "tcp", addr, h.log)
	case byAddress && o.Config.Kubernetes.GatewayListen == "":
		ep, err := netGW.Gateway(ctx)
		if err != nil {
			return nil, err
		}
		h.closeGateway = ep.Close
		// The deployed gateway's admin plane is on its pod's loopback,
		// reached only through a port-forward the cluster's RBAC allows.
		h.tokens = gateway.NewAdminClient(ep.AdminURL, o.AdminToken)
		h.access = sandbox.GatewayAccess{Network: "tcp", Address: ep.Data}
		h.here = sandbox.GatewayAccess{Network: "tcp", Address: ep.Local}
	default:
		if err := h.startGateway(ctx); err != nil {
			return nil, err
		}
		var ln net.Listener
		if byAddress {
			if ln, err = net.Listen("tcp", o.Config.Kubernetes.GatewayListen); err != nil {
				return nil, fmt.Errorf("launch: gateway for pods: %w", err)
			}
			h.ln = ln
			addr := ln.Addr().String()
			h.here = sandbox.GatewayAccess{Network: "tcp", Address: addr}
			if a := o.Config.Kubernetes.GatewayAddress; a != "" {
				addr = a
			}
			h.access = sandbox.GatewayAccess{Network: "tcp", Address: addr}
		} else if ln, err = h.listenSocket(); err != nil {
			return nil, err
		}
		h.srv = &http.Server{Handler: h.gw.DataHandler(), ReadHeaderTimeout: 30 * time.Second}
		go h.srv.Serve(ln)
	}
	reap(ctx, h.backend, h.revokeOrphans(ctx), h.log)
	return h, nil
}

// listenSocket serves the sandboxes' side of the gateway on a private
// Unix socket under $MLAGENT_HOME/run.
func (h *Host) listenSocket() (net.Listener, error) {
	runDir := filepath.Join(h.opts.Config.Home, "run")
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	h.socket = filepath.Join(runDir, "gw-"+strconv.Itoa(os.Getpid())+".sock")
	os.Remove(h.socket)
	ln, err := net.Listen("unix", h.socket)
	if err != nil {
		return nil, fmt.Errorf("launch: gateway socket: %w", err)
	}
	h.ln = ln
	h.access = sandbox.GatewayAccess{Network: "unix", Address: h.socket}
	h.here = h.access
	return ln, nil
}

// startGateway starts the gateway in this process.
func (h *Host) startGateway(ctx context.Context) error {
	o := h.opts
	gc := gateway.Config{
		Upstream:    firstNonEmpty(o.Upstream, o.Config.Gateway.Upstream),
		HFUpstream:  firstNonEmpty(o.HFUpstream, o.Config.Gateway.HFUpstream),
		GitUpstream: o.Config.Gateway.GitUpstream,
		APIKey:      o.ModelKey,
		HFToken:     o.HFToken,
		GitHubToken: o.GitHubToken,
		Allow:       o.Config.Gateway.Allow,
		DB:          h.db,
		Log:         o.Log.With("part", "gateway"),
		Services:    o.Services,
	}
	if gc.Services == nil {
		gc.Services = Services(ctx, o.Config, o.Log)
	}
	audit, err := os.OpenFile(o.Config.AuditLogPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("launch: audit log: %w", err)
	}
	gc.Audit = audit
	if h.gw, err = gateway.New(ctx, gc); err != nil {
		audit.Close()
		return fmt.Errorf("launch: start gateway: %w", err)
	}
	h.tokens = h.gw
	return nil
}

// revokeOrphans revokes the tokens of sandboxes that died without
// Terminate (their CLI was killed): the token must not outlive its
// sandbox by its TTL. With a shared gateway it asks its admin plane. A
// sandbox labelled with its token's id revokes that token only; one
// without (made before the label) every token issued for its name, with
// the in-process gateway only.
//
// It returns the dead sandboxes the backend may now forget: those whose
// tokens it revoked, and those it could not revoke by name (a shared
// gateway's, made before the label), which nothing later would revoke.
func (h *Host) revokeOrphans(ctx context.Context) (reapable []string) {
	infos, err := h.backend.List(ctx)
	if err != nil {
		h.log.Warn("list sandboxes for orphaned tokens", "err", err)
		return nil
	}
	deadIDs, deadNames := map[string]bool{}, map[string]bool{}
	failed := map[string]bool{} // sandboxes with a token left valid
	var dead []string
	for _, in := range infos {
		if in.State == sandbox.StateDead {
			dead = append(dead, in.Name)
		}
		switch {
		case in.State != sandbox.StateDead:
		case in.Labels[TokenLabel] != "":
			deadIDs[in.Labels[TokenLabel]] = true
		case h.gw != nil:
			// By name only in-process: a shared gateway's tokens may
			// belong to another host's sandbox of the same name.
			deadNames[in.Name] = true
		}
	}
	if len(deadIDs)+len(deadNames) == 0 {
		return dead
	}
	usage, err := h.tokens.Usage(ctx)
	if err != nil {
		h.log.Warn("read tokens for orphaned tokens", "err", err)
		return nil
	}
	for _, u := range usage {
		if u.RevokedAt == nil && (deadIDs[u.ID] || deadNames[u.Sandbox]) {
			if err := h.tokens.Revoke(ctx, u.ID); err != nil {
				h.log.Warn("revoke orphaned token", "token", u.ID, "err", err)
				failed[u.Sandbox] = true
			} else {
				h.log.Info("revoked the token of a dead sandbox", "token", u.ID, "sandbox", u.Sandbox)
			}
		}
	}
	for _, name := range dead {
		if !failed[name] {
			reapable = append(reapable, name)
		}
	}
	return reapable
}

// reap lets the backend free what the named dead sandboxes left: their
// records, cgroups and empty workspaces.
func reap(ctx context.Context, b sandbox.Backend, names []string, log *slog.Logger) {
	if r, ok := b.(sandbox.Reaper); ok && len(names) > 0 {
		if err := r.Reap(ctx, names); err != nil {
			log.Warn("reap dead sandboxes", "err", err)
		}
	}
}

// ReapDead is for the commands that open the backend without a gateway of
// their own (sandbox ls, exec, kill, rm; volume rm), so that a killed
// CLI's debris lasts only until the next command: it revokes, in the
// store, the tokens of the dead sandboxes (by the token id label; by name,
// those issued before the sandbox was created, for a sandbox made before
// the label), then reaps those sandboxes. One whose token is not in this
// store (a shared gateway's) is left for the next `mlagent run --gateway`,
// which revokes it through the admin plane. Failures are logged: they must
// not stop the command.
func ReapDead(ctx context.Context, db *store.DB, b sandbox.Backend, log *slog.Logger) {
	infos, err := b.List(ctx)
	if err != nil {
		log.Warn("list sandboxes to reap dead ones", "err", err)
		return
	}
	var names []string
	for _, in := range infos {
		if in.State != sandbox.StateDead {
			continue
		}
		var err error
		if id := in.Labels[TokenLabel]; id != "" {
			err = gateway.RevokeStored(ctx, db, id)
		} else {
			before := in.Created
			if before.IsZero() {
				before = time.Now()
			}
			_, err = gateway.RevokeSandbox(ctx, db, in.Name, before)
		}
		if err != nil {
			log.Debug("dead sandbox left for a command with its gateway", "sandbox", in.Name, "err", err)
			continue
		}
		names = append(names, in.Name)
	}
	reap(ctx, b, names, log)
}

// Gateway is the in-process gateway, or nil with a shared one.
func (h *Host) Gateway() *gateway.Gateway { return h.gw }

// DB is the store the host opened.
func (h *Host) DB() *store.DB { return h.db }

// Sessions is the sessions index in the host's store.
func (h *Host) Sessions() *sessions.Index { return h.sessions }

// Backend is the sandbox backend in use.
func (h *Host) Backend() sandbox.Backend { return h.backend }

// SandboxRequest describes a sandbox for a chat.
type SandboxRequest struct {
	Name         string
	Volumes      []sandbox.Mount // nil: sandbox.DefaultMounts()
	Binds        []sandbox.Bind  // the user's host directories
	GPU          sandbox.GPUMode
	GPUCount     int    // a cluster's: how many (0 = one)
	GPUType      string // and which product ("" = any)
	BudgetUSD    float64
	BudgetTokens int64
	TTL          time.Duration // token lifetime; 0: 24h
	Labels       map[string]string
	Env          map[string]string
	// Timeout and IdleTimeout end the sandbox (see sandbox.Spec); its
	// token is revoked by Terminate or, if nobody calls it, at the next Start.
	Timeout, IdleTimeout time.Duration
	// CPUs and MemoryBytes limit the sandbox where the backend can.
	CPUs        float64
	MemoryBytes int64
	// Pids bounds its tasks: 0 is config sandbox.pids, sandbox.NoPidsLimit none.
	Pids int
	// Image is the OCI image to run on ("" for the backend's default);
	// a backend that prepares images (the local one pulls a missing one)
	// draws its progress on Progress (nil: nowhere).
	Image    string
	Progress io.Writer
}

// Sandbox is a sandbox whose token dies with it.
type Sandbox struct {
	sandbox.Sandbox
	TokenID string
	token   string // the sandbox's own token, for ListModels
	host    *Host
	once    sync.Once
	termErr error
}

// pids is the process limit for a request's Pids.
func (h *Host) pids(req int) int {
	if req != 0 {
		return req
	}
	if n := h.opts.Config.Sandbox.Pids; n > 0 {
		return n
	}
	return sandbox.NoPidsLimit // config sandbox.pids = 0
}

// NewSandbox issues a token, creates the sandbox with the gateway as its
// only way out, and revokes the token again if creation fails.
func (h *Host) NewSandbox(ctx context.Context, r SandboxRequest) (*Sandbox, error) {
	name := r.Name
	if name == "" {
		name = "mlagent-" + strconv.FormatInt(time.Now().UnixNano()%1e10, 36)
	}
	ttl := r.TTL
	if ttl == 0 {
		ttl = 24 * time.Hour
	}
	// Before the token: a missing, unreachable or refused image is a
	// clear error with nothing issued or started.
	if err := sandbox.PrepareImage(ctx, h.backend, r.Image, r.Progress); err != nil {
		return nil, err
	}
	tok, err := h.tokens.Issue(ctx, gateway.TokenRequest{
		Sandbox: name, BudgetUSD: r.BudgetUSD, BudgetTokens: r.BudgetTokens, TTL: ttl,
	})
	if err != nil {
		return nil, fmt.Errorf("issue sandbox token: %w", err)
	}
	vols := r.Volumes
	if vols == nil {
		vols = sandbox.DefaultMounts()
	}
	labels := make(map[string]string, len(r.Labels)+1)
	for k, v := range r.Labels {
		labels[k] = v
	}
	labels[TokenLabel] = tok.ID
	sb, err := h.backend.Create(ctx, sandbox.Spec{
		Name:     name,
		Volumes:  vols,
		Binds:    r.Binds,
		Env:      r.Env,
		GPU:      r.GPU,
		GPUCount: r.GPUCount,
		GPUType:  r.GPUType,
		Gateway:  h.gatewayFor(tok.Token),
		Labels:   labels,
		Image:    r.Image,

		Timeout:     r.Timeout,
		IdleTimeout: r.IdleTimeout,
		CPUs:        r.CPUs,
		MemoryBytes: r.MemoryBytes,
		Pids:        h.pids(r.Pids),
	})
	if err != nil {
		if rerr := h.tokens.Revoke(context.WithoutCancel(ctx), tok.ID); rerr != nil {
			h.log.Warn("revoke token after failed create", "token", tok.ID, "err", rerr)
		}
		return nil, err
	}
	h.log.Debug("sandbox ready", "sandbox", sb.Name(), "token", tok.ID)
	return &Sandbox{Sandbox: sb, TokenID: tok.ID, token: tok.Token, host: h}, nil
}

// ListModels lists the models the user's key can use, asked through the
// gateway with the sandbox's token, as the agent inside would: so it
// works with the in-process gateway and a shared one alike, and the
// gateway books and audits it.
func (s *Sandbox) ListModels(ctx context.Context) ([]models.Info, error) {
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, s.host.here.Network, s.host.here.Address)
		},
		DisableCompression: true,
	}}
	defer hc.CloseIdleConnections()
	return models.List(ctx, hc, "http://gateway", s.token)
}

// ModelsCacheKey names what the list of models depends on: the upstream
// and the key (the in-process gateway), or the shared gateway.
func (h *Host) ModelsCacheKey() string {
	if h.opts.RemoteGateway != "" {
		return "gateway " + h.opts.RemoteGateway
	}
	return "upstream " + firstNonEmpty(h.opts.Upstream, h.opts.Config.Gateway.Upstream) + " key " + h.opts.ModelKey
}

// Terminate ends the sandbox and revokes its token, even when the
// sandbox had already died. Later calls return the first result.
func (s *Sandbox) Terminate(ctx context.Context) error {
	s.once.Do(func() {
		if s.host.gw != nil {
			s.host.gw.SetApprover(s.TokenID, nil)
		}
		err := s.Sandbox.Terminate(ctx)
		rerr := s.host.tokens.Revoke(context.WithoutCancel(ctx), s.TokenID)
		if rerr != nil {
			rerr = fmt.Errorf("revoke token %s: %w", s.TokenID, rerr)
		}
		s.termErr = errors.Join(err, rerr)
	})
	return s.termErr
}

// gatewayFor is the sandboxes' way to the gateway with token.
func (h *Host) gatewayFor(token string) *sandbox.GatewayAccess {
	a := h.access
	a.Token = token
	return &a
}

// Close stops serving the gateway socket and closes the gateway and store.
// Sandboxes should be terminated first.
func (h *Host) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	var errs []error
	if h.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, h.srv.Shutdown(ctx))
		cancel()
	} else if h.ln != nil {
		h.ln.Close()
	}
	if h.socket != "" {
		os.Remove(h.socket)
	}
	if h.closeGateway != nil {
		h.closeGateway()
	}
	if h.gw != nil {
		errs = append(errs, h.gw.Close())
	}
	if h.db != nil {
		errs = append(errs, h.db.Close())
	}
	return errors.Join(errs...)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
