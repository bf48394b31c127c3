package cli

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/sandbox/kube"
	"github.com/mlagent/mlagent/internal/sandbox/kube/deploy"
	"github.com/mlagent/mlagent/internal/secrets"
)

func init() {
	register(&Command{
		Name:    "deploy",
		Summary: "what a cluster needs for sandboxes as pods (deploy kubernetes)",
		Run:     runDeploy,
	})
}

const deployHelp = `Prints, or applies, everything an operator sets up once so that users run
mlagent with --backend kubernetes: the namespace for sandboxes and volumes (NS)
and one for the gateway (NS-gateway), both enforcing the "restricted" Pod
Security Standard; the gateway (Deployment, Service, its state volume, a Secret
for the real keys); NetworkPolicies that leave sandbox pods nothing but the
gateway's port; the data and trackio volumes; the Role a CLI user needs (pods,
pods/exec, pods/log, pods/portforward, PVCs, events, reading the NetworkPolicy;
nothing on Secrets), bound to --user/--group if given; the dashboard and syncer.
deploy/kubernetes/ in the source tree is this output with the defaults.

  mlagent deploy kubernetes                  print the manifests (YAML)
  mlagent deploy kubernetes --apply          apply them (server-side apply), deliver this
                                             mlagent binary to the gateway, and (asked
                                             first, or --yes) copy ANTHROPIC_API_KEY,
                                             HF_TOKEN and GITHUB_TOKEN from the local
                                             secret store into the gateway's Secret
  mlagent deploy kubernetes --apply --dry-run  the server validates and admits, stores nothing

The cluster is your kubeconfig's current context (config kubernetes.kubeconfig,
kubernetes.context). No mlagent image is published: the gateway, dashboard and
syncer run --image (any image with /bin/sh and wget, default busybox) and the
binary is delivered by --apply.`

func runDeploy(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 || args[0] != "kubernetes" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprintln(env.Stdout, "Usage: mlagent deploy kubernetes [flags]\n\n"+deployHelp)
			return ExitOK
		}
		fmt.Fprintln(env.Stderr, "Usage: mlagent deploy kubernetes [flags]\n\n"+deployHelp)
		return ExitUsage
	}
	kc := env.Config.Kubernetes
	fs := newFlagSet(env, "deploy kubernetes", "deploy kubernetes [flags]", deployHelp)
	var o deploy.Options
	fs.StringVar(&o.Namespace, "namespace", firstNonEmpty(kc.Namespace, deploy.DefaultNS), "namespace of sandboxes and volumes (config kubernetes.namespace)")
	fs.StringVar(&o.GatewayNamespace, "gateway-namespace", kc.GatewayNamespace, "namespace of the gateway (default NS-gateway; config kubernetes.gateway_namespace)")
	fs.StringVar(&o.Image, "image", deploy.DefaultImage, "image the gateway, dashboard and syncer run mlagent in (needs /bin/sh and wget)")
	fs.StringVar(&o.StorageClass, "storage-class", kc.StorageClass, "storage class of the volumes (default the cluster's)")
	accessMode := fs.String("access-mode", "ReadWriteMany", "access mode of the data and trackio volumes: ReadWriteMany (sandboxes, dashboard and syncer on any node) or ReadWriteOnce (one node)")
	fs.StringVar(&o.DataSize, "data-size", "100Gi", "size of the data volume")
	fs.StringVar(&o.GatewayCIDR, "gateway-cidr", "", "also let sandbox pods reach this address block (a gateway outside the cluster's pods)")
	fs.StringVar(&o.SpaceID, "space", env.Config.Syncer.SpaceID, "Hugging Face Space the syncer pushes Trackio rows to (none: syncer at 0 replicas)")
	var users, groups listFlag
	fs.Var(&users, "user", "bind this user to the CLI Role (repeatable)")
	fs.Var(&groups, "group", "bind this group to the CLI Role (repeatable)")
	apply := fs.Bool("apply", false, "apply to the cluster (server-side apply) instead of printing")
	dryRun := fs.Bool("dry-run", false, "with --apply: the server checks everything and stores nothing")
	yes := fs.Bool("yes", false, "with --apply: copy the keys without asking")
	fs.BoolVar(yes, "y", false, "same as --yes")
	if code := parseFlags(fs, args[1:], env); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return ExitUsage
	}
	o.AccessMode = corev1.PersistentVolumeAccessMode(*accessMode)
	if o.AccessMode != corev1.ReadWriteMany && o.AccessMode != corev1.ReadWriteOnce {
		fmt.Fprintf(env.Stderr, "mlagent deploy: --access-mode %q: want ReadWriteMany or ReadWriteOnce\n", *accessMode)
		return ExitUsage
	}
	if *dryRun && !*apply {
		fmt.Fprintln(env.Stderr, "mlagent deploy: --dry-run goes with --apply")
		return ExitUsage
	}
	o.Users, o.Groups = users, groups
	objs, err := deploy.Objects(o)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent deploy: %v\n", err)
		return ExitUsage
	}
	if !*apply {
		y, err := deploy.YAML(objs)
		if err != nil {
			fmt.Fprintf(env.Stderr, "mlagent deploy: %v\n", err)
			return ExitFailure
		}
		env.Stdout.Write(y)
		return ExitOK
	}
	fail := func(err error) int {
		fmt.Fprintf(env.Stderr, "mlagent deploy: %v\n", err)
		return ExitFailure
	}
	rc, _, err := kube.LoadConfig(kc.Kubeconfig, kc.Context)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := deploy.ApplyAll(ctx, rc, objs, *dryRun); err != nil {
		return fail(err)
	}
	if *dryRun {
		fmt.Fprintf(env.Stdout, "the server admitted all %d objects (dry run: nothing stored)\n", len(objs))
		return ExitOK
	}
	fmt.Fprintf(env.Stdout, "applied %d objects to %s\n", len(objs), rc.Host)

	keys, err := launch.ResolveKeys(env.Config, env.Getenv)
	if err != nil {
		return fail(err)
	}
	found := deploy.Keys{secrets.AnthropicKey: keys.Model, secrets.HFToken: keys.HF, secrets.GitHubToken: keys.GitHub}
	var names []string
	for _, k := range []string{secrets.AnthropicKey, secrets.HFToken, secrets.GitHubToken} {
		if found[k] != "" {
			names = append(names, k)
		}
	}
	gns := firstNonEmpty(o.GatewayNamespace, o.Namespace+"-gateway")
	switch {
	case len(names) == 0:
		fmt.Fprintf(env.Stdout, "no keys in the local secret store or environment; the gateway's Secret %s/%s stays as it is\n", gns, deploy.GatewayKeys)
	case *yes || confirm(env, fmt.Sprintf("copy %s from %s into Secret %s/%s of this cluster?", strings.Join(names, ", "), env.Config.SecretsPath(), gns, deploy.GatewayKeys)):
		changed, err := deploy.SetKeys(ctx, rc, o, found)
		if err != nil {
			return fail(err)
		}
		if changed {
			fmt.Fprintf(env.Stdout, "copied %s into %s/%s\n", strings.Join(names, ", "), gns, deploy.GatewayKeys)
		}
	default:
		fmt.Fprintf(env.Stdout, "keys not copied; the gateway has none until you run this again with --yes\n")
	}
	bin := kc.Binary
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return fail(err)
		}
	}
	if err := deploy.DeliverGateway(ctx, rc, o, bin, env.Stdout); err != nil {
		return fail(err)
	}
	fmt.Fprintf(env.Stdout, "gateway ready in %s; users with the Role %s run: mlagent run --backend kubernetes …\n", gns, deploy.UserRole)
	return ExitOK
}

// confirm asks a yes/no question on the terminal; no terminal is no.
func confirm(env *Env, question string) bool {
	if !readerIsTerminal(env.Stdin) {
		fmt.Fprintf(env.Stderr, "%s — no terminal to ask on; pass --yes\n", question)
		return false
	}
	fmt.Fprintf(env.Stderr, "%s [y/N] ", question)
	line, _ := bufio.NewReader(env.Stdin).ReadString('\n')
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes"
}
