package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/mlagent/mlagent/internal/secrets"
	"github.com/mlagent/mlagent/internal/syncer"
)

func init() {
	register(&Command{
		Name:    "syncer",
		Service: true,
		Summary: "push new Trackio rows to a Hugging Face Space (long-running service)",
		Run:     runSyncer,
	})
}

const syncerHelp = `Watches the Trackio directory and uploads each project's new rows to the
dataset behind a Hugging Face Space (<space>-dataset), creating the Space in
Trackio's own form (Gradio, app.py running trackio.show()) if it does not exist.
Uploads are incremental and idempotent: chunk files named by row-id range,
progress kept in $MLAGENT_HOME/syncer/state.json. Failures back off and are
logged. The Space comes from --space / [syncer] space_id / MLAGENT_SPACE_ID, or
else from a space_id file at the Trackio directory root.

The token is $HF_TOKEN, else HF_TOKEN from the secret store (mlagent secret set
huggingface HF_TOKEN=hf_...); it is never logged.

  --once   sync what is there now and exit (for cron or a test)`

func runSyncer(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "syncer", "syncer [--dir DIR] [--space NS/NAME] [--interval 30s] [--once]", syncerHelp)
	c := env.Config.Syncer
	dir := c.Dir
	if dir == "" {
		dir = trackioDir(env.Config)
	}
	fs.StringVar(&dir, "dir", dir, "Trackio directory (default: the trackio volume; config [syncer] dir)")
	space := fs.String("space", c.SpaceID, "Space id namespace/name (config [syncer] space_id, env MLAGENT_SPACE_ID)")
	interval := fs.String("interval", c.Interval, "polling interval and pace of commits (Go duration)")
	hubURL := fs.String("hub-url", c.HubURL, "Hugging Face Hub base URL")
	state := fs.String("state", filepath.Join(env.Config.Home, "syncer", "state.json"), "progress file")
	private := fs.Bool("private", true, "create the Space and dataset private")
	once := fs.Bool("once", false, "sync once and exit")
	if code := parseFlags(fs, args, env); code >= 0 {
		return code
	}
	if dir == trackioDir(env.Config) {
		warnTrackioInCluster(env, "syncer")
	}
	iv, err := time.ParseDuration(*interval)
	if err != nil || iv <= 0 {
		fmt.Fprintf(env.Stderr, "mlagent syncer: --interval %q: want a positive Go duration\n", *interval)
		return ExitUsage
	}
	token, err := secrets.Open(env.Config.SecretsPath()).Resolve("HF_TOKEN", env.Getenv)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent syncer: %v\n", err)
		return ExitFailure
	}
	s, err := syncer.New(syncer.Config{
		Dir: dir, SpaceID: *space, StatePath: *state, HubURL: *hubURL, Token: token,
		Interval: iv, Private: *private,
	}, env.Log)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent syncer: %v\n", err)
		return ExitFailure
	}
	defer s.Close()
	if *once {
		st, err := s.SyncOnce(ctx)
		fmt.Fprintf(env.Stdout, "synced %d rows in %d commits (%d bytes); %d projects failed\n", st.Rows, st.Commits, st.Bytes, st.Failed)
		if err != nil || st.Failed > 0 {
			if err != nil {
				fmt.Fprintf(env.Stderr, "mlagent syncer: %v\n", err)
			}
			return ExitFailure
		}
		return ExitOK
	}
	env.Log.Info("syncer started", "dir", dir, "interval", iv)
	sigctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	if err := s.Run(sigctx); err != nil {
		fmt.Fprintf(env.Stderr, "mlagent syncer: %v\n", err)
		return ExitFailure
	}
	return ExitOK
}
