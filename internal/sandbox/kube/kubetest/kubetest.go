// Package kubetest starts a real Kubernetes cluster on this machine for
// tests: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
// one kubelet on a containerd of its own, all on loopback and a private
// bridge, started once per test binary and torn down after it. The
// binaries come from scripts/kube-testbed.sh (built once per machine from
// the Go module proxy); ../../../../../shared/KUBERNETES-TESTBED.md (in
// the project's notes) lists the walls this code gets past.
//
// Tests that need it call Get, which skips with the reason when the
// machine cannot run a cluster (not root, binaries not built, containerd
// missing) — unless MLAGENT_REQUIRE_KUBE=1 (set by `make test`, so CI
// fails rather than skips).
package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/sandbox/cgroup"
	"github.com/mlagent/mlagent/internal/testbin"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Cluster is a running test cluster. Tests share it: each works in a
// namespace of its own (Namespace).
type Cluster struct {
	// Dir holds everything of the cluster; removed by Stop.
	Dir string
	// Kubeconfig is the cluster administrator's kubeconfig file.
	Kubeconfig string
	// Config and Client are the administrator's (group system:masters).
	Config *rest.Config
	Client kubernetes.Interface
	// HostIP is the host's address on the pods' bridge: a process of the
	// test listening there (a gateway) is reachable from every pod, as
	// nothing else of the host is.
	HostIP string
	// PodCIDR is the pods' /24.
	PodCIDR  string
	NodeName string
	// BinDir holds kubectl and the rest.
	BinDir string

	pki      *pki
	server   string // https://127.0.0.1:port
	bridge   string
	netName  string
	ctrSock  string
	runcRoot string
	procs    []*proc
	sysctls  map[string]string
	lock     *os.File
	nsSeq    int
	mu       sync.Mutex
}

// ErrUnavailable wraps the reason a machine cannot run a test cluster.
var ErrUnavailable = errors.New("no Kubernetes test cluster on this machine")

const requireEnv = "MLAGENT_REQUIRE_KUBE"

var (
	shared    *Cluster
	sharedErr error
	once      sync.Once
)

// Get returns the test binary's cluster, starting it on first use. It
// skips t when the machine cannot run one (fails under
// MLAGENT_REQUIRE_KUBE=1), and fails t when starting went wrong.
func Get(t testing.TB) *Cluster {
	t.Helper()
	once.Do(func() {
		// Another test binary's cluster may hold the machine for as long
		// as its tests run; starting one is bounded on its own.
		ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
		defer cancel()
		start := time.Now()
		shared, sharedErr = Start(ctx)
		if sharedErr == nil {
			fmt.Fprintf(os.Stderr, "kubetest: cluster up in %.1fs (%s)\n", time.Since(start).Seconds(), shared.Dir)
		}
	})
	if errors.Is(sharedErr, ErrUnavailable) {
		if os.Getenv(requireEnv) == "1" {
			t.Fatalf("%v (%s=1: this machine must run it; see scripts/kube-testbed.sh)", sharedErr, requireEnv)
		}
		t.Skip(sharedErr)
	}
	if sharedErr != nil {
		t.Fatalf("start the test cluster: %v", sharedErr)
	}
	return shared
}

// Main runs the tests (through testbin.Main, which removes a built
// mlagent) and stops the cluster if one was started; use it as
// `func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }`.
func Main(m *testing.M) int {
	code := testbin.Main(m)
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "kubetest: stop: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

// proc is one component's process.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// binDir asks the testbed script where it caches the binaries, so the
// version lives in one place.
func binDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the module root (go.mod)")
		}
		dir = parent
	}
	if d := os.Getenv("MLAGENT_KUBE_BIN"); d != "" {
		return d, nil
	}
	out, err := exec.Command(filepath.Join(dir, "scripts", "kube-testbed.sh"), "bindir").Output()
	if err != nil {
		return "", fmt.Errorf("scripts/kube-testbed.sh bindir: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// check says why this machine cannot run a cluster, or returns the
// binaries' directory.
func check() (string, error) {
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%w: needs root (containerd, a bridge, the kubelet)", ErrUnavailable)
	}
	bin, err := binDir()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return "", fmt.Errorf("%w: %s is not built; run scripts/kube-testbed.sh (once, ~25 min)", ErrUnavailable, filepath.Join(bin, b))
		}
	}
	for _, p := range []string{"/usr/bin/containerd", "/usr/bin/ctr", "/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback", busybox} {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: %s is missing; run scripts/kube-testbed.sh", ErrUnavailable, p)
		}
	}
	for _, c := range []string{"runc", "ip"} {
		if _, err := exec.LookPath(c); err != nil {
			return "", fmt.Errorf("%w: %s is missing; run scripts/kube-testbed.sh", ErrUnavailable, c)
		}
	}
	return bin, nil
}

// lockPath serialises test clusters on one machine: each changes host
// sysctls, and restores them when done.
const lockPath = "/run/mlagent-kubetest.lock"

// Start starts a cluster and waits until its node runs pods.
func Start(ctx context.Context) (_ *Cluster, err error) {
	bin, err := check()
	if err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := flock(ctx, lock); err != nil {
		lock.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "mlkt-")
	if err != nil {
		lock.Close()
		return nil, err
	}
	c := &Cluster{Dir: dir, BinDir: bin, NodeName: "mlkt-node", lock: lock, sysctls: map[string]string{}}
	defer func() {
		if err != nil {
			if serr := c.Stop(); serr != nil {
				err = fmt.Errorf("%w (and stopping: %v)", err, serr)
			}
		}
	}()
	c.saveSysctls()
	if err := c.network(); err != nil {
		return nil, err
	}
	if c.pki, err = newPKI(filepath.Join(dir, "pki")); err != nil {
		return nil, err
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	etcdPort, peerPort, apiPort, kubeletPort := ports[0], ports[1], ports[2], ports[3]
	c.server = "https://127.0.0.1:" + strconv.Itoa(apiPort)

	if err := c.startEtcd(ctx, bin, etcdPort, peerPort); err != nil {
		return nil, err
	}
	if err := c.startAPIServer(ctx, bin, etcdPort); err != nil {
		return nil, err
	}
	if err := c.startControllers(bin); err != nil {
		return nil, err
	}
	if err := c.startContainerd(ctx); err != nil {
		return nil, err
	}
	if err := c.startKubelet(bin, kubeletPort); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func flock(ctx context.Context, f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("lock %s: %w", lockPath, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for another test cluster on this machine to end: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// The host settings the kubelet (and the bridge plugin) change, restored
// by Stop.
var sysctlKeys = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward",
}

func (c *Cluster) saveSysctls() {
	for _, k := range sysctlKeys {
		if b, err := os.ReadFile("/proc/sys/" + k); err == nil {
			c.sysctls[k] = strings.TrimSpace(string(b))
		}
	}
}

func (c *Cluster) restoreSysctls() error {
	var errs []error
	for k, v := range c.sysctls {
		if b, err := os.ReadFile("/proc/sys/" + k); err == nil && strings.TrimSpace(string(b)) == v {
			continue
		}
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctl %s=%s: %w", k, v, err))
		}
	}
	return errors.Join(errs...)
}

// network makes the pods' bridge on a private /24 of its own, with the
// host at .1: no default route for pods and no NAT, so a pod reaches the
// host's address on the bridge and nothing else.
func (c *Cluster) network() error {
	routes, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		return fmt.Errorf("ip route: %w", err)
	}
	var b [4]byte
	for range 50 {
		rand.Read(b[:])
		n := binary.BigEndian.Uint32(b[:])
		prefix := fmt.Sprintf("10.%d.%d.", 200+n%50, (n>>8)%256)
		if bytes.Contains(routes, []byte(prefix)) {
			continue
		}
		c.PodCIDR, c.HostIP = prefix+"0/24", prefix+"1"
		break
	}
	if c.PodCIDR == "" {
		return errors.New("no free private /24 for the pods' bridge")
	}
	c.bridge = fmt.Sprintf("mlkt%d", os.Getpid()%100000)
	c.netName = c.bridge
	for _, args := range [][]string{
		{"link", "add", "name", c.bridge, "type", "bridge"},
		{"addr", "add", c.HostIP + "/24", "dev", c.bridge},
		{"link", "set", c.bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q, "gateway": %q}]]}},
    {"type": "loopback"}
  ]
}`, c.netName, c.bridge, filepath.Join(c.Dir, "cni-ipam"), c.PodCIDR, c.HostIP)
	if err := os.MkdirAll(filepath.Join(c.Dir, "cni"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.Dir, "cni", "10-mlkt.conflist"), []byte(conf), 0o644)
}

func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// start runs a component with its output in logs/<name>.log.
func (c *Cluster) start(name, path string, args ...string) (*proc, error) {
	logDir := filepath.Join(c.Dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	c.procs = append(c.procs, p)
	return p, nil
}

// logTail is the end of a component's log, for errors.
func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// waitFor polls ok until it returns true, p exits, or ctx ends.
func waitFor(ctx context.Context, p *proc, what string, ok func() bool) error {
	for delay := 20 * time.Millisecond; !ok(); delay = min(2*delay, 500*time.Millisecond) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before %s:\n%s", p.name, what, p.logTail())
		case <-ctx.Done():
			return fmt.Errorf("%s: waiting for %s: %w\n%s", p.name, what, ctx.Err(), p.logTail())
		case <-time.After(delay):
		}
	}
	return nil
}

func (c *Cluster) startEtcd(ctx context.Context, bin string, port, peer int) error {
	client := "http://127.0.0.1:" + strconv.Itoa(port)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peer)
	p, err := c.start("etcd", filepath.Join(bin, "etcd"),
		"--name", "kubetest", "--data-dir", filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "kubetest="+peerURL,
		// A test cluster survives no crash: fsync buys nothing.
		"--unsafe-no-fsync", "--log-level", "warn")
	if err != nil {
		return err
	}
	return waitFor(ctx, p, "serving", func() bool {
		resp, err := httpClient.Get(client + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func (c *Cluster) startAPIServer(ctx context.Context, bin string, etcdPort int) error {
	serving, err := c.pki.issue("apiserver", "kube-apiserver", nil,
		"127.0.0.1", "localhost", "10.96.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
	if err != nil {
		return err
	}
	kubeletClient, err := c.pki.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"})
	if err != nil {
		return err
	}
	saPub, saKey, err := c.pki.serviceAccountKey()
	if err != nil {
		return err
	}
	port := strings.TrimPrefix(c.server, "https://127.0.0.1:")
	p, err := c.start("kube-apiserver", filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers", "http://127.0.0.1:"+strconv.Itoa(etcdPort),
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", port,
		// The default reconciler refuses to advertise a loopback address.
		"--endpoint-reconciler-type", "none",
		"--tls-cert-file", serving.CertFile, "--tls-private-key-file", serving.KeyFile,
		"--client-ca-file", c.pki.caFile, "--anonymous-auth=false",
		"--authorization-mode", "Node,RBAC",
		"--service-cluster-ip-range", "10.96.0.0/24",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", saPub, "--service-account-signing-key-file", saKey,
		"--kubelet-client-certificate", kubeletClient.CertFile, "--kubelet-client-key", kubeletClient.KeyFile,
		"--kubelet-certificate-authority", c.pki.caFile,
		"--kubelet-preferred-address-types", "InternalIP",
		"--allow-privileged=false", "--profiling=false",
		"--cert-dir", filepath.Join(c.Dir, "apiserver"))
	if err != nil {
		return err
	}
	admin, err := c.pki.issue("admin", "kubetest-admin", []string{"system:masters"})
	if err != nil {
		return err
	}
	c.Config = c.certConfig(admin)
	if c.Kubeconfig, err = c.writeKubeconfig("admin", admin); err != nil {
		return err
	}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return err
	}
	return waitFor(ctx, p, "ready", func() bool {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(cctx)
		return err == nil && string(body) == "ok"
	})
}

// certConfig is a client configuration authenticated by a certificate.
func (c *Cluster) certConfig(id issued) *rest.Config {
	return &rest.Config{
		Host: c.server,
		TLSClientConfig: rest.TLSClientConfig{
			CAFile: c.pki.caFile, CertData: id.CertPEM, KeyData: id.KeyPEM,
		},
		QPS: 200, Burst: 400,
	}
}

// writeKubeconfig writes a kubeconfig for a certificate identity.
func (c *Cluster) writeKubeconfig(name string, id issued) (string, error) {
	path := filepath.Join(c.Dir, name+".kubeconfig")
	conf := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: %s@kubetest
  context:
    cluster: kubetest
    user: %s
current-context: %s@kubetest
`, c.server, c.pki.caFile, name, id.CertFile, id.KeyFile, name, name, name)
	return path, os.WriteFile(path, []byte(conf), 0o600)
}

// User returns a client configuration and kubeconfig for a user of the
// cluster with the given groups and no other rights: RBAC decides what it
// may do.
func (c *Cluster) User(name string, groups ...string) (*rest.Config, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, err := c.pki.issue("user-"+name, name, groups)
	if err != nil {
		return nil, "", err
	}
	kc, err := c.writeKubeconfig("user-"+name, id)
	if err != nil {
		return nil, "", err
	}
	return c.certConfig(id), kc, nil
}

func (c *Cluster) startControllers(bin string) error {
	cm, err := c.pki.issue("controller-manager", "system:kube-controller-manager", nil)
	if err != nil {
		return err
	}
	cmConf, err := c.writeKubeconfig("controller-manager", cm)
	if err != nil {
		return err
	}
	if _, err := c.start("kube-controller-manager", filepath.Join(bin, "kube-controller-manager"),
		"--kubeconfig", cmConf, "--leader-elect=false", "--secure-port", "0",
		// Without it no namespace gets its default ServiceAccount, and pods
		// are refused.
		"--service-account-private-key-file", filepath.Join(c.pki.dir, "sa.key"),
		"--root-ca-file", c.pki.caFile,
		// Each controller with its own account and bootstrap role, as in
		// a real cluster; the manager's own user may not patch nodes.
		"--use-service-account-credentials=true",
		"--profiling=false"); err != nil {
		return err
	}
	sched, err := c.pki.issue("scheduler", "system:kube-scheduler", nil)
	if err != nil {
		return err
	}
	schedConf, err := c.writeKubeconfig("scheduler", sched)
	if err != nil {
		return err
	}
	_, err = c.start("kube-scheduler", filepath.Join(bin, "kube-scheduler"),
		"--kubeconfig", schedConf, "--leader-elect=false", "--secure-port", "0", "--profiling=false")
	return err
}

func (c *Cluster) startContainerd(ctx context.Context) error {
	root := filepath.Join(c.Dir, "containerd")
	c.ctrSock = filepath.Join(root, "containerd.sock")
	c.runcRoot = filepath.Join(root, "runc")
	conf := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  # root without CAP_SYS_RESOURCE cannot lower oom_score_adj; runc
  # otherwise fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = %[7]q
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[8]q
`, filepath.Join(root, "root"), filepath.Join(root, "state"), c.ctrSock, c.ctrSock+".ttrpc",
		filepath.Join(root, "opt"), PauseImage, c.runcRoot, filepath.Join(c.Dir, "cni"))
	if err := os.MkdirAll(root, 0o711); err != nil {
		return err
	}
	confPath := filepath.Join(root, "config.toml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return err
	}
	p, err := c.start("containerd", "/usr/bin/containerd", "--config", confPath)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, p, "serving", func() bool {
		return exec.Command("ctr", "--address", c.ctrSock, "version").Run() == nil
	}); err != nil {
		return err
	}
	pause, sbx, err := buildImages(filepath.Join(c.Dir, "images"))
	if err != nil {
		return err
	}
	for _, img := range []string{pause, sbx} {
		if out, err := exec.CommandContext(ctx, "ctr", "--address", c.ctrSock, "-n", "k8s.io", "images", "import", img).CombinedOutput(); err != nil {
			return fmt.Errorf("import %s: %v: %s", img, err, out)
		}
	}
	return nil
}

// ImportImage loads a docker-archive or OCI archive into the node's
// containerd, as a registry pull would have.
func (c *Cluster) ImportImage(ctx context.Context, archive string) error {
	if out, err := exec.CommandContext(ctx, "ctr", "--address", c.ctrSock, "-n", "k8s.io", "images", "import", archive).CombinedOutput(); err != nil {
		return fmt.Errorf("import %s: %v: %s", archive, err, out)
	}
	return nil
}

func (c *Cluster) startKubelet(bin string, port int) error {
	client, err := c.pki.issue("kubelet", "system:node:"+c.NodeName, []string{"system:nodes"})
	if err != nil {
		return err
	}
	serving, err := c.pki.issue("kubelet-serving", "system:node:"+c.NodeName, []string{"system:nodes"}, c.HostIP)
	if err != nil {
		return err
	}
	kubeconfig, err := c.writeKubeconfig("kubelet", client)
	if err != nil {
		return err
	}
	root := filepath.Join(c.Dir, "kubelet")
	conf := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: %[2]d
readOnlyPort: 0
healthzPort: 0
tlsCertFile: %[3]s
tlsPrivateKeyFile: %[4]s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %[5]s}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://%[6]s
cgroupDriver: cgroupfs
# This host has hybrid cgroup v1: 1.37 still runs there when told to, and
# without QoS cgroups container memory limits are still enforced.
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
# Its own address on the bridge, not the host's iptables.
makeIPTablesUtilChains: false
resolvConf: ""
registerNode: true
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "50Mi", "nodefs.available": "1%%", "nodefs.inodesFree": "1%%", "imagefs.available": "1%%"}
nodeStatusUpdateFrequency: 2s
syncFrequency: 5s
fileCheckFrequency: 5s
podLogsDir: %[7]s
`, c.HostIP, port, serving.CertFile, serving.KeyFile, c.pki.caFile, c.ctrSock, filepath.Join(c.Dir, "pod-logs"))
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	confPath := filepath.Join(c.Dir, "kubelet.yaml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return err
	}
	_, err = c.start("kubelet", filepath.Join(bin, "kubelet"),
		"--config", confPath, "--kubeconfig", kubeconfig, "--root-dir", root,
		"--hostname-override", c.NodeName, "--node-ip", c.HostIP, "--v", "1")
	return err
}

// waitReady waits for the node to be Ready and untainted, and for the
// default namespace's ServiceAccount (made by the controller-manager).
func (c *Cluster) waitReady(ctx context.Context) error {
	kubelet := c.procs[len(c.procs)-1]
	var last string
	if err := waitFor(ctx, kubelet, "the node is ready", func() bool {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false
		}
		last = fmt.Sprintf("taints %v, conditions %v", n.Spec.Taints, n.Status.Conditions)
		if len(n.Spec.Taints) > 0 {
			return false
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue
			}
		}
		return false
	}); err != nil {
		return fmt.Errorf("%w\nnode: %s\ncontroller-manager: %s", err, last, c.Logs("kube-controller-manager"))
	}
	return waitFor(ctx, kubelet, "the default ServiceAccount", func() bool {
		_, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
}

// Namespace creates a fresh namespace for a test, deleted (with what is
// in it) when the test ends, and waits for its default ServiceAccount.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	c.mu.Lock()
	c.nsSeq++
	name := fmt.Sprintf("t%d-%s", c.nsSeq, dnsLabel(t.Name(), 40))
	c.mu.Unlock()
	ctx := context.Background()
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		zero := int64(0)
		c.Client.CoreV1().Pods(name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
		c.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			return name
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespace %s: no default ServiceAccount after 30s", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dnsLabel makes s a valid part of a DNS label.
func dnsLabel(s string, max int) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else if b.Len() > 0 && !strings.HasSuffix(b.String(), "-") {
			b.WriteByte('-')
		}
		if b.Len() >= max {
			break
		}
	}
	return strings.Trim(b.String(), "-")
}

// Kubectl runs the cluster's kubectl with the administrator's kubeconfig
// (or the one given first as "--kubeconfig=…").
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	if len(args) == 0 || !strings.HasPrefix(args[0], "--kubeconfig=") {
		args = append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, "kubectl"), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// Logs returns the end of a component's log ("kubelet", "containerd",
// "kube-apiserver", …), for a failing test to show.
func (c *Cluster) Logs(name string) string {
	for _, p := range c.procs {
		if p.name == name {
			return p.logTail()
		}
	}
	return ""
}

// Stop deletes every pod, stops every component, and removes what the
// cluster left on the host: containers, mounts, the bridge, the sysctls
// it changed, its directory.
func (c *Cluster) Stop() error {
	var errs []error
	if c.Client != nil && c.kubeletRunning() {
		c.deleteAllPods()
	}
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		if p.name == "containerd" {
			c.killContainers()
		}
		p.stop()
	}
	c.killShims()
	errs = append(errs, c.unmountAll())
	if c.bridge != "" {
		if out, err := exec.Command("ip", "link", "del", c.bridge).CombinedOutput(); err != nil && !bytes.Contains(out, []byte("Cannot find device")) {
			errs = append(errs, fmt.Errorf("delete bridge %s: %v: %s", c.bridge, err, out))
		}
		// libcni caches results under /var/lib/cni whatever the config says.
		if m, _ := filepath.Glob("/var/lib/cni/results/" + c.netName + "-*"); len(m) > 0 {
			for _, f := range m {
				os.Remove(f)
			}
		}
	}
	errs = append(errs, c.restoreSysctls())
	if c.Dir != "" && os.Getenv("MLAGENT_KUBETEST_KEEP") == "" {
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	if c.lock != nil {
		c.lock.Close()
	}
	return errors.Join(errs...)
}

func (c *Cluster) kubeletRunning() bool {
	for _, p := range c.procs {
		if p.name == "kubelet" {
			select {
			case <-p.done:
				return false
			default:
				return true
			}
		}
	}
	return false
}

// deleteAllPods deletes every pod and waits (a while) for the kubelet to
// have stopped their containers, so that it also tears down their
// networks and mounts.
func (c *Cluster) deleteAllPods() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nss, err := c.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	zero := int64(0)
	for _, ns := range nss.Items {
		c.Client.CoreV1().Pods(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	}
	for ctx.Err() == nil {
		out, err := exec.Command("ctr", "--address", c.ctrSock, "-n", "k8s.io", "tasks", "ls", "-q").Output()
		if err != nil || len(bytes.TrimSpace(out)) == 0 {
			// Give the kubelet a moment to remove the sandboxes' networks.
			time.Sleep(time.Second)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// killContainers kills whatever containers are left, through runc.
func (c *Cluster) killContainers() {
	root := filepath.Join(c.runcRoot, "k8s.io")
	out, err := exec.Command("runc", "--root", root, "list", "-q").Output()
	if err != nil {
		return
	}
	for _, id := range strings.Fields(string(out)) {
		exec.Command("runc", "--root", root, "kill", "--all", id, "KILL").Run()
		exec.Command("runc", "--root", root, "delete", "--force", id).Run()
	}
}

// killShims kills the containerd shims of this cluster's containerd
// (they outlive it by design).
func (c *Cluster) killShims() {
	if c.ctrSock == "" {
		return
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil || !bytes.Contains(b, []byte("containerd-shim")) || !bytes.Contains(b, []byte(c.ctrSock)) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(d))); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// unmountAll unmounts every mount under the cluster's directory (volumes,
// overlays, shm), deepest first.
func (c *Cluster) unmountAll() error {
	if c.Dir == "" {
		return nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			mp := cgroup.UnescapeMountinfo(fields[4])
			if mp == c.Dir || strings.HasPrefix(mp, c.Dir+"/") {
				mounts = append(mounts, mp)
			}
		}
	}
	var errs []error
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mounts[i], err))
		}
	}
	return errors.Join(errs...)
}

// stop ends a component: SIGTERM, then SIGKILL after a few seconds.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Volume creates a hostPath PersistentVolume bound in advance to the
// claim namespace/claim (the test bed has no provisioner), owned by the
// sandbox user, and deletes it when the test ends.
func (c *Cluster) Volume(t testing.TB, namespace, claim, size string) {
	t.Helper()
	name := dnsLabel("pv-"+namespace+"-"+claim, 63)
	dir := filepath.Join(c.Dir, "volumes", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	hostPathType := corev1.HostPathDirectory
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce, corev1.ReadWriteMany},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			ClaimRef:                      &corev1.ObjectReference{Namespace: namespace, Name: claim},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &hostPathType},
			},
		},
	}
	ctx := context.Background()
	if _, err := c.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create PersistentVolume %s: %v", name, err)
	}
	t.Cleanup(func() { c.Client.CoreV1().PersistentVolumes().Delete(ctx, name, metav1.DeleteOptions{}) })
}
