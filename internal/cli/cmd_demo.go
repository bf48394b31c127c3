package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/mlagent/mlagent/internal/chat"
	"github.com/mlagent/mlagent/internal/demo"
	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/bwrap"
)

func init() {
	register(&Command{
		Name:    "demo",
		Summary: "the offline reference session: scripted model, real sandbox and training",
		Run:     runDemo,
		Quiet:   true,
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
	log := env.Log.With("cmd", "demo")

	up := demo.StartUpstreams(sizes)
	defer up.Close()
	host, err := launch.Start(ctx, launch.Options{
		Config: env.Config, Log: log,
		Upstream: up.Model.URL(), ModelKey: up.Key, HFUpstream: up.Hub.URL,
	})
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent demo: %v\n", err)
		return ExitFailure
	}
	defer host.Close()

	dashURL := ""
	if *listen != "off" {
		url, stop, err := listenDashboard(env, *listen)
		if err != nil {
			fmt.Fprintf(env.Stderr, "mlagent demo: dashboard: %v (going on without it)\n", err)
		} else {
			defer stop()
			dashURL = url
		}
	}

	sb, err := host.NewSandbox(ctx, launch.SandboxRequest{
		BudgetUSD: 5,
		Labels:    map[string]string{"mlagent.demo": "true"},
	})
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent demo: create sandbox: %v\n", err)
		return ExitFailure
	}
	defer sb.Terminate(context.WithoutCancel(ctx))

	out := env.Stdout
	tty := writerIsTerminal(out)
	fmt.Fprintf(out, "mlagent demo · offline · sandbox %s (bubblewrap) · gateway in-process · scripted model\n", sb.Name())
	if dashURL != "" {
		fmt.Fprintf(out, "live training metrics: %s\n", dashURL)
	}

	agentIn, agentInW := io.Pipe()
	agentOutR, agentOut := io.Pipe()
	execDone := make(chan error, 1)
	go func() {
		var stderr strings.Builder
		code, err := sb.Exec(ctx, sandbox.ExecRequest{
			Argv:   []string{"mlagent", "agent", "--model", env.Config.Run.Model},
			Stdin:  agentIn,
			Stdout: agentOut,
			Stderr: &limitedBuilder{b: &stderr, max: 64 << 10},
		})
		if err == nil && code != 0 {
			err = fmt.Errorf("agent exited with code %d: %s", code, lastLines(stderr.String(), 5))
		}
		agentOut.CloseWithError(io.EOF)
		execDone <- err
	}()

	userR, userW := io.Pipe()
	interrupts := make(chan struct{}, 1)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	defer signal.Stop(sig)
	go func() {
		for range sig {
			select {
			case interrupts <- struct{}{}:
			default:
			}
		}
	}()
	turns := 0
	res, err := chat.Run(ctx, chat.Options{
		AgentIn: agentInW, AgentOut: agentOutR,
		In: userR, Out: out, Err: env.Stderr, TTY: tty,
		OutputFormat: *format,
		Answers:      demo.User{},
		FirstPrompt:  demo.FirstPrompt,
		DashboardURL: dashURL,
		Interrupt:    interrupts,
		OnUserMessage: func(text string) {
			if *format == chat.FormatChat {
				fmt.Fprintf(out, "\n> %s\n\n", text)
			}
		},
		OnTurn: func(t chat.Turn) {
			turns++
			go func() {
				if turns == 1 && t.StopReason == "end_turn" {
					io.WriteString(userW, demo.SecondPrompt+"\n")
					return
				}
				io.WriteString(userW, "/exit\n")
			}()
		},
	})
	userW.Close()
	if err != nil && !errors.Is(err, chat.ErrInterrupted) {
		fmt.Fprintf(env.Stderr, "mlagent demo: %v\n", err)
	}
	select {
	case xerr := <-execDone:
		if xerr != nil && err == nil {
			err = xerr
			fmt.Fprintf(env.Stderr, "mlagent demo: %v\n", xerr)
		}
	case <-time.After(15 * time.Second):
	}
	if terr := sb.Terminate(context.WithoutCancel(ctx)); terr != nil {
		fmt.Fprintf(env.Stderr, "mlagent demo: terminate: %v\n", terr)
	}
	demoSummary(ctx, env, host, sb.TokenID, res)
	if err != nil || turns < 2 || res.StopReason != "end_turn" {
		return ExitFailure
	}
	return ExitOK
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

// demoSummary prints where the results are on the host and what the
// gateway's ledger recorded for the sandbox's token.
func demoSummary(ctx context.Context, env *Env, host *launch.Host, tokenID string, res chat.Result) {
	out := env.Stdout
	fmt.Fprintln(out, "\n── demo finished ──")
	runs := filepath.Join(env.Config.VolumesDir(), "data", "runs")
	if entries, err := os.ReadDir(runs); err == nil && len(entries) > 0 {
		latest := entries[len(entries)-1].Name()
		fmt.Fprintf(out, "checkpoint and CSV on the data volume: %s\n", filepath.Join(runs, latest))
	}
	fmt.Fprintf(out, "Trackio databases: %s\n", env.Config.TrackioDir())
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
	fmt.Fprintln(out, "`mlagent usage` shows the ledger; `mlagent volume ls data` lists the volume.")
}

type limitedBuilder struct {
	b   *strings.Builder
	max int
}

func (l *limitedBuilder) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		if len(p) > room {
			l.b.Write(p[:room])
		} else {
			l.b.Write(p)
		}
	}
	return len(p), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
