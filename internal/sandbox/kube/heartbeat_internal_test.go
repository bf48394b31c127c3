package kube

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/kube/kubetest"
	"github.com/mlagent/mlagent/internal/testbin"
)

// TestHeartbeat: the creator renews the heartbeat; once it stops (as when
// the CLI dies) List calls the sandbox dead and Reap deletes its pod.
func TestHeartbeat(t *testing.T) {
	c := kubetest.Get(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	b, err := New(ctx, Options{Config: c.Config, Namespace: ns, Image: kubetest.SandboxImage, PullPolicy: corev1.PullNever,
		Binary: testbin.Path(t), SkipNetworkPolicyCheck: true, Heartbeat: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sbi, err := b.Create(ctx, sandbox.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	sb := sbi.(*Sandbox)
	defer sb.Terminate(ctx)
	time.Sleep(2 * time.Second)
	pod, err := b.client.CoreV1().Pods(ns).Get(ctx, sb.name, metav1.GetOptions{})
	if err != nil || pod.Annotations[AnnotationHeartbeat] == "" {
		t.Fatalf("after 2 s: annotations %v, %v; want a heartbeat", pod.Annotations, err)
	}
	close(sb.stopBeat) // the CLI dies
	sb.stopBeat = nil  // (the deferred Terminate must not close it again)
	time.Sleep(5 * time.Second)
	infos, err := b.List(ctx)
	if err != nil || len(infos) != 1 || infos[0].State != sandbox.StateDead {
		t.Fatalf("List: got %+v, %v; want the sandbox dead", infos, err)
	}
	if err := b.Reap(ctx, []string{sb.name, "no-such-sandbox"}); err != nil {
		t.Fatalf("Reap: %v", err)
	}
	if infos, _ := b.List(ctx); len(infos) != 0 {
		t.Errorf("after Reap: %+v; want nothing", infos)
	}
}
