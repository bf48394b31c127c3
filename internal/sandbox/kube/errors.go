package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
)

// Errors a caller can test with errors.Is; each comes wrapped in one
// sentence that says what happened, with the pod's events.
var (
	ErrNoCluster     = errors.New("no Kubernetes cluster configured")
	ErrUnreachable   = errors.New("the Kubernetes API server is unreachable")
	ErrUnauthorized  = errors.New("the Kubernetes API server did not accept these credentials")
	ErrForbidden     = errors.New("not allowed by the cluster's RBAC")
	ErrQuota         = errors.New("refused by the namespace's resource quota")
	ErrAdmission     = errors.New("refused by the cluster's admission control")
	ErrInvalid       = errors.New("rejected as invalid by the API server")
	ErrImagePull     = errors.New("the sandbox image cannot be pulled")
	ErrUnschedulable = errors.New("no node can run the sandbox")
	ErrVolumePending = errors.New("a volume's PersistentVolumeClaim is not bound")
	ErrStartFailed   = errors.New("the sandbox pod failed to start")
	ErrNoPolicy      = errors.New("no NetworkPolicy confines sandbox pods in this namespace")
	ErrNoGateway     = errors.New("no gateway deployed for sandbox pods")
)

// explain turns an API error into one of the errors above, saying which
// verb on which resource was refused.
func (b *Backend) explain(ctx context.Context, err error, verb, resource string) error {
	return b.explainIn(ctx, err, verb, resource, b.opts.Namespace)
}

// explainIn is explain for a resource in namespace ns.
func (b *Backend) explainIn(ctx context.Context, err error, verb, resource, ns string) error {
	if err == nil {
		return nil
	}
	var status apierrors.APIStatus
	msg := err.Error()
	if errors.As(err, &status) {
		msg = status.Status().Message
	}
	switch {
	case apierrors.IsForbidden(err) && strings.Contains(msg, "exceeded quota"):
		return fmt.Errorf("%w: %s", ErrQuota, msg)
	case apierrors.IsForbidden(err) && !strings.Contains(msg, " cannot "):
		// Not RBAC ("User … cannot create resource …"): an admission
		// plugin (PodSecurity, RuntimeClass, a webhook) refused it.
		return fmt.Errorf("%w: %s %s in namespace %s: %s", ErrAdmission, verb, resource, ns, msg)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%w: you may not %s %s in namespace %s (%s); an operator grants it by binding you to the Role that `mlagent deploy kubernetes` emits",
			ErrForbidden, verb, resource, ns, msg)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%w: %s; check the user of your kubeconfig's current context", ErrUnauthorized, msg)
	case apierrors.IsInvalid(err):
		return fmt.Errorf("%w: %s %s: %s", ErrInvalid, verb, resource, msg)
	case isConnError(err):
		return fmt.Errorf("%w at %s: %v", ErrUnreachable, b.opts.Config.Host, err)
	}
	return err
}

func isConnError(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return errors.As(err, &op) || errors.As(err, &dns) || strings.Contains(err.Error(), "connection refused")
}

// events returns the pod's events, oldest first, as "Reason: message"
// lines (best effort: an empty string when they cannot be read).
func (b *Backend) events(ctx context.Context, kind, name string) string {
	list, err := b.client.CoreV1().Events(b.opts.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.AndSelectors(
			fields.OneTermEqualSelector("involvedObject.kind", kind),
			fields.OneTermEqualSelector("involvedObject.name", name),
		).String(),
	})
	if err != nil || len(list.Items) == 0 {
		return ""
	}
	items := list.Items
	sort.SliceStable(items, func(i, j int) bool { return eventTime(&items[i]).Time.Before(eventTime(&items[j]).Time) })
	var lines []string
	seen := map[string]bool{}
	for _, e := range items {
		line := e.Type + " " + e.Reason + ": " + strings.TrimSpace(e.Message)
		if !seen[line] {
			seen[line] = true
			lines = append(lines, line)
		}
	}
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.Join(lines, "\n")
}

func eventTime(e *corev1.Event) metav1.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp
	case !e.EventTime.IsZero():
		return metav1.NewTime(e.EventTime.Time)
	}
	return e.CreationTimestamp
}

// withEvents appends the pod's events to err's message.
func (b *Backend) withEvents(ctx context.Context, err error, pod string) error {
	ev := b.events(context.WithoutCancel(ctx), "Pod", pod)
	if ev == "" {
		return err
	}
	return fmt.Errorf("%w\nevents of pod %s:\n%s", err, pod, indent(clean(ev)))
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
