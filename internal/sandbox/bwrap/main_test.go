package bwrap

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/mlagent/mlagent/internal/image"
	"github.com/mlagent/mlagent/internal/image/imagetest"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
	"github.com/mlagent/mlagent/internal/secrets"
	"github.com/mlagent/mlagent/internal/store"
	"github.com/mlagent/mlagent/internal/testbin"
	"github.com/mlagent/mlagent/internal/volume"
)

// mlagent is PID 1 inside: testbin builds it once, for the tests that
// create a sandbox.
func TestMain(m *testing.M) {
	code := testbin.Main(m)
	if layoutDir != "" {
		os.RemoveAll(filepath.Dir(layoutDir))
	}
	os.Exit(code)
}

// layoutDir holds imagetest.PythonImage as an OCI layout once a test
// asked for it.
var (
	layoutDir  string
	layoutOnce sync.Once
)

// pythonImage pulls imagetest.PythonImage (busybox and this machine's
// python3) into e's image cache, from an OCI layout written once per
// test process, and returns its reference.
func (e *testEnv) pythonImage(t testing.TB) string {
	t.Helper()
	img := imagetest.PythonImage(t)
	layoutOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mlagent-test-image")
		if err != nil {
			t.Fatal(err)
		}
		layoutDir = imagetest.WriteLayout(t, filepath.Join(dir, "py"), img, "py")
	})
	if layoutDir == "" {
		t.Fatal("the test image's layout could not be written")
	}
	if _, err := e.images.Pull(context.Background(), layoutDir, image.PullOptions{}); err != nil {
		t.Fatalf("pull the test image: %v", err)
	}
	return layoutDir
}

// eachRoot runs f on a sandbox root of each kind: the host's /usr, and
// an image.
func eachRoot(t *testing.T, f func(t *testing.T, env *testEnv, b *Backend, image string)) {
	t.Run("host root", func(t *testing.T) {
		env := newTestEnv(t)
		f(t, env, env.backend(t), "")
	})
	t.Run("image root", func(t *testing.T) {
		env := newTestEnv(t)
		f(t, env, env.backend(t), env.pythonImage(t))
	})
}

// testEnv is one fake $MLAGENT_HOME.
type testEnv struct {
	home   string
	db     *store.DB
	images *image.Store
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
	images, err := image.Open(filepath.Join(home, "images"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{home: home, db: db, images: images}
}

func (e *testEnv) backend(t testing.TB) *Backend {
	t.Helper()
	b, err := New(context.Background(), Options{
		Binary:   testbin.Path(t),
		StateDir: filepath.Join(e.home, "sandboxes"),
		Volumes:  volume.New(filepath.Join(e.home, "volumes")),
		DB:       e.db,
		Images:   e.images,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b
}

// harness is what the conformance suite needs of a bubblewrap env.
func (e *testEnv) harness(t *testing.T) sandboxtest.Harness {
	return sandboxtest.Harness{
		Backend: e.backend(t),
		Gateway: func(t *testing.T, h http.Handler) *sandbox.GatewayAccess {
			return sandbox.UnixGateway(serveUnixHTTP(t, h), "")
		},
		Local: true,
		// The secret store of the MLAGENT_HOME the backend works in.
		Plant: func(t *testing.T, secret string) {
			t.Setenv("MLAGENT_HOME", e.home)
			if err := secrets.Open(filepath.Join(e.home, "secrets.json")).Set("all", map[string]string{
				"ANTHROPIC_API_KEY": secret, "HF_TOKEN": secret, "GITHUB_TOKEN": secret,
				"GOOGLE_CREDENTIALS": `{"type":"authorized_user","refresh_token":"` + secret + `"}`,
				"NOTION_TOKEN":       secret, "SLACK_BOT_TOKEN": secret, "SLACK_APP_TOKEN": secret,
			}); err != nil {
				t.Fatal(err)
			}
		},
	}
}

// TestPromisesOnImage runs the suite's promises on an image's root; the
// image's own secret-looking ENV (imagetest.PythonImage) must stay out.
func TestPromisesOnImage(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	env := newTestEnv(t)
	h := env.harness(t)
	h.Image = env.pythonImage(t)
	h.Forbidden = []string{"image-secret-value"}
	sandboxtest.Promises(t, h)
}

func TestConformance(t *testing.T) {
	sandboxtest.RequireBwrap(t)
	env := newTestEnv(t)
	h := env.harness(t)
	sandboxtest.Run(t, sandboxtest.Harness{
		Backend: h.Backend, Gateway: h.Gateway, Local: h.Local, Plant: h.Plant,
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
