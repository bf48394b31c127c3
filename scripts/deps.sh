#!/usr/bin/env bash
# Installs the machine packages mlagent's sandbox, training and browser tests
# use, when they are missing: bubblewrap (local sandbox), python3-torch and
# python3-numpy (training inside the sandbox), busybox-static (the test image
# for --image), chromium (dashboard browser test), and with
# MLAGENT_DEPS_KUBE=1 the Kubernetes test bed (scripts/kube-testbed.sh:
# containerd, runc, CNI plugins, and Kubernetes built from the Go module
# proxy once per machine). Needs root (or sudo);
# prints what to run otherwise.
#
# `deps.sh lint` instead builds the static checkers `make lint` runs, at
# pinned versions, from the Go module proxy, once per version, into
# $MLAGENT_LINT_BIN (default ~/.cache/mlagent/lint); needs no root.
set -euo pipefail

if [ "${1:-}" = lint ]; then
  bin="${MLAGENT_LINT_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/mlagent/lint}"
  mkdir -p "$bin"
  for tool in honnef.co/go/tools/cmd/staticcheck@v0.8.2 golang.org/x/tools/cmd/deadcode@v0.52.0; do
    pkg=${tool%@*} ver=${tool#*@}
    name=${pkg##*/}
    if [ ! -x "$bin/$name-$ver" ]; then
      echo "mlagent: building $tool (once)" >&2
      tmp=$(mktemp -d)
      GOBIN="$tmp" GOFLAGS=-mod=mod go install "$tool"
      mv "$tmp/$name" "$bin/$name-$ver"
      rmdir "$tmp"
    fi
    ln -sfn "$name-$ver" "$bin/$name"
  done
  exit 0
fi

want=()
command -v bwrap >/dev/null 2>&1 || want+=(bubblewrap)
/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1 || want+=(python3-torch python3-numpy)
# The image tests build a small image from a static busybox and the host's python3.
bb=$(command -v busybox || true)
if [ -z "$bb" ] || ldd "$bb" >/dev/null 2>&1; then want+=(busybox-static); fi
if [ "${MLAGENT_DEPS_BROWSER:-0}" = 1 ]; then
  command -v chromium >/dev/null 2>&1 || want+=(chromium)
fi
kube() {
  # The Kubernetes backend's tests run a real cluster: its packages and
  # binaries (built once per machine) come from scripts/kube-testbed.sh.
  [ "${MLAGENT_DEPS_KUBE:-0}" = 1 ] || return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "mlagent: the Kubernetes tests need root (containerd, a bridge, a kubelet); they will skip" >&2
    return 0
  fi
  "$(dirname "$0")/kube-testbed.sh" >/dev/null
}
if [ ${#want[@]} -eq 0 ]; then kube; exit 0; fi
echo "mlagent: installing ${want[*]} (Debian packages)" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "mlagent: run as root: apt-get update && apt-get install -y ${want[*]}" >&2; exit 1
  fi
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
kube
