package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/mlagent/mlagent/internal/sandbox/kube"
)

// DeliverGateway puts binary on the gateway's state volume, through its
// pod (which waits for it), and restarts the pod when it replaced an
// older binary. It returns once a gateway pod is ready.
func DeliverGateway(ctx context.Context, cfg *rest.Config, o Options, binary string, log io.Writer) error {
	o.defaults()
	b, err := kube.New(ctx, kube.Options{Config: cfg, Namespace: o.GatewayNamespace, Binary: binary, SkipNetworkPolicyCheck: true})
	if err != nil {
		return err
	}
	client := b.Client()
	sum, err := fileSHA256(binary)
	if err != nil {
		return err
	}
	pod, err := waitGatewayPod(ctx, client, o.GatewayNamespace, func(p *corev1.Pod) bool { return running(p, "gateway") })
	if err != nil {
		return err
	}
	var out bytes.Buffer
	err = b.ExecIn(ctx, pod.Name, "gateway", []string{"/bin/sh", "-c", "sha256sum " + GatewayBinary + " 2>/dev/null || true"}, nil, &out)
	if err != nil {
		return fmt.Errorf("check the gateway's binary: %w", err)
	}
	old := strings.Fields(out.String())
	if len(old) > 0 && old[0] == sum {
		fmt.Fprintf(log, "gateway binary up to date (sha256 %s)\n", sum[:12])
	} else {
		f, err := os.Open(binary)
		if err != nil {
			return err
		}
		defer f.Close()
		script := "set -e; umask 022; mkdir -p " + StateDir + "/bin; cat > " + GatewayBinary + ".part; chmod 555 " + GatewayBinary + ".part; mv " + GatewayBinary + ".part " + GatewayBinary
		if err := b.ExecIn(ctx, pod.Name, "gateway", []string{"/bin/sh", "-c", script}, f, io.Discard); err != nil {
			return fmt.Errorf("deliver mlagent to the gateway: %w", err)
		}
		fmt.Fprintf(log, "delivered mlagent (sha256 %s) to %s/%s\n", sum[:12], o.GatewayNamespace, pod.Name)
		if len(old) > 0 {
			// The old binary is running: a new pod starts the new one.
			if err := client.CoreV1().Pods(o.GatewayNamespace).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
				return fmt.Errorf("restart the gateway: %w", err)
			}
			fmt.Fprintf(log, "restarting the gateway on the new binary\n")
		}
	}
	_, err = waitGatewayPod(ctx, client, o.GatewayNamespace, ready)
	return err
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func running(p *corev1.Pod, container string) bool {
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == container && s.State.Running != nil {
			return p.DeletionTimestamp == nil
		}
	}
	return false
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return p.DeletionTimestamp == nil
		}
	}
	return false
}

// waitGatewayPod waits for a gateway pod that ok accepts.
func waitGatewayPod(ctx context.Context, client kubernetes.Interface, ns string, ok func(*corev1.Pod) bool) (*corev1.Pod, error) {
	sel := labels.SelectorFromSet(labels.Set{kube.LabelManagedBy: kube.ManagedBy, kube.LabelName: GatewayName}).String()
	var last string
	for delay := 200 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return nil, fmt.Errorf("find the gateway pod: %w", err)
		}
		for i := range pods.Items {
			if ok(&pods.Items[i]) {
				return &pods.Items[i], nil
			}
		}
		if len(pods.Items) > 0 {
			last = fmt.Sprintf("%s is %s", pods.Items[0].Name, pods.Items[0].Status.Phase)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the gateway pod in %s (%s): %w", ns, last, ctx.Err())
		case <-time.After(delay):
		}
	}
}

// Keys are the real keys `deploy --apply` may copy into the gateway's
// Secret; empty ones are left out.
type Keys map[string]string

// SetKeys writes keys into the gateway's Secret with server-side apply,
// as a field manager of its own, so re-applying the manifests (which
// carry no data) never removes them. It restarts the gateway when they
// changed (a pod reads them at start), and says whether they did.
func SetKeys(ctx context.Context, cfg *rest.Config, o Options, keys Keys) (bool, error) {
	o.defaults()
	data := map[string][]byte{}
	for k, v := range keys {
		if v != "" {
			data[k] = []byte(v)
		}
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return false, err
	}
	secrets := client.CoreV1().Secrets(o.GatewayNamespace)
	if cur, err := secrets.Get(ctx, GatewayKeys, metav1.GetOptions{}); err == nil && sameData(cur.Data, data) {
		return false, nil
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": GatewayKeys, "namespace": o.GatewayNamespace},
		"data":     data,
	})
	if err != nil {
		return false, err
	}
	force := true
	if _, err = secrets.Patch(ctx, GatewayKeys, types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: fieldManagerID + "-keys", Force: &force}); err != nil {
		return false, fmt.Errorf("write the gateway's keys: %w", err)
	}
	sel := labels.SelectorFromSet(labels.Set{kube.LabelManagedBy: kube.ManagedBy, kube.LabelName: GatewayName}).String()
	if err := client.CoreV1().Pods(o.GatewayNamespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: sel}); err != nil {
		return true, fmt.Errorf("restart the gateway for its new keys: %w", err)
	}
	return true, nil
}

func sameData(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
