package kube_test

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/kube"
	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
	"github.com/mlagent/mlagent/internal/testbin"
)

// TestRealCluster runs the whole conformance suite, promises included,
// against any cluster, when told which (README, "Kubernetes"):
//
//	MLAGENT_KUBE_E2E_KUBECONFIG     a kubeconfig (its current context)
//	MLAGENT_KUBE_E2E_NAMESPACE      a namespace `mlagent deploy kubernetes --apply` set up
//	MLAGENT_KUBE_E2E_GATEWAY_LISTEN host:port on this machine the cluster's pods reach
//	                                (the suite's fake gateway listens there; the deployed
//	                                NetworkPolicy must allow it: --gateway-cidr)
//	MLAGENT_KUBE_E2E_IMAGE          the sandbox image (default kube.DefaultImage)
//	MLAGENT_KUBE_E2E_STORAGE_CLASS  for the suite's volume (default the cluster's)
//
// It is skipped without them; the test bed (TestConformance) is what CI runs.
func TestRealCluster(t *testing.T) {
	kc := os.Getenv("MLAGENT_KUBE_E2E_KUBECONFIG")
	if kc == "" {
		t.Skip("no MLAGENT_KUBE_E2E_KUBECONFIG: this test runs the suite against a cluster you name (see README, Kubernetes)")
	}
	ns, listen := os.Getenv("MLAGENT_KUBE_E2E_NAMESPACE"), os.Getenv("MLAGENT_KUBE_E2E_GATEWAY_LISTEN")
	if ns == "" || listen == "" {
		t.Fatal("MLAGENT_KUBE_E2E_NAMESPACE and MLAGENT_KUBE_E2E_GATEWAY_LISTEN are needed too")
	}
	cfg, _, err := kube.LoadConfig(kc, "")
	if err != nil {
		t.Fatal(err)
	}
	newBackend := func(t *testing.T) sandbox.Backend {
		b, err := kube.New(context.Background(), kube.Options{
			Config: cfg, Namespace: ns, Image: os.Getenv("MLAGENT_KUBE_E2E_IMAGE"), Binary: testbin.Path(t),
			StorageClass: os.Getenv("MLAGENT_KUBE_E2E_STORAGE_CLASS"), VolumeSize: "1Gi",
			// A real cluster may pull a large image on first use.
			ScheduleTimeout: 5 * time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := newBackend(t)
	t.Cleanup(func() {
		b.(*kube.Backend).Client().CoreV1().PersistentVolumeClaims(ns).Delete(context.Background(), "mlagent-"+sandboxtest.ConformanceVolume, metav1.DeleteOptions{})
	})
	sandboxtest.Run(t, sandboxtest.Harness{
		Backend: b,
		Attach:  newBackend,
		Slow:    true,
		Gateway: func(t *testing.T, h http.Handler) *sandbox.GatewayAccess { return serveGateway(t, listen, h) },
	})
}
