// Package kube is the Kubernetes sandbox backend: each sandbox is one
// locked-down pod (non-root, no capabilities, no service-account token,
// read-only root, only the gateway reachable) in a namespace of the
// user's cluster, running `mlagent init` as PID 1 from the user's image.
// mlagent is not in the image: the CLI delivers its own static binary
// over the exec subresource into an init container, which hands it to the
// sandbox container read-only (see ARCHITECTURE.md). Commands and files
// go through pods/exec (WebSocket, SPDY only where the upgrade fails) to
// `mlagent podexec`, which frames them so that stdin EOF, kills, exit codes
// and file errors mean what they mean locally.
package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/mlagent/mlagent/internal/sandbox"
)

var (
	_ sandbox.Backend = (*Backend)(nil)
	_ sandbox.Sandbox = (*Sandbox)(nil)
	_ sandbox.Reaper  = (*Backend)(nil)
)

// Labels and annotations on everything the backend creates.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "mlagent"
	LabelName      = "app.kubernetes.io/name"
	NameSandbox    = "mlagent-sandbox"
	LabelSandbox   = "mlagent/sandbox"
	LabelSession   = "mlagent/session"
	LabelVolume    = "mlagent/volume"
	// AnnotationLabels holds the sandbox's labels as JSON, whatever
	// they are (label values are restricted; these are not).
	AnnotationLabels = "mlagent/labels"
	// AnnotationHeartbeat is renewed by the process that created the
	// sandbox; a stale one marks the sandbox dead (its CLI died).
	AnnotationHeartbeat = "mlagent/heartbeat"
	// AnnotationHeartbeatPeriod is the creator's renewal period, so that
	// any process judges staleness by it.
	AnnotationHeartbeatPeriod = "mlagent/heartbeat-period"
	AnnotationNotes           = "mlagent/notes"
)

// DefaultImage is the sandbox image when none is configured: PyTorch
// with the CUDA runtime, what the agent trains with.
const DefaultImage = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"

// Options configure the backend.
type Options struct {
	// Config reaches the API server as the user (their kubeconfig).
	Config    *rest.Config
	Namespace string
	// Image is the sandbox image when a spec names none ("" =
	// DefaultImage); PullPolicy "" is IfNotPresent.
	Image      string
	PullPolicy corev1.PullPolicy
	// Binary is the mlagent executable delivered into each pod: a static
	// linux build for the nodes' architecture; "" = os.Executable().
	// PlainDelivery sends it uncompressed even where the image has gzip.
	Binary        string
	PlainDelivery bool
	// GatewayNamespace holds the deployed gateway ("" =
	// Namespace-gateway); GatewayAddr, when set, is the host:port pods
	// reach its data plane at instead of its Service's cluster IP.
	GatewayNamespace string
	GatewayAddr      string
	// RuntimeClass, when set, runs sandboxes under that RuntimeClass
	// (gVisor, Kata).
	RuntimeClass string
	// GPUResource is the extended resource a GPU is ("nvidia.com/gpu");
	// GPUProductLabel the node label naming its product, set by NVIDIA
	// GPU feature discovery ("nvidia.com/gpu.product"); GPUTypes maps
	// short names (A100) to that label's values.
	GPUResource     string
	GPUProductLabel string
	GPUTypes        map[string]string
	// Tolerations are added to every sandbox pod (GPU node taints).
	Tolerations []corev1.Toleration
	// Volumes: PVCs made on first use.
	StorageClass string
	AccessMode   corev1.PersistentVolumeAccessMode // "" = ReadWriteOnce
	VolumeSize   string                            // "" = 20Gi
	// NetworkPolicy is the policy that must select sandbox pods before
	// one is created ("" = DefaultNetworkPolicy); SkipNetworkPolicyCheck
	// turns the check off.
	NetworkPolicy          string
	SkipNetworkPolicyCheck bool
	// MaxLifetime bounds every sandbox pod (activeDeadlineSeconds) even
	// without a timeout, so one nobody reaps still ends; "" = 24h.
	MaxLifetime time.Duration
	// ScheduleTimeout is how long a pod may stay unschedulable (a volume
	// binding, a node being added) before Create gives up; 0 = 2m.
	ScheduleTimeout time.Duration
	// Heartbeat is how often a creator renews its sandboxes' heartbeat;
	// one not renewed for 4 periods is dead. 0 = 20s.
	Heartbeat time.Duration
	Log       *slog.Logger
}

// DefaultNetworkPolicy is the name of the policy `mlagent deploy
// kubernetes` creates for sandbox pods.
const DefaultNetworkPolicy = "mlagent-sandbox"

var klogOnce sync.Once

// Backend creates sandbox pods. Safe for concurrent use.
type Backend struct {
	opts   Options
	client kubernetes.Interface
	log    *slog.Logger
}

// New prepares a backend; it does not reach the cluster yet.
func New(ctx context.Context, o Options) (*Backend, error) {
	if o.Config == nil {
		return nil, errors.New("kubernetes backend: no cluster configuration")
	}
	if o.Namespace == "" {
		return nil, errors.New("kubernetes backend: no namespace")
	}
	if o.GatewayNamespace == "" {
		o.GatewayNamespace = o.Namespace + "-gateway"
	}
	if o.Image == "" {
		o.Image = DefaultImage
	}
	if o.PullPolicy == "" {
		o.PullPolicy = corev1.PullIfNotPresent
	}
	if o.Binary == "" {
		var err error
		if o.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("kubernetes backend: find the mlagent binary: %w", err)
		}
	}
	if o.GPUResource == "" {
		o.GPUResource = "nvidia.com/gpu"
	}
	if o.GPUProductLabel == "" {
		o.GPUProductLabel = "nvidia.com/gpu.product"
	}
	if o.AccessMode == "" {
		o.AccessMode = corev1.ReadWriteOnce
	}
	if o.VolumeSize == "" {
		o.VolumeSize = "20Gi"
	}
	if o.NetworkPolicy == "" {
		o.NetworkPolicy = DefaultNetworkPolicy
	}
	if o.MaxLifetime == 0 {
		o.MaxLifetime = 24 * time.Hour
	}
	if o.ScheduleTimeout == 0 {
		o.ScheduleTimeout = 2 * time.Minute
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = 20 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// client-go logs through klog to stderr, which is the user's
	// terminal: send it to our logger instead.
	klogOnce.Do(func() { klog.SetSlogLogger(o.Log.With("part", "client-go")) })
	cfg := rest.CopyConfig(o.Config)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "mlagent"
	}
	o.Config = cfg
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes backend: %w", err)
	}
	return &Backend{opts: o, client: client, log: o.Log}, nil
}

// Client is the backend's API client (for tests and `deploy`).
func (b *Backend) Client() kubernetes.Interface { return b.client }

// Namespace is where the backend's sandboxes live.
func (b *Backend) Namespace() string { return b.opts.Namespace }
