// Package config finds mlagent's directories and loads its configuration:
// flags over environment over the config file over built-in defaults.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/BurntSushi/toml"
)

// Config is the whole configuration file. Each command reads its section;
// its flags default to these values, so a flag always wins.
type Config struct {
	// Home is mlagent's state directory (store, secrets, volumes, sandboxes).
	Home     string `toml:"-"`
	File     string `toml:"-"`         // the config file read, if any
	LogLevel string `toml:"log_level"` // debug, info, warn, error; "" = the command's default

	Gateway   GatewayConfig   `toml:"gateway"`
	Sandbox   SandboxConfig   `toml:"sandbox"`
	Run       RunConfig       `toml:"run"`
	Dashboard DashboardConfig `toml:"dashboard"`
	Syncer    SyncerConfig    `toml:"syncer"`
	GDrive    GDriveConfig    `toml:"gdrive"`
	Notion    NotionConfig    `toml:"notion"`
	Slack     SlackConfig     `toml:"slack"`
	// Kubernetes configures the kubernetes backend and `mlagent deploy
	// kubernetes`.
	Kubernetes KubernetesConfig `toml:"kubernetes"`
}

// SlackConfig configures `mlagent slack`.
type SlackConfig struct {
	Users            []string `toml:"users"`    // Slack user ids allowed; "*" = all
	Channels         []string `toml:"channels"` // channel ids where mentions are served; "*" = all
	SessionBudgetUSD float64  `toml:"session_budget_usd"`
	UserBudgetUSD    float64  `toml:"user_budget_usd"` // per user, all their Slack sessions together
	MaxSandboxes     int      `toml:"max_sandboxes"`
	MaxFileMB        int64    `toml:"max_file_mb"`
	APIURL           string   `toml:"api_url"` // Web API base; tests point it at a fake
}

// GDriveConfig configures Google Drive: `mlagent volume import|export` and
// the gateway's read-only /gdrive route.
type GDriveConfig struct {
	Upstream string `toml:"upstream"` // Drive API host, default https://www.googleapis.com
}

// NotionConfig configures the gateway's /notion route.
type NotionConfig struct {
	Upstream string `toml:"upstream"` // default https://api.notion.com
	// Parents are the pages (ids or links) under which the agent may
	// create report pages without asking.
	Parents []string `toml:"parents"`
}

// GatewayConfig configures `mlagent gateway` and the in-process gateway.
type GatewayConfig struct {
	Listen      string   `toml:"listen"`       // data plane, default 127.0.0.1:8790
	AdminListen string   `toml:"admin_listen"` // admin plane, default 127.0.0.1:8791
	Upstream    string   `toml:"upstream"`     // Anthropic-compatible API base URL
	HFUpstream  string   `toml:"hf_upstream"`  // Hugging Face Hub base URL
	GitUpstream string   `toml:"git_upstream"` // base URL for github.com git over HTTPS
	Allow       []string `toml:"allow"`        // CONNECT allowlist (host or *.domain)
	AuditLog    string   `toml:"audit_log"`    // JSON-lines audit file; default $MLAGENT_HOME/audit.jsonl
}

// SandboxConfig configures sandbox backends.
type SandboxConfig struct {
	Backend     string  `toml:"backend"`      // "bwrap" (default; also "local") or "kubernetes"
	Bwrap       string  `toml:"bwrap"`        // path to bwrap; default from $PATH
	Timeout     string  `toml:"timeout"`      // wall-clock limit, Go duration; "" = none
	IdleTimeout string  `toml:"idle_timeout"` // idle limit, Go duration; "" = none
	CPUs        float64 `toml:"cpus"`         // CPU limit per sandbox, e.g. 4; 0 = none
	Memory      string  `toml:"memory"`       // memory limit per sandbox, e.g. "16G"; "" = none
	Pids        int     `toml:"pids"`         // most tasks (processes and threads) per sandbox; 0 = none
	// Image is the OCI image sandboxes run on (a registry reference, an
	// OCI layout directory or an archive); "" = the host's /usr.
	Image string `toml:"image"`
}

// KubernetesConfig configures sandboxes as pods (sandbox.backend =
// "kubernetes") and what `mlagent deploy kubernetes` emits.
type KubernetesConfig struct {
	Kubeconfig string `toml:"kubeconfig"` // default $KUBECONFIG, else ~/.kube/config
	Context    string `toml:"context"`    // default the kubeconfig's current context
	// Namespace holds sandboxes and volumes (default the context's
	// namespace, else "mlagent"); GatewayNamespace the gateway (default
	// <namespace>-gateway).
	Namespace        string `toml:"namespace"`
	GatewayNamespace string `toml:"gateway_namespace"`
	// GatewayAddress is host:port where pods reach the gateway's data
	// plane; default the cluster IP of the deployed gateway's Service.
	GatewayAddress string `toml:"gateway_address"`
	// GatewayListen, when set, runs the gateway in this process on that
	// TCP address instead of using the deployed one (pods must reach it:
	// a host on the pods' network, as in the test bed).
	GatewayListen string `toml:"gateway_listen"`
	PullPolicy    string `toml:"pull_policy"`   // Always, IfNotPresent (default), Never
	RuntimeClass  string `toml:"runtime_class"` // e.g. gvisor, kata; default none
	StorageClass  string `toml:"storage_class"` // for volumes made on first use; default the cluster's
	AccessMode    string `toml:"access_mode"`   // ReadWriteOnce (default) or ReadWriteMany
	VolumeSize    string `toml:"volume_size"`   // default 20Gi
	// GPUResource is the extended resource of a GPU (default
	// nvidia.com/gpu); GPUProductLabel the node label GPU feature
	// discovery sets (default nvidia.com/gpu.product); GPUTypes maps
	// --gpu TYPE:N names to that label's values (A100 =
	// "NVIDIA-A100-SXM4-80GB"); a type not listed is used as it is.
	GPUResource     string            `toml:"gpu_resource"`
	GPUProductLabel string            `toml:"gpu_product_label"`
	GPUTypes        map[string]string `toml:"gpu_types"`
	// Tolerations are added to every sandbox pod (e.g. GPU node taints).
	Tolerations []Toleration `toml:"tolerations"`
	// MaxLifetime bounds every sandbox pod (activeDeadlineSeconds), Go
	// duration; default 24h.
	MaxLifetime string `toml:"max_lifetime"`
	// Heartbeat is how often a CLI renews the heartbeat of the sandbox
	// pods it created; one not renewed for four periods (its CLI died) is
	// deleted by the next command. Go duration; default 20s.
	Heartbeat string `toml:"heartbeat"`
	// Binary is the mlagent delivered into pods: a linux build for the
	// nodes' architecture (default this executable).
	Binary string `toml:"binary"`
	// PlainDelivery sends that binary uncompressed. By default it goes
	// gzip-compressed (28 MB instead of 125 MB: what counts over a
	// laptop's uplink) where the image has gzip; on a fast link to the
	// cluster, decompressing in the pod costs more than it saves.
	PlainDelivery bool `toml:"plain_delivery"`
}

// Toleration is a Kubernetes toleration of a node taint.
type Toleration struct {
	Key      string `toml:"key"`
	Operator string `toml:"operator"` // Equal (default) or Exists
	Value    string `toml:"value"`
	Effect   string `toml:"effect"` // NoSchedule, PreferNoSchedule, NoExecute; "" = all
}

// RunConfig configures `mlagent run`.
type RunConfig struct {
	// Model is the model id; "" = the newest Sonnet-class model the
	// key can use (internal/models), so that no default outlives its model.
	Model     string  `toml:"model"`
	BudgetUSD float64 `toml:"budget_usd"`
	MaxTurns  int     `toml:"max_turns"`
	BaseURL   string  `toml:"base_url"` // Anthropic-compatible server instead of api.anthropic.com
	// PermissionMode is default (ask before what leaves the sandbox),
	// ask-all (and before each command) or bypass (never ask).
	PermissionMode string   `toml:"permission_mode"`
	Allow          []string `toml:"allow"` // rules allowing without asking, e.g. "hub:push you/*"
}

// DashboardConfig configures the local metrics dashboard.
type DashboardConfig struct {
	Listen string `toml:"listen"`
	Dir    string `toml:"dir"` // Trackio directory; default the trackio volume
}

// SyncerConfig configures `mlagent syncer`.
type SyncerConfig struct {
	Dir      string `toml:"dir"`
	SpaceID  string `toml:"space_id"`
	Interval string `toml:"interval"`
	HubURL   string `toml:"hub_url"`
}

// Defaults returns the built-in configuration.
func Defaults() *Config {
	return &Config{
		Gateway: GatewayConfig{
			Listen:      "127.0.0.1:8790",
			AdminListen: "127.0.0.1:8791",
			Upstream:    "https://api.anthropic.com",
			HFUpstream:  "https://huggingface.co",
			GitUpstream: "https://github.com",
			Allow: []string{
				"pypi.org", "files.pythonhosted.org",
				"huggingface.co", "*.huggingface.co", "*.hf.co", "cdn-lfs.huggingface.co",
			},
		},
		Sandbox:   SandboxConfig{Backend: "local", Pids: 1024}, // sandbox.DefaultPids
		Run:       RunConfig{BudgetUSD: 5, MaxTurns: 200},
		Dashboard: DashboardConfig{Listen: "127.0.0.1:8792"},
		Syncer:    SyncerConfig{Interval: "30s", HubURL: "https://huggingface.co"},
		Slack:     SlackConfig{UserBudgetUSD: 20, MaxSandboxes: 2, MaxFileMB: 1024},
	}
}

// Load reads the config file (if any) and applies environment overrides.
// getenv is os.Getenv outside tests.
func Load(getenv func(string) string) (*Config, error) {
	c := Defaults()
	home, err := HomeDir(getenv)
	if err != nil {
		return nil, err
	}
	c.Home = home
	path := getenv("MLAGENT_CONFIG")
	if path == "" {
		path = filepath.Join(configDir(getenv), "config.toml")
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("config %s: %w", path, err)
	default:
		md, err := toml.Decode(string(data), c)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		if err := unknownKeys(path, data, md); err != nil {
			return nil, err
		}
		c.File = path
	}
	if err := c.applyEnv(getenv); err != nil {
		return nil, err
	}
	return c, nil
}

// applyEnv lets MLAGENT_* variables override the file.
func (c *Config) applyEnv(getenv func(string) string) error {
	str := map[string]*string{
		"MLAGENT_LOG_LEVEL":        &c.LogLevel,
		"MLAGENT_GATEWAY_LISTEN":   &c.Gateway.Listen,
		"MLAGENT_ADMIN_LISTEN":     &c.Gateway.AdminListen,
		"MLAGENT_UPSTREAM":         &c.Gateway.Upstream,
		"MLAGENT_HF_UPSTREAM":      &c.Gateway.HFUpstream,
		"MLAGENT_SANDBOX_BACKEND":  &c.Sandbox.Backend,
		"MLAGENT_BWRAP":            &c.Sandbox.Bwrap,
		"MLAGENT_SANDBOX_IMAGE":    &c.Sandbox.Image,
		"MLAGENT_KUBECONFIG":       &c.Kubernetes.Kubeconfig,
		"MLAGENT_KUBE_NAMESPACE":   &c.Kubernetes.Namespace,
		"MLAGENT_MODEL":            &c.Run.Model,
		"MLAGENT_BASE_URL":         &c.Run.BaseURL,
		"MLAGENT_PERMISSION_MODE":  &c.Run.PermissionMode,
		"MLAGENT_DASHBOARD_LISTEN": &c.Dashboard.Listen,
		"MLAGENT_SPACE_ID":         &c.Syncer.SpaceID,
		"MLAGENT_GDRIVE_UPSTREAM":  &c.GDrive.Upstream,
		"MLAGENT_NOTION_UPSTREAM":  &c.Notion.Upstream,
		"MLAGENT_SLACK_API_URL":    &c.Slack.APIURL,
	}
	for k, p := range str {
		if v := getenv(k); v != "" {
			*p = v
		}
	}
	if v := getenv("MLAGENT_BUDGET_USD"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return fmt.Errorf("MLAGENT_BUDGET_USD=%q: want a non-negative number", v)
		}
		c.Run.BudgetUSD = f
	}
	return nil
}

// HomeDir is $MLAGENT_HOME, else $XDG_DATA_HOME/mlagent, else
// ~/.local/share/mlagent.
func HomeDir(getenv func(string) string) (string, error) {
	if h := getenv("MLAGENT_HOME"); h != "" {
		return filepath.Abs(h)
	}
	if x := getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "mlagent"), nil
	}
	h := getenv("HOME")
	if h == "" {
		var err error
		if h, err = os.UserHomeDir(); err != nil {
			return "", fmt.Errorf("cannot find a home directory: set MLAGENT_HOME")
		}
	}
	return filepath.Join(h, ".local", "share", "mlagent"), nil
}

func configDir(getenv func(string) string) string {
	if x := getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "mlagent")
	}
	h := getenv("HOME")
	if h == "" {
		h, _ = os.UserHomeDir()
	}
	return filepath.Join(h, ".config", "mlagent")
}

// Paths under Home. Every part of mlagent finds its files through these.
func (c *Config) StorePath() string   { return filepath.Join(c.Home, "mlagent.db") }
func (c *Config) SecretsPath() string { return filepath.Join(c.Home, "secrets.json") }
func (c *Config) VolumesDir() string  { return filepath.Join(c.Home, "volumes") }
func (c *Config) HistoryPath() string { return filepath.Join(c.Home, "history") } // what the chat's person typed
func (c *Config) LogsDir() string     { return filepath.Join(c.Home, "logs") }

// SessionSocket is where a session's host serves front ends that attach.
func (c *Config) SessionSocket(id string) string {
	return filepath.Join(c.Home, "run", "s-"+id+".sock")
}
func (c *Config) ImagesDir() string { return filepath.Join(c.Home, "images") }
func (c *Config) SandboxesDir() string {
	return filepath.Join(c.Home, "sandboxes")
}
func (c *Config) AuditLogPath() string {
	if c.Gateway.AuditLog != "" {
		return c.Gateway.AuditLog
	}
	return filepath.Join(c.Home, "audit.jsonl")
}
