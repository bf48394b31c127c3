package sandboxtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/sandbox"
)

var (
	probeOnce sync.Once
	probeBin  []byte
	probeErr  error
)

// probe is the static probe binary (./probe), built once per test process.
func probe(t *testing.T) []byte {
	t.Helper()
	probeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "probe")
		if err != nil {
			probeErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "probe")
		cmd := exec.Command("go", "build", "-o", out, "github.com/mlagent/mlagent/internal/sandbox/sandboxtest/probe")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			probeErr = fmt.Errorf("build probe: %v\n%s", err, b)
			return
		}
		probeBin, probeErr = os.ReadFile(out)
	})
	if probeErr != nil {
		t.Fatal(probeErr)
	}
	return probeBin
}

func random(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// gatewayRecord is what the suite's fake gateway saw.
type gatewayRecord struct {
	mu   sync.Mutex
	seen []string
}

func (g *gatewayRecord) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	g.mu.Lock()
	g.seen = append(g.seen, fmt.Sprintf("%s %s key=%s body=%s", r.Method, r.URL.Path, r.Header.Get("X-Api-Key"), body))
	g.mu.Unlock()
	io.WriteString(w, "gateway ok")
}

func (g *gatewayRecord) all() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return strings.Join(g.seen, "\n")
}

// Promises checks, from inside a sandbox with a gateway, each promise
// every backend makes: a non-root user without capabilities, a read-only
// system, no way out but the gateway, no secret of the host, no host
// process in sight — and, for a backend on this host, nothing left of it
// after Terminate. Run runs it; a backend runs it alone on other roots.
func Promises(t *testing.T, h Harness) {
	ctx := context.Background()
	create := func(t *testing.T, spec sandbox.Spec) sandbox.Sandbox {
		t.Helper()
		spec.Image = h.Image
		sb, err := h.Backend.Create(ctx, spec)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		t.Cleanup(func() { sb.Terminate(context.Background()) })
		return sb
	}
	if h.Gateway == nil {
		t.Fatal("the harness has no Gateway: the security promises cannot be checked")
	}
	sentinel := "sk-ant-SENTINEL-" + random(8)
	token := "mlat_conformance_" + random(8)
	// The sentinel everywhere a host keeps secrets: its environment, a
	// home's files (as `docker login` and netrc leave them), the store.
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, ".netrc"), []byte("machine api password "+sentinel), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(home, ".docker"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".docker", "config.json"), []byte(`{"auths":{"registry.example":{"auth":"`+sentinel+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", filepath.Join(home, ".docker"))
	t.Setenv("HOME", home)
	for _, k := range []string{"ANTHROPIC_API_KEY", "HF_TOKEN", "GITHUB_TOKEN", "NOTION_TOKEN", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "GOOGLE_CREDENTIALS"} {
		t.Setenv(k, sentinel)
	}
	if h.Plant != nil {
		h.Plant(t, sentinel)
	}

	gw := &gatewayRecord{}
	access := h.Gateway(t, gw)
	access.Token = token
	// A listener on the host's loopback that must stay unreached.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	reached := make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			reached <- struct{}{}
		}
	}()

	sb := create(t, sandbox.Spec{Gateway: access, Volumes: []sandbox.Mount{{Volume: ConformanceVolume, Path: "/data"}}})
	if err := sb.WriteFile(ctx, "/tmp/probe", probe(t), 0o755); err != nil {
		t.Fatalf("copy the probe in: %v", err)
	}
	run := func(t *testing.T, argv ...string) (string, int) {
		t.Helper()
		var out bytes.Buffer
		code, err := sb.Exec(ctx, sandbox.ExecRequest{Argv: argv, Stdout: &out, Stderr: &out})
		if err != nil {
			t.Fatalf("Exec %q: %v", argv, err)
		}
		return out.String(), code
	}
	p := "/tmp/probe"
	cases := []struct {
		name   string
		argv   []string
		refuse string // the output must not contain it
		want   string // the output must contain it ("" = anything)
	}{
		{"identity", []string{p, "status"}, "", "Uid: 1000 1000 1000 1000\nCapEff: 0000000000000000\nCapBnd: 0000000000000000\nNoNewPrivs: 1\n"},
		{"write /usr", []string{"sh", "-c", "touch /usr/bin/evil && echo written"}, "written", ""},
		{"write /etc/passwd", []string{"sh", "-c", "echo x >> /etc/passwd && echo written"}, "written", ""},
		{"mount", []string{p, "mount"}, "mounted", ""},
		{"new user namespace", []string{p, "unshare-user"}, "unshared", ""},
		{"host loopback listener", []string{p, "connect", ln.Addr().String()}, "connected", ""},
		{"resolve an outside name", []string{p, "resolve", "example.com"}, "resolved", "failed"},
		{"reach an outside address", []string{p, "connect", "1.1.1.1:443"}, "connected", ""},
		{"reach an outside IPv6 address", []string{p, "connect", "[2606:4700:4700::1111]:443"}, "connected", ""},
		{"the gateway, with the token", []string{"sh", "-c", p + ` http POST "$ANTHROPIC_BASE_URL/v1/messages" hello`}, "", "200 gateway ok"},
		{"no secret in the environment", []string{p, "environ"}, sentinel, "ANTHROPIC_API_KEY=" + token},
		// Everything a sandbox may write or be given; not the image's /usr.
		{"no secret in a file", []string{p, "find", sentinel, "/etc", "/home", "/workspace", "/tmp", "/run", "/data", "/opt", "/root"}, "", "none\n"},
		{"host processes invisible", []string{p, "procs"}, "31337.25", sandbox.BinaryPath + " init"},
	}
	if h.Local {
		// A host process the sandbox must not see.
		host := exec.Command("sleep", "31337.25")
		if err := host.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { host.Process.Kill(); host.Wait() }()
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, _ := run(t, c.argv...)
			if c.refuse != "" && strings.Contains(out, c.refuse) {
				t.Errorf("got %q; want no %q", out, c.refuse)
			}
			for _, f := range h.Forbidden {
				if strings.Contains(out, f) {
					t.Errorf("got %q; want no %q", out, f)
				}
			}
			if !strings.Contains(out, c.want) {
				t.Errorf("got %q; want %q", out, c.want)
			}
		})
	}
	select {
	case <-reached:
		t.Errorf("the host's loopback listener was reached from inside")
	default:
	}
	if got, want := gw.all(), "POST /v1/messages key="+token+" body=hello"; !strings.Contains(got, want) {
		t.Errorf("the gateway saw %q; want %q", got, want)
	}
	t.Run("environment contract", func(t *testing.T) {
		out, _ := run(t, "env")
		for k, v := range map[string]string{
			"ANTHROPIC_BASE_URL": sandbox.GatewayURL,
			"ANTHROPIC_API_KEY":  token,
			"HF_ENDPOINT":        sandbox.GatewayURL + "/hf",
			"HF_TOKEN":           token,
			"HTTPS_PROXY":        "http://mlagent:" + token + "@" + sandbox.GatewayAddr,
			"NO_PROXY":           "127.0.0.1,localhost",
			"GIT_CONFIG_GLOBAL":  sandbox.GitConfig,
			"HOME":               sandbox.Home,
		} {
			if !strings.Contains("\n"+out, "\n"+k+"="+v+"\n") {
				t.Errorf("env: want %s=%s in %q", k, v, out)
			}
		}
		cfg, code := run(t, "cat", sandbox.GitConfig)
		if code != 0 || !strings.Contains(cfg, "insteadOf = https://github.com/") || !strings.Contains(cfg, "Bearer "+token) {
			t.Errorf("git config: got %d %q", code, cfg)
		}
	})
	if h.Local {
		t.Run("nothing left after Terminate", func(t *testing.T) { noOrphans(t, create) })
	}
}

// ConformanceVolume is the volume the suite mounts; a backend without a
// provisioner prepares it before Run.
const ConformanceVolume = "conformance"

// noOrphans starts processes that try to outlive the sandbox (background,
// setsid, double fork) and checks that none is left on the host after
// Terminate.
func noOrphans(t *testing.T, create func(*testing.T, sandbox.Spec) sandbox.Sandbox) {
	sb := create(t, sandbox.Spec{})
	marker := "4242." + fmt.Sprint(1000+int(random(1)[0]))
	var out bytes.Buffer
	code, err := sb.Exec(context.Background(), sandbox.ExecRequest{Argv: []string{"sh", "-c",
		// Ignoring hangups (nohup, which not every image has), a new
		// session, and a double fork.
		"sh -c \"trap '' HUP; exec sleep " + marker + "\" >/dev/null 2>&1 & setsid sleep " + marker + " >/dev/null 2>&1 & (sh -c 'sleep " + marker + " &' &) ; trap '' TERM HUP; echo started"},
		Stdout: &out, Stderr: &out})
	if err != nil || code != 0 {
		t.Fatalf("got %d %v %q", code, err, out.String())
	}
	// The last of them may still be forking when the command returns.
	n := 0
	for end := time.Now().Add(10 * time.Second); n < 3 && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		n = HostProcesses("sleep\x00" + marker)
	}
	if n < 3 {
		t.Fatalf("got %d escapees running before Terminate; want 3 (the test is not testing anything)", n)
	}
	if err := sb.Terminate(context.Background()); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
	if n := HostProcesses("sleep\x00" + marker); n != 0 {
		t.Errorf("got %d processes alive after Terminate; want 0", n)
	}
}

// HostProcesses counts host processes whose command line starts with
// prefix (zombies have an empty one).
func HostProcesses(prefix string) int {
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	n := 0
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err == nil && strings.HasPrefix(string(b), prefix) {
			n++
		}
	}
	return n
}
