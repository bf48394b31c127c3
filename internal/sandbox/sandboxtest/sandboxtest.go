// Package sandboxtest is the conformance suite every sandbox backend runs
// (in the manner of nomad's DriverHarness), and the helpers that skip a
// test when the machine lacks what a backend needs.
package sandboxtest

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/sandbox"
)

// RequireBwrap skips t unless bubblewrap is installed and the kernel lets
// it create user and network namespaces.
func RequireBwrap(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("bwrap")
	if err != nil {
		t.Skip("bubblewrap (bwrap) is not installed; `apt-get install bubblewrap` to run this test")
	}
	out, err := exec.Command(p, "--unshare-user", "--unshare-net", "--unshare-pid", "--ro-bind", "/usr", "/usr",
		"--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "/usr/bin/true").CombinedOutput()
	if err != nil {
		t.Skipf("bwrap cannot create user/network namespaces here (%v: %s)", err, bytes.TrimSpace(out))
	}
	return p
}

// Harness is what a backend gives the suite.
type Harness struct {
	Backend sandbox.Backend
	// Attach, when set, returns a second Backend on the same state as if
	// from another process (for Get and List across processes).
	Attach func(t *testing.T) sandbox.Backend
	// Slow says the backend takes seconds, not milliseconds, to start a
	// sandbox (a pod): the suite's timeouts are scaled to match.
	Slow bool
	// Gateway serves h where this backend's sandboxes reach the
	// gateway's data plane, and says how they reach it (the token is the
	// suite's): a host socket locally, an address a pod dials.
	Gateway func(t *testing.T, h http.Handler) *sandbox.GatewayAccess
	// Local says the sandboxes' processes run on this host, so the suite
	// can also check from outside that none escapes Terminate.
	Local bool
	// Plant, when set, puts secret wherever the backend's host keeps
	// secrets (mlagent's secret store), for the suite to look for inside.
	Plant func(t *testing.T, secret string)
	// Image, when set, is the image every sandbox of the suite runs on.
	Image string
	// Forbidden are more strings no sandbox may show (an image's own
	// secret-looking variable).
	Forbidden []string
}

// Run runs the conformance suite against a backend.
func Run(t *testing.T, h Harness) {
	ctx := context.Background()
	create := func(t *testing.T, spec sandbox.Spec) sandbox.Sandbox {
		t.Helper()
		if spec.Image == "" {
			spec.Image = h.Image
		}
		sb, err := h.Backend.Create(ctx, spec)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		t.Cleanup(func() {
			if err := sb.Terminate(context.Background()); err != nil {
				t.Errorf("Terminate: %v", err)
			}
		})
		return sb
	}
	sh := func(t *testing.T, sb sandbox.Sandbox, script string) (string, string, int) {
		t.Helper()
		var out, errb bytes.Buffer
		code, err := sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{"/bin/sh", "-c", script}, Stdout: &out, Stderr: &errb})
		if err != nil {
			t.Fatalf("Exec %q: %v", script, err)
		}
		return out.String(), errb.String(), code
	}

	t.Run("Promises", func(t *testing.T) { Promises(t, h) })

	t.Run("Exec", func(t *testing.T) {
		sb := create(t, sandbox.Spec{Env: map[string]string{"FROM_SPEC": "spec", "OVERRIDE": "spec"}})
		cases := []struct {
			name           string
			req            sandbox.ExecRequest
			stdout, stderr string
			code           int
		}{
			{name: "stdout", req: sandbox.ExecRequest{Argv: []string{"echo", "hello"}}, stdout: "hello\n"},
			{name: "stderr and exit code", req: sandbox.ExecRequest{Argv: []string{"sh", "-c", "echo oops >&2; exit 3"}}, stderr: "oops\n", code: 3},
			{name: "env", req: sandbox.ExecRequest{Argv: []string{"sh", "-c", "echo $FROM_SPEC $OVERRIDE $FROM_REQ"},
				Env: map[string]string{"OVERRIDE": "req", "FROM_REQ": "r"}}, stdout: "spec req r\n"},
			{name: "default dir is the workspace", req: sandbox.ExecRequest{Argv: []string{"pwd"}}, stdout: sandbox.Workspace + "\n"},
			{name: "dir", req: sandbox.ExecRequest{Argv: []string{"pwd"}, Dir: "/tmp"}, stdout: "/tmp\n"},
			{name: "stdin", req: sandbox.ExecRequest{Argv: []string{"tr", "a-z", "A-Z"}, Stdin: strings.NewReader("shout")}, stdout: "SHOUT"},
			{name: "home", req: sandbox.ExecRequest{Argv: []string{"sh", "-c", "echo $HOME; touch $HOME/x && echo ok"}}, stdout: sandbox.Home + "\nok\n"},
			{name: "signal exit code", req: sandbox.ExecRequest{Argv: []string{"sh", "-c", "kill -9 $$"}}, code: 137},
			{name: "missing command", req: sandbox.ExecRequest{Argv: []string{"no-such-command"}}, code: 127},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				var out, errb bytes.Buffer
				req := c.req
				req.Stdout, req.Stderr = &out, &errb
				code, err := sb.Exec(ctx, req)
				if c.name == "missing command" {
					if err == nil && code != 127 {
						t.Fatalf("got code %d, err nil; want an error or 127", code)
					}
					return
				}
				if err != nil {
					t.Fatalf("Exec: %v", err)
				}
				if code != c.code || out.String() != c.stdout || errb.String() != c.stderr {
					t.Errorf("got code %d stdout %q stderr %q; want %d %q %q", code, out.String(), errb.String(), c.code, c.stdout, c.stderr)
				}
			})
		}
		t.Run("concurrent", func(t *testing.T) {
			var wg sync.WaitGroup
			errs := make([]string, 8)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var out bytes.Buffer
					code, err := sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{"echo", strings.Repeat("x", i)}, Stdout: &out})
					if err != nil || code != 0 || out.String() != strings.Repeat("x", i)+"\n" {
						errs[i] = out.String()
					}
				}()
			}
			wg.Wait()
			for i, e := range errs {
				if e != "" {
					t.Errorf("exec %d: got %q", i, e)
				}
			}
		})
	})

	t.Run("CancelKillsProcessGroup", func(t *testing.T) {
		sb := create(t, sandbox.Spec{})
		cctx, cancel := context.WithCancel(ctx)
		started := make(chan struct{})
		var out syncBuffer
		out.onWrite = func() {
			select {
			case <-started:
			default:
				close(started)
			}
		}
		errc := make(chan error, 1)
		go func() {
			_, err := sb.Exec(cctx, sandbox.ExecRequest{
				Argv:   []string{"sh", "-c", "sleep 1000 & sleep 1001 & echo started; wait"},
				Stdout: &out,
			})
			errc <- err
		}()
		<-started
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("got Exec error %v; want context.Canceled", err)
		}
		// Every process of the group is gone (ps may be missing: read /proc).
		stdout, _, _ := sh(t, sb, `for p in /proc/[0-9]*; do cat $p/cmdline 2>/dev/null | tr '\0' ' '; echo; done | grep -c '^sleep 100[01]' || true`)
		if strings.TrimSpace(stdout) != "0" {
			t.Errorf("got %s sleep processes after cancel; want 0", strings.TrimSpace(stdout))
		}
	})

	t.Run("Files", func(t *testing.T) {
		sb := create(t, sandbox.Spec{})
		if err := sb.WriteFile(ctx, "/workspace/a.txt", []byte("alpha"), 0o600); err != nil {
			t.Fatalf("WriteFile: %v", err)
		}
		got, err := sb.ReadFile(ctx, "/workspace/a.txt")
		if err != nil || string(got) != "alpha" {
			t.Fatalf("ReadFile: got %q, %v; want alpha", got, err)
		}
		if err := sb.WriteFile(ctx, "rel.txt", []byte("r"), 0o644); err != nil {
			t.Fatalf("WriteFile relative: %v", err)
		}
		stdout, _, _ := sh(t, sb, "cat /workspace/rel.txt; stat -c %a /workspace/a.txt")
		if stdout != "r600\n" {
			t.Errorf("got %q; want relative path in the workspace and mode 600", stdout)
		}
		big := bytes.Repeat([]byte("0123456789"), 100_000)
		if err := sb.WriteFile(ctx, "/tmp/big", big, 0o644); err != nil {
			t.Fatalf("WriteFile big: %v", err)
		}
		if got, err := sb.ReadFile(ctx, "/tmp/big"); err != nil || !bytes.Equal(got, big) {
			t.Errorf("ReadFile big: got %d bytes, %v; want %d", len(got), err, len(big))
		}
		if _, err := sb.ReadFile(ctx, "/workspace/missing"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadFile missing: got %v; want fs.ErrNotExist", err)
		}
		if err := sb.WriteFile(ctx, "/usr/evil", []byte("x"), 0o644); err == nil {
			t.Errorf("WriteFile /usr/evil: got nil; want an error")
		}
	})

	t.Run("GetAndList", func(t *testing.T) {
		sb := create(t, sandbox.Spec{Labels: map[string]string{"session": "s1"}})
		other := h.Backend
		if h.Attach != nil {
			other = h.Attach(t)
		}
		got, err := other.Get(ctx, sb.Name())
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		var out bytes.Buffer
		if code, err := got.Exec(ctx, sandbox.ExecRequest{Argv: []string{"echo", "attached"}, Stdout: &out}); err != nil || code != 0 || out.String() != "attached\n" {
			t.Errorf("Exec via Get: got %q %d %v; want attached", out.String(), code, err)
		}
		infos, err := other.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		var found bool
		for _, in := range infos {
			if in.Name == sb.Name() {
				found = true
				if in.State != sandbox.StateRunning || in.Labels["session"] != "s1" {
					t.Errorf("got %+v; want running with label session=s1", in)
				}
			}
		}
		if !found {
			t.Errorf("List: %s missing from %+v", sb.Name(), infos)
		}
		if _, err := other.Get(ctx, "no-such-sandbox"); !errors.Is(err, sandbox.ErrNotFound) {
			t.Errorf("Get missing: got %v; want ErrNotFound", err)
		}
		if _, err := h.Backend.Create(ctx, sandbox.Spec{Name: sb.Name()}); !errors.Is(err, sandbox.ErrExists) {
			t.Errorf("Create duplicate: got %v; want ErrExists", err)
		}
	})

	t.Run("TerminateFromAnotherHandle", func(t *testing.T) {
		sb, err := h.Backend.Create(ctx, sandbox.Spec{})
		if err != nil {
			t.Fatal(err)
		}
		defer sb.Terminate(ctx)
		other := h.Backend
		if h.Attach != nil {
			other = h.Attach(t)
		}
		att, err := other.Get(ctx, sb.Name())
		if err != nil {
			t.Fatal(err)
		}
		if err := att.Terminate(ctx); err != nil {
			t.Fatalf("Terminate: %v", err)
		}
		if _, err := sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{"true"}}); !errors.Is(err, sandbox.ErrNotRunning) {
			t.Errorf("Exec after Terminate: got %v; want ErrNotRunning", err)
		}
		if _, err := other.Get(ctx, sb.Name()); !errors.Is(err, sandbox.ErrNotFound) {
			t.Errorf("Get after Terminate: got %v; want ErrNotFound", err)
		}
		if err := sb.Terminate(ctx); err != nil {
			t.Errorf("second Terminate: got %v; want nil", err)
		}
	})

	t.Run("VolumesPersistWorkspacesIsolated", func(t *testing.T) {
		mounts := []sandbox.Mount{{Volume: ConformanceVolume, Path: "/data"}}
		a := create(t, sandbox.Spec{Volumes: mounts})
		sh(t, a, "echo kept > /data/v.txt; echo mine > /workspace/private.txt")
		b := create(t, sandbox.Spec{Volumes: mounts})
		out, _, _ := sh(t, b, "cat /data/v.txt; cat /workspace/private.txt 2>&1 || echo absent")
		if !strings.HasPrefix(out, "kept\n") || !strings.Contains(out, "absent") {
			t.Errorf("got %q; want the volume's file and no other workspace's file", out)
		}
		if err := a.Terminate(ctx); err != nil {
			t.Fatal(err)
		}
		c := create(t, sandbox.Spec{Volumes: mounts})
		if out, _, _ := sh(t, c, "cat /data/v.txt"); out != "kept\n" {
			t.Errorf("after Terminate: got %q; want the volume to persist", out)
		}
	})

	t.Run("Timeouts", func(t *testing.T) {
		limit := 300 * time.Millisecond
		if h.Slow {
			limit = 5 * time.Second
		}
		for _, spec := range []sandbox.Spec{{Timeout: limit}, {IdleTimeout: limit}} {
			sb := create(t, spec)
			// Not a timing assertion: wait (generously) for it to end.
			deadline := time.Now().Add(30*time.Second + 2*limit)
			for {
				_, err := sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{"true"}})
				if errors.Is(err, sandbox.ErrNotRunning) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("spec %+v: sandbox still running after 30s", spec)
				}
				// Longer than the limit: each probe is a command, which
				// an idle timeout must not see running all the time.
				time.Sleep(limit + 100*time.Millisecond)
			}
		}
	})

	t.Run("TimeoutNamedAfterTheEnd", func(t *testing.T) {
		// On a loaded host the reply that names the time limit can be
		// read after the sandbox has gone: the limit is still what Exec
		// must report, not a sandbox that merely ended.
		limit := 300 * time.Millisecond
		if h.Slow {
			limit = 5 * time.Second
		}
		sb := create(t, sandbox.Spec{Timeout: limit})
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			for deadline := time.Now().Add(30*time.Second + 2*limit); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if _, err := sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{"true"}}); errors.Is(err, sandbox.ErrNotRunning) {
					return
				}
			}
			t.Errorf("sandbox still running 30s after its time limit")
		}()
		// Holding the command's first output back until the sandbox has
		// ended keeps Exec from reading the reply before then.
		var once sync.Once
		out := &syncBuffer{onWrite: func() { once.Do(func() { <-ended }) }}
		_, err := sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{"/bin/sh", "-c", "echo up; exec sleep 60"}, Stdout: out})
		<-ended
		if !errors.Is(err, sandbox.ErrTimedOut) {
			t.Errorf("got %v; want the time limit (sandbox.ErrTimedOut)", err)
		}
	})
}

type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	onWrite func()
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.onWrite != nil {
		s.onWrite()
	}
	return s.b.Write(p)
}
