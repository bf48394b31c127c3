package kube_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/kube"
	"github.com/mlagent/mlagent/internal/sandbox/kube/deploy"
	"github.com/mlagent/mlagent/internal/sandbox/kube/kubetest"
	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
	"github.com/mlagent/mlagent/internal/testbin"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// syncBuf is a buffer written by one goroutine and read after.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is one test's namespace on the test cluster.
type env struct {
	c  *kubetest.Cluster
	ns string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	c := kubetest.Get(t)
	return (&env{c: c}).in(t, c.Namespace(t))
}

// in readies namespace ns for sandboxes as `deploy kubernetes` does: the
// "restricted" Pod Security Standard enforced (so every test's pods
// prove they meet it) and the sandbox NetworkPolicy.
func (e *env) in(t testing.TB, ns string) *env {
	t.Helper()
	ctx := context.Background()
	n, err := e.c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	n.Labels["pod-security.kubernetes.io/enforce-version"] = "latest"
	if _, err := e.c.Client.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e2 := &env{c: e.c, ns: ns}
	e2.policy(t)
	return e2
}

// policy is the sandbox NetworkPolicy `deploy kubernetes` makes, with
// the host's bridge address allowed (where the tests' gateways listen).
func (e *env) policy(t testing.TB) {
	t.Helper()
	np := deploy.SandboxPolicy(deploy.Options{Namespace: e.ns, GatewayCIDR: e.c.HostIP + "/32"})
	if _, err := e.c.Client.NetworkingV1().NetworkPolicies(e.ns).Create(context.Background(), np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// gateway serves h on the host's address on the pods' bridge, where a
// gateway outside the cluster would be reached.
func (e *env) gateway(t testing.TB, h http.Handler) *sandbox.GatewayAccess {
	return serveGateway(t, e.c.HostIP+":0", h)
}

// serveGateway serves h on addr (host:port) and says how pods reach it.
func serveGateway(t testing.TB, addr string, h http.Handler) *sandbox.GatewayAccess {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &sandbox.GatewayAccess{Network: "tcp", Address: ln.Addr().String()}
}

func (e *env) backend(t testing.TB, mod func(*kube.Options)) *kube.Backend {
	t.Helper()
	o := kube.Options{
		Config:     e.c.Config,
		Namespace:  e.ns,
		Image:      kubetest.SandboxImage,
		PullPolicy: corev1.PullNever,
		Binary:     testbin.Path(t),
		VolumeSize: "1Gi",
		// Plain: on the test bed's loopback it is the faster delivery
		// (gzip costs ~6 s of decompression per pod on a loaded
		// machine); TestConformance runs the default, gzip.
		PlainDelivery: true,
	}
	if mod != nil {
		mod(&o)
	}
	b, err := kube.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConformance(t *testing.T) {
	e := newEnv(t)
	e.c.Volume(t, e.ns, "mlagent-conformance", "1Gi")
	gzip := func(o *kube.Options) { o.PlainDelivery = false }
	b := e.backend(t, gzip)
	sandboxtest.Run(t, sandboxtest.Harness{
		Backend: b,
		Attach:  func(t *testing.T) sandbox.Backend { return e.backend(t, gzip) },
		Slow:    true,
		Gateway: func(t *testing.T, h http.Handler) *sandbox.GatewayAccess { return e.gateway(t, h) },
		// The test bed's node is this host.
		Local: true,
	})
}

func TestCreateAndExec(t *testing.T) {
	e := newEnv(t)
	b := e.backend(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	sb, err := b.Create(ctx, sandbox.Spec{})
	if err != nil {
		t.Fatalf("Create: %v\n%s", err, e.c.Logs("kubelet"))
	}
	t.Logf("created in %v", time.Since(start))
	defer sb.Terminate(context.Background())
	var out, errb syncBuf
	code, err := sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{"sh", "-c", "echo hi; id -u; echo err >&2"}, Stdout: &out, Stderr: &errb})
	if err != nil || code != 0 || out.String() != "hi\n1000\n" || errb.String() != "err\n" {
		t.Fatalf("got %d %v %q %q", code, err, out.String(), errb.String())
	}
}
