package bwrap

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
	"github.com/mlagent/mlagent/internal/store"
	"github.com/mlagent/mlagent/internal/testbin"
	"github.com/mlagent/mlagent/internal/volume"
)

// binary is mlagent built once for every test: it is PID 1 inside.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mlagent-bwrap-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "mlagent")
	out, err := testbin.Command(binary).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build mlagent: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testEnv is one fake $MLAGENT_HOME.
type testEnv struct {
	home string
	db   *store.DB
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	// Short: the control socket path must fit in 108 bytes.
	home, err := os.MkdirTemp("", "mlh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	db, err := store.Open(context.Background(), filepath.Join(home, "mlagent.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &testEnv{home: home, db: db}
}

func (e *testEnv) backend(t testing.TB) *Backend {
	t.Helper()
	b, err := New(context.Background(), Options{
		Binary:   binary,
		StateDir: filepath.Join(e.home, "sandboxes"),
		Volumes:  volume.New(filepath.Join(e.home, "volumes")),
		DB:       e.db,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b
}

func TestConformance(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	env := newTestEnv(t)
	sandboxtest.Run(t, sandboxtest.Harness{
		Backend: env.backend(t),
		Attach: func(t *testing.T) sandbox.Backend {
			// A second handle on the same store, as `mlagent sandbox exec`
			// from another terminal would open.
			db, err := store.Open(context.Background(), env.db.Path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			e2 := &testEnv{home: env.home, db: db}
			return e2.backend(t)
		},
	})
}
