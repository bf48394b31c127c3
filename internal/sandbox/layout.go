package sandbox

import (
	"strings"

	"github.com/mlagent/mlagent/internal/volume"
)

// The in-sandbox layout: where every backend puts things, and what the
// agent, its system prompt, `mlagent init` and the demo assume. It is
// kept here alone, so moving a path is a change to this file.
const (
	// Home is the sandbox user's home directory (a tmpfs).
	Home = "/home/agent"
	// Workspace is the working directory: scratch space, kept with the
	// sandbox but not shared with other sessions.
	Workspace = "/workspace"

	// DataMount is where the data volume is mounted: what outlives the
	// sandbox (datasets, the Hugging Face cache, runs, transcripts, user
	// skills).
	DataMount = "/data"
	// HFHome is HF_HOME on the data volume.
	HFHome = DataMount + "/" + hfCacheSubdir
	// RunsDir holds each training run's outputs (checkpoints, CSVs).
	RunsDir = DataMount + "/" + RunsSubdir
	// SessionsDir holds the transcripts, <id>.jsonl, and the shell state.
	SessionsDir = DataMount + "/" + SessionsSubdir
	// SkillsDir holds the user's skills, one folder each.
	SkillsDir = DataMount + "/" + SkillsSubdir
	// TrackioMount is where the Trackio volume is mounted: Trackio's own
	// default directory, so training code needs no setting.
	TrackioMount = Home + "/.cache/huggingface/trackio"

	// BinDir holds the mlagent binary, bound read-only.
	BinDir     = "/opt/mlagent/bin"
	BinaryPath = BinDir + "/mlagent"
	// GitConfig sends github.com through the gateway (GIT_CONFIG_GLOBAL).
	GitConfig = "/etc/mlagent/gitconfig"
	// GatewayAddr is the loopback address inside where `mlagent init`
	// bridges to the gateway; GatewayURL is its URL.
	GatewayAddr = "127.0.0.1:8790"
	GatewayURL  = "http://" + GatewayAddr

	SandboxUser = "agent"
	SandboxUID  = 1000
	SandboxGID  = 1000
	DefaultPATH = BinDir + ":/usr/local/bin:/usr/bin:/bin"
)

// Folders of the data volume, relative to its root: the same inside
// (under DataMount) and on the host (under the volume's directory).
const (
	SessionsSubdir = "sessions"
	SkillsSubdir   = "skills"
	RunsSubdir     = "runs"
	UploadsSubdir  = "uploads" // files people attach in Slack, per session
	hfCacheSubdir  = "hf-cache"
)

// DefaultMounts are the original system's volumes: data at /data, Trackio
// at ~/.cache/huggingface/trackio.
func DefaultMounts() []Mount {
	return []Mount{
		{Volume: volume.Data, Path: DataMount},
		{Volume: volume.Trackio, Path: TrackioMount},
	}
}

// MountsEnv names the variable that tells the agent where the user's
// directories are mounted (FormatBinds).
const MountsEnv = "MLAGENT_MOUNTS"

// FormatBinds is the value of MountsEnv: PATH:ro or PATH:rw, comma
// separated (paths are the sandbox's, not the host's).
func FormatBinds(bs []Bind) string {
	var parts []string
	for _, b := range bs {
		mode := "ro"
		if b.Writable {
			mode = "rw"
		}
		parts = append(parts, b.Path+":"+mode)
	}
	return strings.Join(parts, ",")
}

// ParseMounts reads MountsEnv's value: the mounted paths and whether each
// is writable; malformed entries are skipped.
func ParseMounts(v string) (paths []string, writable []bool) {
	for _, p := range strings.Split(v, ",") {
		path, mode, ok := strings.Cut(p, ":")
		if !ok || !strings.HasPrefix(path, "/") || (mode != "ro" && mode != "rw") {
			continue
		}
		paths = append(paths, path)
		writable = append(writable, mode == "rw")
	}
	return paths, writable
}
