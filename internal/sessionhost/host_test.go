package sessionhost

import (
	"errors"
	"os"
	"testing"

	"github.com/mlagent/mlagent/internal/config"
	"github.com/mlagent/mlagent/internal/sandbox"
)

// The session's lock, held by its host, is what Running reports; a
// second host for the same session is refused, and a socket a killed
// host left behind is replaced.
func TestRunningFollowsTheHostsLock(t *testing.T) {
	home, err := os.MkdirTemp("", "sh") // short: a socket path fits in 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	cfg := &config.Config{Home: home}
	const id = "20260101-000000-abcd"
	if Running(cfg, id) {
		t.Fatal("Running before any host: got true; want false")
	}
	// A socket a killed host left behind.
	sock := cfg.SessionSocket(id)
	if err := os.MkdirAll(home+"/run", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, unlock, err := listenPrivate(sock, lockPath(cfg, id))
	if err != nil {
		t.Fatalf("listenPrivate over a stale socket: %v", err)
	}
	if !Running(cfg, id) {
		t.Error("Running while a host holds the lock: got false; want true")
	}
	if _, _, err := listenPrivate(sock, lockPath(cfg, id)); !errors.Is(err, sandbox.ErrExists) {
		t.Errorf("a second host: got %v; want sandbox.ErrExists", err)
	}
	c, err := Dial(cfg, id)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	c.Close()
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Errorf("socket: %v, %v; want it for its owner only", st.Mode(), err)
	}
	ln.Close()
	unlock()
	if Running(cfg, id) {
		t.Error("Running after the host ended: got true; want false")
	}
}
