package cli

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/mlagent/mlagent/internal/initproc"
	"github.com/mlagent/mlagent/internal/sandbox"
)

func init() {
	register(&Command{
		OwnSignals: true,
		Name:       "init",
		Service:    true,
		Summary:    "PID 1 inside a sandbox (internal)",
		Hidden:     true,
		Run:        runInit,
	})
}

const initHelp = `PID 1 of a sandbox, started by its backend (bubblewrap, or a Kubernetes pod):
reaps zombies, serves the control socket the host runs commands through, and
bridges 127.0.0.1:8790 inside to the gateway outside (its Unix socket, or its
address from a pod). Not for direct use.`

func runInit(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "init", "init --control-fd N|--control PATH [flags]", initHelp)
	var opts initproc.Options
	readyFD := fs.Int("ready-fd", -1, "descriptor that gets \"ok\" once serving")
	controlFD := fs.Int("control-fd", -1, "inherited listening control socket (unixpacket)")
	fs.StringVar(&opts.Control, "control", "", "control socket path, when no --control-fd")
	fs.StringVar(&opts.GatewaySocket, "gateway-socket", "", "gateway Unix socket to bridge to (none: no bridge)")
	fs.StringVar(&opts.GatewayTCP, "gateway-tcp", "", "gateway host:port to bridge to, instead of a socket (a pod)")
	fs.StringVar(&opts.EnvFile, "env-file", "", "file of NUL-separated KEY=VALUE entries added to the environment")
	fs.StringVar(&opts.PathPrepend, "path-prepend", "", "directory put in front of the inherited PATH")
	fs.IntVar(&opts.Nproc, "nproc", 0, "RLIMIT_NPROC for every command (0: inherited)")
	fs.StringVar(&opts.BridgeListen, "bridge-listen", sandbox.GatewayAddr, "loopback address of the gateway bridge")
	fs.DurationVar(&opts.Timeout, "timeout", 0, "wall-clock limit (0: none)")
	fs.DurationVar(&opts.IdleTimeout, "idle-timeout", 0, "end after this long with no command running (0: none)")
	fs.StringVar(&opts.DefaultDir, "dir", sandbox.Workspace, "default working directory of commands")
	if code := parseFlags(fs, args, env); code >= 0 {
		return code
	}
	initproc.CloseInherited()
	if *readyFD >= 0 {
		opts.Ready = os.NewFile(uintptr(*readyFD), "ready-fd-"+strconv.Itoa(*readyFD))
	}
	if *controlFD >= 0 {
		ln, err := initproc.FileListener(os.NewFile(uintptr(*controlFD), "control-fd"))
		if err != nil {
			if opts.Ready != nil {
				fmt.Fprintf(opts.Ready, "error: %v\n", err)
			}
			fmt.Fprintf(env.Stderr, "mlagent init: %v\n", err)
			return ExitFailure
		}
		opts.ControlListener = ln
	}
	opts.Log = env.Log
	if err := initproc.Run(ctx, opts); err != nil {
		fmt.Fprintf(env.Stderr, "mlagent init: %v\n", err)
		return ExitFailure
	}
	return ExitOK
}
