package kube_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/kube"
)

// TestFailureMessages: each way a sandbox cannot start, produced by the
// real API server, scheduler or kubelet, comes back as its own error in
// one sentence with the pod's events, and nothing is left behind.
func TestFailureMessages(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// An image without /bin/sh, where the binary cannot be delivered.
	if err := e.c.ImportFiles(ctx, "mlagent.test/no-shell:1", map[string][]byte{"/hello": []byte("#!/nothing\n")}); err != nil {
		t.Fatal(err)
	}
	// A quota that refuses any pod, in a namespace of its own.
	quotaNS := e.c.Namespace(t)
	e.in(t, quotaNS)
	if _, err := e.c.Client.CoreV1().ResourceQuotas(quotaNS).Create(ctx, &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "none"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A namespace without the sandbox NetworkPolicy.
	openNS := e.c.Namespace(t)

	cases := []struct {
		name string
		mod  func(*kube.Options)
		spec sandbox.Spec
		want error
		says []string // in the message
	}{
		{name: "quota exceeded", mod: func(o *kube.Options) { o.Namespace = quotaNS },
			want: kube.ErrQuota, says: []string{"exceeded quota", "none"}},
		{name: "invalid spec", mod: func(o *kube.Options) {
			o.Tolerations = []corev1.Toleration{{Key: "k", Operator: "Sometimes"}}
		}, want: kube.ErrInvalid, says: []string{"spec.tolerations[0].operator", "Unsupported value"}},
		{name: "refused by admission", mod: func(o *kube.Options) { o.RuntimeClass = "no-such-class" },
			want: kube.ErrAdmission, says: []string{`RuntimeClass "no-such-class" not found`}},
		{name: "image not there", mod: func(o *kube.Options) { o.Image = "mlagent.test/missing:1"; o.PullPolicy = corev1.PullIfNotPresent },
			want: kube.ErrImagePull, says: []string{"mlagent.test/missing:1", "events of pod", "Failed"}},
		{name: "image never pulled", mod: func(o *kube.Options) { o.Image = "mlagent.test/missing:1" },
			want: kube.ErrImagePull, says: []string{"ErrImageNeverPull"}},
		{name: "no GPU in the cluster", mod: func(o *kube.Options) { o.ScheduleTimeout = 3 * time.Second },
			spec: sandbox.Spec{GPU: sandbox.GPURequired},
			want: kube.ErrUnschedulable, says: []string{"Insufficient nvidia.com/gpu", "FailedScheduling"}},
		{name: "volume claim never bound", mod: func(o *kube.Options) { o.ScheduleTimeout = 3 * time.Second },
			spec: sandbox.Spec{Volumes: []sandbox.Mount{{Volume: "unbound", Path: "/data"}}},
			want: kube.ErrVolumePending, says: []string{"mlagent-unbound", "Pending"}},
		{name: "image without a shell", mod: func(o *kube.Options) { o.Image = "mlagent.test/no-shell:1" },
			want: kube.ErrStartFailed, says: []string{"/bin/sh"}},
		{name: "no NetworkPolicy", mod: func(o *kube.Options) { o.Namespace = openNS },
			want: kube.ErrNoPolicy, says: []string{"mlagent deploy kubernetes --apply"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := e.backend(t, c.mod)
			_, err := b.Create(ctx, c.spec)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v; want %v", err, c.want)
			}
			for _, s := range c.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("got %q; want it to say %q", err, s)
				}
			}
			t.Logf("%v", err)
			infos, lerr := b.List(ctx)
			if lerr != nil || len(infos) != 0 {
				t.Errorf("after the failure: List got %+v, %v; want nothing left", infos, lerr)
			}
		})
	}
}

// TestNoKubeconfig: without a kubeconfig the backend says where it looked.
func TestNoKubeconfig(t *testing.T) {
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "missing"))
	t.Setenv("HOME", t.TempDir())
	os.Unsetenv("KUBERNETES_SERVICE_HOST")
	_, _, err := kube.LoadConfig("", "")
	if !errors.Is(err, kube.ErrNoCluster) || !strings.Contains(err.Error(), "KUBECONFIG") {
		t.Errorf("got %v; want ErrNoCluster naming KUBECONFIG", err)
	}
}
