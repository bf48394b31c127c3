#!/usr/bin/env bash
# The Kubernetes testbed of the kubernetes-backend tests (internal/sandbox/kube):
# a real kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kubectl and etcd, built from the Go module proxy (no registry or release
# download is reachable from CI), plus Debian's containerd, runc, CNI plugins
# and busybox-static to run pods. The tests start their own cluster on
# loopback per run (internal/sandbox/kube/kubetest); this script only makes
# the pieces exist.
#
#   scripts/kube-testbed.sh           install packages, build binaries (once), print the bin dir
#   scripts/kube-testbed.sh bindir    print where the binaries are (or would be) cached
#
# The binaries are cached under a versioned path outside /tmp
# ($MLAGENT_KUBE_CACHE, default /var/cache/mlagent/kube-testbed as root,
# ~/.cache/mlagent/kube-testbed otherwise), so a machine builds them once:
# ~23 min and up to 2.8 GB of RAM cold, nothing warm.
set -euo pipefail

KUBE_VERSION=1.37.2   # k8s.io/kubernetes; its staging modules are v0.37.2
RECIPE=1              # bump when the build recipe changes, to rebuild
if [ "$(id -u)" -eq 0 ]; then default_cache=/var/cache/mlagent/kube-testbed
else default_cache="${XDG_CACHE_HOME:-$HOME/.cache}/mlagent/kube-testbed"; fi
cache="${MLAGENT_KUBE_CACHE:-$default_cache}"
bindir="$cache/v$KUBE_VERSION-r$RECIPE/bin"
bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl etcd)

if [ "${1:-}" = bindir ]; then echo "$bindir"; exit 0; fi

packages() {
  local want=()
  command -v containerd >/dev/null 2>&1 || want+=(containerd)
  command -v runc >/dev/null 2>&1 || want+=(runc)
  [ -x /usr/lib/cni/bridge ] || want+=(containernetworking-plugins)
  [ -x /bin/busybox ] || want+=(busybox-static)
  command -v iptables >/dev/null 2>&1 || want+=(iptables)
  [ ${#want[@]} -eq 0 ] && return 0
  echo "kube-testbed: installing ${want[*]} (Debian packages)" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "kube-testbed: run as root: apt-get install -y ${want[*]}" >&2; return 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
}

build() {
  local ok=1 b
  for b in "${bins[@]}"; do [ -x "$bindir/$b" ] || ok=0; done
  [ "$ok" = 1 ] && return 0
  command -v go >/dev/null 2>&1 || { echo "kube-testbed: needs Go" >&2; return 1; }
  mkdir -p "$cache"
  # One build at a time per machine: a second caller waits for the first.
  exec 9>"$cache/.build.lock"
  flock 9
  ok=1; for b in "${bins[@]}"; do [ -x "$bindir/$b" ] || ok=0; done
  [ "$ok" = 1 ] && return 0
  work="$(mktemp -d "$cache/.build.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  echo "kube-testbed: building Kubernetes v$KUBE_VERSION and etcd into $bindir (once per machine; ~25 min cold)" >&2
  cd "$work"
  export GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0
  go mod init mlagent.local/kube-testbed >/dev/null 2>&1
  go mod edit -go=1.26.0 -require=k8s.io/kubernetes@v$KUBE_VERSION
  # k8s.io/kubernetes replaces its staging modules with directories that are
  # not in its module zip; the same modules are published at v0.X.Y.
  local kmod; kmod="$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
  local m
  for m in $(sed -n '/^replace (/,/^)/s/^\t\(k8s\.io\/[^ ]*\) => \.\/staging.*/\1/p' "$kmod"); do
    go mod edit -replace="$m=$m@v0.${KUBE_VERSION#1.}"
  done
  mkdir -p etcd
  cat > etcd/main.go <<'GO'
// Command etcd is the etcd server at the version k8s.io/kubernetes requires.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  go mod tidy >/dev/null
  local v="v$KUBE_VERSION" major="${KUBE_VERSION%%.*}" minor; minor="${KUBE_VERSION#*.}"; minor="${minor%%.*}"
  # Without these the server reports v0.0.0-master and kubectl refuses it.
  local x="" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x="$x -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  mkdir -p out
  # One invocation: the five share most packages and link in parallel.
  echo "kube-testbed: go build kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl etcd" >&2
  go build -trimpath -ldflags "-s -w$x" -o out/ \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl
  go build -trimpath -ldflags "-s -w" -o out/etcd ./etcd
  mkdir -p "$(dirname "$bindir")"
  rm -rf "$bindir.new" && mv out "$bindir.new" && rm -rf "$bindir" && mv "$bindir.new" "$bindir"
}

packages
build
echo "$bindir"
