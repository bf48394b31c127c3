package cli

import (
	"context"
	"fmt"

	"github.com/mlagent/mlagent/internal/sandbox/kube"
	"github.com/mlagent/mlagent/internal/sanitize"
)

func init() {
	register(&Command{
		Name:    "volume-helper",
		Summary: "one volume operation in a Kubernetes volume helper pod (internal)",
		Hidden:  true,
		Run:     runVolumeHelper,
	})
}

const volumeHelperHelp = `Run inside a Kubernetes volume helper pod through the exec subresource: one
operation (ls, measure, cat, pack, unpack, rm) on a volume mounted under --dir,
for mlagent volume on the host. Not for direct use.`

func runVolumeHelper(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "volume-helper", "volume-helper [--dir DIR] OP NAME REL [-r]", volumeHelperHelp)
	dir := fs.String("dir", "/volumes", "where the volumes are mounted")
	if code := parseFlags(fs, args, env); code >= 0 {
		return code
	}
	err := kube.ServeVolume(*dir, fs.Args(), env.Stdin, env.Stdout)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent volume-helper: %s\n", sanitize.Text(err.Error()))
	}
	return kube.ServeVolumeStatus(err)
}
