package bwrap

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
	"github.com/mlagent/mlagent/internal/store"
	"github.com/mlagent/mlagent/internal/testbin"
	"github.com/mlagent/mlagent/internal/volume"
)

// mlagent is PID 1 inside: testbin builds it once, for the tests that
// create a sandbox.
func TestMain(m *testing.M) { os.Exit(testbin.Main(m)) }

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
		Binary:   testbin.Path(t),
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
