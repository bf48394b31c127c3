package kubetest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestPodRunsAndExecs is the testbed's own check: a pod from the local
// sandbox image is scheduled, runs, answers an exec, and reaches the
// host's address on the bridge and nothing beyond.
func TestPodRunsAndExecs(t *testing.T) {
	c := Get(t)
	ns := c.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe"},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "main", Image: SandboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sleep", "3600"},
			}},
		},
	}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, "probe", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase == corev1.PodRunning {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("pod not running: %+v\n%s", p.Status, c.Logs("kubelet"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, err := c.Kubectl(ctx, "-n", ns, "exec", "probe", "--", "sh", "-c", "echo hello; id -u; ip -4 route 2>&1 || route -n")
	if err != nil || !strings.HasPrefix(string(out), "hello\n") {
		t.Fatalf("exec: got %q, %v", out, err)
	}
	t.Logf("inside: %s", out)
}
