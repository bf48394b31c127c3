package kube

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/kube/podexec"
)

// The pod's layout: the install container writes the binary, the boot
// environment and the git configuration into two emptyDirs that the
// sandbox container mounts read-only, so code inside cannot replace the
// binary every later exec runs.
const (
	installContainer = "install"
	sandboxContainer = "sandbox"
	optDir           = "/opt/mlagent"
	envFile          = optDir + "/boot/env"
	readyFile        = optDir + "/boot/ready"
	etcDir           = "/etc/mlagent"
	// installWait bounds how long the install container waits for the
	// CLI to deliver the binary: long enough for 125 MB over a slow
	// uplink, or gzip's decompression on a starved node (60 s was not:
	// under the whole test suite's load the container gave up while a
	// delivery was still running, killing it with exit 137). The CLI's
	// own context bounds the wait before this does.
	installWait = 6000 // tenths of a second (at least): 10 min
)

// installScript waits for the CLI's delivery (it needs only sh, test and
// sleep, which every training image has) and exits once it is complete.
var installScript = `i=0
until [ -e ` + readyFile + ` ]; do
  i=$((i+1))
  if [ "$i" -ge ` + strconv.Itoa(installWait) + ` ]; then echo "mlagent: the binary was not delivered in time" >&2; exit 1; fi
  sleep 0.1
done`

// labelsFor returns the labels every sandbox pod carries.
func labelsFor(name string, spec sandbox.Spec) map[string]string {
	l := map[string]string{
		LabelManagedBy: ManagedBy,
		LabelName:      NameSandbox,
		LabelSandbox:   name,
	}
	for _, k := range []string{"session", "mlagent.session"} {
		if s := spec.Labels[k]; s != "" && len(validation.IsValidLabelValue(s)) == 0 {
			l[LabelSession] = s
		}
	}
	return l
}

// pvcName is the claim that holds a named volume.
func pvcName(volume string) (string, error) {
	n := "mlagent-" + volume
	if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
		return "", fmt.Errorf("%w: volume %q cannot name a Kubernetes PersistentVolumeClaim (lowercase letters, digits and '-'): %s",
			sandbox.ErrInvalidMount, volume, strings.Join(errs, "; "))
	}
	return n, nil
}

// gpuRequest is what --gpu asks of the cluster.
type gpuRequest struct {
	count   int64
	product string // node label value; "" = any
}

// gpu resolves the spec's GPU mode (and type:count) into a request.
func (b *Backend) gpu(spec sandbox.Spec) (gpuRequest, []string) {
	var notes []string
	switch spec.GPU {
	case sandbox.GPUNone:
		return gpuRequest{}, nil
	case sandbox.GPUOptional:
		// A pod cannot ask for a GPU "if there is one".
		return gpuRequest{}, append(notes, "--gpu=optional runs without a GPU on Kubernetes; ask for one with --gpu")
	}
	r := gpuRequest{count: int64(max(spec.GPUCount, 1))}
	if t := spec.GPUType; t != "" {
		r.product = t
		if v, ok := b.opts.GPUTypes[t]; ok {
			r.product = v
		}
	}
	return r, notes
}

// podFor builds the sandbox pod. Every security setting is explicit, so
// that what the API server stores is what this code says.
func (b *Backend) podFor(name string, spec sandbox.Spec) (*corev1.Pod, []string, error) {
	yes, no := true, false
	uid, gid := int64(sandbox.SandboxUID), int64(sandbox.SandboxGID)
	image := b.opts.Image
	if spec.Image != "" {
		image = spec.Image
	}
	gpu, notes := b.gpu(spec)

	labelsJSON, err := json.Marshal(spec.Labels)
	if err != nil {
		return nil, nil, err
	}
	annotations := map[string]string{AnnotationLabels: string(labelsJSON)}

	emptyDir := func(n string, medium corev1.StorageMedium) corev1.Volume {
		return corev1.Volume{Name: n, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: medium}}}
	}
	volumes := []corev1.Volume{
		emptyDir("mlagent", ""), emptyDir("mlagent-etc", corev1.StorageMediumMemory),
		emptyDir("workspace", ""), emptyDir("home", ""), emptyDir("tmp", ""),
	}
	mounts := []corev1.VolumeMount{
		{Name: "mlagent", MountPath: optDir, ReadOnly: true},
		{Name: "mlagent-etc", MountPath: etcDir, ReadOnly: true},
		{Name: "workspace", MountPath: sandbox.Workspace},
		{Name: "home", MountPath: sandbox.Home},
		{Name: "tmp", MountPath: "/tmp"},
	}
	for i, m := range spec.Volumes {
		claim, err := pvcName(m.Volume)
		if err != nil {
			return nil, nil, err
		}
		vn := "vol-" + strconv.Itoa(i)
		volumes = append(volumes, corev1.Volume{Name: vn, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
		}})
		mounts = append(mounts, corev1.VolumeMount{Name: vn, MountPath: m.Path})
	}

	containerSec := &corev1.SecurityContext{
		RunAsNonRoot:             &yes,
		RunAsUser:                &uid,
		RunAsGroup:               &gid,
		AllowPrivilegeEscalation: &no,
		Privileged:               &no,
		ReadOnlyRootFilesystem:   &yes,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	resources := corev1.ResourceRequirements{Limits: corev1.ResourceList{}, Requests: corev1.ResourceList{}}
	if spec.CPUs > 0 {
		q := resource.NewMilliQuantity(int64(math.Ceil(spec.CPUs*1000)), resource.DecimalSI)
		resources.Limits[corev1.ResourceCPU], resources.Requests[corev1.ResourceCPU] = *q, *q
	}
	if spec.MemoryBytes > 0 {
		q := resource.NewQuantity(spec.MemoryBytes, resource.BinarySI)
		resources.Limits[corev1.ResourceMemory], resources.Requests[corev1.ResourceMemory] = *q, *q
	}
	var nodeSelector map[string]string
	if gpu.count > 0 {
		q := resource.NewQuantity(gpu.count, resource.DecimalSI)
		resources.Limits[corev1.ResourceName(b.opts.GPUResource)] = *q
		if gpu.product != "" {
			nodeSelector = map[string]string{b.opts.GPUProductLabel: gpu.product}
		}
	}

	args := []string{
		"init", "--control", podexec.InitSocket,
		"--env-file", envFile, "--path-prepend", sandbox.BinDir,
		"--dir", sandbox.Workspace,
	}
	if spec.Gateway != nil {
		args = append(args, "--gateway-tcp", spec.Gateway.Address, "--bridge-listen", sandbox.GatewayAddr)
	}
	// A pod has no pids limit of its own (the kubelet's podPidsLimit,
	// where the cluster sets one, is the same for every pod): init bounds
	// its user's processes with RLIMIT_NPROC, which the kernel counts per
	// user on the node, so sandboxes sharing a node share it.
	if pids := spec.Pids; pids >= 0 {
		if pids == 0 {
			pids = sandbox.DefaultPids
		}
		args = append(args, "--nproc", strconv.Itoa(pids))
		notes = append(notes, fmt.Sprintf("pids: RLIMIT_NPROC %d for uid %d on the node (shared by the sandboxes there), and the kubelet's podPidsLimit where the cluster sets one", pids, sandbox.SandboxUID))
	}
	if spec.Timeout > 0 {
		args = append(args, "--timeout", spec.Timeout.String())
	}
	if spec.IdleTimeout > 0 {
		args = append(args, "--idle-timeout", spec.IdleTimeout.String())
	}
	lifetime := b.opts.MaxLifetime
	if spec.Timeout > 0 && spec.Timeout < lifetime {
		// init ends the sandbox at its timeout; the deadline is the
		// backstop, counted from the pod's start (image pull included).
		lifetime = spec.Timeout + time.Minute
	}
	deadline := int64(math.Ceil(lifetime.Seconds()))
	grace := int64(2)

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: b.opts.Namespace,
			Labels: labelsFor(name, spec), Annotations: annotations,
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			HostNetwork:                   false,
			HostPID:                       false,
			HostIPC:                       false,
			ShareProcessNamespace:         &no,
			ActiveDeadlineSeconds:         &deadline,
			TerminationGracePeriodSeconds: &grace,
			Hostname:                      name,
			// No DNS inside: the gateway is reached by address, and the
			// NetworkPolicy allows nothing else.
			DNSPolicy: corev1.DNSNone,
			DNSConfig: &corev1.PodDNSConfig{Nameservers: []string{"127.0.0.1"}},
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   &yes,
				RunAsUser:      &uid,
				RunAsGroup:     &gid,
				FSGroup:        &gid,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			NodeSelector: nodeSelector,
			Tolerations:  b.opts.Tolerations,
			InitContainers: []corev1.Container{{
				Name:            installContainer,
				Image:           image,
				ImagePullPolicy: b.opts.PullPolicy,
				Command:         []string{"/bin/sh", "-c", installScript},
				SecurityContext: containerSec,
				VolumeMounts: []corev1.VolumeMount{
					{Name: "mlagent", MountPath: optDir},
					{Name: "mlagent-etc", MountPath: etcDir},
				},
				Resources: installResources(resources),
			}},
			Containers: []corev1.Container{{
				Name:                     sandboxContainer,
				Image:                    image,
				ImagePullPolicy:          b.opts.PullPolicy,
				Command:                  []string{sandbox.BinaryPath},
				Args:                     args,
				WorkingDir:               sandbox.Workspace,
				SecurityContext:          containerSec,
				VolumeMounts:             mounts,
				Resources:                resources,
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}},
			Volumes: volumes,
		},
	}
	if b.opts.RuntimeClass != "" {
		rc := b.opts.RuntimeClass
		pod.Spec.RuntimeClassName = &rc
	}
	if len(notes) > 0 {
		pod.Annotations[AnnotationNotes] = strings.Join(notes, "; ")
	}
	return pod, notes, nil
}

// installResources gives the install container the sandbox's CPU and
// memory (so a quota that demands limits admits it) and never a GPU.
func installResources(r corev1.ResourceRequirements) corev1.ResourceRequirements {
	out := corev1.ResourceRequirements{Limits: corev1.ResourceList{}, Requests: corev1.ResourceList{}}
	for _, n := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := r.Limits[n]; ok {
			out.Limits[n] = q
		}
		if q, ok := r.Requests[n]; ok {
			out.Requests[n] = q
		}
	}
	return out
}

// bootEnv is the sandbox's environment, delivered as a file (it holds the
// token, which must not be in the pod's spec where anyone who can read
// pods would see it). PATH is left to the image, with mlagent's
// directory put first by init.
func bootEnv(spec sandbox.Spec) []byte {
	maps := []map[string]string{sandbox.BaseEnv(spec), spec.Env}
	if spec.Gateway != nil {
		maps = append(maps, sandbox.GatewayEnv(spec.Gateway.Token))
	}
	var b strings.Builder
	for _, kv := range sandbox.Environ(maps...) {
		if strings.HasPrefix(kv, "PATH=") {
			continue
		}
		b.WriteString(kv)
		b.WriteByte(0)
	}
	return []byte(b.String())
}

// bootFiles are the files the install step writes besides the binary,
// the ready marker last.
func bootFiles(spec sandbox.Spec) []podexec.File {
	files := []podexec.File{{Path: envFile, Mode: 0o400, Data: bootEnv(spec)}}
	if spec.Gateway != nil {
		files = append(files, podexec.File{Path: sandbox.GitConfig, Mode: 0o444, Data: sandbox.GitConfigFile(spec.Gateway.Token)})
	}
	return append(files, podexec.File{Path: readyFile, Mode: 0o444})
}
