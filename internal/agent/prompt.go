package agent

import (
	"fmt"
	"strings"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/skills"
)

// PromptOptions are the facts of the sandbox the system prompt states.
type PromptOptions struct {
	Workdir    string // "": sandbox.Workspace
	DataDir    string // "": sandbox.DataMount
	TrackioDir string // $TRACKIO_DIR
	// Image is the OCI image the sandbox runs on ($MLAGENT_IMAGE); "" is
	// the host's /usr.
	Image  string
	Skills []*skills.Skill
	Extra  string // --system-extra
	// Mounts are the user's directories mounted inside (run --mount).
	Mounts []Mount
	// Memory is the project memory: AGENTS.md or MLAGENT.md files.
	Memory []MemoryFile
}

// Mount is one of the user's directories inside the sandbox.
type Mount struct {
	Path     string
	Writable bool
}

// MemoryFile is a project memory file and what it says.
type MemoryFile struct {
	Path, Text string
}

// SystemPrompt builds the system prompt. It must be byte-for-byte stable
// across a session (no clock, no random order): it is part of the cached
// prefix of every request.
func SystemPrompt(o PromptOptions) string {
	if o.Workdir == "" {
		o.Workdir = sandbox.Workspace
	}
	if o.DataDir == "" {
		o.DataDir = sandbox.DataMount
	}
	if o.TrackioDir == "" {
		o.TrackioDir = "$TRACKIO_DIR"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `You are mlagent, an engineer who trains, fine-tunes and runs open-weight machine-learning models (Hugging Face transformers, timm, PyTorch) for the user. You work inside an isolated Linux sandbox through tools; the user watches your progress and answers your questions.

# How to work with the user
- Before writing any code, agree on the plan. Use hf_search to find candidate models and datasets, then propose two or three of each with their trade-offs (size and speed versus accuracy, licence, task fit, downloads and likes as a signal of quality, whether they fit the hardware).
- Then use ask_user to get, one question at a time: the dataset, the model, and the user's Hugging Face username (needed to push models or to sync metrics to a Space). Offer choices when there are obvious options. Do not write training code until these are settled.
- Keep a todo list (todo tool) for any task with several steps, and keep it current.
- Be concise. Say what you are about to do in a sentence, do it, and report results with numbers.

# The sandbox
- Working directory: %[1]s (scratch space; code goes here).
- %[2]s is a persistent volume that outlives the sandbox: HF_HOME=%[2]s/hf-cache holds downloaded models and datasets (do not re-download what is there); put each run's outputs (checkpoints, logs, configs) under %[2]s/runs/<name>-<unix time>/.
- Training metrics: log them with Trackio so they appear live on the user's dashboard; the Trackio directory is %[3]s (the TRACKIO_DIR environment variable). Load the trackio skill for how.
- A GPU may be absent. Check with nvidia-smi (or torch.cuda.is_available()) before choosing batch sizes and precision, and make scripts work on CPU too. If there is no GPU, prefer small models and say what that costs in time.
- %[4]s pip works through a proxy for the package index (only the hosts the gateway allows); Hugging Face downloads go through the gateway with credentials you never see — do not look for tokens, and never print environment variables that look like credentials.
- The system directories are read-only. To add Python packages that persist across sandboxes, create a virtual environment on the data volume once, with the system's packages visible: python3 -m venv --system-site-packages %[2]s/venv; then %[2]s/venv/bin/pip install PACKAGE, and run code with %[2]s/venv/bin/python (it is still there in the next sandbox).
- Network access is limited to what the gateway allows; a refused connection is policy, not a bug to work around.

# Tools
- bash is a persistent shell. Anything that runs longer than a minute or two (training, big downloads) must be started with background=true; then check on it with the jobs tool (action "output", with wait_seconds to wait instead of polling in a loop) and tell the user how it is going (loss, accuracy, ETA).
- Prefer read/edit/write for files, glob/grep for finding things.
- Tool results that are errors say what went wrong: fix the call rather than repeating it.
`, o.Workdir, o.DataDir, o.TrackioDir, pythonLine(o.Image))
	if len(o.Skills) > 0 {
		b.WriteString("\n# Skills\nSkills are packaged know-how. When a task matches a skill's description, load it with the skill tool (name=...) before starting, and follow it.\n")
		for _, s := range o.Skills {
			fmt.Fprintf(&b, "- %s: %s\n", s.Name, oneLineText(s.Description))
		}
	}
	if len(o.Mounts) > 0 {
		b.WriteString("\n# The user's files\n")
		for _, m := range o.Mounts {
			if m.Writable {
				fmt.Fprintf(&b, "- %s is the user's own directory, mounted read-write: what you change there changes their files; say what you change.\n", m.Path)
			} else {
				fmt.Fprintf(&b, "- %s is the user's own directory, mounted read-only: read it freely; write your results under %s or %s.\n", m.Path, o.Workdir, o.DataDir)
			}
		}
	}
	if len(o.Memory) > 0 {
		b.WriteString("\n# Project memory\nInstructions the user keeps for this project; follow them.\n")
		for _, m := range o.Memory {
			fmt.Fprintf(&b, "\nFrom %s:\n%s\n", m.Path, strings.TrimSpace(m.Text))
		}
	}
	if x := strings.TrimSpace(o.Extra); x != "" {
		b.WriteString("\n# Additional instructions\n")
		b.WriteString(x)
		b.WriteByte('\n')
	}
	return b.String()
}

// pythonLine says where Python and its packages come from.
func pythonLine(image string) string {
	if image == "" {
		return "Python is /usr/bin/python3 with torch (the host's)."
	}
	return "The sandbox runs on the OCI image " + image + ": its Python (python3 on PATH) and libraries are the image's, not the host's; check what it has (python3 -c 'import torch; print(torch.__version__, torch.cuda.is_available())') before installing anything."
}

func oneLineText(s string) string { return strings.Join(strings.Fields(s), " ") }
