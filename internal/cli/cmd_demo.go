package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/mlagent/mlagent/internal/chat"
	"github.com/mlagent/mlagent/internal/demo"
	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/bwrap"
	"github.com/mlagent/mlagent/internal/sanitize"
	"github.com/mlagent/mlagent/internal/sessions"
	"github.com/mlagent/mlagent/internal/volume"
)

func init() {
	register(&Command{
		Interactive: true,
		Name:        "demo",
		Summary:     "the offline reference session: scripted model, real sandbox and training",
		Run:         runDemo,
	})
}

const demoHelp = `Plays the reference session offline: "Train a model for categorizing
multispectral satellite imagery". A scripted model (served in-process behind the
real gateway) makes the agent's decisions; everything else is real: the local
bubblewrap sandbox, the tools, PyTorch training on the CPU, Trackio metrics on
the live dashboard, the checkpoint and CSV on the data volume, and usage in the
gateway's ledger. Every number in the agent's reports is computed in the sandbox.

Needs bubblewrap and Debian's python3-torch (` + "`make demo`" + ` installs both).
Takes a few minutes on two CPU cores.`

func runDemo(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "demo", "demo [flags]", demoHelp)
	sizes := demo.DefaultSizes
	fs.IntVar(&sizes.PerClass, "per-class", sizes.PerClass, "synthetic tiles per class (all splits)")
	fs.IntVar(&sizes.Epochs, "epochs", sizes.Epochs, "training epochs")
	fs.IntVar(&sizes.BatchSize, "batch-size", sizes.BatchSize, "training batch size")
	listen := fs.String("dashboard-listen", env.Config.Dashboard.Listen, "dashboard address (loopback); \"off\" disables it")
	format := fs.String("output-format", chat.FormatChat, "chat (the conversation) or stream-json (every agent event)")
	if code := parseFlags(fs, args, env); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "mlagent demo: unexpected argument %q\n", fs.Arg(0))
		return ExitUsage
	}
	if sizes.PerClass < 10 || sizes.Epochs < 1 || sizes.BatchSize < 1 {
		fmt.Fprintln(env.Stderr, "mlagent demo: --per-class must be ≥ 10, --epochs and --batch-size ≥ 1")
		return ExitUsage
	}
	if err := demoPreflight(ctx, env); err != nil {
		fmt.Fprintf(env.Stderr, "mlagent demo: %v\n", err)
		return ExitUsage
	}
	up := demo.StartUpstreams(sizes)
	defer up.Close()

	// The demo is a chat like any other (it is listed by `mlagent
	// sessions`), with a scripted model behind the real gateway and a
	// scripted user who accepts the recommendation and then asks for
	// inference, as in the original session.
	userR, userW := io.Pipe()
	defer userW.Close()
	turns := 0
	cf := chatFlags{
		outputFormat: *format, model: env.Config.Run.Model, budgetUSD: 5,
		maxTurns: env.Config.Run.MaxTurns, backend: env.Config.Sandbox.Backend, dashboard: *listen,
	}
	fmt.Fprintln(env.Stdout, "mlagent demo · offline · scripted model behind the real gateway · real sandbox, tools and training")
	now := time.Now()
	return runChat(ctx, env, "demo", &cf, chatSession{
		Session: sessions.Session{ID: sessions.NewID(now), Title: "demo: " + demo.FirstPrompt,
			Model: cf.model, Volumes: sandbox.DefaultMounts(), GPU: sandbox.GPUNone.String()},
		Prompt:   demo.FirstPrompt,
		Upstream: up.Model.URL(), HFUpstream: up.Hub.URL(), ModelKey: up.Key, HFToken: up.HFToken,
		In: userR, Answers: demo.User{},
		OnTurn: func(t chat.Turn) {
			turns++
			next := "/exit\n"
			if turns == 1 && t.StopReason == "end_turn" {
				next = demo.SecondPrompt + "\n"
			}
			go io.WriteString(userW, next)
		},
		Done: func(host *launch.Host, sb *launch.Sandbox, res chat.Result, code int) int {
			demoSummary(ctx, env, host, sb.TokenID)
			if code == ExitOK && (turns < 2 || res.StopReason != "end_turn") {
				fmt.Fprintln(env.Stderr, "mlagent demo: the session did not reach its end")
				return ExitFailure
			}
			return code
		},
	})
}

// demoPreflight says what to install before anything is started.
func demoPreflight(ctx context.Context, env *Env) error {
	if err := bwrap.Check(ctx, env.Config.Sandbox.Bwrap); err != nil {
		return fmt.Errorf("%w\n(`make demo` installs bubblewrap: apt-get install -y bubblewrap)", err)
	}
	if err := exec.CommandContext(ctx, "/usr/bin/python3", "-c", "import torch, numpy").Run(); err != nil {
		return errors.New("the demo trains with Debian's PyTorch in /usr/bin/python3, which is missing\n(`make demo` installs it: apt-get install -y python3-torch python3-numpy)")
	}
	return nil
}

// newestRun names the last folder of dir (run folders sort by time), as
// the sandbox named it: sanitized for the terminal.
func newestRun(dir string) (string, bool) {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		return "", false
	}
	return sanitize.Line(entries[len(entries)-1].Name(), 200), true
}

// demoSummary prints where the results are on the host and what the
// gateway's ledger recorded for the sandbox's token.
func demoSummary(ctx context.Context, env *Env, host *launch.Host, tokenID string) {
	out := env.Stdout
	fmt.Fprintln(out, "\n── demo finished ──")
	runs := filepath.Join(env.Config.VolumesDir(), volume.Data, sandbox.RunsSubdir)
	if latest, ok := newestRun(runs); ok {
		fmt.Fprintf(out, "checkpoint and CSV on the data volume: %s\n", filepath.Join(runs, latest))
	}
	fmt.Fprintf(out, "Trackio databases: %s\n", trackioDir(env.Config))
	if gw := host.Gateway(); gw != nil {
		if usage, err := gw.Usage(ctx); err == nil {
			for _, u := range usage {
				if u.ID != tokenID {
					continue
				}
				prompt := u.InputTokens + u.CacheCreationTokens + u.CacheReadTokens
				ratio := 0.0
				if prompt > 0 {
					ratio = float64(u.CacheReadTokens) / float64(prompt)
				}
				fmt.Fprintf(out, "gateway ledger (token %s): %d requests · %d in · %d out · %.0f%% of prompt tokens read from cache · $%.4f at list prices (scripted model: nothing was billed)\n",
					u.ID, u.Requests, prompt, u.OutputTokens, 100*ratio, u.CostUSD)
			}
		}
	}
	fmt.Fprintln(out, "`mlagent usage` shows the ledger; `mlagent volume ls data /data/runs` lists the runs.")
}
