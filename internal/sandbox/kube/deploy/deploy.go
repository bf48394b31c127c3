// Package deploy makes the Kubernetes objects an operator applies once
// for the Kubernetes backend (`mlagent deploy kubernetes`, and the plain
// YAML under deploy/kubernetes/, generated from this code): two
// namespaces, the gateway holding the real keys, the NetworkPolicies that
// leave sandbox pods only the gateway, the volumes, the least RBAC a CLI
// user needs, and the dashboard and syncer.
//
// The gateway lives in a namespace of its own: anyone who may create pods
// or exec into them in a namespace can read its Secrets (a pod may mount
// any Secret of its namespace), and CLI users may do both in the
// sandboxes' namespace. That namespace holds no real key; users reach the
// gateway's admin plane, on the gateway pod's loopback, only through a
// port-forward their RBAC allows.
package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/mlagent/mlagent/internal/sandbox/kube"
)

// Names of what Objects makes.
const (
	GatewayName    = kube.GatewayName
	GatewayKeys    = "mlagent-gateway-keys"
	GatewayState   = "mlagent-gateway-state"
	DashboardName  = "mlagent-dashboard"
	SyncerName     = "mlagent-syncer"
	SyncerToken    = "mlagent-syncer-token"
	UserRole       = "mlagent-user"
	GatewayPort    = kube.GatewayPort
	AdminPort      = kube.AdminPort
	DashboardPort  = 8792
	StateDir       = "/state"
	GatewayBinary  = StateDir + "/bin/mlagent"
	DefaultNS      = "mlagent"
	DefaultImage   = "busybox:1.37"
	binaryPath     = "/_mlagent/mlagent"
	fieldManagerID = "mlagent-deploy"
)

// Options say where and how to deploy.
type Options struct {
	// Namespace holds sandboxes, volumes, dashboard and syncer ("" =
	// mlagent); GatewayNamespace the gateway ("" = Namespace-gateway).
	Namespace, GatewayNamespace string
	// Image runs mlagent for the gateway, dashboard and syncer: any
	// image with /bin/sh and wget (busybox); the binary itself is
	// delivered by `deploy --apply`, no mlagent image is published.
	Image string
	// StorageClass for the PVCs ("" = the cluster's default);
	// AccessMode of the data and Trackio volumes ("" = ReadWriteMany,
	// so sandboxes, the dashboard and the syncer share them on any node).
	StorageClass string
	AccessMode   corev1.PersistentVolumeAccessMode
	DataSize     string // "" = 100Gi
	TrackioSize  string // "" = 5Gi
	// Users and Groups are bound to the CLI user Roles (none: bind them
	// yourself to Role mlagent-user in both namespaces).
	Users, Groups []string
	// GatewayCIDR additionally lets sandbox pods reach a gateway outside
	// the cluster's pods (an address block such as 10.0.0.5/32).
	GatewayCIDR string
	// SpaceID is the Hugging Face Space the syncer pushes Trackio rows
	// to; "" leaves the syncer at 0 replicas.
	SpaceID string
}

func (o *Options) defaults() {
	if o.Namespace == "" {
		o.Namespace = DefaultNS
	}
	if o.GatewayNamespace == "" {
		o.GatewayNamespace = o.Namespace + "-gateway"
	}
	if o.Image == "" {
		o.Image = DefaultImage
	}
	if o.AccessMode == "" {
		o.AccessMode = corev1.ReadWriteMany
	}
	if o.DataSize == "" {
		o.DataSize = "100Gi"
	}
	if o.TrackioSize == "" {
		o.TrackioSize = "5Gi"
	}
}

// Object is one manifest with what applying it needs.
type Object struct {
	Resource  string // plural resource name, e.g. "deployments"
	Namespace string // "" for cluster-scoped
	Name      string
	Obj       any // a typed object with TypeMeta set
}

func labelsOf(name string) map[string]string {
	return map[string]string{kube.LabelManagedBy: kube.ManagedBy, kube.LabelName: name}
}

func meta(name, ns string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labelsOf(name)}
}

func tm(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

// restricted is the security context every container runs with; both
// namespaces enforce the "restricted" Pod Security Standard anyway.
func restricted() (*corev1.PodSecurityContext, *corev1.SecurityContext) {
	yes, no := true, false
	uid := int64(1000)
	seccomp := &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	return &corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &uid, FSGroup: &uid, SeccompProfile: seccomp},
		&corev1.SecurityContext{
			RunAsNonRoot: &yes, AllowPrivilegeEscalation: &no, Privileged: &no, ReadOnlyRootFilesystem: &yes,
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}, SeccompProfile: seccomp,
		}
}

// Objects returns everything to apply, in order (namespaces first).
func Objects(o Options) ([]Object, error) {
	o.defaults()
	ns, gns := o.Namespace, o.GatewayNamespace
	var out []Object
	add := func(resource, namespace, name string, obj any) {
		out = append(out, Object{Resource: resource, Namespace: namespace, Name: name, Obj: obj})
	}
	for _, n := range []string{ns, gns} {
		m := meta(n, "")
		m.Labels = map[string]string{
			kube.LabelManagedBy:                          kube.ManagedBy,
			"pod-security.kubernetes.io/enforce":         "restricted",
			"pod-security.kubernetes.io/enforce-version": "latest",
		}
		add("namespaces", "", n, &corev1.Namespace{TypeMeta: tm("v1", "Namespace"), ObjectMeta: m})
	}
	storage := func(name, namespace, size string, mode corev1.PersistentVolumeAccessMode, volume string) error {
		q, err := resource.ParseQuantity(size)
		if err != nil {
			return fmt.Errorf("size of %s %q: %w", name, size, err)
		}
		pvc := &corev1.PersistentVolumeClaim{
			TypeMeta: tm("v1", "PersistentVolumeClaim"), ObjectMeta: meta(name, namespace),
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{mode},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: q}},
			},
		}
		if volume != "" {
			pvc.Labels[kube.LabelName] = "mlagent-volume"
			pvc.Labels[kube.LabelVolume] = volume
		}
		if o.StorageClass != "" {
			sc := o.StorageClass
			pvc.Spec.StorageClassName = &sc
		}
		add("persistentvolumeclaims", namespace, name, pvc)
		return nil
	}

	// The gateway, with the keys.
	add("secrets", gns, GatewayKeys, &corev1.Secret{
		TypeMeta: tm("v1", "Secret"), ObjectMeta: meta(GatewayKeys, gns), Type: corev1.SecretTypeOpaque,
	})
	if err := storage(GatewayState, gns, "1Gi", corev1.ReadWriteOnce, ""); err != nil {
		return nil, err
	}
	add("deployments", gns, GatewayName, gatewayDeployment(o))
	add("services", gns, GatewayName, &corev1.Service{
		TypeMeta: tm("v1", "Service"), ObjectMeta: meta(GatewayName, gns),
		Spec: corev1.ServiceSpec{
			Selector: labelsOf(GatewayName),
			Ports:    []corev1.ServicePort{{Name: "data", Port: GatewayPort, TargetPort: intstr.FromInt32(GatewayPort), Protocol: corev1.ProtocolTCP}},
		},
	})
	add("networkpolicies", gns, GatewayName, gatewayPolicy(o))

	// The sandboxes' side.
	add("networkpolicies", ns, kube.DefaultNetworkPolicy, SandboxPolicy(o))
	for _, v := range []struct{ name, size string }{{"data", o.DataSize}, {"trackio", o.TrackioSize}} {
		if err := storage("mlagent-"+v.name, ns, v.size, o.AccessMode, v.name); err != nil {
			return nil, err
		}
	}
	add("secrets", ns, SyncerToken, &corev1.Secret{
		TypeMeta: tm("v1", "Secret"), ObjectMeta: meta(SyncerToken, ns), Type: corev1.SecretTypeOpaque,
	})
	add("deployments", ns, DashboardName, serviceDeployment(o, DashboardName, 1,
		[]string{"dashboard", "--listen", fmt.Sprintf("0.0.0.0:%d", DashboardPort), "--dir", "/trackio"}, true))
	replicas := int32(0)
	syncArgs := []string{"syncer", "--dir", "/trackio", "--state", "/trackio/.mlagent-syncer/state.json", "--hub-url", fmt.Sprintf("http://%s.%s.svc:%d/hf", GatewayName, gns, GatewayPort)}
	if o.SpaceID != "" {
		replicas = 1
		syncArgs = append(syncArgs, "--space", o.SpaceID)
	}
	add("deployments", ns, SyncerName, serviceDeployment(o, SyncerName, replicas, syncArgs, false))
	add("networkpolicies", ns, "mlagent-services", servicesPolicy(o))

	// RBAC for CLI users.
	add("roles", ns, UserRole, &rbacv1.Role{
		TypeMeta: tm("rbac.authorization.k8s.io/v1", "Role"), ObjectMeta: meta(UserRole, ns),
		Rules: UserRules(),
	})
	add("roles", gns, UserRole, &rbacv1.Role{
		TypeMeta: tm("rbac.authorization.k8s.io/v1", "Role"), ObjectMeta: meta(UserRole, gns),
		Rules: GatewayUserRules(),
	})
	if subjects := subjects(o); len(subjects) > 0 {
		for _, n := range []string{ns, gns} {
			add("rolebindings", n, UserRole, &rbacv1.RoleBinding{
				TypeMeta: tm("rbac.authorization.k8s.io/v1", "RoleBinding"), ObjectMeta: meta(UserRole, n),
				RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: UserRole},
				Subjects: subjects,
			})
		}
	}
	return out, nil
}

// UserRules are what a CLI user needs in the sandboxes' namespace to run
// sandboxes and use volumes: nothing on Secrets.
func UserRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		// Sandbox pods: create, follow, heartbeat (patch), end, reap.
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"create", "get", "list", "watch", "patch", "delete"}},
		// Commands and files go through exec; WebSocket exec is a GET.
		{APIGroups: []string{""}, Resources: []string{"pods/exec"}, Verbs: []string{"create", "get"}},
		{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
		// The dashboard, through a port-forward.
		{APIGroups: []string{""}, Resources: []string{"pods/portforward"}, Verbs: []string{"create", "get"}},
		// Volumes are made on first use.
		{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims"}, Verbs: []string{"create", "get", "list", "delete"}},
		// A pod that will not start is explained with its events.
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"list"}},
		// No sandbox starts unless the NetworkPolicy confines it.
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"get"}},
	}
}

// GatewayUserRules are what a CLI user needs in the gateway's namespace:
// find the gateway and port-forward to its admin plane. No exec, no
// Secrets.
func GatewayUserRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "services"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{""}, Resources: []string{"pods/portforward"}, Verbs: []string{"create", "get"}},
	}
}

func subjects(o Options) []rbacv1.Subject {
	var s []rbacv1.Subject
	for _, u := range o.Users {
		s = append(s, rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: "rbac.authorization.k8s.io", Name: u})
	}
	for _, g := range o.Groups {
		s = append(s, rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: "rbac.authorization.k8s.io", Name: g})
	}
	return s
}

// SandboxPolicy denies every sandbox pod all ingress and all egress but
// the gateway's data plane (no DNS: pods get the gateway's address).
func SandboxPolicy(o Options) *networkingv1.NetworkPolicy {
	o.defaults()
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(GatewayPort)
	to := []networkingv1.NetworkPolicyPeer{{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": o.GatewayNamespace}},
		PodSelector:       &metav1.LabelSelector{MatchLabels: labelsOf(GatewayName)},
	}}
	if o.GatewayCIDR != "" {
		to = append(to, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: o.GatewayCIDR}})
	}
	return &networkingv1.NetworkPolicy{
		TypeMeta: tm("networking.k8s.io/v1", "NetworkPolicy"), ObjectMeta: meta(kube.DefaultNetworkPolicy, o.Namespace),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{kube.LabelManagedBy: kube.ManagedBy, kube.LabelName: kube.NameSandbox}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To:    to,
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
			}},
		},
	}
}

// gatewayPolicy lets only sandbox pods and mlagent's services reach the
// gateway's data plane; its admin plane listens on loopback only.
func gatewayPolicy(o Options) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(GatewayPort)
	from := func(name string) networkingv1.NetworkPolicyPeer {
		return networkingv1.NetworkPolicyPeer{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": o.Namespace}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{kube.LabelManagedBy: kube.ManagedBy, kube.LabelName: name}},
		}
	}
	return &networkingv1.NetworkPolicy{
		TypeMeta: tm("networking.k8s.io/v1", "NetworkPolicy"), ObjectMeta: meta(GatewayName, o.GatewayNamespace),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: labelsOf(GatewayName)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{from(kube.NameSandbox), from(DashboardName), from(SyncerName)},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
			}},
		},
	}
}

// servicesPolicy denies the dashboard and the syncer all ingress (users
// reach the dashboard through a port-forward, which no policy sees).
func servicesPolicy(o Options) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		TypeMeta: tm("networking.k8s.io/v1", "NetworkPolicy"), ObjectMeta: meta("mlagent-services", o.Namespace),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: kube.LabelName, Operator: metav1.LabelSelectorOpIn, Values: []string{DashboardName, SyncerName},
			}}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
}

// gatewayDeployment runs `mlagent gateway` from the binary `deploy
// --apply` put on the state volume; until then the pod waits.
func gatewayDeployment(o Options) *appsv1.Deployment {
	podSec, sec := restricted()
	no := false
	one := int32(1)
	optional := true
	env := []corev1.EnvVar{{Name: "MLAGENT_HOME", Value: StateDir}, {Name: "HOME", Value: "/tmp"}}
	for _, k := range []string{"ANTHROPIC_API_KEY", "HF_TOKEN", "GITHUB_TOKEN"} {
		env = append(env, corev1.EnvVar{Name: k, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: GatewayKeys}, Key: k, Optional: &optional,
		}}})
	}
	script := fmt.Sprintf(`until [ -x %[1]s ]; do echo "waiting for mlagent deploy kubernetes --apply to deliver %[1]s"; sleep 2; done
exec %[1]s gateway --listen 0.0.0.0:%[2]d --admin-listen 127.0.0.1:%[3]d --admin-auth none --audit-log %[4]s/audit.jsonl --serve-binary %[1]s`,
		GatewayBinary, GatewayPort, AdminPort, StateDir)
	return &appsv1.Deployment{
		TypeMeta: tm("apps/v1", "Deployment"), ObjectMeta: meta(GatewayName, o.GatewayNamespace),
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			// One writer of the SQLite ledger on a ReadWriteOnce volume.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Selector: &metav1.LabelSelector{MatchLabels: labelsOf(GatewayName)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labelsOf(GatewayName)},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken: &no,
					EnableServiceLinks:           &no,
					SecurityContext:              podSec,
					Containers: []corev1.Container{{
						Name: "gateway", Image: o.Image, ImagePullPolicy: corev1.PullIfNotPresent,
						Command:         []string{"/bin/sh", "-c", script},
						Env:             env,
						SecurityContext: sec,
						Ports:           []corev1.ContainerPort{{Name: "data", ContainerPort: GatewayPort, Protocol: corev1.ProtocolTCP}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
							TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(GatewayPort)},
						}, PeriodSeconds: 5},
						VolumeMounts: []corev1.VolumeMount{{Name: "state", MountPath: StateDir}, {Name: "tmp", MountPath: "/tmp"}},
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi"),
						}},
					}},
					Volumes: []corev1.Volume{
						{Name: "state", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: GatewayState}}},
						{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
				},
			},
		},
	}
}

// serviceDeployment runs one mlagent service (dashboard, syncer) on the
// Trackio volume, its binary fetched from the gateway at start.
func serviceDeployment(o Options, name string, replicas int32, args []string, readOnly bool) *appsv1.Deployment {
	podSec, sec := restricted()
	no := false
	fetch := fmt.Sprintf(`until wget -q -O /opt/mlagent/mlagent.part http://%s.%s.svc:%d%s; do echo "waiting for the gateway to serve mlagent"; sleep 3; done
chmod 555 /opt/mlagent/mlagent.part && mv /opt/mlagent/mlagent.part /opt/mlagent/mlagent`, GatewayName, o.GatewayNamespace, GatewayPort, binaryPath)
	env := []corev1.EnvVar{{Name: "MLAGENT_HOME", Value: "/tmp/mlagent"}, {Name: "HOME", Value: "/tmp"}}
	if name == SyncerName {
		optional := true
		// A gateway token (not a real key): the gateway adds the HF token.
		env = append(env, corev1.EnvVar{Name: "HF_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: SyncerToken}, Key: "HF_TOKEN", Optional: &optional,
		}}})
	}
	return &appsv1.Deployment{
		TypeMeta: tm("apps/v1", "Deployment"), ObjectMeta: meta(name, o.Namespace),
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labelsOf(name)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labelsOf(name)},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken: &no,
					EnableServiceLinks:           &no,
					SecurityContext:              podSec,
					InitContainers: []corev1.Container{{
						Name: "fetch", Image: o.Image, ImagePullPolicy: corev1.PullIfNotPresent,
						Command: []string{"/bin/sh", "-c", fetch}, SecurityContext: sec,
						VolumeMounts: []corev1.VolumeMount{{Name: "bin", MountPath: "/opt/mlagent"}},
					}},
					Containers: []corev1.Container{{
						Name: strings.TrimPrefix(name, "mlagent-"), Image: o.Image, ImagePullPolicy: corev1.PullIfNotPresent,
						Command: []string{"/opt/mlagent/mlagent"}, Args: args, Env: env, SecurityContext: sec,
						VolumeMounts: []corev1.VolumeMount{
							{Name: "bin", MountPath: "/opt/mlagent", ReadOnly: true},
							{Name: "trackio", MountPath: "/trackio", ReadOnly: readOnly},
							{Name: "tmp", MountPath: "/tmp"},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "bin", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
						{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
						{Name: "trackio", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
							ClaimName: "mlagent-trackio", ReadOnly: readOnly,
						}}},
					},
				},
			},
		},
	}
}

// Map is the object as plain data, without the empty status and
// creation timestamps a typed object carries: what is applied and what
// the YAML shows.
func (o Object) Map() (map[string]any, error) {
	b, err := json.Marshal(o.Obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	prune(m)
	return m, nil
}

// prune removes empty status objects and null creation timestamps.
func prune(m map[string]any) {
	for _, k := range []string{"status", "spec"} {
		if st, ok := m[k].(map[string]any); ok && len(st) == 0 {
			delete(m, k)
		}
	}
	if ts, ok := m["creationTimestamp"]; ok && ts == nil {
		delete(m, "creationTimestamp")
	}
	for _, v := range m {
		switch v := v.(type) {
		case map[string]any:
			prune(v)
			for k, inner := range v {
				if im, ok := inner.(map[string]any); ok && len(im) == 0 && (k == "resources" || k == "metadata") {
					delete(v, k)
				}
			}
		case []any:
			for _, e := range v {
				if em, ok := e.(map[string]any); ok {
					prune(em)
				}
			}
		}
	}
}

// YAML renders objects as one multi-document YAML stream.
func YAML(objs []Object) ([]byte, error) {
	var b bytes.Buffer
	for i, o := range objs {
		m, err := o.Map()
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", o.Resource, o.Name, err)
		}
		y, err := yaml.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", o.Resource, o.Name, err)
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(y)
	}
	return b.Bytes(), nil
}
