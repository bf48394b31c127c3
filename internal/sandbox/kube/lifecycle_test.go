package kube_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/kube"
	"github.com/mlagent/mlagent/internal/sandbox/kube/kubetest"
	"github.com/mlagent/mlagent/internal/testbin"
)

// cliEnv runs the real mlagent binary against the test cluster, with the
// kubernetes backend and a gateway on the host's bridge address.
func (e *env) cli(t *testing.T, extra string) func(ctx context.Context, args ...string) *exec.Cmd {
	t.Helper()
	run, _ := e.cliIn(t, extra)
	return run
}

// cliIn is cli, and the MLAGENT_HOME it runs with.
func (e *env) cliIn(t *testing.T, extra string) (func(ctx context.Context, args ...string) *exec.Cmd, string) {
	t.Helper()
	home := t.TempDir()
	conf := filepath.Join(home, "config.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`[sandbox]
backend = "kubernetes"
image = %q

[kubernetes]
kubeconfig = %q
namespace = %q
gateway_listen = %q
pull_policy = "Never"
volume_size = "1Gi"
plain_delivery = true
%s
`, kubetest.SandboxImage, e.c.Kubeconfig, e.ns, e.c.HostIP+":0", extra)), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := testbin.Path(t)
	return func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "MLAGENT_HOME="+home, "MLAGENT_CONFIG="+conf)
		return cmd
	}, home
}

// TestCLIDiedSandboxReaped: `mlagent sandbox run` on the kubernetes
// backend runs a command in a pod; when that CLI is killed (SIGKILL: no
// cleanup), its pod is found by label, listed dead once its heartbeat is
// stale, and deleted — its token revoked — by the next command.
func TestCLIDiedSandboxReaped(t *testing.T) {
	e := newEnv(t)
	e.c.Volume(t, e.ns, "mlagent-data", "1Gi")
	e.c.Volume(t, e.ns, "mlagent-trackio", "1Gi")
	mlagent := e.cli(t, `heartbeat = "1s"`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	out := mlagent(ctx, "sandbox", "run", "--", "sh", "-c", "echo from-a-pod; id -u")
	if b, err := out.CombinedOutput(); err != nil || !strings.Contains(string(b), "from-a-pod\n1000\n") {
		t.Fatalf("sandbox run: %v\n%s", err, b)
	}

	run := mlagent(ctx, "sandbox", "run", "--", "sleep", "600")
	var stderr bytes.Buffer
	run.Stderr = &stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	b := e.backend(t, nil)
	var name string
	for end := time.Now().Add(2 * time.Minute); name == "" && time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		infos, _ := b.List(ctx)
		for _, in := range infos {
			if in.State == sandbox.StateRunning {
				name = in.Name
			}
		}
	}
	if name == "" {
		run.Process.Kill()
		run.Wait()
		t.Fatalf("no sandbox pod appeared: %s", stderr.String())
	}
	// The command is running inside when the CLI dies.
	for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		p, err := e.c.Client.CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil {
			break
		}
	}
	time.Sleep(2 * time.Second)
	run.Process.Signal(syscall.SIGKILL)
	run.Wait()
	if p, err := e.c.Client.CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Fatalf("the pod of a killed CLI: %v; want it still there (nobody deleted it)", err)
	} else if p.Annotations[kube.AnnotationHeartbeat] == "" {
		t.Fatalf("the pod of a killed CLI has no heartbeat: %v\n%s", p.Annotations, stderr.String())
	}
	time.Sleep(5 * time.Second) // > 4 heartbeats
	infos, err := b.List(ctx)
	if err != nil || len(infos) != 1 || infos[0].State != sandbox.StateDead {
		t.Errorf("List: got %+v, %v; want %s dead", infos, err, name)
	}
	// The next command (here `sandbox ls`) revokes its token and deletes
	// its pod.
	ls, err := mlagent(ctx, "sandbox", "ls").CombinedOutput()
	if err != nil || strings.Contains(string(ls), name) {
		t.Errorf("sandbox ls: got %v\n%s\nwant %s reaped", err, ls, name)
	}
	if _, err := e.c.Client.CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after the next command: got %v; want the dead sandbox's pod deleted", err)
	}
}

// TestActiveDeadline: a pod outlives nothing its deadline allows, even
// when nobody terminates it.
func TestActiveDeadline(t *testing.T) {
	e := newEnv(t)
	// Long enough for a start on a loaded machine (one took 11 s here).
	b := e.backend(t, func(o *kube.Options) { o.MaxLifetime = 20 * time.Second })
	ctx := context.Background()
	sb, err := b.Create(ctx, sandbox.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Terminate(ctx)
	pod, err := e.c.Client.CoreV1().Pods(e.ns).Get(ctx, sb.Name(), metav1.GetOptions{})
	if err != nil || pod.Spec.ActiveDeadlineSeconds == nil || *pod.Spec.ActiveDeadlineSeconds != 20 {
		t.Fatalf("got %v, %v; want activeDeadlineSeconds 20", pod.Spec.ActiveDeadlineSeconds, err)
	}
	for end := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
		_, err := sb.Exec(ctx, sandbox.ExecRequest{Argv: []string{"true"}})
		if errors.Is(err, sandbox.ErrNotRunning) {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("still running 90s after a 20s deadline (last: %v)", err)
		}
	}
	pod, _ = e.c.Client.CoreV1().Pods(e.ns).Get(ctx, sb.Name(), metav1.GetOptions{})
	if pod.Status.Reason != "DeadlineExceeded" {
		t.Errorf("pod status %q %q; want DeadlineExceeded", pod.Status.Reason, pod.Status.Message)
	}
}

// TestPodAsAdmitted reads back, field by field, the pod the server
// stored (after admission and defaulting) for a sandbox with a GPU of a
// type, limits, a volume, a RuntimeClass and a gateway: the lockdown is
// what the server keeps, no token or Secret is mounted, and the token is
// nowhere in the pod.
func TestPodAsAdmitted(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The node advertises two GPUs of a product, as the NVIDIA device
	// plugin and GPU feature discovery would.
	node := e.c.NodeName
	patch, _ := json.Marshal(map[string]any{"status": map[string]any{"capacity": map[string]string{"nvidia.com/gpu": "2"}}})
	if _, err := e.c.Client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	lpatch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}}})
	if _, err := e.c.Client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, lpatch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "mlagent-" + e.ns}, Handler: "runc"}
	if _, err := e.c.Client.NodeV1().RuntimeClasses().Create(ctx, rc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.c.Client.NodeV1().RuntimeClasses().Delete(context.Background(), rc.Name, metav1.DeleteOptions{})
	})
	e.c.Volume(t, e.ns, "mlagent-fields", "1Gi")
	gw := e.gateway(t, nil)
	const token = "mlat_fieldbyfield_5b1e"
	gw.Token = token

	b := e.backend(t, func(o *kube.Options) {
		o.RuntimeClass = rc.Name
		o.GPUTypes = map[string]string{"A100": "NVIDIA-A100-SXM4-80GB"}
		o.Tolerations = []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	})
	sb, err := b.Create(ctx, sandbox.Spec{
		GPU: sandbox.GPURequired, GPUType: "A100", GPUCount: 2, CPUs: 0.5, MemoryBytes: 256 << 20, Pids: 200,
		Volumes: []sandbox.Mount{{Volume: "fields", Path: "/data"}}, Gateway: gw, Timeout: time.Hour,
		Labels: map[string]string{"mlagent.session": "s-123", "note": "not a label value!"},
	})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer sb.Terminate(context.Background())
	pod, err := e.c.Client.CoreV1().Pods(e.ns).Get(ctx, sb.Name(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(pod)
	if bytes.Contains(raw, []byte(token)) {
		t.Errorf("the sandbox's token is in its pod as stored: %s", raw)
	}
	s := pod.Spec
	check := func(what string, ok bool, got any) {
		t.Helper()
		if !ok {
			t.Errorf("%s: got %+v", what, got)
		}
	}
	check("automountServiceAccountToken false", s.AutomountServiceAccountToken != nil && !*s.AutomountServiceAccountToken, s.AutomountServiceAccountToken)
	check("no host namespaces", !s.HostNetwork && !s.HostPID && !s.HostIPC, s)
	check("service links off", s.EnableServiceLinks != nil && !*s.EnableServiceLinks, s.EnableServiceLinks)
	check("active deadline", s.ActiveDeadlineSeconds != nil && *s.ActiveDeadlineSeconds == 3660, s.ActiveDeadlineSeconds)
	check("runtime class", s.RuntimeClassName != nil && *s.RuntimeClassName == rc.Name, s.RuntimeClassName)
	check("GPU product selector", s.NodeSelector["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB", s.NodeSelector)
	check("toleration", len(s.Tolerations) > 0 && s.Tolerations[0].Key == "nvidia.com/gpu", s.Tolerations)
	check("pod runs as non-root 1000", s.SecurityContext.RunAsNonRoot != nil && *s.SecurityContext.RunAsNonRoot && *s.SecurityContext.RunAsUser == 1000, s.SecurityContext)
	check("pod seccomp", s.SecurityContext.SeccompProfile != nil && s.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault, s.SecurityContext.SeccompProfile)
	for _, v := range s.Volumes {
		check("volume "+v.Name+" is no Secret, projected token or hostPath", v.Secret == nil && v.Projected == nil && v.HostPath == nil, v)
	}
	var sawClaim bool
	for _, v := range s.Volumes {
		if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == "mlagent-fields" {
			sawClaim = true
		}
	}
	check("the volume's claim", sawClaim, s.Volumes)
	for _, c := range append(append([]corev1.Container(nil), s.InitContainers...), s.Containers...) {
		sc := c.SecurityContext
		check(c.Name+": no privilege escalation", sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation, sc)
		check(c.Name+": not privileged", sc.Privileged != nil && !*sc.Privileged, sc)
		check(c.Name+": read-only root", sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, sc)
		check(c.Name+": every capability dropped", sc.Capabilities != nil && len(sc.Capabilities.Drop) == 1 && sc.Capabilities.Drop[0] == "ALL" && len(sc.Capabilities.Add) == 0, sc.Capabilities)
		check(c.Name+": seccomp RuntimeDefault", sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault, sc.SeccompProfile)
		check(c.Name+": no env (it is delivered)", len(c.Env) == 0 && len(c.EnvFrom) == 0, c.Env)
		for _, m := range c.VolumeMounts {
			check(c.Name+": nothing mounted at the service-account path", !strings.HasPrefix(m.MountPath, "/var/run/secrets"), m)
		}
	}
	main := s.Containers[0]
	check("GPU limit", main.Resources.Limits.Name("nvidia.com/gpu", resource.DecimalSI).Value() == 2, main.Resources.Limits)
	check("CPU limit and request", main.Resources.Limits.Cpu().MilliValue() == 500 && main.Resources.Requests.Cpu().MilliValue() == 500, main.Resources)
	check("memory limit and request", main.Resources.Limits.Memory().Value() == 256<<20 && main.Resources.Requests.Memory().Value() == 256<<20, main.Resources)
	check("init's process limit", strings.Contains(strings.Join(main.Args, " "), "--nproc 200"), main.Args)
	check("labels", pod.Labels[kube.LabelManagedBy] == "mlagent" && pod.Labels[kube.LabelSandbox] == sb.Name() && pod.Labels[kube.LabelSession] == "s-123", pod.Labels)
	in, err := b.List(ctx)
	if err != nil || len(in) != 1 || in[0].Labels["note"] != "not a label value!" || !in[0].GPU {
		t.Errorf("List: got %+v, %v; want the labels as given and the GPU", in, err)
	}
	// From inside: the process limit holds, no service-account token,
	// no new privileges.
	out := execOut(t, sb, "sh", "-c", "ulimit -u; ls /var/run/secrets 2>&1; cat /proc/self/status | grep NoNewPrivs")
	if !strings.HasPrefix(out, "200\n") || !strings.Contains(out, "No such file") || !strings.Contains(out, "NoNewPrivs:\t1") {
		t.Errorf("inside: got %q; want ulimit -u 200, no /var/run/secrets, NoNewPrivs 1", out)
	}
}
