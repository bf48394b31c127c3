package kube

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/streaming/pkg/httpstream"
)

// The deployed gateway (see package deploy).
const (
	GatewayName = "mlagent-gateway"
	GatewayPort = 8790
	AdminPort   = 8791
)

// Endpoints say where a deployed gateway is reached: Data by pods (its
// Service's cluster IP: they have no DNS), Local (its data plane) and
// AdminURL (its admin plane, on the gateway pod's loopback) by this host
// through port-forwards that the user's RBAC authorises; Close ends them.
type Endpoints struct {
	Data, Local, AdminURL string
	Close                 func()
}

// Gateway finds the gateway deployed for the backend's sandboxes
// (Options.GatewayAddr overrides the address pods dial).
func (b *Backend) Gateway(ctx context.Context) (Endpoints, error) {
	ns := b.opts.GatewayNamespace
	data := b.opts.GatewayAddr
	if data == "" {
		svc, err := b.client.CoreV1().Services(ns).Get(ctx, GatewayName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return Endpoints{}, fmt.Errorf("%w: no gateway Service %s/%s; an operator deploys it with `mlagent deploy kubernetes --apply`", ErrNoGateway, ns, GatewayName)
		}
		if err != nil {
			return Endpoints{}, b.explainIn(ctx, err, "get", "services", ns)
		}
		if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
			return Endpoints{}, fmt.Errorf("%w: Service %s/%s has no cluster IP", ErrNoGateway, ns, GatewayName)
		}
		data = net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(GatewayPort))
	}
	pod, err := b.gatewayPod(ctx)
	if err != nil {
		return Endpoints{}, err
	}
	ports, stop, err := b.portForward(ctx, ns, pod, GatewayPort, AdminPort)
	if err != nil {
		return Endpoints{}, err
	}
	return Endpoints{
		Data: data, Local: "127.0.0.1:" + strconv.Itoa(ports[0]),
		AdminURL: "http://127.0.0.1:" + strconv.Itoa(ports[1]), Close: stop,
	}, nil
}

// gatewayPod is a running, ready gateway pod.
func (b *Backend) gatewayPod(ctx context.Context) (string, error) {
	ns := b.opts.GatewayNamespace
	pods, err := b.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy, LabelName: GatewayName}).String(),
	})
	if err != nil {
		return "", b.explainIn(ctx, err, "list", "pods", ns)
	}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return p.Name, nil
			}
		}
	}
	return "", fmt.Errorf("%w: no ready gateway pod in namespace %s (is `mlagent deploy kubernetes --apply` done? `kubectl -n %s get pods` says more)", ErrNoGateway, ns, ns)
}

// portForward forwards a free port on this host's loopback to each port
// of a pod, over WebSocket (SPDY where the upgrade is refused), and
// returns the local ports in the same order.
func (b *Backend) portForward(ctx context.Context, ns, pod string, ports ...int) ([]int, func(), error) {
	req := b.client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("portforward")
	transport, upgrader, err := spdy.RoundTripperFor(b.opts.Config)
	if err != nil {
		return nil, nil, err
	}
	spdyDialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, req.URL())
	wsDialer, err := portforward.NewSPDYOverWebsocketDialer(req.URL(), b.opts.Config)
	if err != nil {
		return nil, nil, err
	}
	dialer := portforward.NewFallbackDialer(wsDialer, spdyDialer, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	stop, ready := make(chan struct{}), make(chan struct{})
	errOut := &boundedBuffer{max: 4096}
	var specs []string
	for _, p := range ports {
		specs = append(specs, "0:"+strconv.Itoa(p))
	}
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, specs, stop, ready, io.Discard, errOut)
	if err != nil {
		return nil, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		return nil, nil, fmt.Errorf("port-forward to %s/%s: %w", ns, pod, b.explainIn(ctx, err, "create", "pods/portforward", ns))
	case <-ctx.Done():
		close(stop)
		return nil, nil, ctx.Err()
	}
	fwd, err := fw.GetPorts()
	if err != nil || len(fwd) != len(ports) {
		close(stop)
		return nil, nil, fmt.Errorf("port-forward to %s/%s: local ports %v: %v", ns, pod, fwd, err)
	}
	local := make([]int, len(ports))
	for _, f := range fwd {
		for i, p := range ports {
			if int(f.Remote) == p {
				local[i] = int(f.Local)
			}
		}
	}
	var once sync.Once
	return local, func() { once.Do(func() { close(stop) }) }, nil
}
