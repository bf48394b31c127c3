package launch

import (
	"log/slog"

	"github.com/mlagent/mlagent/internal/config"
)

// Options is the Options of the host a front end starts (run, a session
// host, sandbox run, the Slack bot): cfg's settings, the user's keys, and
// the model API at upstream ("" = the real one). A front end sets the
// rest (a shared gateway, a fake Hub) on what it returns.
func (k Keys) Options(cfg *config.Config, log *slog.Logger, upstream string) Options {
	return Options{
		Config: cfg, Log: log, Upstream: upstream,
		ModelKey: k.Model, HFToken: k.HF, GitHubToken: k.GitHub, AdminToken: k.Admin,
	}
}
