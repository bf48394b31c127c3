package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mlagent/mlagent/internal/gdrive"
	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sanitize"
	"github.com/mlagent/mlagent/internal/secrets"
	"github.com/mlagent/mlagent/internal/volume"
)

const volumeDriveHelp = `Google Drive, from the host (the sandbox never sees the credential):

  mlagent volume import gdrive://ID VOLUME:PATH     copy a Drive file or folder (recursively) into a volume
  mlagent volume export VOLUME:PATH gdrive://FOLDER_ID   upload a volume file or directory into a Drive folder

  --doc FORMAT      Google Docs as md (default), docx, pdf, txt, odt, rtf, epub, html (a zip)
  --sheet FORMAT    Google Sheets as csv (default; first sheet), xlsx, ods, tsv, pdf
  --slides FORMAT   Google Slides as pdf (default), pptx, odp, txt
  --drawing FORMAT  Google Drawings as png (default), svg, jpg, pdf
  --max-size SIZE   export asks before uploading more than this (default 10G;
                    a sparse file uploads its holes as zeros)
  --yes, -y         do not ask

gdrive:// takes a file or folder id, or a Drive link. PATH is inside the volume
(/data/x and x are the same place in the data volume); an existing directory or a
PATH ending in / receives the item under its Drive name. Downloads resume where a
killed import stopped and are checked against Drive's md5; large uploads are
resumable. Credentials: a service-account key (share the folders with its email)
or an authorized-user file, stored once:
  mlagent secret set google GOOGLE_CREDENTIALS=@key.json`

// runVolumeDrive runs `volume import` and `volume export`.
func runVolumeDrive(ctx context.Context, env *Env, verb string, args []string) int {
	fs := newFlagSet(env, "volume "+verb, "volume "+verb+" [flags] SOURCE DEST", volumeDriveHelp)
	formats := gdrive.DefaultFormats()
	fs.StringVar(&formats.Doc, "doc", formats.Doc, "export format for Google Docs")
	fs.StringVar(&formats.Sheet, "sheet", formats.Sheet, "export format for Google Sheets")
	fs.StringVar(&formats.Slides, "slides", formats.Slides, "export format for Google Slides")
	fs.StringVar(&formats.Drawing, "drawing", formats.Drawing, "export format for Google Drawings")
	yes := fs.Bool("yes", false, "export: do not ask before uploading more than --max-size")
	fs.BoolVar(yes, "y", false, "same as --yes")
	maxSizeFlag := fs.String("max-size", "10G", "export asks before uploading more than this (a size like 10G)")
	// Flags may follow the arguments.
	pos, code := parseInterleaved(fs, args, env)
	if code >= 0 {
		return code
	}
	usage := func(msg string) int {
		fmt.Fprintf(env.Stderr, "mlagent volume %s: %s\nusage: mlagent volume import gdrive://ID VOLUME:PATH | mlagent volume export VOLUME:PATH gdrive://FOLDER_ID\n", verb, msg)
		return ExitUsage
	}
	if len(pos) != 2 {
		return usage("want two arguments")
	}
	if launch.IsKubernetes(env.Config.Sandbox.Backend) {
		// Not yet: Drive's transfer runs on the host, beside the files.
		fmt.Fprintf(env.Stderr, "mlagent volume %s: works on local volumes only; with the kubernetes backend, go through a folder (mlagent volume get|put)\n", verb)
		return ExitFailure
	}
	if err := formats.Validate(); err != nil {
		return usage(err.Error())
	}
	maxSize, err := parseSize(*maxSizeFlag)
	if err != nil {
		return usage("--max-size: " + err.Error())
	}
	remote, local := pos[0], pos[1]
	if verb == "export" {
		remote, local = pos[1], pos[0]
	}
	id, err := gdrive.ParseURI(remote)
	if err != nil {
		return usage(err.Error())
	}
	vol, rel, ok := strings.Cut(local, ":")
	if !ok || vol == "" {
		return usage(fmt.Sprintf("%q: want VOLUME:PATH, e.g. data:datasets/", local))
	}
	// A sandbox-style path names the same place: /data/x is x in data.
	trailing := strings.HasSuffix(rel, "/")
	rel = strings.TrimPrefix(inVolume(vol, rel), "/")
	if rel == "" {
		rel = "."
	} else if trailing && !strings.HasSuffix(rel, "/") {
		rel += "/"
	}

	st := volume.New(env.Config.VolumesDir())
	if verb == "export" {
		// The volume is the sandbox's: a file it made with `truncate -s
		// 15T` costs nothing there and 15 TiB of upload (holes go up as
		// zeros), so the size is known and agreed to before anything goes.
		u, err := st.Measure(vol, rel)
		if err != nil {
			fmt.Fprintf(env.Stderr, "mlagent volume %s: %s\n", verb, sanitize.Text(err.Error()))
			return ExitFailure
		}
		if u.Apparent > maxSize && !*yes {
			v := &volumeCmd{env: env, st: sandbox.LocalVolumes(st), sub: verb}
			q := fmt.Sprintf("upload %s (%d file(s); %s of data, the rest holes) from volume %s to Google Drive?",
				humanBytes(u.Apparent), u.Files, humanBytes(u.Data), vol)
			if code := v.confirm(q); code != ExitOK {
				return code
			}
		}
	}

	cred, ok, err := secrets.Open(env.Config.SecretsPath()).Lookup(secrets.GoogleCredentials)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent volume %s: %s\n", verb, sanitize.Text(err.Error()))
		return ExitFailure
	}
	if !ok {
		fmt.Fprintf(env.Stderr, "mlagent volume %s: no Google credentials; store a service-account key or an authorized-user file:\n  mlagent secret set google GOOGLE_CREDENTIALS=@key.json\n", verb)
		return ExitFailure
	}
	scope := gdrive.ScopeReadOnly
	if verb == "export" {
		scope = gdrive.ScopeFull
	}
	ts, err := gdrive.TokenSource(ctx, []byte(cred), scope)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent volume %s: %s\n", verb, sanitize.Text(err.Error()))
		return ExitFailure
	}
	client, err := gdrive.NewClient(ctx, ts, env.Config.GDrive.Upstream)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent volume %s: %s\n", verb, sanitize.Text(err.Error()))
		return ExitFailure
	}
	client.Formats = formats
	client.Warn = func(m string) { fmt.Fprintf(env.Stderr, "warning: %s\n", sanitize.Text(m)) }
	client.Progress = gdrive.NewProgress(env.Stderr, writerIsTerminal(env.Stderr), verb)

	var dir string
	if verb == "import" {
		dir, err = st.Ensure(vol)
	} else {
		dir, err = st.Path(vol)
		if err == nil {
			if _, serr := os.Stat(dir); serr != nil {
				err = fmt.Errorf("%w: %s", volume.ErrNotFound, vol)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent volume %s: %s\n", verb, sanitize.Text(err.Error()))
		return ExitFailure
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent volume %s: %s\n", verb, sanitize.Text(err.Error()))
		return ExitFailure
	}
	defer root.Close()

	var stats gdrive.Stats
	var created string
	if verb == "import" {
		stats, err = client.Import(ctx, id, root, rel)
	} else {
		created, stats, err = client.Export(ctx, root, rel, id)
	}
	client.Progress.Finish()
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent volume %s: %s\n", verb, sanitize.Text(err.Error()))
		return ExitFailure
	}
	fmt.Fprintf(env.Stdout, "%sed %d file(s), %d folder(s), %d bytes in %s", verb, stats.Files, stats.Folders, stats.Bytes, stats.Elapsed.Round(time.Millisecond))
	if stats.Skipped > 0 {
		fmt.Fprintf(env.Stdout, " (%d skipped)", stats.Skipped)
	}
	if created != "" {
		fmt.Fprintf(env.Stdout, "\ncreated gdrive://%s", created)
	}
	fmt.Fprintln(env.Stdout)
	return ExitOK
}
