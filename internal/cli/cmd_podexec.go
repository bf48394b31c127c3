package cli

import (
	"context"
	"fmt"

	"github.com/mlagent/mlagent/internal/sandbox/kube/podexec"
)

func init() {
	register(&Command{
		OwnSignals: true,
		Name:       "podexec",
		Summary:    "one operation for a Kubernetes sandbox's host, over stdio (internal)",
		Hidden:     true,
		Run:        runPodexec,
	})
}

const podexecHelp = `Run inside a Kubernetes sandbox pod through the exec subresource: reads one
framed request (run a command, read or write a file) on stdin, has the pod's
init run it, and answers with framed output and the exit status on stdout.
Not for direct use.`

func runPodexec(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "podexec", "podexec [--init @NAME] [--dir DIR]", podexecHelp)
	var o podexec.ServeOptions
	fs.StringVar(&o.Init, "init", podexec.InitSocket, "control socket of the sandbox's init")
	fs.StringVar(&o.Dir, "dir", "/workspace", "where relative paths point")
	if code := parseFlags(fs, args, env); code >= 0 {
		return code
	}
	if err := podexec.Serve(ctx, env.Stdin, env.Stdout, o); err != nil {
		fmt.Fprintf(env.Stderr, "mlagent podexec: %v\n", err)
		return ExitFailure
	}
	return ExitOK
}
