package kube_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/mlagent/mlagent/internal/config"
	"github.com/mlagent/mlagent/internal/gateway"
	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/kube"
	"github.com/mlagent/mlagent/internal/sandbox/kube/deploy"
	"github.com/mlagent/mlagent/internal/sandbox/kube/kubetest"
	"github.com/mlagent/mlagent/internal/testbin"
)

// TestDeploy applies what `deploy kubernetes` emits to the real server
// (dry run, then for real, then again), delivers the binary so the
// gateway runs in the cluster, and then, as a user bound only to the
// emitted Roles: runs a sandbox whose token the in-cluster gateway issued
// through a port-forward and honours from the pod, may not read Secrets;
// a user without the Roles gets the RBAC error. The NetworkPolicies are
// read back and checked against the pods they must select (the test bed
// does not enforce them).
func TestDeploy(t *testing.T) {
	c := kubetest.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	ns := fmt.Sprintf("dep%d", time.Now().UnixNano()%1e6)
	o := deploy.Options{
		Namespace: ns, Image: kubetest.SandboxImage, Users: []string{"alice"},
		GatewayCIDR: c.HostIP + "/32",
	}
	gns := ns + "-gateway"
	objs, err := deploy.Objects(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range []string{ns, gns} {
			c.Client.CoreV1().Namespaces().Delete(context.Background(), n, metav1.DeleteOptions{})
		}
	})
	// The test bed has no provisioner: volumes for the claims to bind to.
	c.Volume(t, gns, deploy.GatewayState, "200Gi")
	c.Volume(t, ns, "mlagent-data", "200Gi")
	c.Volume(t, ns, "mlagent-trackio", "200Gi")

	t.Run("dry run before the namespaces exist", func(t *testing.T) {
		err := deploy.ApplyAll(ctx, c.Config, objs, true)
		if err == nil || !strings.Contains(err.Error(), "does not exist yet") {
			t.Errorf("got %v; want the dry run to say the namespace does not exist yet", err)
		}
	})
	if err := deploy.ApplyAll(ctx, c.Config, objs[:2], false); err != nil {
		t.Fatal(err)
	}
	t.Run("dry run stores nothing", func(t *testing.T) {
		if err := deploy.ApplyAll(ctx, c.Config, objs, true); err != nil {
			t.Fatalf("dry run: %v", err)
		}
		if _, err := c.Client.AppsV1().Deployments(gns).Get(ctx, deploy.GatewayName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("after a dry run: got %v; want the gateway Deployment not stored", err)
		}
	})
	for i := range 2 { // applying again changes nothing and fails nothing
		if err := deploy.ApplyAll(ctx, c.Config, objs, false); err != nil {
			t.Fatalf("apply %d: %v", i+1, err)
		}
	}
	changed, err := deploy.SetKeys(ctx, c.Config, o, deploy.Keys{"ANTHROPIC_API_KEY": "sk-ant-deploy-test"})
	if err != nil || !changed {
		t.Fatalf("SetKeys: %v, %v", changed, err)
	}
	var log bytes.Buffer
	if err := deploy.DeliverGateway(ctx, c.Config, o, testbin.Path(t), &log); err != nil {
		t.Fatalf("DeliverGateway: %v\n%s\n%s", err, log.String(), c.Logs("kubelet"))
	}
	t.Logf("%s", log.String())
	if err := deploy.ApplyAll(ctx, c.Config, objs, false); err != nil {
		t.Fatalf("apply after the keys: %v", err)
	}
	if s, err := c.Client.CoreV1().Secrets(gns).Get(ctx, deploy.GatewayKeys, metav1.GetOptions{}); err != nil || string(s.Data["ANTHROPIC_API_KEY"]) != "sk-ant-deploy-test" {
		t.Errorf("re-applying the manifests lost the keys: %v %v", s, err)
	}
	gw := gatewayPod(t, c.Client, gns)

	aliceCfg, _, err := c.User("alice")
	if err != nil {
		t.Fatal(err)
	}
	bobCfg, _, err := c.User("bob")
	if err != nil {
		t.Fatal(err)
	}
	alice, err := kubernetes.NewForConfig(aliceCfg)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a user with the Role runs a sandbox through the deployed gateway", func(t *testing.T) {
		b, err := kube.New(ctx, kube.Options{
			Config: aliceCfg, Namespace: ns, Image: kubetest.SandboxImage, PullPolicy: corev1.PullNever,
			Binary: testbin.Path(t),
			// No kube-proxy here: pods reach the gateway by its pod's IP.
			GatewayAddr: net.JoinHostPort(gw.Status.PodIP, strconv.Itoa(kube.GatewayPort)),
		})
		if err != nil {
			t.Fatal(err)
		}
		cfg := config.Defaults()
		cfg.Home = t.TempDir()
		h, err := launch.Start(ctx, launch.Options{Config: cfg, Backend: b})
		if err != nil {
			t.Fatalf("launch.Start with the deployed gateway: %v", err)
		}
		defer h.Close()
		sb, err := h.NewSandbox(ctx, launch.SandboxRequest{Volumes: []sandbox.Mount{}})
		if err != nil {
			t.Fatalf("NewSandbox: %v", err)
		}
		defer sb.Terminate(context.Background())
		// The gateway knows the token (its upstream, the real API, is not
		// reachable here: any answer but 401 means it was accepted); a
		// forged one it refuses.
		status := func(key string) string {
			out := execOut(t, sb, "sh", "-c", `wget -Y off -q -S -O /dev/null --header "x-api-key: `+key+`" "$ANTHROPIC_BASE_URL/v1/models" 2>&1 | grep -m1 'HTTP/'`)
			return strings.TrimSpace(out)
		}
		if got := status("$ANTHROPIC_API_KEY"); !strings.HasPrefix(got, "HTTP/1.1 ") || strings.Contains(got, " 401") || strings.Contains(got, " 403") {
			t.Errorf("with the sandbox's token: got %q; want an answer other than 401 or 403", got)
		}
		if got := status("mlat_forged"); !strings.Contains(got, " 401") && !strings.Contains(got, " 403") {
			t.Errorf("with a forged token: got %q; want 401 or 403", got)
		}
		if err := sb.Terminate(ctx); err != nil {
			t.Fatal(err)
		}
		// The token died with the sandbox, at the gateway in the cluster.
		ep, err := b.Gateway(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer ep.Close()
		usage, err := gateway.NewAdminClient(ep.AdminURL, "").Usage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var revoked bool
		for _, u := range usage {
			if u.ID == sb.TokenID {
				revoked = u.RevokedAt != nil
			}
		}
		if !revoked {
			t.Errorf("token %s not revoked at the deployed gateway after Terminate: %+v", sb.TokenID, usage)
		}
	})

	t.Run("RBAC: the Role has nothing on Secrets", func(t *testing.T) {
		for _, n := range []string{ns, gns} {
			if _, err := alice.CoreV1().Secrets(n).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
				t.Errorf("alice lists Secrets in %s: got %v; want forbidden", n, err)
			}
		}
		for _, ra := range []authorizationv1.ResourceAttributes{
			{Namespace: ns, Verb: "create", Resource: "pods", Subresource: "exec"},
			{Namespace: ns, Verb: "create", Resource: "pods"},
			{Namespace: gns, Verb: "create", Resource: "pods", Subresource: "portforward"},
		} {
			r, err := alice.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &ra}}, metav1.CreateOptions{})
			if err != nil || !r.Status.Allowed {
				t.Errorf("alice may %s %s/%s in %s: got %v, %v; want allowed", ra.Verb, ra.Resource, ra.Subresource, ra.Namespace, r, err)
			}
		}
		for _, ra := range []authorizationv1.ResourceAttributes{
			{Namespace: gns, Verb: "create", Resource: "pods", Subresource: "exec"},
			{Namespace: gns, Verb: "get", Resource: "secrets"},
		} {
			r, err := alice.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &ra}}, metav1.CreateOptions{})
			if err != nil || r.Status.Allowed {
				t.Errorf("alice may %s %s/%s in %s: got %v, %v; want refused", ra.Verb, ra.Resource, ra.Subresource, ra.Namespace, r, err)
			}
		}
	})

	t.Run("RBAC: a user without the Role gets the RBAC error", func(t *testing.T) {
		b, err := kube.New(ctx, kube.Options{Config: bobCfg, Namespace: ns, Image: kubetest.SandboxImage, Binary: testbin.Path(t)})
		if err != nil {
			t.Fatal(err)
		}
		_, err = b.Create(ctx, sandbox.Spec{})
		if !errors.Is(err, kube.ErrForbidden) || !strings.Contains(err.Error(), `User "bob" cannot get resource "networkpolicies"`) || !strings.Contains(err.Error(), "mlagent deploy kubernetes") {
			t.Errorf("got %v; want ErrForbidden naming the verb and resource", err)
		}
	})

	t.Run("the NetworkPolicies select what they must", func(t *testing.T) {
		np, err := c.Client.NetworkingV1().NetworkPolicies(ns).Get(ctx, kube.DefaultNetworkPolicy, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sel, _ := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		sandboxLabels := labels.Set{kube.LabelManagedBy: kube.ManagedBy, kube.LabelName: kube.NameSandbox, kube.LabelSandbox: "x"}
		if !sel.Matches(sandboxLabels) || sel.Matches(labels.Set(gw.Labels)) {
			t.Errorf("sandbox policy selector %v: want sandbox pods, not the gateway", sel)
		}
		if len(np.Spec.Ingress) != 0 {
			t.Errorf("sandbox policy allows ingress %v; want none", np.Spec.Ingress)
		}
		gwNS, err := c.Client.CoreV1().Namespaces().Get(ctx, gns, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var toGateway bool
		for _, r := range np.Spec.Egress {
			for _, p := range r.To {
				if p.PodSelector == nil || p.NamespaceSelector == nil {
					continue
				}
				ps, _ := metav1.LabelSelectorAsSelector(p.PodSelector)
				nsSel, _ := metav1.LabelSelectorAsSelector(p.NamespaceSelector)
				if ps.Matches(labels.Set(gw.Labels)) && nsSel.Matches(labels.Set(gwNS.Labels)) && len(r.Ports) == 1 && r.Ports[0].Port.IntValue() == kube.GatewayPort {
					toGateway = true
				}
			}
		}
		if !toGateway {
			t.Errorf("sandbox policy egress %+v: want the gateway pod's data port", np.Spec.Egress)
		}
		gp, err := c.Client.NetworkingV1().NetworkPolicies(gns).Get(ctx, deploy.GatewayName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		gsel, _ := metav1.LabelSelectorAsSelector(&gp.Spec.PodSelector)
		if !gsel.Matches(labels.Set(gw.Labels)) || len(gp.Spec.Ingress) != 1 || gp.Spec.Ingress[0].Ports[0].Port.IntValue() != kube.GatewayPort {
			t.Errorf("gateway policy %+v: want the gateway pod, ingress on the data port only", gp.Spec)
		}
	})
}

func gatewayPod(t *testing.T, client kubernetes.Interface, ns string) *corev1.Pod {
	t.Helper()
	pods, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{kube.LabelName: deploy.GatewayName}).String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range pods.Items {
		if pods.Items[i].Status.Phase == corev1.PodRunning && pods.Items[i].DeletionTimestamp == nil {
			return &pods.Items[i]
		}
	}
	t.Fatalf("no running gateway pod in %s: %+v", ns, pods.Items)
	return nil
}

func execOut(t *testing.T, sb sandbox.Sandbox, argv ...string) string {
	t.Helper()
	var out syncBuf
	if _, err := sb.Exec(context.Background(), sandbox.ExecRequest{Argv: argv, Stdout: &out, Stderr: &out}); err != nil {
		t.Fatalf("Exec %q: %v", argv, err)
	}
	return out.String()
}
