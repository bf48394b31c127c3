// Package testbin builds the mlagent binary once per test process, for the
// tests that run it for real: as the CLI, as a sandbox's PID 1, as the
// agent inside a sandbox.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	once sync.Once
	dir  string
	path string
	err  error
)

// Build compiles ./cmd/mlagent into a temporary directory the first time
// it is called and returns the binary's path.
func Build() (string, error) {
	once.Do(func() {
		if dir, err = os.MkdirTemp("", "mlagent-testbin"); err != nil {
			return
		}
		path = filepath.Join(dir, "mlagent")
		out, berr := buildCommand(path).CombinedOutput()
		if berr != nil {
			err = fmt.Errorf("build mlagent: %v\n%s", berr, out)
		}
	})
	return path, err
}

// buildCommand is the build of ./cmd/mlagent into path, as the Makefile does
// it: without cgo, so the binary is static. A static binary starts about
// a millisecond sooner (no dynamic loader, no libc), which every
// sandbox pays for its PID 1; nothing in mlagent needs cgo.
func buildCommand(path string) *exec.Cmd {
	cmd := exec.Command("go", "build", "-o", path, "github.com/mlagent/mlagent/cmd/mlagent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd
}

// Path is Build for a test: it fails the test when the build fails.
func Path(t testing.TB) string {
	t.Helper()
	p, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Main runs the tests and removes the binary; use it as
// `func TestMain(m *testing.M) { os.Exit(testbin.Main(m)) }`.
func Main(m *testing.M) int {
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	return code
}
