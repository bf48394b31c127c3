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
	kind, err := BackendKind(cfg.Sandbox.Backend)
	if err != nil {
		return nil, err
	}
	switch kind {
	case KindLocal:
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
	default: // KindKubernetes
		return kube.FromConfig(ctx, cfg.Kubernetes, cfg.Sandbox.Image, binary, log.With("part", "sandbox"))
	}
}

// The kinds of backend a sandbox.backend value names.
const (
	KindLocal      = "bwrap"
	KindKubernetes = "kubernetes"
)

// BackendKind maps a sandbox.backend value, aliases included, to its
// kind; any other name is an error, never a silent default.
func BackendKind(name string) (string, error) {
	switch name {
	case "", "local", "bwrap", "bubblewrap":
		return KindLocal, nil
	case "kubernetes", "kube", "k8s":
		return KindKubernetes, nil
	}
	return "", fmt.Errorf("sandbox backend %q: unknown (want bwrap or kubernetes)", name)
}

// IsKubernetes says whether a sandbox.backend names the Kubernetes
// backend.
func IsKubernetes(backend string) bool {
	kind, _ := BackendKind(backend)
	return kind == KindKubernetes
}
