package kube

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/volume"
)

// A volume is a PersistentVolumeClaim that only a pod can mount, so the
// host reaches its files through a helper: a sandbox pod (locked down
// like every other, no gateway, labelled mlagent/role=volume) that mounts
// the claim at /volumes/NAME and runs `mlagent volume-helper` over
// pods/exec, one operation per exec. The helper applies
// internal/volume's own code to the mounted claim (os.Root, no symlink
// followed, MaxDepth), and files cross as a volume tree stream, which the
// host reads as hostile: every path checked, every write in an os.Root,
// no more files or bytes than it measured first.

// helperDir is where a helper pod mounts the volume it serves.
const helperDir = "/volumes"

// RoleVolumeHelper labels the helper sandboxes.
const RoleVolumeHelper = "volume-helper"

// helperTimeout bounds a helper pod whose CLI died before deleting it.
const helperTimeout = 2 * time.Hour

// maxListing bounds a listing's JSON (100,000 entries of long names).
const maxListing = 64 << 20

var _ sandbox.VolumeBackend = (*Backend)(nil)

// Volumes returns access to the backend's volumes; Close deletes the
// helper pods it started.
func (b *Backend) Volumes() sandbox.Volumes {
	return &volumes{b: b, helpers: map[string]*Sandbox{}}
}

type volumes struct {
	b       *Backend
	mu      sync.Mutex
	helpers map[string]*Sandbox // by volume
}

// claimSelector matches the claims of mlagent's volumes.
func claimSelector() string {
	return labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy, LabelName: "mlagent-volume"}).String()
}

// List names the volumes' claims with their requested size; what they
// hold would take a pod per volume to count (Files is -1).
func (v *volumes) List(ctx context.Context) ([]volume.Info, error) {
	l, err := v.b.client.CoreV1().PersistentVolumeClaims(v.b.opts.Namespace).List(ctx, metav1.ListOptions{LabelSelector: claimSelector()})
	if err != nil {
		return nil, v.b.explain(ctx, err, "list", "persistentvolumeclaims")
	}
	var out []volume.Info
	for _, c := range l.Items {
		name := c.Labels[LabelVolume]
		if volume.ValidName(name) != nil {
			continue
		}
		size := c.Spec.Resources.Requests[corev1.ResourceStorage]
		if q, ok := c.Status.Capacity[corev1.ResourceStorage]; ok {
			size = q
		}
		out = append(out, volume.Info{Name: name, Path: "pvc/" + c.Name + " (" + string(c.Status.Phase) + ")", Files: -1, Bytes: size.Value()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (v *volumes) claim(ctx context.Context, name string) (*corev1.PersistentVolumeClaim, error) {
	if err := volume.ValidName(name); err != nil {
		return nil, err
	}
	claim, err := pvcName(name)
	if err != nil {
		return nil, err
	}
	c, err := v.b.client.CoreV1().PersistentVolumeClaims(v.b.opts.Namespace).Get(ctx, claim, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w: %s", volume.ErrNotFound, name)
	}
	if err != nil {
		return nil, v.b.explain(ctx, err, "get", "persistentvolumeclaims")
	}
	return c, nil
}

func (v *volumes) Exists(ctx context.Context, name string) (bool, error) {
	_, err := v.claim(ctx, name)
	if errors.Is(err, volume.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (v *volumes) Create(ctx context.Context, name string) error {
	ok, err := v.Exists(ctx, name)
	if err != nil {
		return err
	}
	if ok {
		return fmt.Errorf("%w: %s", volume.ErrExists, name)
	}
	return v.b.ensureVolume(ctx, name)
}

// Remove deletes the volume's claim (what happens to the data is the
// PersistentVolume's reclaim policy). A claim mlagent did not make is
// left alone.
func (v *volumes) Remove(ctx context.Context, name string) error {
	c, err := v.claim(ctx, name)
	if err != nil {
		return err
	}
	if c.Labels[LabelManagedBy] != ManagedBy {
		return fmt.Errorf("volume %s: claim %s was not made by mlagent; delete it with kubectl", name, c.Name)
	}
	v.release(ctx, name)
	err = v.b.client.CoreV1().PersistentVolumeClaims(v.b.opts.Namespace).Delete(ctx, c.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &c.UID},
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return v.b.explain(ctx, err, "delete", "persistentvolumeclaims")
	}
	// The claim goes once no pod uses it (its protection finalizer): wait
	// for that, so that the volume is gone when this returns.
	for end := time.Now().Add(removeWait); ; {
		_, err := v.b.client.CoreV1().PersistentVolumeClaims(v.b.opts.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if time.Now().After(end) || ctx.Err() != nil {
			return fmt.Errorf("volume %s: claim %s is being deleted but still there after %v (a pod still mounts it?)", name, c.Name, removeWait)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// removeWait is how long Remove waits for a deleted claim to go.
const removeWait = time.Minute

// helper returns the running helper of a volume, starting one.
func (v *volumes) helper(ctx context.Context, name string) (*Sandbox, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s := v.helpers[name]; s != nil {
		return s, nil
	}
	if _, err := v.claim(ctx, name); err != nil {
		return nil, err
	}
	sb, err := v.b.Create(ctx, sandbox.Spec{
		Name:    "vol-" + strings.TrimPrefix(randomName(), "sb-"),
		Volumes: []sandbox.Mount{{Volume: name, Path: helperDir + "/" + name}},
		Labels:  map[string]string{"mlagent.role": RoleVolumeHelper, "mlagent.volume": name},
		CPUs:    1, MemoryBytes: 512 << 20,
		Timeout: helperTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("volume %s: start a helper pod: %w", name, err)
	}
	s := sb.(*Sandbox)
	v.helpers[name] = s
	return s, nil
}

// release deletes the volume's helper, if any.
func (v *volumes) release(ctx context.Context, name string) {
	v.mu.Lock()
	s := v.helpers[name]
	delete(v.helpers, name)
	v.mu.Unlock()
	if s != nil {
		s.Terminate(context.WithoutCancel(ctx))
	}
}

func (v *volumes) Close() error {
	v.mu.Lock()
	hs := v.helpers
	v.helpers = map[string]*Sandbox{}
	v.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	for _, s := range hs {
		errs = append(errs, s.Terminate(ctx))
	}
	return errors.Join(errs...)
}

// run runs one helper operation on a volume; its output goes to stdout.
func (v *volumes) run(ctx context.Context, name string, args []string, stdin io.Reader, stdout io.Writer) error {
	s, err := v.helper(ctx, name)
	if err != nil {
		return err
	}
	var stderr boundedBuffer
	stderr.max = 4096
	argv := append([]string{sandbox.BinaryPath, "volume-helper", "--dir", helperDir}, args...)
	code, err := s.Exec(ctx, sandbox.ExecRequest{Argv: argv, Stdin: stdin, Stdout: stdout, Stderr: &stderr})
	if err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	if code != 0 {
		msg := strings.TrimSpace(strings.TrimPrefix(stderr.String(), "mlagent volume-helper: "))
		if code == helperNotFound {
			return fmt.Errorf("%w: %s", fs.ErrNotExist, clean(msg))
		}
		return errors.New(clean(msg))
	}
	return nil
}

// runJSON runs an operation that answers with JSON of at most max bytes.
func (v *volumes) runJSON(ctx context.Context, name string, args []string, max int, out any) error {
	buf := &boundedBuffer{max: max}
	if err := v.run(ctx, name, args, nil, buf); err != nil {
		return err
	}
	if buf.over {
		return fmt.Errorf("volume %s: the helper's answer is over %d bytes", name, max)
	}
	if err := json.Unmarshal(buf.Bytes(), out); err != nil {
		return fmt.Errorf("volume %s: the helper's answer: %w", name, err)
	}
	return nil
}

// listing is the helper's answer to ls.
type listing struct {
	Entries   []volume.Entry `json:"entries"`
	Truncated bool           `json:"truncated"`
}

func (v *volumes) ReadDir(ctx context.Context, name, rel string) ([]volume.Entry, bool, error) {
	var l listing
	if err := v.runJSON(ctx, name, []string{"ls", name, rel}, maxListing, &l); err != nil {
		return nil, false, err
	}
	return l.Entries, l.Truncated, nil
}

func (v *volumes) Measure(ctx context.Context, name, rel string) (volume.Usage, error) {
	var u volume.Usage
	err := v.runJSON(ctx, name, []string{"measure", name, rel}, 4096, &u)
	if err == nil && (u.Files < 0 || u.Data < 0 || u.Apparent < 0) {
		err = fmt.Errorf("volume %s: the helper measured %+v", name, u)
	}
	return u, err
}

// Get measures rel, then copies it out, held to what it measured.
func (v *volumes) Get(ctx context.Context, name, rel, dst string) (volume.Copied, error) {
	u, err := v.Measure(ctx, name, rel)
	if err != nil {
		return volume.Copied{}, err
	}
	clean := strings.Trim(rel, "/")
	if clean == "" {
		clean = "."
	}
	if dst, err = volume.GetDest(name, clean, dst); err != nil {
		return volume.Copied{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := v.run(ctx, name, []string{"pack", name, rel}, nil, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	br := bufio.NewReaderSize(pr, 256<<10)
	c, err := func() (volume.Copied, error) {
		if _, err := volume.ReadHeader(br); err != nil {
			return volume.Copied{Dest: dst}, err
		}
		return volume.Unpack(br, dst, u)
	}()
	if err != nil {
		cancel()
		pr.CloseWithError(err)
		<-done
		return c, fmt.Errorf("get %s from volume %s: %w", rel, name, err)
	}
	pr.Close()
	if err := <-done; err != nil {
		return c, err
	}
	return c, nil
}

// Cat writes one file, held to the size it measured.
func (v *volumes) Cat(ctx context.Context, name, rel string, w io.Writer) (int64, error) {
	u, err := v.Measure(ctx, name, rel)
	if err != nil {
		return 0, err
	}
	lw := &limitWriter{w: w, left: u.Apparent}
	err = v.run(ctx, name, []string{"cat", name, rel}, nil, lw)
	if err == nil && lw.over {
		err = fmt.Errorf("volume %s: %s grew past the %d bytes measured", name, rel, u.Apparent)
	}
	return u.Apparent - lw.left, err
}

// Put streams the host file or tree src into the volume at rel.
func (v *volumes) Put(ctx context.Context, name, src, rel string) (volume.Copied, error) {
	pr, pw := io.Pipe()
	packed := make(chan error, 1)
	go func() {
		err := volume.PackHost(src, pw)
		pw.CloseWithError(err)
		packed <- err
	}()
	defer pr.Close()
	args := []string{"unpack", name, rel}
	var c volume.Copied
	if err := v.runJSONIn(ctx, name, args, pr, &c); err != nil {
		pr.CloseWithError(err)
		if perr := <-packed; perr != nil && !errors.Is(perr, err) {
			// The helper saw a cut stream; this is why.
			return c, fmt.Errorf("put %s into volume %s: %w", src, name, perr)
		}
		return c, err
	}
	return c, nil
}

func (v *volumes) runJSONIn(ctx context.Context, name string, args []string, stdin io.Reader, out any) error {
	buf := &boundedBuffer{max: 4096}
	if err := v.run(ctx, name, args, stdin, buf); err != nil {
		return err
	}
	if err := json.Unmarshal(buf.Bytes(), out); err != nil {
		return fmt.Errorf("volume %s: the helper's answer: %w", name, err)
	}
	return nil
}

func (v *volumes) RemovePath(ctx context.Context, name, rel string, recursive bool) error {
	args := []string{"rm", name, rel}
	if recursive {
		args = append(args, "-r")
	}
	return v.run(ctx, name, args, nil, io.Discard)
}

// limitWriter passes on at most left bytes and notes any beyond.
type limitWriter struct {
	w    io.Writer
	left int64
	over bool
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		l.over = true
		p = p[:l.left]
		n, err := l.w.Write(p)
		l.left -= int64(n)
		if err == nil {
			err = errors.New("over the measured size")
		}
		return n, err
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	return n, err
}
