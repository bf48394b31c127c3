package launch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/config"
	"github.com/mlagent/mlagent/internal/fakeapi"
	"github.com/mlagent/mlagent/internal/gateway"
	"github.com/mlagent/mlagent/internal/launch/launchtest"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
	"github.com/mlagent/mlagent/internal/store"
	"github.com/mlagent/mlagent/internal/testbin"
)

func TestMain(m *testing.M) { os.Exit(testbin.Main(m)) }

const realKey = "sk-ant-REAL-KEY-must-never-enter-the-sandbox"

// pyCall posts one Messages request from inside the sandbox with the
// sandbox's environment, and prints the HTTP status.
const pyCall = `
import os, urllib.request, urllib.error, json
req = urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages",
    data=json.dumps({"model": "claude-sonnet-5-5", "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}]}).encode(),
    headers={"x-api-key": os.environ["ANTHROPIC_API_KEY"], "anthropic-version": "2023-06-01",
        "content-type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        print(r.status, json.load(r)["content"][0]["text"])
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
`

func TestSandboxReachesModelOnlyThroughGateway(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("/usr/bin/python3 is not installed")
	}
	ctx := context.Background()
	up := fakeapi.Start(fakeapi.Options{APIKey: realKey, Responder: fakeapi.ResponderFunc(func(*fakeapi.Request) *fakeapi.Reply {
		return fakeapi.Text("hello from upstream")
	})})
	defer up.Close()

	home, err := os.MkdirTemp("", "mlh") // short: Unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(home)
	cfg := config.Defaults()
	cfg.Home = home
	h, err := Start(ctx, Options{Config: cfg, Upstream: up.URL(), ModelKey: realKey, Binary: testbin.Path(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	sb, err := h.NewSandbox(ctx, SandboxRequest{BudgetUSD: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Terminate(ctx)

	var out, errb bytes.Buffer
	code, err := sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{"/usr/bin/python3", "-c", pyCall}, Stdout: &out, Stderr: &errb})
	if err != nil || code != 0 {
		t.Fatalf("python in sandbox: code %d err %v\n%s%s", code, err, out.String(), errb.String())
	}
	if got := strings.TrimSpace(out.String()); got != "200 hello from upstream" {
		t.Fatalf("got %q; want the upstream's reply through the gateway", got)
	}

	// The real key is nowhere the sandbox can look.
	out.Reset()
	sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{"/bin/sh", "-c",
		"env; cat /proc/self/environ /proc/1/environ /proc/1/cmdline 2>/dev/null; grep -rs . /etc/mlagent /workspace /data 2>/dev/null | head -c 100000"},
		Stdout: &out, Stderr: io.Discard})
	if strings.Contains(out.String(), realKey) {
		t.Fatal("the real model key is visible inside the sandbox")
	}

	// After Terminate the sandbox's token is worthless.
	tok := tokenFromEnv(t, out.String())
	if err := sb.Terminate(ctx); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
	req := httptest.NewRequest("POST", "/v1/messages", strings.NewReader(`{"model":"claude-sonnet-5-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("x-api-key", tok)
	req.Header.Set("anthropic-version", "2023-06-01")
	rec := httptest.NewRecorder()
	h.Gateway().DataHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("revoked token: status %d; want 401: %s", rec.Code, rec.Body.String())
	}
}

func tokenFromEnv(t *testing.T, env string) string {
	for _, l := range strings.Split(env, "\n") {
		if v, ok := strings.CutPrefix(l, "ANTHROPIC_API_KEY="); ok {
			return v
		}
	}
	t.Fatalf("no ANTHROPIC_API_KEY inside the sandbox:\n%s", env)
	return ""
}

func TestCreateFailureRevokesToken(t *testing.T) {
	ctx := context.Background()
	h := startHost(t, testConfig(t), failingBackend{})
	defer h.Close()
	if _, err := h.NewSandbox(ctx, SandboxRequest{}); err == nil {
		t.Fatal("NewSandbox succeeded with a failing backend")
	}
	checkAllRevoked(t, h, "after a failed create")
}

// checkAllRevoked fails the test for each token of h's gateway that is
// still valid.
func checkAllRevoked(t *testing.T, h *Host, when string) {
	t.Helper()
	usage, err := h.Gateway().Usage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range usage {
		if u.RevokedAt == nil {
			t.Errorf("token %s still valid %s", u.ID, when)
		}
	}
}

// testConfig is launchtest.Config: a temporary home, short because Unix
// socket paths live under it.
func testConfig(t *testing.T) *config.Config { return launchtest.Config(t) }

// startHost starts a host on backend b whose upstream is never reached.
func startHost(t *testing.T, cfg *config.Config, b sandbox.Backend) *Host {
	t.Helper()
	h, err := Start(context.Background(), Options{Config: cfg, Upstream: "http://127.0.0.1:1", ModelKey: realKey, Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

type failingBackend struct{ sandbox.Backend }

func (failingBackend) Create(context.Context, sandbox.Spec) (sandbox.Sandbox, error) {
	return nil, fmt.Errorf("no sandbox today")
}

// A sandbox whose CLI was killed (kill -9) is recorded dead; the next
// host revokes its token rather than leave it valid for its TTL.
func TestStartRevokesTokensOfDeadSandboxes(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	be := &listBackend{}
	h := startHost(t, cfg, be)
	var ids []string
	for _, name := range []string{"alive", "dead"} {
		tok, err := h.Gateway().Issue(ctx, gateway.TokenRequest{Sandbox: name, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tok.ID)
	}
	h.Close()

	be.infos = []sandbox.Info{{Name: "alive", State: sandbox.StateRunning}, {Name: "dead", State: sandbox.StateDead}}
	h2 := startHost(t, cfg, be)
	defer h2.Close()
	usage, err := h2.Gateway().Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	revoked := map[string]bool{}
	for _, u := range usage {
		revoked[u.ID] = u.RevokedAt != nil
	}
	if revoked[ids[0]] || !revoked[ids[1]] {
		t.Errorf("revoked = %v; want only the dead sandbox's token (%s) revoked", revoked, ids[1])
	}
}

type listBackend struct {
	sandbox.Backend
	infos []sandbox.Info
}

func (b *listBackend) List(context.Context) ([]sandbox.Info, error) { return b.infos, nil }

func (failingBackend) List(context.Context) ([]sandbox.Info, error) { return nil, nil }

// specRecorder fails every Create after keeping the spec it was given.
type specRecorder struct {
	failingBackend
	spec sandbox.Spec
}

func (r *specRecorder) Create(_ context.Context, s sandbox.Spec) (sandbox.Sandbox, error) {
	r.spec = s
	return nil, fmt.Errorf("recorded")
}

// The request's limits, volumes and labels reach the backend, with the
// gateway socket and a fresh token rather than anything of the host's.
func TestNewSandboxPassesSpec(t *testing.T) {
	ctx := context.Background()
	rec := &specRecorder{}
	h := startHost(t, testConfig(t), rec)
	defer h.Close()
	h.NewSandbox(ctx, SandboxRequest{Name: "limits", Timeout: 90 * time.Second, IdleTimeout: 30 * time.Second,
		Labels: map[string]string{"k": "v"}, GPU: sandbox.GPUOptional, CPUs: 1.5, MemoryBytes: 1 << 30})
	s := rec.spec
	if s.Name != "limits" || s.Timeout != 90*time.Second || s.IdleTimeout != 30*time.Second || s.Labels["k"] != "v" ||
		s.GPU != sandbox.GPUOptional || s.CPUs != 1.5 || s.MemoryBytes != 1<<30 {
		t.Fatalf("backend got spec %+v", s)
	}
	if s.Gateway == nil || s.Gateway.Token == "" || s.Gateway.Token == realKey || len(s.Volumes) == 0 {
		t.Fatalf("backend got gateway %+v volumes %v; want a sandbox token and the default volumes", s.Gateway, s.Volumes)
	}
}

// recordingBackend creates stub sandboxes and lists them as recorded,
// all dead once dead is set (their CLI was killed).
type recordingBackend struct {
	sandbox.Backend
	specs []sandbox.Spec
	dead  bool
}

type stubSandbox struct {
	sandbox.Sandbox
	name string
}

func (s stubSandbox) Name() string { return s.name }

func (b *recordingBackend) Create(_ context.Context, s sandbox.Spec) (sandbox.Sandbox, error) {
	b.specs = append(b.specs, s)
	return stubSandbox{name: s.Name}, nil
}

func (b *recordingBackend) List(context.Context) ([]sandbox.Info, error) {
	var out []sandbox.Info
	for _, s := range b.specs {
		st := sandbox.StateRunning
		if b.dead {
			st = sandbox.StateDead
		}
		out = append(out, sandbox.Info{Name: s.Name, State: st, Labels: s.Labels})
	}
	return out, nil
}

// With a shared gateway (--gateway), the token of a sandbox whose CLI was
// killed is revoked through the admin plane by the next CLI, and only
// that token: another host's sandbox of the same name keeps its own.
// Before, orphans were revoked only with the in-process gateway.
func TestStartRevokesOrphansOnSharedGateway(t *testing.T) {
	ctx := context.Background()
	db, err := store.OpenMemory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	g, err := gateway.New(ctx, gateway.Config{DB: db, Upstream: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	data := httptest.NewServer(g.DataHandler())
	defer data.Close()
	admin := httptest.NewServer(g.AdminHandler("admin-secret"))
	defer admin.Close()
	start := func(b sandbox.Backend) *Host {
		h, err := Start(ctx, Options{Config: testConfig(t), Backend: b,
			RemoteGateway: data.URL, AdminURL: admin.URL, AdminToken: "admin-secret"})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}

	be := &recordingBackend{}
	h := start(be)
	sb, err := h.NewSandbox(ctx, SandboxRequest{Name: "exp1"})
	if err != nil {
		t.Fatal(err)
	}
	h.Close() // killed: no Terminate
	// Another host's live sandbox has the same name.
	other, err := g.Issue(ctx, gateway.TokenRequest{Sandbox: "exp1", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	be.dead = true
	h2 := start(be)
	defer h2.Close()
	usage, err := g.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	revoked := map[string]bool{}
	for _, u := range usage {
		revoked[u.ID] = u.RevokedAt != nil
	}
	if !revoked[sb.TokenID] {
		t.Errorf("the dead sandbox's token %s is still valid on the shared gateway", sb.TokenID)
	}
	if revoked[other.ID] {
		t.Errorf("another host's token for a sandbox of the same name was revoked")
	}
	if got := be.specs[0].Labels[TokenLabel]; got != sb.TokenID {
		t.Errorf("sandbox label %s = %q; want its token id %s", TokenLabel, got, sb.TokenID)
	}
}

// reapBackend lists what the test says and records what it is asked to
// reap.
type reapBackend struct {
	listBackend
	reaped []string
}

func (b *reapBackend) Reap(_ context.Context, names []string) error {
	b.reaped = append(b.reaped, names...)
	return nil
}

// A command without a gateway of its own (sandbox ls) revokes in the
// store the token a dead sandbox's label names (not a newer one of a
// sandbox that took its name since), or for an unlabelled one those
// issued before it was created, and then has the backend reap them; a
// starting sandbox is left alone. The next host reaps too.
func TestReapDead(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	be := &reapBackend{}
	h := startHost(t, cfg, be)
	issue := func(sb string) gateway.IssuedToken {
		tok, err := h.Gateway().Issue(ctx, gateway.TokenRequest{Sandbox: sb, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	labelled, unlabelled := issue("sb-x"), issue("sb-old")
	created := time.Now()
	time.Sleep(10 * time.Millisecond)
	newer, newerOld, starting := issue("sb-x"), issue("sb-old"), issue("sb-new")
	be.infos = []sandbox.Info{
		{Name: "sb-x", State: sandbox.StateDead, Created: created, Labels: map[string]string{TokenLabel: labelled.ID}},
		{Name: "sb-old", State: sandbox.StateDead, Created: created},
		{Name: "sb-new", State: sandbox.StateStarting},
	}
	ReapDead(ctx, h.DB(), be, h.log)
	usage, err := h.Gateway().Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	revoked := map[string]bool{}
	for _, u := range usage {
		revoked[u.ID] = u.RevokedAt != nil
	}
	want := map[string]bool{labelled.ID: true, unlabelled.ID: true, newer.ID: false, newerOld.ID: false, starting.ID: false}
	for id, w := range want {
		if revoked[id] != w {
			t.Errorf("token %s revoked = %v; want %v", id, revoked[id], w)
		}
	}
	if strings.Join(be.reaped, ",") != "sb-x,sb-old" {
		t.Errorf("reaped %v; want [sb-x sb-old]", be.reaped)
	}
	h.Close()

	be.reaped = nil
	h2 := startHost(t, cfg, be)
	defer h2.Close()
	if strings.Join(be.reaped, ",") != "sb-x,sb-old" {
		t.Errorf("a new host reaped %v; want [sb-x sb-old]", be.reaped)
	}
}
