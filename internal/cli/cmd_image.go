package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mlagent/mlagent/internal/image"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sanitize"
)

func init() {
	register(&Command{
		Name:    "image",
		Summary: "OCI images sandboxes run on (pull, ls, rm, inspect)",
		Run:     runImage,
	})
}

const imageHelp = `Sandboxes run on the host's /usr by default; with --image REF (on run, resume
and sandbox run; config sandbox.image) they run on an OCI image instead, with
the same isolation, user, volumes and gateway. Images are pulled on the host
with your Docker credentials (~/.docker/config.json; they never enter a
sandbox), each layer extracted once into $MLAGENT_HOME/images (layers shared
between images) and flattened into a read-only root. A sandbox pulls a missing
image itself; "image pull" fetches a tag again.

REF is a registry reference (pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime,
ghcr.io/org/img@sha256:…), a path to an OCI layout directory, an OCI archive or
a "docker save" archive (absolute, or starting with ./), or one of
oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:TAG].

  mlagent image pull REF...      pull (again) and flatten
  mlagent image ls               pulled images: size, when pulled, last used
  mlagent image rm REF|ID...     forget images; delete layers no image uses
  mlagent image inspect REF...   the cached image as JSON (env, workdir, layers)

Example:
  mlagent image pull pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
  mlagent run --gpu --image pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime "…"`

func runImage(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(env.Stdout, "Usage: mlagent image pull|ls|rm|inspect ...\n\n"+imageHelp)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	sub, rest := args[0], args[1:]
	cmds := map[string]func(context.Context, *Env, *image.Store, []string) int{
		"pull": imagePull, "ls": imageLs, "list": imageLs, "rm": imageRm, "remove": imageRm, "inspect": imageInspect,
	}
	run, ok := cmds[sub]
	if !ok {
		fmt.Fprintf(env.Stderr, "mlagent image: unknown subcommand %q\n\n%s\n", sub, imageHelp)
		return ExitUsage
	}
	fs := newFlagSet(env, "image "+sub, "image "+sub+" ...", imageHelp)
	if code := parseFlags(fs, rest, env); code >= 0 {
		return code
	}
	st, err := image.Open(env.Config.ImagesDir(), env.Log)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent image %s: %v\n", sub, err)
		return ExitFailure
	}
	return run(ctx, env, st, fs.Args())
}

func imagePull(ctx context.Context, env *Env, st *image.Store, refs []string) int {
	if len(refs) == 0 {
		fmt.Fprintln(env.Stderr, "usage: mlagent image pull REF...")
		return ExitUsage
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	code := ExitOK
	for _, ref := range refs {
		start := time.Now()
		img, err := st.Pull(ctx, ref, image.PullOptions{Progress: image.TextProgress(env.Stderr)})
		if err != nil {
			fmt.Fprintf(env.Stderr, "mlagent image pull: %v\n", err)
			code = ExitFailure
			continue
		}
		fmt.Fprintf(env.Stdout, "%s %s (%s, %s) in %s\n", sanitize.Line(img.Ref, 0), shortID(img.ID), sanitize.Line(img.Platform, 64), image.FormatBytes(img.Size),
			time.Since(start).Round(100*time.Millisecond))
	}
	return code
}

func imageLs(ctx context.Context, env *Env, st *image.Store, args []string) int {
	if len(args) > 0 {
		fmt.Fprintln(env.Stderr, "usage: mlagent image ls")
		return ExitUsage
	}
	imgs, err := st.List()
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent image ls: %v\n", err)
		return ExitFailure
	}
	if len(imgs) == 0 {
		fmt.Fprintln(env.Stdout, "no images; sandboxes use the host's /usr (pull one with: mlagent image pull REF)")
		return ExitOK
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REF\tID\tPLATFORM\tSIZE\tPULLED\tLAST USED")
	for _, img := range imgs {
		used := "never"
		if !img.LastUsed.IsZero() {
			used = img.LastUsed.Local().Format(time.DateTime)
		}
		// The platform's variant is the image's word (and caches
		// written before it was cleaned keep it as it came).
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", sanitize.Line(img.Ref, 0), shortID(img.ID), sanitize.Line(img.Platform, 64), image.FormatBytes(img.Size),
			img.Pulled.Local().Format(time.DateTime), used)
	}
	tw.Flush()
	return ExitOK
}

func imageRm(ctx context.Context, env *Env, st *image.Store, refs []string) int {
	if len(refs) == 0 {
		fmt.Fprintln(env.Stderr, "usage: mlagent image rm REF|ID...")
		return ExitUsage
	}
	inUse := imagesInUse(ctx, env)
	code := ExitOK
	for _, ref := range refs {
		removed, err := st.Remove(ref, inUse)
		for _, r := range removed {
			fmt.Fprintf(env.Stdout, "removed %s\n", r)
		}
		if err != nil {
			fmt.Fprintf(env.Stderr, "mlagent image rm: %v\n", err)
			code = ExitFailure
		}
	}
	return code
}

// imagesInUse says whether a running sandbox runs on an image id.
func imagesInUse(ctx context.Context, env *Env) func(id string) bool {
	return func(id string) bool {
		b, closeDB, err := openBackend(ctx, env)
		if err != nil {
			return false // no backend here, so no sandbox of it either
		}
		defer closeDB()
		infos, err := b.List(ctx)
		if err != nil {
			return false
		}
		for _, in := range infos {
			if in.State == sandbox.StateRunning && in.ImageID == id {
				return true
			}
		}
		return false
	}
}

func imageInspect(ctx context.Context, env *Env, st *image.Store, refs []string) int {
	if len(refs) == 0 {
		fmt.Fprintln(env.Stderr, "usage: mlagent image inspect REF...")
		return ExitUsage
	}
	var out []*image.Image
	for _, ref := range refs {
		img, err := st.Lookup(ref)
		if err != nil {
			fmt.Fprintf(env.Stderr, "mlagent image inspect: %v\n", err)
			return ExitFailure
		}
		out = append(out, img)
	}
	// The config's strings (env, labels, entrypoint) are the image's:
	// encoding/json leaves C1 controls raw, which some terminals obey.
	raw, err := json.Marshal(out)
	var buf bytes.Buffer
	if err == nil {
		err = json.Indent(&buf, sanitize.JSON(raw), "", "  ")
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent image inspect: %v\n", err)
		return ExitFailure
	}
	buf.WriteByte('\n')
	env.Stdout.Write(buf.Bytes())
	return ExitOK
}

func shortID(id string) string {
	_, h, _ := strings.Cut(id, ":")
	return h[:min(12, len(h))]
}
