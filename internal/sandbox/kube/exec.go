package kube

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/kube/podexec"
)

// ExecIn runs argv in a container of a pod through the pods/exec
// subresource, with stdin and stdout attached (no terminal); stderr is
// kept, bounded, for the error. The stream goes over WebSocket; SPDY is
// tried only when the server refused the WebSocket upgrade, never after
// a command may have started (it would run twice).
func (b *Backend) ExecIn(ctx context.Context, pod, container string, argv []string, stdin io.Reader, stdout io.Writer) error {
	req := b.client.CoreV1().RESTClient().Post().
		Resource("pods").Namespace(b.opts.Namespace).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: container,
			Command:   argv,
			Stdin:     stdin != nil,
			Stdout:    true,
			Stderr:    true,
		}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(b.opts.Config, http.MethodGet, req.URL().String())
	if err != nil {
		return fmt.Errorf("exec in pod %s: %w", pod, err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(b.opts.Config, http.MethodPost, req.URL())
	if err != nil {
		return fmt.Errorf("exec in pod %s: %w", pod, err)
	}
	exec, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return err
	}
	stderr := &boundedBuffer{max: 4096}
	err = exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: stdout, Stderr: stderr})
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("%w: %s", b.explain(ctx, err, "create", "pods/exec"), clean(msg))
		}
		return b.explain(ctx, err, "create", "pods/exec")
	}
	return nil
}

// stream is the podexec stream of a sandbox's container.
func (s *Sandbox) stream() podexec.Stream {
	return func(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
		return s.b.ExecIn(ctx, s.name, sandboxContainer, []string{sandbox.BinaryPath, "podexec"}, stdin, stdout)
	}
}

// boundedBuffer keeps the first max bytes written to it; over says more
// came.
type boundedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (w *boundedBuffer) Write(p []byte) (int, error) {
	room := max(w.max-w.Len(), 0)
	w.Buffer.Write(p[:min(len(p), room)])
	if len(p) > room {
		w.over = true
	}
	return len(p), nil
}
