package launch

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/mlagent/mlagent/internal/config"
	"github.com/mlagent/mlagent/internal/image"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/bwrap"
	"github.com/mlagent/mlagent/internal/sandbox/kube"
	"github.com/mlagent/mlagent/internal/store"
	"github.com/mlagent/mlagent/internal/volume"
)

// NewBackend returns the sandbox backend the config names. It is the one
// switch over backends; a new backend (Docker, a VM) adds a case.
func NewBackend(ctx context.Context, cfg *config.Config, db *store.DB, binary string, log *slog.Logger) (sandbox.Backend, error) {
	switch cfg.Sandbox.Backend {
	case "", "local", "bwrap", "bubblewrap":
		images, err := image.Open(cfg.ImagesDir(), log.With("part", "image"))
		if err != nil {
			return nil, err
		}
		return bwrap.New(ctx, bwrap.Options{
			Images:   images,
			Bwrap:    cfg.Sandbox.Bwrap,
			Binary:   binary,
			StateDir: cfg.SandboxesDir(),
			Volumes:  volume.New(cfg.VolumesDir()),
			DB:       db,
			Log:      log.With("part", "sandbox"),
		})
	case "kubernetes", "kube", "k8s":
		return kube.FromConfig(ctx, cfg.Kubernetes, cfg.Sandbox.Image, binary, log.With("part", "sandbox"))
	}
	return nil, fmt.Errorf("sandbox backend %q: unknown (want bwrap or kubernetes)", cfg.Sandbox.Backend)
}

// IsKubernetes says whether a sandbox.backend names the Kubernetes
// backend.
func IsKubernetes(backend string) bool {
	switch backend {
	case "kubernetes", "kube", "k8s":
		return true
	}
	return false
}
