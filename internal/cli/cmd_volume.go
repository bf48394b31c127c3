package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sanitize"
	"github.com/mlagent/mlagent/internal/volume"
	"golang.org/x/sys/unix"
)

func init() {
	register(&Command{
		Name:    "volume",
		Summary: "named volumes that outlive sandboxes (ls, put, get, rm)",
		Run:     runVolume,
	})
}

const volumeHelp = `Volumes live under $MLAGENT_HOME/volumes and are mounted into sandboxes
(data at /data, trackio at ~/.cache/huggingface/trackio by default). Paths in a
volume may be written as the sandbox sees them: /data/datasets/x is datasets/x
of the data volume. With the kubernetes backend (sandbox.backend in the config,
or --backend kubernetes) they are the cluster's PersistentVolumeClaims
mlagent-VOLUME, their files reached through a short-lived helper pod.

  mlagent volume ls                        list volumes with file counts and sizes
  mlagent volume ls VOLUME [PATH]          list the files in a volume (or in PATH of it)
  mlagent volume create VOLUME             make an empty volume
  mlagent volume put VOLUME SRC [DEST]     copy a host file or directory into the volume
                                           (into DEST if it is a directory, like cp -r;
                                           DEST defaults to the volume's root)
  mlagent volume get VOLUME SRC [DEST]     copy SRC out of the volume (into DEST if it is a
                                           directory; DEST defaults to .); DEST - writes a
                                           file to stdout
  mlagent volume rm VOLUME                 delete a volume and its files (asks first; refused
                                           while a sandbox uses it)
  mlagent volume rm [-r] VOLUME PATH       delete a file (-r: a directory) from a volume
  mlagent volume import gdrive://ID VOLUME:PATH        copy from Google Drive (see below)
  mlagent volume export VOLUME:PATH gdrive://FOLDER_ID copy to Google Drive

put creates a missing volume and says so. get keeps sparse files sparse, never
copies setuid or setgid bits, and asks before writing more than --max-size (or
more than the destination has room for).

Example (upload a local file for the agent; it appears at /data/datasets/my.tif):
  mlagent volume put data ./my.tif /data/datasets/my.tif
` + volumeDriveHelp

func runVolume(ctx context.Context, env *Env, args []string) int {
	if len(args) > 0 && (args[0] == "import" || args[0] == "export") {
		// These have flags of their own, after the subcommand.
		return runVolumeDrive(ctx, env, args[0], args[1:])
	}
	fs := newFlagSet(env, "volume", "volume ls|create|put|get|rm|import|export ...", volumeHelp)
	yes := fs.Bool("yes", false, "do not ask: remove a volume, or get more than --max-size")
	fs.BoolVar(yes, "y", false, "same as --yes")
	recursive := fs.Bool("r", false, "rm VOLUME PATH: remove a directory and all it holds")
	maxSize := fs.String("max-size", "10G", "get asks before writing more than this (a size like 10G)")
	backend := fs.String("backend", env.Config.Sandbox.Backend, "whose volumes: local (bubblewrap; directories under $MLAGENT_HOME/volumes) or kubernetes (PersistentVolumeClaims)")
	args, code := parseInterleaved(fs, args, env)
	if code >= 0 {
		return code
	}
	if len(args) == 0 {
		fs.Usage()
		return ExitUsage
	}
	v := &volumeCmd{env: env, sub: args[0], yes: *yes, recursive: *recursive}
	args = args[1:]
	var err error
	if v.maxSize, err = parseSize(*maxSize); err != nil {
		return v.usage("--max-size: %v", err)
	}
	if _, err := launch.BackendKind(*backend); err != nil {
		return v.usage("--backend: %v", err)
	}
	env.Config.Sandbox.Backend = *backend
	st, closeVolumes, err := openVolumes(ctx, env)
	if err != nil {
		return v.fail(err)
	}
	defer closeVolumes()
	v.st = st
	switch v.sub {
	case "ls", "list":
		return v.ls(ctx, args)
	case "create":
		if len(args) != 1 {
			return v.usage("usage: mlagent volume create VOLUME")
		}
		if err := v.st.Create(ctx, args[0]); err != nil {
			return v.fail(err)
		}
		fmt.Fprintf(env.Stdout, "created volume %s\n", args[0])
	case "put":
		return v.put(ctx, args)
	case "get":
		return v.get(ctx, args)
	case "rm", "remove":
		return v.rm(ctx, args)
	default:
		return v.usage("unknown subcommand %q (mlagent volume --help lists them)", v.sub)
	}
	return ExitOK
}

// volumeCmd is one `mlagent volume` subcommand.
type volumeCmd struct {
	env       *Env
	st        sandbox.Volumes
	sub       string
	yes       bool
	recursive bool
	maxSize   int64
}

// fail prints err (which may name files a sandbox made: sanitized).
func (v *volumeCmd) fail(err error) int {
	fmt.Fprintf(v.env.Stderr, "mlagent volume %s: %s\n", v.sub, sanitize.Text(err.Error()))
	return ExitFailure
}

func (v *volumeCmd) usage(format string, a ...any) int {
	fmt.Fprintf(v.env.Stderr, "mlagent volume %s: "+format+"\n", append([]any{v.sub}, a...)...)
	return ExitUsage
}

// inVolume turns a path as the sandbox sees it (/data/datasets/x) into
// one inside the volume (datasets/x), for the volumes with a known mount
// point; any other path is already inside the volume.
func inVolume(vol, p string) string {
	for _, m := range sandbox.DefaultMounts() {
		if m.Volume != vol {
			continue
		}
		if p == m.Path {
			return "/"
		}
		if rest, ok := strings.CutPrefix(p, m.Path+"/"); ok {
			return rest
		}
	}
	return p
}

func (v *volumeCmd) ls(ctx context.Context, args []string) int {
	out := v.env.Stdout
	if len(args) == 0 {
		vols, err := v.st.List(ctx)
		if err != nil {
			return v.fail(err)
		}
		if len(vols) == 0 {
			fmt.Fprintln(out, "no volumes; sandboxes create data and trackio on first use")
			return ExitOK
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tFILES\tSIZE\tPATH")
		for _, vol := range vols {
			files := strconv.Itoa(vol.Files)
			if vol.Files < 0 {
				files = "-" // a claim: its size is what it may hold
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", vol.Name, files, humanBytes(vol.Bytes), vol.Path)
		}
		tw.Flush()
		return ExitOK
	}
	if len(args) > 2 {
		return v.usage("usage: mlagent volume ls [VOLUME [PATH]]")
	}
	p := "/"
	if len(args) == 2 {
		p = inVolume(args[0], args[1])
	}
	entries, truncated, err := v.st.ReadDir(ctx, args[0], p)
	if err != nil {
		return v.fail(err)
	}
	if len(entries) == 0 {
		fmt.Fprintln(out, "(empty)")
		return ExitOK
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tSIZE\tMODIFIED\tNAME")
	for _, e := range entries {
		kind, size, name := "file", humanBytes(e.Size), sanitize.Line(e.Name, 0)
		switch {
		case e.Mode.IsDir():
			kind, size, name = "dir", "-", name+"/"
		case e.Mode&fs.ModeSymlink != 0:
			kind, size, name = "link", "-", name+" -> "+sanitize.Line(e.Target, 0)
		case !e.Mode.IsRegular():
			kind = "other"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", kind, size, e.ModTime.Local().Format(time.DateTime), name)
	}
	tw.Flush()
	if truncated {
		fmt.Fprintf(v.env.Stderr, "(only the first %d entries)\n", len(entries))
	}
	return ExitOK
}

func (v *volumeCmd) put(ctx context.Context, args []string) int {
	if len(args) < 2 || len(args) > 3 {
		return v.usage("usage: mlagent volume put VOLUME SRC [DEST]")
	}
	vol, src, dest := args[0], args[1], "/"
	if len(args) == 3 {
		dest = inVolume(vol, args[2])
	}
	if _, err := os.Stat(src); err != nil {
		return v.fail(err)
	}
	exists, err := v.st.Exists(ctx, vol)
	if err != nil {
		return v.fail(err)
	}
	if !exists {
		if err := v.st.Create(ctx, vol); err != nil && !errors.Is(err, volume.ErrExists) {
			return v.fail(err)
		}
		// A typo must not go unnoticed.
		fmt.Fprintf(v.env.Stderr, "created volume %s\n", vol)
	}
	c, err := v.st.Put(ctx, vol, src, dest)
	if err != nil {
		return v.fail(err)
	}
	fmt.Fprintf(v.env.Stdout, "copied %s to %s:/%s\n", count(c), vol, strings.TrimPrefix(c.Dest, "/"))
	return ExitOK
}

// count says what a copy moved, e.g. "3 files (1.2 GiB)".
func count(c volume.Copied) string {
	s := fmt.Sprintf("%d file", c.Files)
	if c.Files != 1 {
		s += "s"
	}
	s += " (" + humanBytes(c.Bytes) + ")"
	if c.Skipped > 0 {
		s += fmt.Sprintf(", %d symlink or special file(s) skipped", c.Skipped)
	}
	return s
}

func (v *volumeCmd) get(ctx context.Context, args []string) int {
	if len(args) < 2 || len(args) > 3 {
		return v.usage("usage: mlagent volume get VOLUME SRC [DEST|-]")
	}
	vol, src, dest := args[0], inVolume(args[0], args[1]), "."
	if len(args) == 3 {
		dest = args[2]
	}
	u, err := v.st.Measure(ctx, vol, src)
	if err != nil {
		return v.fail(err)
	}
	if dest == "-" {
		// Holes read as zeros here: the apparent size is what is written.
		if u.Apparent > v.maxSize && !v.yes {
			return v.refuse(fmt.Sprintf("%s would write %s to stdout (sparse: %s of data)", src, humanBytes(u.Apparent), humanBytes(u.Data)))
		}
		if _, err := v.st.Cat(ctx, vol, src, v.env.Stdout); err != nil {
			return v.fail(err)
		}
		return ExitOK
	}
	if free, ok := freeSpace(dest); ok && u.Data > free {
		return v.fail(fmt.Errorf("%s holds %s, more than the %s free at %s", src, humanBytes(u.Data), humanBytes(free), dest))
	}
	if u.Data > v.maxSize && !v.yes {
		if code := v.confirm(fmt.Sprintf("copy %s (%d files) from volume %s to %s?", humanBytes(u.Data), u.Files, vol, dest)); code != ExitOK {
			return code
		}
	}
	c, err := v.st.Get(ctx, vol, src, dest)
	if err != nil {
		return v.fail(err)
	}
	msg := fmt.Sprintf("copied %s to %s", count(c), c.Dest)
	if u.Apparent > u.Data+1<<20 {
		msg += fmt.Sprintf(" (sparse: %s with its holes)", humanBytes(u.Apparent))
	}
	fmt.Fprintln(v.env.Stdout, msg)
	return ExitOK
}

// freeSpace is what the filesystem of p (or of its nearest existing
// parent) has free for us.
func freeSpace(p string) (int64, bool) {
	p, _ = filepath.Abs(p)
	for {
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err == nil {
			return int64(st.Bavail) * st.Bsize, true
		}
		parent := filepath.Dir(p)
		if parent == p {
			return 0, false
		}
		p = parent
	}
}

// confirm asks the person at a terminal; elsewhere it refuses with the
// flag that would go ahead.
func (v *volumeCmd) confirm(question string) int {
	if !readerIsTerminal(v.env.Stdin) {
		return v.refuse(question)
	}
	fmt.Fprintf(v.env.Stderr, "%s [y/N] ", question)
	line, _ := bufio.NewReader(v.env.Stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		fmt.Fprintln(v.env.Stderr, "nothing done")
		return ExitFailure
	}
	return ExitOK
}

func (v *volumeCmd) refuse(what string) int {
	fmt.Fprintf(v.env.Stderr, "mlagent volume %s: %s\nnothing done; pass --yes to go ahead\n", v.sub, strings.TrimSuffix(what, "?"))
	return ExitUsage
}

func (v *volumeCmd) rm(ctx context.Context, args []string) int {
	switch len(args) {
	case 2:
		p := inVolume(args[0], args[1])
		if err := v.st.RemovePath(ctx, args[0], p, v.recursive); err != nil {
			return v.fail(err)
		}
		fmt.Fprintf(v.env.Stdout, "removed %s:/%s\n", args[0], strings.TrimPrefix(sanitize.Line(p, 0), "/"))
		return ExitOK
	case 1:
	default:
		return v.usage("usage: mlagent volume rm VOLUME, or mlagent volume rm [-r] VOLUME PATH")
	}
	vol := args[0]
	if ok, err := v.st.Exists(ctx, vol); err != nil {
		return v.fail(err)
	} else if !ok {
		return v.fail(fmt.Errorf("%w: %s", volume.ErrNotFound, vol))
	}
	users, err := volumeUsers(ctx, v.env, vol)
	if err != nil {
		return v.fail(err)
	}
	if len(users) > 0 {
		return v.fail(fmt.Errorf("volume %s is in use by sandbox %s; end it first (mlagent sandbox kill %s)", vol, strings.Join(users, ", "), users[0]))
	}
	if !v.yes {
		u, _ := v.st.Measure(ctx, vol, "/")
		if code := v.confirm(fmt.Sprintf("remove volume %s and everything in it (%d files, %s)?", vol, u.Files, humanBytes(u.Apparent))); code != ExitOK {
			return code
		}
	}
	if err := v.st.Remove(ctx, vol); err != nil {
		return v.fail(err)
	}
	fmt.Fprintf(v.env.Stdout, "removed volume %s\n", vol)
	return ExitOK
}

// volumeUsers names the running sandboxes that mount vol.
func volumeUsers(ctx context.Context, env *Env, vol string) ([]string, error) {
	b, closeDB, err := openBackend(ctx, env)
	if err != nil {
		return nil, err
	}
	defer closeDB()
	infos, err := b.List(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, in := range infos {
		if in.State != sandbox.StateRunning {
			continue
		}
		for _, m := range in.Volumes {
			if m.Volume == vol {
				names = append(names, in.Name)
				break
			}
		}
	}
	return names, nil
}

// openVolumes opens the volumes of the configured backend: the host's
// directories, or the backend's own (a cluster's claims).
func openVolumes(ctx context.Context, env *Env) (sandbox.Volumes, func(), error) {
	if !launch.IsKubernetes(env.Config.Sandbox.Backend) {
		return sandbox.LocalVolumes(volume.New(env.Config.VolumesDir())), func() {}, nil
	}
	b, closeDB, err := openBackend(ctx, env)
	if err != nil {
		return nil, nil, err
	}
	vb, ok := b.(sandbox.VolumeBackend)
	if !ok {
		closeDB()
		return nil, nil, fmt.Errorf("backend %s keeps no volumes of its own", env.Config.Sandbox.Backend)
	}
	vols := vb.Volumes()
	return vols, func() { vols.Close(); closeDB() }, nil
}

// humanBytes writes a size the way ls -h would, in binary units.
func humanBytes(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	v, unit := float64(n), ""
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"} {
		v /= 1024
		unit = u
		if v < 1024 {
			break
		}
	}
	if v < 10 {
		return strconv.FormatFloat(v, 'f', 1, 64) + " " + unit
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " " + unit
}

// createMissingVolumes makes the volumes of --volume that do not exist
// yet, and says so: a typo must not silently mount an empty volume. It
// returns an exit code, or -1 to go on.
func createMissingVolumes(ctx context.Context, env *Env, backend, cmd string, mounts []sandbox.Mount) int {
	if len(mounts) == 0 {
		return -1
	}
	cfg := *env.Config
	cfg.Sandbox.Backend = backend
	st, closeVolumes, err := openVolumes(ctx, &Env{Config: &cfg, Log: env.Log})
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent %s: %v\n", cmd, err)
		return ExitFailure
	}
	defer closeVolumes()
	for _, m := range mounts {
		if ok, err := st.Exists(ctx, m.Volume); err != nil {
			fmt.Fprintf(env.Stderr, "mlagent %s: %v\n", cmd, err)
			return ExitFailure
		} else if ok {
			continue
		}
		if err := st.Create(ctx, m.Volume); err != nil && !errors.Is(err, volume.ErrExists) {
			fmt.Fprintf(env.Stderr, "mlagent %s: %v\n", cmd, err)
			return ExitUsage
		}
		fmt.Fprintf(env.Stderr, "mlagent %s: created volume %s (mounted at %s)\n", cmd, m.Volume, m.Path)
	}
	return -1
}
