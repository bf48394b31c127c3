package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/mlagent/mlagent/internal/config"
)

// LoadConfig reads the user's kubeconfig as kubectl does ($KUBECONFIG,
// or ~/.kube/config; path overrides both) with its current context, or
// the one named; inside a pod, the pod's own account. It returns the
// context's namespace ("" when it names none).
func LoadConfig(path, kubeContext string) (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: kubeContext})
	cfg, err := cc.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) || errors.Is(err, clientcmd.ErrEmptyConfig) {
			return nil, "", fmt.Errorf("%w: no kubeconfig found (set KUBECONFIG, create ~/.kube/config, or name one with kubernetes.kubeconfig)", ErrNoCluster)
		}
		if kubeContext != "" {
			return nil, "", fmt.Errorf("%w: context %q: %v", ErrNoCluster, kubeContext, err)
		}
		return nil, "", fmt.Errorf("%w: %v", ErrNoCluster, err)
	}
	ns, explicit, err := cc.Namespace()
	if err != nil || !explicit {
		ns = ""
	}
	return cfg, ns, nil
}

// DefaultNamespace holds sandboxes when neither the configuration nor the
// kubeconfig's context names one.
const DefaultNamespace = "mlagent"

// FromConfig makes the backend that config [kubernetes] describes, with
// image as the default sandbox image ([sandbox] image) and binary as
// the mlagent delivered into pods when the config names none.
func FromConfig(ctx context.Context, c config.KubernetesConfig, image, binary string, log *slog.Logger) (*Backend, error) {
	rc, ctxNS, err := LoadConfig(c.Kubeconfig, c.Context)
	if err != nil {
		return nil, err
	}
	o := Options{
		Config: rc, Namespace: firstNonEmpty(c.Namespace, ctxNS, DefaultNamespace),
		GatewayNamespace: c.GatewayNamespace, GatewayAddr: c.GatewayAddress,
		Image: image, PullPolicy: corev1.PullPolicy(c.PullPolicy), Binary: firstNonEmpty(c.Binary, binary), PlainDelivery: c.PlainDelivery,
		RuntimeClass: c.RuntimeClass, StorageClass: c.StorageClass, AccessMode: corev1.PersistentVolumeAccessMode(c.AccessMode),
		VolumeSize: c.VolumeSize, GPUResource: c.GPUResource, GPUProductLabel: c.GPUProductLabel, GPUTypes: c.GPUTypes,
		Log: log,
	}
	switch o.PullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return nil, fmt.Errorf("kubernetes.pull_policy %q: want Always, IfNotPresent or Never", c.PullPolicy)
	}
	switch o.AccessMode {
	case "", corev1.ReadWriteOnce, corev1.ReadWriteMany, corev1.ReadWriteOncePod:
	default:
		return nil, fmt.Errorf("kubernetes.access_mode %q: want ReadWriteOnce or ReadWriteMany", c.AccessMode)
	}
	if c.MaxLifetime != "" {
		if o.MaxLifetime, err = time.ParseDuration(c.MaxLifetime); err != nil || o.MaxLifetime <= 0 {
			return nil, fmt.Errorf("kubernetes.max_lifetime %q: want a positive Go duration like 24h", c.MaxLifetime)
		}
	}
	if c.Heartbeat != "" {
		if o.Heartbeat, err = time.ParseDuration(c.Heartbeat); err != nil || o.Heartbeat <= 0 {
			return nil, fmt.Errorf("kubernetes.heartbeat %q: want a positive Go duration like 20s", c.Heartbeat)
		}
	}
	for _, t := range c.Tolerations {
		o.Tolerations = append(o.Tolerations, corev1.Toleration{
			Key: t.Key, Operator: corev1.TolerationOperator(t.Operator), Value: t.Value, Effect: corev1.TaintEffect(t.Effect),
		})
	}
	return New(ctx, o)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
