// Package sandbox defines what every sandbox backend provides (local
// bubblewrap today, Kubernetes pods later): create an isolated machine-like
// environment, run commands in it, move files in and out, and end it so
// that nothing it started survives.
package sandbox

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mlagent/mlagent/internal/volume"
)

// Backend creates sandboxes and finds existing ones. Implementations are
// safe for concurrent use, and Get and List work from a process other than
// the one that called Create.
type Backend interface {
	Create(ctx context.Context, spec Spec) (Sandbox, error)
	// Get attaches to a running sandbox by name; ErrNotFound if there is
	// none, ErrNotRunning if it is recorded but dead.
	Get(ctx context.Context, name string) (Sandbox, error)
	// List returns every recorded sandbox, dead ones included (State
	// says which), sorted by name.
	List(ctx context.Context) ([]Info, error)
}

// Sandbox is one running sandbox. Methods are safe for concurrent use;
// several Execs may run at once.
type Sandbox interface {
	Name() string
	// Exec runs argv inside and returns its exit code (128+signal when
	// killed by a signal). Cancelling ctx kills the command's whole
	// process group and returns ctx.Err(). A non-nil error means the
	// command could not be run or its end could not be observed.
	Exec(ctx context.Context, req ExecRequest) (exitCode int, err error)
	// ReadFile and WriteFile act as the sandbox's user would, with its
	// permissions; a missing file is fs.ErrNotExist.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode) error
	// Terminate kills every process of the sandbox and returns once none
	// is left. Terminating a sandbox that already ended is not an error.
	Terminate(ctx context.Context) error
}

// Reaper is an optional Backend capability: free what the named sandboxes,
// found dead, left behind (their records, cgroups, and workspaces with
// nothing in them; never files a session may want back). A name that is
// running, starting, or unknown by now is left alone.
type Reaper interface {
	Reap(ctx context.Context, names []string) error
}

// SessionLabel names the chat session a sandbox belongs to; a backend
// keeps such a sandbox's workspace until it is removed by name.
const SessionLabel = "mlagent.session"

// Remover is an optional Backend capability: delete what a terminated
// sandbox kept (its persisted workspace).
type Remover interface {
	Remove(ctx context.Context, name string) error
}

// ImagePreparer is an optional Backend capability: make an image ready
// on this host before Create, drawing progress on w (the local backend
// pulls it into its cache; a cluster's nodes pull their own images, so a
// pod backend has nothing to do before Create).
type ImagePreparer interface {
	PrepareImage(ctx context.Context, ref string, w io.Writer) error
}

// PrepareImage prepares ref on b where b can, and does nothing where it
// need not (ref "", or a backend without ImagePreparer).
func PrepareImage(ctx context.Context, b Backend, ref string, w io.Writer) error {
	if p, ok := b.(ImagePreparer); ok && ref != "" {
		return p.PrepareImage(ctx, ref, w)
	}
	return nil
}

// Spec describes a sandbox to create.
type Spec struct {
	// Name is a DNS label ([a-z0-9-], at most 63); "" picks a random one.
	Name string
	// Volumes are named volumes mounted read-write at absolute paths.
	Volumes []Mount
	// Binds are host directories mounted inside (after the volumes).
	Binds []Bind
	// Env is added to the sandbox's base environment (HOME, PATH, …).
	Env map[string]string
	GPU GPUMode
	// GPUCount and GPUType refine GPURequired where the backend can
	// choose (a cluster): how many, and which product ("" = any).
	GPUCount int
	GPUType  string
	// CPUs and MemoryBytes are limits where the backend can enforce them;
	// 0 means none. A backend that cannot enforce a limit says so in its
	// log and in Info.Notes rather than failing.
	CPUs        float64
	MemoryBytes int64
	// Pids bounds the tasks (processes and threads) alive at once, so a
	// fork bomb cannot take the host's PID table: 0 is DefaultPids,
	// NoPidsLimit none. Unlike CPUs and MemoryBytes, a backend that
	// cannot bound them refuses to create the sandbox.
	Pids int
	// Image is the OCI image reference the sandbox runs on; "" is the
	// backend's default (the host's /usr locally). Each backend resolves
	// it its own way: bubblewrap through the host's image cache, a pod
	// backend as the pod's image.
	Image string
	// Gateway, when set, is the only way out of the sandbox.
	Gateway *GatewayAccess
	Labels  map[string]string
	// Timeout is a wall-clock limit; IdleTimeout ends the sandbox after
	// that long with no command running. 0 means none.
	Timeout, IdleTimeout time.Duration
}

// DefaultPids is the tasks a sandbox may have when its Spec names no
// limit (config sandbox.pids): enough for training with data-loader
// workers and their threads.
const DefaultPids = 1024

// NoPidsLimit as Spec.Pids runs a sandbox without a process limit.
const NoPidsLimit = -1

// Bind puts a host directory at Path inside the sandbox: the user's own
// files (mlagent run --mount), read-only unless Writable. Only backends on
// the user's machine can; the others refuse a spec with binds.
type Bind struct {
	Source   string // absolute host path
	Path     string // absolute path inside
	Writable bool
}

// Mount puts the named volume at Path inside the sandbox.
type Mount struct {
	Volume string
	Path   string
}

// GatewayAccess is how the sandbox reaches the gateway's data plane. It
// is the same for every backend; each says which networks it can use.
type GatewayAccess struct {
	// Network is "unix" (Address is a host socket: a local sandbox) or
	// "tcp" (Address is host:port, as the sandbox reaches it: a pod
	// reaches the gateway's Service, or a host address, by IP).
	Network, Address string
	// Token is the sandbox's own token; it is the only credential inside.
	Token string
}

// UnixGateway is access through a host Unix socket.
func UnixGateway(socket, token string) *GatewayAccess {
	return &GatewayAccess{Network: "unix", Address: socket, Token: token}
}

// GPUMode says whether the sandbox needs the host's GPUs.
type GPUMode int

const (
	GPUNone     GPUMode = iota
	GPURequired         // fail with ErrNoGPU when the host has none
	GPUOptional         // use them if present, warn otherwise
)

// ParseGPUMode reads the --gpu flag forms: "", "none", "required"/"true",
// "optional".
func ParseGPUMode(s string) (GPUMode, error) {
	switch strings.ToLower(s) {
	case "", "none", "no", "false", "off":
		return GPUNone, nil
	case "required", "true", "yes", "on":
		return GPURequired, nil
	case "optional", "auto":
		return GPUOptional, nil
	}
	return GPUNone, fmt.Errorf("gpu mode %q: want none, required or optional", s)
}

// GPU is a parsed --gpu value: the mode, and where a backend can choose
// (a cluster), how many and which product.
type GPU struct {
	Mode  GPUMode
	Count int    // 0 = one
	Type  string // "" = any
}

// ParseGPU reads every --gpu form: those of ParseGPUMode, and a count, a
// type or both as TYPE:COUNT ("2", "A100", "A100:2"), which require a GPU.
func ParseGPU(s string) (GPU, error) {
	if m, err := ParseGPUMode(s); err == nil {
		return GPU{Mode: m}, nil
	}
	typ, count, hasCount := strings.Cut(s, ":")
	if !hasCount && s != "" && strings.Trim(s, "0123456789") == "" {
		typ, count = "", s
	}
	g := GPU{Mode: GPURequired, Type: typ}
	if count != "" {
		n, err := strconv.Atoi(count)
		if err != nil || n < 1 || n > 64 {
			return GPU{}, fmt.Errorf("gpu %q: the count must be 1 to 64", s)
		}
		g.Count = n
	} else if hasCount {
		return GPU{}, fmt.Errorf("gpu %q: want TYPE:COUNT", s)
	}
	// A product name has a digit (A100, T4, NVIDIA-L40S); a word without
	// one is more likely a mistyped mode than a GPU.
	if typ != "" && (len(typ) > 63 || strings.Trim(strings.ToLower(typ), "abcdefghijklmnopqrstuvwxyz0123456789-_.") != "" || !strings.ContainsAny(typ, "0123456789")) {
		return GPU{}, fmt.Errorf("gpu mode %q: want none, required, optional, a count, a type (A100) or TYPE:COUNT", s)
	}
	return g, nil
}

// String is the form ParseGPU reads back.
func (g GPU) String() string {
	switch {
	case g.Mode != GPURequired || g.Type == "" && g.Count == 0:
		return g.Mode.String()
	case g.Type == "":
		return strconv.Itoa(g.Count)
	case g.Count == 0:
		return g.Type
	}
	return g.Type + ":" + strconv.Itoa(g.Count)
}

func (m GPUMode) String() string {
	switch m {
	case GPURequired:
		return "required"
	case GPUOptional:
		return "optional"
	}
	return "none"
}

// ExecRequest is one command to run inside a sandbox.
type ExecRequest struct {
	Argv []string
	// Env is added to (and overrides) the sandbox environment.
	Env map[string]string
	// Dir is the working directory; "" is the workspace.
	Dir    string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// State of a recorded sandbox.
type State string

const (
	StateRunning  State = "running"
	StateStarting State = "starting" // being created by another process
	StateDead     State = "dead"     // its processes are gone but it was never terminated
)

// Info describes a recorded sandbox.
type Info struct {
	Name    string
	Backend string
	State   State
	Created time.Time
	Labels  map[string]string
	// Workspace is where the backend keeps /workspace ("" when not on the
	// local filesystem).
	Workspace string
	GPU       bool
	Notes     []string // e.g. limits that could not be enforced
	// OOMKills counts processes killed for exceeding the sandbox's memory
	// limit, where the backend knows.
	OOMKills int64
	// Image is the image reference the sandbox runs on ("" for the
	// default), ImageID its resolved id where the backend knows it.
	Image, ImageID string
	// Volumes are the volumes it mounts.
	Volumes []Mount
}

const (
	maxNameLen   = 63
	randomPrefix = "sb-"
)

// BaseEnv is the environment every sandbox starts with, before Spec.Env
// and the gateway variables.
func BaseEnv(spec Spec) map[string]string {
	env := map[string]string{
		"HOME":    Home,
		"USER":    SandboxUser,
		"LOGNAME": SandboxUser,
		"PATH":    DefaultPATH,
		"LANG":    "C.UTF-8",
		"TMPDIR":  "/tmp",
		"HF_HOME": HFHome,
		"SHELL":   "/bin/sh",
	}
	for _, m := range spec.Volumes {
		if m.Volume == volume.Trackio {
			env["TRACKIO_DIR"] = m.Path
		}
		if m.Volume == volume.Data {
			env["HF_HOME"] = path.Join(m.Path, hfCacheSubdir)
		}
	}
	return env
}

// GatewayEnv is the environment that points every client (Anthropic SDK,
// huggingface_hub, pip, git) at the gateway with the sandbox's token. It
// never holds anything but that token.
func GatewayEnv(token string) map[string]string {
	proxy := "http://mlagent:" + token + "@" + GatewayAddr
	return map[string]string{
		"ANTHROPIC_BASE_URL": GatewayURL,
		"ANTHROPIC_API_KEY":  token,
		"HF_ENDPOINT":        GatewayURL + "/hf",
		"HF_TOKEN":           token,
		"HTTPS_PROXY":        proxy,
		"HTTP_PROXY":         proxy,
		"https_proxy":        proxy,
		"http_proxy":         proxy,
		"NO_PROXY":           "127.0.0.1,localhost",
		"no_proxy":           "127.0.0.1,localhost",
		"GIT_CONFIG_GLOBAL":  GitConfig,
	}
}

// GitConfigFile is the git configuration (GIT_CONFIG_GLOBAL) that sends
// github.com through the gateway's git route with the sandbox's token.
func GitConfigFile(token string) []byte {
	return []byte(`[url "` + GatewayURL + `/git/github.com/"]
	insteadOf = https://github.com/
[http]
	extraHeader = Authorization: Bearer ` + token + `
[user]
	name = mlagent
	email = agent@mlagent.invalid
`)
}

// Environ flattens env maps (later ones win) into sorted KEY=VALUE form.
func Environ(maps ...map[string]string) []string {
	merged := map[string]string{}
	for _, m := range maps {
		for k, v := range m {
			merged[k] = v
		}
	}
	out := make([]string, 0, len(merged))
	for k, v := range merged {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
