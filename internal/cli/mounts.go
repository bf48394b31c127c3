package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mlagent/mlagent/internal/sandbox"
)

// mountFlags collects --mount SRC[:DEST][:ro|rw].
type mountFlags []string

func (m *mountFlags) String() string { return strings.Join(*m, ", ") }

func (m *mountFlags) Set(s string) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("want SRC[:DEST][:ro|rw], e.g. . or ./data:/workspace/data:rw")
	}
	*m = append(*m, s)
	return nil
}

// binds resolves the --mount values to the host directories to bind:
// each read-only unless :rw, at DEST or /workspace/<its name>. A
// directory that holds mlagent's own state (the secret store) or is the
// whole home or / is refused: the sandbox would see credentials.
func (m mountFlags) binds(env *Env) ([]sandbox.Bind, error) {
	var out []sandbox.Bind
	for _, spec := range m {
		b, err := parseMount(env, spec)
		if err != nil {
			return nil, fmt.Errorf("--mount %s: %w", spec, err)
		}
		out = append(out, b)
	}
	return out, nil
}

func parseMount(env *Env, spec string) (sandbox.Bind, error) {
	parts := strings.Split(spec, ":")
	var b sandbox.Bind
	switch last := parts[len(parts)-1]; {
	case len(parts) > 1 && last == "rw":
		b.Writable = true
		parts = parts[:len(parts)-1]
	case len(parts) > 1 && last == "ro":
		parts = parts[:len(parts)-1]
	}
	if len(parts) > 2 {
		return b, fmt.Errorf("want SRC[:DEST][:ro|rw]")
	}
	src := parts[0]
	if src == "~" || strings.HasPrefix(src, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return b, err
		}
		src = home + src[1:]
	}
	src, err := filepath.Abs(src)
	if err != nil {
		return b, err
	}
	if src, err = filepath.EvalSymlinks(src); err != nil {
		return b, err
	}
	st, err := os.Stat(src)
	if err != nil {
		return b, err
	}
	if !st.IsDir() && !st.Mode().IsRegular() {
		return b, fmt.Errorf("%s is neither a directory nor a file", src)
	}
	if err := exposesCredentials(env, src); err != nil {
		return b, err
	}
	b.Source = src
	if len(parts) == 2 && parts[1] != "" {
		b.Path = filepath.Clean(parts[1])
	} else {
		b.Path = sandbox.Workspace + "/" + filepath.Base(src)
	}
	return b, sandbox.ValidBind(b)
}

// exposesCredentials refuses a directory that is, or holds, mlagent's
// state (the secret store, the gateway's socket) or the config, or is
// the whole home or /.
func exposesCredentials(env *Env, src string) error {
	if src == "/" {
		return fmt.Errorf("/ is the whole machine; mount the project's directory")
	}
	if home, err := os.UserHomeDir(); err == nil {
		if h, err := filepath.EvalSymlinks(home); err == nil && src == h {
			return fmt.Errorf("%s is your whole home, with your SSH keys and credentials; mount the project's directory", src)
		}
	}
	guarded := []string{env.Config.Home, filepath.Dir(env.Config.SecretsPath())}
	if env.Config.File != "" {
		guarded = append(guarded, env.Config.File)
	}
	for _, g := range guarded {
		if g == "" {
			continue
		}
		if r, err := filepath.EvalSymlinks(g); err == nil {
			g = r
		}
		if g == src || strings.HasPrefix(g, src+"/") || strings.HasPrefix(src, g+"/") {
			return fmt.Errorf("%s holds mlagent's state or config (%s): the sandbox must not see it", src, g)
		}
	}
	return nil
}
