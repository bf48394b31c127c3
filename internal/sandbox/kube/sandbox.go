package kube

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sandbox/kube/podexec"
	"github.com/mlagent/mlagent/internal/sanitize"
)

// Sandbox is a handle on one sandbox pod. The creating process renews its
// heartbeat; any process can attach with Get.
type Sandbox struct {
	b    *Backend
	name string
	// Phases says when each step of Create ended (in the creating
	// process), for measurements.
	Phases []Phase

	stopBeat chan struct{}
	termOnce sync.Once
	termErr  error
}

func (s *Sandbox) Name() string { return s.name }

// Phase is one step of starting a sandbox and when it ended.
type Phase struct {
	Name string
	At   time.Time
}

// selector matches every sandbox pod of mlagent.
func selector() string {
	return labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy, LabelName: NameSandbox}).String()
}

// Create creates the sandbox's pod and volumes, delivers mlagent into it,
// and returns once its init answers.
func (b *Backend) Create(ctx context.Context, spec sandbox.Spec) (_ sandbox.Sandbox, err error) {
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("create sandbox: %w", err)
	}
	if img := spec.Image; img != "" && (strings.HasPrefix(img, "/") || strings.HasPrefix(img, ".") || strings.HasSuffix(img, ".tar")) {
		return nil, fmt.Errorf("create sandbox: image %q: a pod runs a registry reference (registry/name:tag), not a local layout or archive; push it to a registry the cluster pulls from", img)
	}
	if len(spec.Binds) > 0 {
		// A pod's node is not this host; hostPath is what the lockdown
		// forbids anyway.
		return nil, fmt.Errorf("create sandbox: a pod cannot mount this host's directories (%s); put the files on a volume", spec.Binds[0].Source)
	}
	if spec.Gateway != nil && spec.Gateway.Network != "tcp" {
		return nil, fmt.Errorf("create sandbox: a pod reaches the gateway by address (tcp), not through %s %s", spec.Gateway.Network, spec.Gateway.Address)
	}
	if spec.Name == "" {
		spec.Name = randomName()
	}
	name := spec.Name
	if !b.opts.SkipNetworkPolicyCheck {
		if err := b.checkPolicy(ctx); err != nil {
			return nil, fmt.Errorf("create sandbox %s: %w", name, err)
		}
	}
	for _, m := range spec.Volumes {
		if err := b.ensureVolume(ctx, m.Volume); err != nil {
			return nil, fmt.Errorf("create sandbox %s: %w", name, err)
		}
	}
	pod, _, err := b.podFor(name, spec)
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", name, err)
	}
	// Alive from the start: its creator may die while an image of
	// gigabytes is still being pulled.
	pod.Annotations[AnnotationHeartbeat] = strconv.FormatInt(time.Now().Unix(), 10)
	pod.Annotations[AnnotationHeartbeatPeriod] = b.opts.Heartbeat.String()
	t0 := time.Now()
	created, err := b.client.CoreV1().Pods(b.opts.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create sandbox %s: %w", name, sandbox.ErrExists)
	}
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", name, b.explain(ctx, err, "create", "pods"))
	}
	s := &Sandbox{b: b, name: name, stopBeat: make(chan struct{}), Phases: []Phase{{"begin", t0}, {"pod created", time.Now()}}}
	go s.heartbeat(s.stopBeat)
	defer func() {
		if err != nil {
			// Nothing half-made stays behind.
			s.Terminate(context.WithoutCancel(ctx))
		}
	}()
	if err := b.start(ctx, created, spec, &s.Phases); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", name, err)
	}
	return s, nil
}

func randomName() string {
	var b [4]byte
	rand.Read(b[:])
	return "sb-" + hex.EncodeToString(b[:])
}

// checkPolicy refuses to start a sandbox in a namespace where no
// NetworkPolicy confines sandbox pods: without one, a pod could reach
// anything the cluster network reaches.
func (b *Backend) checkPolicy(ctx context.Context) error {
	np, err := b.client.NetworkingV1().NetworkPolicies(b.opts.Namespace).Get(ctx, b.opts.NetworkPolicy, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: NetworkPolicy %s/%s is missing; an operator creates it with `mlagent deploy kubernetes --apply`",
			ErrNoPolicy, b.opts.Namespace, b.opts.NetworkPolicy)
	}
	if err != nil {
		return b.explain(ctx, err, "get", "networkpolicies")
	}
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || !sel.Matches(labels.Set{LabelManagedBy: ManagedBy, LabelName: NameSandbox}) || len(np.Spec.PolicyTypes) < 2 {
		return fmt.Errorf("%w: NetworkPolicy %s/%s does not select sandbox pods for both ingress and egress; re-apply `mlagent deploy kubernetes`",
			ErrNoPolicy, b.opts.Namespace, b.opts.NetworkPolicy)
	}
	return nil
}

// ensureVolume creates a named volume's PVC if it does not exist.
func (b *Backend) ensureVolume(ctx context.Context, volume string) error {
	claim, err := pvcName(volume)
	if err != nil {
		return err
	}
	pvcs := b.client.CoreV1().PersistentVolumeClaims(b.opts.Namespace)
	if _, err := pvcs.Get(ctx, claim, metav1.GetOptions{}); err == nil {
		return nil
	} else if !apierrors.IsNotFound(err) {
		return b.explain(ctx, err, "get", "persistentvolumeclaims")
	}
	size, err := resource.ParseQuantity(b.opts.VolumeSize)
	if err != nil {
		return fmt.Errorf("volume size %q: %w", b.opts.VolumeSize, err)
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: claim, Labels: map[string]string{
			LabelManagedBy: ManagedBy, LabelName: "mlagent-volume", LabelVolume: volume,
		}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{b.opts.AccessMode},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}
	if b.opts.StorageClass != "" {
		sc := b.opts.StorageClass
		pvc.Spec.StorageClassName = &sc
	}
	if _, err := pvcs.Create(ctx, pvc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("volume %s: %w", volume, b.explain(ctx, err, "create", "persistentvolumeclaims"))
	}
	return nil
}

// start follows the pod from creation to a running init: it delivers the
// binary once the install container runs, and fails with the reason (and
// the pod's events) as soon as the pod cannot start — or, for a pod the
// scheduler cannot place yet (a volume still binding, a node still
// coming), once that has lasted ScheduleTimeout.
func (b *Backend) start(ctx context.Context, pod *corev1.Pod, spec sandbox.Spec, phases *[]Phase) error {
	st := &starting{spec: spec, phases: phases}
	w, err := b.client.CoreV1().Pods(b.opts.Namespace).Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", pod.Name).String(),
		ResourceVersion: pod.ResourceVersion,
	})
	if err != nil {
		return b.explain(ctx, err, "watch", "pods")
	}
	defer func() { w.Stop() }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		done, err := b.step(ctx, pod, st)
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return b.withEvents(ctx, fmt.Errorf("waiting for the sandbox pod to start: %w", ctx.Err()), pod.Name)
		case ev, ok := <-w.ResultChan():
			if ok && ev.Type == watch.Deleted {
				return fmt.Errorf("%w: pod %s was deleted while starting", ErrStartFailed, pod.Name)
			}
			if p, isPod := ev.Object.(*corev1.Pod); ok && isPod {
				pod = p
				continue
			}
			// The watch ended (or sent an error): start another.
			w.Stop()
			if w, err = b.client.CoreV1().Pods(b.opts.Namespace).Watch(ctx, metav1.ListOptions{
				FieldSelector: fields.OneTermEqualSelector("metadata.name", pod.Name).String(),
			}); err != nil {
				return b.explain(ctx, err, "watch", "pods")
			}
		case <-tick.C:
			// Time-based decisions (how long unschedulable) need a look
			// even when nothing changes.
		}
	}
}

// starting is what start knows between the pod's states.
type starting struct {
	spec          sandbox.Spec
	phases        *[]Phase
	installed     bool
	unschedulable time.Time // since when the scheduler has refused it
}

// step acts on one state of the pod: deliver, fail, or finish.
func (b *Backend) step(ctx context.Context, pod *corev1.Pod, st *starting) (bool, error) {
	if err := b.podFailure(ctx, pod); err != nil {
		return false, b.withEvents(ctx, err, pod.Name)
	}
	if err := b.unschedulable(ctx, pod, st); err != nil {
		return false, b.withEvents(ctx, err, pod.Name)
	}
	if !st.installed {
		for _, cs := range pod.Status.InitContainerStatuses {
			if cs.Name == installContainer && cs.State.Running != nil {
				st.mark("scheduled, image ready, install container running")
				if err := b.install(ctx, pod.Name, st.spec, st); err != nil {
					return false, b.withEvents(ctx, fmt.Errorf("%w: deliver mlagent into the pod: %w", ErrStartFailed, err), pod.Name)
				}
				st.installed = true
			}
		}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == sandboxContainer && cs.State.Running != nil {
			st.mark("sandbox container running")
			s := &Sandbox{b: b, name: pod.Name}
			if err := s.waitInit(ctx); err != nil {
				return false, b.withEvents(ctx, err, pod.Name)
			}
			st.mark("init answers")
			return true, nil
		}
	}
	return false, nil
}

func (st *starting) mark(name string) {
	if st.phases != nil {
		*st.phases = append(*st.phases, Phase{name, time.Now()})
	}
}

// unschedulable fails a pod the scheduler has refused for ScheduleTimeout:
// a volume that never binds, or no node with what it asks (a GPU).
func (b *Backend) unschedulable(ctx context.Context, pod *corev1.Pod, st *starting) error {
	var cond *corev1.PodCondition
	for i, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			cond = &pod.Status.Conditions[i]
		}
	}
	if cond == nil {
		st.unschedulable = time.Time{}
		return nil
	}
	if st.unschedulable.IsZero() {
		st.unschedulable = time.Now()
	}
	if time.Since(st.unschedulable) < b.opts.ScheduleTimeout {
		return nil
	}
	if err := b.pendingVolume(ctx, pod); err != nil {
		return err
	}
	return fmt.Errorf("%w (for %v): %s", ErrUnschedulable, b.opts.ScheduleTimeout.Round(time.Second), clean(cond.Message))
}

// podFailure says why a pod will not start, or nil while it still may.
func (b *Backend) podFailure(ctx context.Context, pod *corev1.Pod) error {
	if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
		return fmt.Errorf("%w: pod %s ended (%s) %s", ErrStartFailed, pod.Name, pod.Status.Reason, clean(pod.Status.Message))
	}
	statuses := append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, st := range statuses {
		if w := st.State.Waiting; w != nil {
			switch w.Reason {
			case "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName":
				return fmt.Errorf("%w: %s (%s): %s", ErrImagePull, st.Image, w.Reason, clean(w.Message))
			case "CreateContainerConfigError", "CreateContainerError", "RunContainerError", "CrashLoopBackOff":
				return fmt.Errorf("%w: container %s: %s: %s", ErrStartFailed, st.Name, w.Reason, clean(w.Message))
			}
		}
		if t := st.State.Terminated; t != nil && t.ExitCode != 0 {
			msg := clean(t.Message)
			if strings.Contains(msg, "/bin/sh") && (strings.Contains(msg, "no such file") || strings.Contains(msg, "not found")) {
				msg += " (mlagent needs /bin/sh in the image to deliver its binary)"
			}
			return fmt.Errorf("%w: container %s exited %d (%s): %s", ErrStartFailed, st.Name, t.ExitCode, t.Reason, msg)
		}
	}
	return nil
}

// pendingVolume names a claim of the pod that is not bound.
func (b *Backend) pendingVolume(ctx context.Context, pod *corev1.Pod) error {
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		pvc, err := b.client.CoreV1().PersistentVolumeClaims(b.opts.Namespace).Get(ctx, v.PersistentVolumeClaim.ClaimName, metav1.GetOptions{})
		if err != nil || pvc.Status.Phase == corev1.ClaimBound {
			continue
		}
		msg := fmt.Errorf("%w: PersistentVolumeClaim %s is %s (no volume or storage class provides it)", ErrVolumePending, pvc.Name, pvc.Status.Phase)
		if ev := b.events(ctx, "PersistentVolumeClaim", pvc.Name); ev != "" {
			msg = fmt.Errorf("%w\nevents of PersistentVolumeClaim %s:\n%s", msg, pvc.Name, indent(clean(ev)))
		}
		return msg
	}
	return nil
}

// install delivers the binary and the boot files into the install
// container: two exec round trips.
func (b *Backend) install(ctx context.Context, pod string, spec sandbox.Spec, st *starting) error {
	if err := b.deliver(ctx, pod); err != nil {
		return err
	}
	st.mark("binary delivered")
	bin := sandbox.BinaryPath
	stream := func(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
		return b.ExecIn(ctx, pod, installContainer, []string{bin, "podexec"}, stdin, stdout)
	}
	if err := podexec.Install(ctx, stream, bootFiles(spec)); err != nil && !b.installed(ctx, pod) {
		return err
	}
	st.mark("boot files written")
	return nil
}

// installed says whether the install container completed (exit 0): its
// script exits 0 only once the ready marker, the last boot file, is in
// place, and its exit kills the install exec (137) that may not yet have
// answered — a race a loaded node loses.
func (b *Backend) installed(ctx context.Context, pod string) bool {
	for range 50 {
		p, err := b.client.CoreV1().Pods(b.opts.Namespace).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range p.Status.InitContainerStatuses {
			if t := c.State.Terminated; c.Name == installContainer && t != nil {
				return t.ExitCode == 0
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

// noGzip is the exit status of the delivery script in an image without
// gzip.
const noGzip = 97

// deliver streams the binary into the install container: gzip-compressed
// (a third of the bytes: what counts over a user's uplink) where the
// image has gzip, as it is otherwise.
func (b *Backend) deliver(ctx context.Context, pod string) error {
	bin := sandbox.BinaryPath
	return deliverWith(b.opts.Binary, !b.opts.PlainDelivery, func(decode string, r io.Reader) error {
		script := "set -e; umask 022; mkdir -p " + sandbox.BinDir + "; " + decode + " > " + bin + ".part; chmod 555 " + bin + ".part; mv " + bin + ".part " + bin
		return b.ExecIn(ctx, pod, installContainer, []string{"/bin/sh", "-c", script}, r, io.Discard)
	})
}

// deliverWith sends binary through put, whose shell decodes it with
// decode: "gzip -dc" first when compress, "cat" when the image has no
// gzip (the script then exits noGzip).
func deliverWith(binary string, compress bool, put func(decode string, r io.Reader) error) error {
	open := func() (*os.File, error) {
		f, err := os.Open(binary)
		if err != nil {
			return nil, fmt.Errorf("open the mlagent binary: %w", err)
		}
		return f, nil
	}
	if compress {
		f, err := open()
		if err != nil {
			return err
		}
		zr := gzipped(f)
		err = put("command -v gzip >/dev/null 2>&1 || exit "+strconv.Itoa(noGzip)+"; gzip -dc", zr)
		zr.Close() // a compressor the exec stopped reading ends here
		f.Close()
		var code interface{ ExitStatus() int }
		if err == nil || !errors.As(err, &code) || code.ExitStatus() != noGzip {
			return err
		}
	}
	f, err := open()
	if err != nil {
		return err
	}
	defer f.Close()
	return put("cat", f)
}

// gzipped compresses r as it is read (the fastest level: the upload, not
// the CPU, is what is slow).
func gzipped(r io.Reader) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		zw, _ := gzip.NewWriterLevel(pw, gzip.BestSpeed)
		_, err := io.Copy(zw, r)
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// waitInit pings init until it answers: the container runs before init
// has its control socket.
func (s *Sandbox) waitInit(ctx context.Context) error {
	var err error
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		if err = podexec.Ping(ctx, s.stream()); err == nil {
			return nil
		}
		if errors.Is(err, ErrForbidden) || errors.Is(err, ErrUnauthorized) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: init never answered: %w", ErrStartFailed, err)
		case <-time.After(delay):
		}
		if pod, gerr := s.b.client.CoreV1().Pods(s.b.opts.Namespace).Get(ctx, s.name, metav1.GetOptions{}); gerr == nil {
			if ferr := s.b.podFailure(ctx, pod); ferr != nil {
				return ferr
			}
		}
	}
}

// heartbeat renews the pod's heartbeat annotation until stop closes
// (Terminate).
func (s *Sandbox) heartbeat(stop <-chan struct{}) {
	t := time.NewTicker(s.b.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		s.beat()
	}
}

func (s *Sandbox) beat() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		AnnotationHeartbeat: strconv.FormatInt(time.Now().Unix(), 10),
	}}})
	if _, err := s.b.client.CoreV1().Pods(s.b.opts.Namespace).Patch(ctx, s.name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		s.b.log.Debug("sandbox heartbeat", "sandbox", s.name, "err", err)
	}
}

// Exec runs a command inside; see sandbox.Sandbox.
func (s *Sandbox) Exec(ctx context.Context, req sandbox.ExecRequest) (int, error) {
	code, err := podexec.Exec(ctx, s.stream(), podexec.Request{Argv: req.Argv, Env: sandbox.Environ(req.Env), Dir: req.Dir},
		req.Stdin, req.Stdout, req.Stderr)
	if err != nil && ctx.Err() != nil {
		return code, ctx.Err()
	}
	// A command its time limit cut short says so, though the sandbox has
	// ended by the time we look: that limit is what the caller must hear.
	if err != nil && !errors.Is(err, sandbox.ErrTimedOut) && s.running(ctx) != nil {
		return code, fmt.Errorf("%w: %s (%v)", sandbox.ErrNotRunning, s.name, err)
	}
	return code, err
}

// running is nil while the sandbox's pod runs.
func (s *Sandbox) running(ctx context.Context) error {
	pod, err := s.b.client.CoreV1().Pods(s.b.opts.Namespace).Get(context.WithoutCancel(ctx), s.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: %s", sandbox.ErrNotRunning, s.name)
	}
	if err != nil {
		return err
	}
	if stateOf(pod) != sandbox.StateRunning {
		return fmt.Errorf("%w: %s", sandbox.ErrNotRunning, s.name)
	}
	return nil
}

func (s *Sandbox) ReadFile(ctx context.Context, path string) ([]byte, error) {
	b, err := podexec.ReadFile(ctx, s.stream(), path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && s.running(ctx) != nil {
		return nil, fmt.Errorf("%w: %s (%v)", sandbox.ErrNotRunning, s.name, err)
	}
	return b, err
}

func (s *Sandbox) WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode) error {
	err := podexec.WriteFile(ctx, s.stream(), path, strings.NewReader(string(data)), mode)
	if err != nil && s.running(ctx) != nil {
		return fmt.Errorf("%w: %s (%v)", sandbox.ErrNotRunning, s.name, err)
	}
	return err
}

// Terminate deletes the pod and waits until it is gone: the kubelet
// has then stopped every container of it.
func (s *Sandbox) Terminate(ctx context.Context) error {
	s.termOnce.Do(func() {
		if s.stopBeat != nil {
			close(s.stopBeat)
		}
		s.termErr = s.delete(ctx)
	})
	return s.termErr
}

func (s *Sandbox) delete(ctx context.Context) error {
	pods := s.b.client.CoreV1().Pods(s.b.opts.Namespace)
	// Not 0: that removes the object at once while the kubelet may still
	// be killing the containers.
	grace := int64(1)
	err := pods.Delete(ctx, s.name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("terminate %s: %w", s.name, s.b.explain(ctx, err, "delete", "pods"))
	}
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		_, err := pods.Get(ctx, s.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("terminate %s: %w", s.name, ctx.Err())
		case <-time.After(delay):
		}
	}
}

// stateOf maps a pod to a sandbox state: dead once it ended, is being
// deleted, or its creator stopped renewing its heartbeat.
func stateOf(pod *corev1.Pod) sandbox.State {
	if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
		return sandbox.StateDead
	}
	return sandbox.StateRunning
}

// stale reports whether the creator of a pod stopped renewing it.
func (b *Backend) stale(pod *corev1.Pod, now time.Time) bool {
	v, ok := pod.Annotations[AnnotationHeartbeat]
	if !ok {
		// Made by something else than Create (by hand): not ours to reap
		// before its deadline.
		return false
	}
	period := b.opts.Heartbeat
	if p, err := time.ParseDuration(pod.Annotations[AnnotationHeartbeatPeriod]); err == nil && p > 0 {
		period = p
	}
	t, err := strconv.ParseInt(v, 10, 64)
	return err != nil || now.Sub(time.Unix(t, 0)) > 4*period
}

// Get attaches to a sandbox by name.
func (b *Backend) Get(ctx context.Context, name string) (sandbox.Sandbox, error) {
	if err := sandbox.ValidName(name); err != nil {
		return nil, err
	}
	pod, err := b.client.CoreV1().Pods(b.opts.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || err == nil && pod.Labels[LabelManagedBy] != ManagedBy {
		return nil, fmt.Errorf("%w: %s", sandbox.ErrNotFound, name)
	}
	if err != nil {
		return nil, b.explain(ctx, err, "get", "pods")
	}
	s := &Sandbox{b: b, name: name}
	if stateOf(pod) != sandbox.StateRunning {
		return s, fmt.Errorf("%w: %s", sandbox.ErrNotRunning, name)
	}
	return s, nil
}

// List returns every sandbox pod of the namespace, those whose creator
// died marked dead.
func (b *Backend) List(ctx context.Context) ([]sandbox.Info, error) {
	pods, err := b.client.CoreV1().Pods(b.opts.Namespace).List(ctx, metav1.ListOptions{LabelSelector: selector()})
	if err != nil {
		return nil, b.explain(ctx, err, "list", "pods")
	}
	now := time.Now()
	out := make([]sandbox.Info, 0, len(pods.Items))
	for i := range pods.Items {
		out = append(out, b.info(&pods.Items[i], now))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (b *Backend) info(pod *corev1.Pod, now time.Time) sandbox.Info {
	in := sandbox.Info{
		Name: pod.Name, Backend: "kubernetes", State: stateOf(pod),
		Created: pod.CreationTimestamp.Time, Labels: map[string]string{},
	}
	if in.State == sandbox.StateRunning && b.stale(pod, now) {
		in.State = sandbox.StateDead
		in.Notes = append(in.Notes, "its creator stopped renewing it (the CLI died); the next run deletes it")
	}
	json.Unmarshal([]byte(pod.Annotations[AnnotationLabels]), &in.Labels)
	if n := pod.Annotations[AnnotationNotes]; n != "" {
		in.Notes = append(in.Notes, n)
	}
	claims := map[string]string{} // pod volume → mlagent volume
	for _, pv := range pod.Spec.Volumes {
		if pv.PersistentVolumeClaim != nil {
			if v, ok := strings.CutPrefix(pv.PersistentVolumeClaim.ClaimName, "mlagent-"); ok {
				claims[pv.Name] = v
			}
		}
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == sandboxContainer {
			in.Image = c.Image
			for _, m := range c.VolumeMounts {
				if v, ok := claims[m.Name]; ok {
					in.Volumes = append(in.Volumes, sandbox.Mount{Volume: v, Path: m.MountPath})
				}
			}
		}
		for _, st := range pod.Status.ContainerStatuses {
			if st.Name == c.Name && c.Name == sandboxContainer {
				in.ImageID = st.ImageID
			}
		}
		if _, ok := c.Resources.Limits[corev1.ResourceName(b.opts.GPUResource)]; ok {
			in.GPU = true
		}
	}
	for _, st := range pod.Status.ContainerStatuses {
		if t := st.LastTerminationState.Terminated; t != nil && t.Reason == "OOMKilled" {
			in.OOMKills++
		}
		if t := st.State.Terminated; t != nil && t.Reason == "OOMKilled" {
			in.OOMKills++
		}
	}
	return in
}

// Reap deletes the pods of the named sandboxes if they are still dead
// (their creator died, or they ended): what a killed CLI leaves, once
// launch has revoked their tokens. A running or unknown one is left.
func (b *Backend) Reap(ctx context.Context, names []string) error {
	pods := b.client.CoreV1().Pods(b.opts.Namespace)
	now := time.Now()
	var errs []error
	for _, name := range names {
		pod, err := pods.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, b.explain(ctx, err, "get", "pods"))
			continue
		}
		if pod.Labels[LabelManagedBy] != ManagedBy || b.info(pod, now).State != sandbox.StateDead {
			continue
		}
		if err := (&Sandbox{b: b, name: name}).delete(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// clean makes text from the cluster (events, termination messages, which
// code in a sandbox can influence) safe for a terminal, and bounded.
func clean(s string) string { return sanitize.Truncate(sanitize.Text(s), 2000) }
