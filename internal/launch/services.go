package launch

import (
	"context"
	"log/slog"

	"github.com/mlagent/mlagent/internal/config"
	"github.com/mlagent/mlagent/internal/gateway"
	"github.com/mlagent/mlagent/internal/gdrive"
	"github.com/mlagent/mlagent/internal/notion"
	"github.com/mlagent/mlagent/internal/secrets"
)

// Services builds the gateway's third-party routes from the secret store
// and config: Google Drive (read-only) and Notion. A service whose
// credential is missing or unusable is still routed and answers 503 with
// how to connect it, so the agent can tell the user.
func Services(ctx context.Context, cfg *config.Config, log *slog.Logger) []gateway.Service {
	st := secrets.Open(cfg.SecretsPath())
	var drive gateway.Service
	if cred, ok, err := st.Lookup(secrets.GoogleCredentials); err != nil || !ok {
		if err != nil {
			log.Warn("google credentials", "err", err)
		}
		drive = gdrive.Service(nil, cfg.GDrive.Upstream)
	} else if ts, err := gdrive.TokenSource(context.WithoutCancel(ctx), []byte(cred), gdrive.ScopeReadOnly); err != nil {
		log.Warn("google credentials unusable; the Drive route is off", "err", err)
		drive = gdrive.Service(nil, cfg.GDrive.Upstream)
	} else {
		drive = gdrive.Service(ts, cfg.GDrive.Upstream)
	}
	tok, _, err := st.Lookup(secrets.NotionToken)
	if err != nil {
		log.Warn("notion token", "err", err)
	}
	for _, p := range cfg.Notion.Parents {
		if _, ok := notion.ParseID(p); !ok {
			log.Warn("notion parent is not a page id or link; ignored", "parent", p)
		}
	}
	return []gateway.Service{drive, notion.Service(tok, cfg.Notion.Upstream, notion.NewPolicy(cfg.Notion.Parents))}
}
