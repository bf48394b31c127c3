package cli

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/mlagent/mlagent/internal/volume"
)

func init() {
	register(&Command{
		Name:    "volume",
		Summary: "named volumes that outlive sandboxes (ls, put, get, rm)",
		Run:     runVolume,
	})
}

const volumeHelp = `Volumes live under $MLAGENT_HOME/volumes and are mounted into sandboxes
(data at /data, trackio at ~/.cache/huggingface/trackio by default).

  mlagent volume ls                        list volumes with file counts and sizes
  mlagent volume put VOLUME SRC DEST       copy a host file or directory into the volume at DEST
  mlagent volume get VOLUME SRC DEST       copy SRC (file or directory) out of the volume to DEST
  mlagent volume rm VOLUME                 delete a volume and its files
  mlagent volume import gdrive://ID VOLUME:PATH        copy from Google Drive (see below)
  mlagent volume export VOLUME:PATH gdrive://FOLDER_ID copy to Google Drive

Example (upload a local file for the agent; it appears at /data/datasets/my.tif):
  mlagent volume put data ./my.tif datasets/my.tif

` + volumeDriveHelp

func runVolume(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "volume", "volume ls|put|get|rm|import|export ...", volumeHelp)
	if len(args) > 0 && (args[0] == "import" || args[0] == "export") {
		// These have flags of their own, after the subcommand.
		return runVolumeDrive(ctx, env, args[0], args[1:])
	}
	if code := parseFlags(fs, args, env); code >= 0 {
		return code
	}
	args = fs.Args()
	if len(args) == 0 {
		fs.Usage()
		return ExitUsage
	}
	st := volume.New(env.Config.VolumesDir())
	switch args[0] {
	case "ls", "list":
		vols, err := st.List()
		if err != nil {
			fmt.Fprintf(env.Stderr, "mlagent volume ls: %v\n", err)
			return ExitFailure
		}
		if len(vols) == 0 {
			fmt.Fprintln(env.Stdout, "no volumes; sandboxes create data and trackio on first use")
			return ExitOK
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tFILES\tBYTES\tPATH")
		for _, v := range vols {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", v.Name, v.Files, v.Bytes, v.Path)
		}
		tw.Flush()
	case "put", "get":
		if len(args) != 4 {
			fmt.Fprintf(env.Stderr, "usage: mlagent volume %s VOLUME SRC DEST\n", args[0])
			return ExitUsage
		}
		var n int
		var err error
		if args[0] == "put" {
			n, err = st.Put(args[1], args[2], args[3])
		} else {
			n, err = st.Get(args[1], args[2], args[3])
		}
		if err != nil {
			fmt.Fprintf(env.Stderr, "mlagent volume %s: %v\n", args[0], err)
			return ExitFailure
		}
		fmt.Fprintf(env.Stdout, "copied %d file(s)\n", n)
	case "import", "export":
		return runVolumeDrive(ctx, env, args[0], args[1:])
	case "rm", "remove":
		if len(args) != 2 {
			fmt.Fprintln(env.Stderr, "usage: mlagent volume rm VOLUME")
			return ExitUsage
		}
		if err := st.Remove(args[1]); err != nil {
			fmt.Fprintf(env.Stderr, "mlagent volume rm: %v\n", err)
			return ExitFailure
		}
		fmt.Fprintf(env.Stdout, "removed volume %s\n", args[1])
	default:
		fmt.Fprintf(env.Stderr, "mlagent volume: unknown subcommand %q\n\n%s\n", args[0], volumeHelp)
		return ExitUsage
	}
	return ExitOK
}
