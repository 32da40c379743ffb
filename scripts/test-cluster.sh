#!/usr/bin/env bash
# A real two-node Kubernetes cluster for the release step's and the
# kubernetes backend's tests, built
# from Debian's packages on this machine: no image is pulled and nothing is
# downloaded except through apt.
#
#   scripts/test-cluster.sh start    build what is missing (once, about 5
#                                    minutes cold), start the cluster, wait
#                                    until its node is Ready and schedulable;
#                                    the last line on stdout is the admin
#                                    kubeconfig's path (progress goes to
#                                    stderr). If the cluster is already up
#                                    and healthy it only prints that path.
#   scripts/test-cluster.sh stop     stop what start started (by its PID
#                                    files), remove the pod containers and
#                                    the kubelet's mounts; keeps the build
#                                    cache (idempotent)
#   scripts/test-cluster.sh status   say what is built and running
#   scripts/test-cluster.sh load IMAGE...
#                                    copy images of this machine's engine to
#                                    the second node's (nothing when it is
#                                    not running)
#
# What runs: Kubernetes v1.20.2 (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, plus kubectl for debugging), compiled from Debian's
# `kubernetes` source package with Debian's Go; etcd 3.4 from Debian; the
# kubelet's built-in dockershim runs pods as containers on the local Docker
# engine, with the pause image k8s.gcr.io/pause:3.2 built here. Everything
# listens on 127.0.0.1 only. Every start is a fresh, empty cluster. The second
# node (SLIPWAY_K8S_NODES=1 leaves it out) has its own Docker engine in its
# own network namespace and its own kubelet (see "second node" below). There
# is no kube-proxy and no cluster DNS: see docs/cluster.md.
#
# Everything is cached outside the repository, under
# ${SLIPWAY_K8S_DIR:-${SLIPWAY_CACHE:-~/.cache/slipway}/k8s}: binaries in bin/,
# certificates in pki/, the admin kubeconfig at kubeconfig, PID files and logs
# in run/. Needs root (the kubelet mounts volumes and makes cgroups) and a
# running Docker engine (scripts/dev-env.sh). One kubelet per Docker engine:
# start refuses if another kubelet runs on this machine.
set -euo pipefail

dir="${SLIPWAY_K8S_DIR:-${SLIPWAY_CACHE:-$HOME/.cache/slipway}/k8s}"
bin="$dir/bin"
pki="$dir/pki"
run="$dir/run"
kubeconfig="$dir/kubeconfig"

# Debian's client matches Debian's engine; a newer client may be first on PATH.
docker_bin=/usr/bin/docker
docker_sock=/var/run/docker.sock
etcd_bin=/usr/bin/etcd
# Debian's Go 1.19 (golang-go); a newer Go elsewhere on PATH is not used.
go_root=/usr/lib/go

k8s_version=v1.20.2
k8s_commit=faecb196815e248d3ecfb03c680a4507229c2a56
# Names what the build produces: change it when the recipe below changes, and
# the next start rebuilds (the Go cache keeps that quick).
build_id="kubernetes $k8s_version from Debian source, recipe 1"
components=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
# kubelet 1.20's default --pod-infra-container-image: never pulled when present.
pause_image=k8s.gcr.io/pause:3.2

# Loopback ports, away from the usual Kubernetes ones so that an etcd or a
# cluster started some other way does not collide with this one.
etcd_port=12379
etcd_peer_port=12380
api_port=16443
kcm_port=20257
sched_port=20259
kubelet_port=20250
kubelet_healthz_port=20248
kubelet2_port=20260
kubelet2_healthz_port=20258
api="https://127.0.0.1:$api_port"
# The registry scripts/dev-env.sh starts, on the host's loopback.
registry_port=5000

# Seconds to wait for each part to come up (the machine may be busy).
wait_limit="${SLIPWAY_K8S_TIMEOUT:-180}"

# In the order start starts them (stop stops the kubelet first).
daemons=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet)

# A second node on this machine (SLIPWAY_K8S_NODES=1 leaves it out), so that
# Pods really spread: its own Docker engine (own data root and socket) in its
# own network namespace, and its own kubelet, which shares a private mount
# namespace with that engine. The mount namespace gives the second kubelet its
# own /var/lib/kubelet and /var/log/pods: a kubelet deletes the log folders of
# Pods it does not know, and both would serve the same plugin sockets. Its
# pods' cgroups live under /slipway-node2. Persistent state (the engine's
# images, the kubelet's root) is in $node2, namespaces and sockets in $node2_rt.
nodes="${SLIPWAY_K8S_NODES:-2}"
case "$nodes" in 1 | 2) ;; *) echo "test-cluster: error: SLIPWAY_K8S_NODES is 1 or 2, not $nodes" >&2; exit 1 ;; esac
node2="$dir/node2"
node2_rt=/run/slipway-node2
node2_netns=slipway-node2
node2_sock="$node2_rt/docker.sock"
node2_cgroup=slipway-node2
# Its pods' network (the second engine's bridge, apart from the first's
# 172.17.0.0/16) and the veth pair that routes it from the host.
node2_pods=172.31.0.0/16
node2_bip=172.31.0.1/16
node2_veth_host=slipway-n2h
node2_veth=slipway-n2
node2_link_host=10.231.0.1
node2_link=10.231.0.2
node2_daemons=(node2-dockerd node2-registry node2-api node2-kubelet-port node2-kubelet)
[ "$nodes" = 2 ] && daemons+=("${node2_daemons[@]}")

log() { printf 'test-cluster: %s\n' "$*" >&2; }
die() { printf 'test-cluster: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ------------------------------------------------------------------ packages

# To build: Go, Debian's reflect2 and json-iterator sources (the vendored
# reflect2 crashes under Go >= 1.18), dpkg-dev for `apt-get source`, make and
# rsync for the code generator, gcc and libc6-dev for the static pause binary.
# To run: etcd, openssl for the certificates, curl and jq to ask the
# apiserver, iptables for the kubelet's hostPort support, socat for
# `kubectl port-forward` and the second node's registry bridge, iproute2 for its
# network namespace.
packages=(golang-go golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev
  dpkg-dev make rsync gcc libc6-dev etcd-server openssl curl jq iptables socat iproute2)

apt_updated=0
apt_update() {
  [ "$apt_updated" = 1 ] && return 0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq >"$run/apt.log" 2>&1 ||
    { tail -n 20 "$run/apt.log" >&2; die "apt-get update failed (log: $run/apt.log)"; }
  apt_updated=1
}

install_packages() {
  local missing=() p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} (log: $run/apt.log)"
  apt_update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
    --no-install-recommends "${missing[@]}" >"$run/apt.log" 2>&1 ||
    { tail -n 20 "$run/apt.log" >&2; die "apt-get install failed (log: $run/apt.log)"; }
}

# `apt-get source` needs deb-src entries: the same mirrors as the deb ones.
add_deb_src() {
  if grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ || grep -qs '^deb-src ' /etc/apt/sources.list; then
    return 0
  fi
  log "adding deb-src entries for Debian's mirrors (/etc/apt/sources.list.d/slipway-deb-src.*)"
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources |
      as_root tee /etc/apt/sources.list.d/slipway-deb-src.sources >/dev/null
  elif grep -qs '^deb ' /etc/apt/sources.list; then
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list |
      as_root tee /etc/apt/sources.list.d/slipway-deb-src.list >/dev/null
  else
    die "no Debian apt sources found to derive deb-src entries from"
  fi
  apt_updated=0
}

# ------------------------------------------------------------------ build

built() {
  [ "$(cat "$bin/BUILD" 2>/dev/null)" = "$build_id" ] || return 1
  local c
  for c in "${components[@]}"; do [ -x "$bin/$c" ] || return 1; done
  [ -x "$dir/pause/pause" ]
}

# The source tree, once: Debian's `kubernetes` source package (the full tree
# with vendor/), made buildable with Go 1.19 and on machines without
# CAP_SYS_RESOURCE. Sets $src to its path.
src=""
prepare_source() {
  local srcs="$dir/src" d
  src=""
  for d in "$srcs"/kubernetes-*/; do [ -d "$d" ] && src="${d%/}" && break; done
  if [ -n "$src" ] && [ "$(cat "$src/.slipway-prepared" 2>/dev/null)" = "$build_id" ]; then
    return 0
  fi
  # Unfinished or from an older recipe: start again from the package.
  rm -rf "$srcs"
  mkdir -p "$srcs"
  add_deb_src
  apt_update
  log "apt-get source kubernetes"
  (cd "$srcs" && apt-get -o DPkg::Lock::Timeout=300 source -qq kubernetes >"$run/build.log" 2>&1) ||
    { tail -n 20 "$run/build.log" >&2; die "apt-get source kubernetes failed"; }
  for d in "$srcs"/kubernetes-*/; do [ -d "$d" ] && src="${d%/}" && break; done
  if [ -z "$src" ] || [ ! -d "$src/cmd/kube-apiserver" ]; then die "no Kubernetes source in $srcs"; fi
  rm -f "$srcs"/*.tar.* "$srcs"/*.dsc

  # The vendored reflect2 1.0.1 crashes (SIGSEGV in mapiterinit) under
  # Go >= 1.18; Debian's reflect2 1.0.2 and json-iterator 1.1.12 are the pair
  # upstream moved to in 1.23.
  local v="$src/vendor/github.com"
  rm -rf "$v/modern-go/reflect2" "$v/json-iterator/go"
  mkdir -p "$v/modern-go/reflect2" "$v/json-iterator/go"
  find /usr/share/gocode/src/github.com/modern-go/reflect2 -maxdepth 1 -type f \
    \( -name '*.go' -o -name '*.s' -o -name LICENSE \) ! -name '*_test.go' -exec cp {} "$v/modern-go/reflect2/" \;
  find /usr/share/gocode/src/github.com/json-iterator/go -maxdepth 1 -type f \
    \( -name '*.go' -o -name LICENSE \) ! -name '*_test.go' -exec cp {} "$v/json-iterator/go/" \;
  [ -f "$v/modern-go/reflect2/go_above_118.go" ] || die "Debian's reflect2 is not the expected 1.0.2"

  # dockershim asks Docker for oom_score_adj -998 for every pod sandbox;
  # lowering it needs CAP_SYS_RESOURCE, which root lacks on some VMs (this
  # kind included), and then no pod starts ("can't get final child's PID from
  # pipe: EOF"). Without that capability, raise negative values to 0; with it,
  # nothing changes.
  local ds="$src/pkg/kubelet/dockershim"
  cat >"$ds/slipway_oom_clamp.go" <<'EOF'
// +build !dockerless

package dockershim

// Added by slipway's scripts/test-cluster.sh (not upstream): without
// CAP_SYS_RESOURCE, negative oom_score_adj values are raised to 0, since
// runc cannot set them and every pod would fail to start.

import (
	"io/ioutil"
	"strconv"
	"strings"
	"sync"

	"k8s.io/klog/v2"
)

const capSysResource = 24

var (
	oomClampOnce sync.Once
	oomClamp     bool
)

func hasCapSysResource() bool {
	b, err := ioutil.ReadFile("/proc/self/status")
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "CapEff:") {
			v, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "CapEff:")), 16, 64)
			if err != nil {
				return true
			}
			return v&(1<<capSysResource) != 0
		}
	}
	return true
}

func clampOOMScoreAdj(v int) int {
	oomClampOnce.Do(func() {
		oomClamp = !hasCapSysResource()
		if oomClamp {
			klog.Warningf("dockershim: no CAP_SYS_RESOURCE, negative oom_score_adj values are raised to 0")
		}
	})
	if oomClamp && v < 0 {
		return 0
	}
	return v
}
EOF
  sed -i 's/hc\.OomScoreAdj = defaultSandboxOOMAdj$/hc.OomScoreAdj = clampOOMScoreAdj(defaultSandboxOOMAdj)/' \
    "$ds/docker_sandbox.go"
  sed -i 's/createConfig\.HostConfig\.OomScoreAdj = int(rOpts\.OomScoreAdj)$/createConfig.HostConfig.OomScoreAdj = clampOOMScoreAdj(int(rOpts.OomScoreAdj))/' \
    "$ds/helpers_linux.go"
  if ! grep -q 'clampOOMScoreAdj(defaultSandboxOOMAdj)' "$ds/docker_sandbox.go" ||
    ! grep -q 'clampOOMScoreAdj(int(rOpts.OomScoreAdj))' "$ds/helpers_linux.go"; then
    die "the dockershim oom_score_adj patch did not apply to $src"
  fi

  # The one generated file the tarball lacks.
  log "make gen_openapi"
  (cd "$src" && go_env make gen_openapi >>"$run/build.log" 2>&1) ||
    { tail -n 20 "$run/build.log" >&2; die "make gen_openapi failed (log: $run/build.log)"; }
  [ -s "$src/pkg/generated/openapi/zz_generated.openapi.go" ] || die "make gen_openapi made no openapi file"

  echo "$build_id" >"$src/.slipway-prepared"
}

# Runs a command with the Go environment of the build: Debian's Go, GOPATH
# mode (1.20 does not build in module mode from the package), nothing fetched.
go_env() {
  env PATH="$go_root/bin:$PATH" GOROOT="$go_root" GO111MODULE=off GOPATH="$dir/gopath" \
    GOCACHE="$dir/gocache" GOPROXY=off GOFLAGS= GOENV=off CGO_ENABLED=0 "$@"
}

build() {
  built && return 0
  local t0=$SECONDS
  mkdir -p "$bin" "$dir/gopath/src/k8s.io" "$dir/gocache"
  : >"$run/build.log"
  prepare_source
  ln -sfn "$src" "$dir/gopath/src/k8s.io/kubernetes"

  # The version both the server and client-go report, else v0.0.0.
  local ldflags="-s -w" p
  for p in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=20 -X $p.gitTreeState=archive"
    ldflags+=" -X $p.gitCommit=$k8s_commit -X $p.buildDate=2021-01-13T00:00:00Z"
  done

  # The servers first, then kubectl (mostly the same packages, so a little
  # more). One `go build` per group lets Go use both cores to the end.
  rm -rf "$bin/.new"
  mkdir -p "$bin/.new"
  local group tb names pkgs c
  for group in "kube-apiserver kube-controller-manager kube-scheduler kubelet" kubectl; do
    log "go build $group (log: $run/build.log)"
    tb=$SECONDS
    read -ra names <<<"$group"
    pkgs=()
    for c in "${names[@]}"; do pkgs+=("./cmd/$c"); done
    (cd "$dir/gopath/src/k8s.io/kubernetes" &&
      go_env go build -trimpath -ldflags "$ldflags" -o "$bin/.new/" "${pkgs[@]}" >>"$run/build.log" 2>&1) ||
      { tail -n 30 "$run/build.log" >&2; die "go build $group failed (log: $run/build.log)"; }
    log "built $group in $((SECONDS - tb)) s"
  done

  # The pod sandbox (pause) binary: the flags of build/pause/Makefile.
  mkdir -p "$dir/pause"
  gcc -Os -Wall -Werror -static -DVERSION="$k8s_version-debian" \
    -o "$dir/pause/pause" "$src/build/pause/linux/pause.c"
  strip "$dir/pause/pause"

  for c in "${components[@]}"; do mv -f "$bin/.new/$c" "$bin/$c"; done
  rmdir "$bin/.new"
  echo "$build_id" >"$bin/BUILD"
  log "built Kubernetes $k8s_version in $((SECONDS - t0)) s"
}

have_image() { "$docker_bin" image inspect "$1" >/dev/null 2>&1; }

# FROM scratch, like upstream's; nothing can be pulled here.
build_pause_image() {
  have_image "$pause_image" && return 0
  log "building $pause_image"
  printf '%s\n' 'FROM scratch' 'COPY pause /pause' 'LABEL dev.slipway.image="pause"' \
    'ENTRYPOINT ["/pause"]' >"$dir/pause/Dockerfile"
  DOCKER_BUILDKIT=0 "$docker_bin" build -q -t "$pause_image" "$dir/pause" >/dev/null
}

# ------------------------------------------------------------------ certificates

# The node is named after the host when that name resolves to loopback: the
# apiserver reaches the kubelet (kubectl logs/exec) at the node's name, and
# the kubelet listens on 127.0.0.1 only. Otherwise it is named localhost.
node_name() {
  local h
  h="$(hostname | tr '[:upper:]' '[:lower:]')"
  if [[ $h =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ ]] &&
    getent ahostsv4 "$h" 2>/dev/null | awk 'NR == 1 && $1 ~ /^127\./ { ok = 1 } END { exit !ok }'; then
    echo "$h"
  else
    echo localhost
  fi
}

# Issues a leaf certificate signed by the cluster CA.
# $1: file stem in $2, $3: subject, $4: extensions (one per line).
issue() {
  local stem="$1" d="$2" subject="$3" ext="$4"
  openssl req -newkey rsa:2048 -nodes -keyout "$d/$stem.key" -out "$d/$stem.csr" -subj "$subject" 2>/dev/null
  printf '%s\n' "$ext" >"$d/$stem.ext"
  openssl x509 -req -in "$d/$stem.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -out "$d/$stem.crt" -days 3650 -extfile "$d/$stem.ext" 2>/dev/null
  rm -f "$d/$stem.csr" "$d/$stem.ext"
}

client_ext=$'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth'

# A CA, the apiserver's serving certificate (a leaf: rustls rejects a CA
# certificate as a server's), client certificates, the service-account key
# pair. Made once; the node's certificate again if the host name changes.
make_certs() {
  local node="$1"
  if [ ! -s "$pki/sa.pub" ]; then
    log "making certificates in $pki"
    local tmp="$pki.new"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/ca.key" -out "$tmp/ca.crt" -days 3650 \
      -subj "/CN=slipway-test-cluster-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    issue apiserver "$tmp" "/CN=kube-apiserver" "$(printf '%s\n' \
      "subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1" \
      "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth")"
    # system:masters is cluster-admin in the bootstrap RBAC policy.
    issue admin "$tmp" "/O=system:masters/CN=slipway-admin" "$client_ext"
    # The apiserver's identity towards the kubelet (logs, exec, port-forward).
    issue apiserver-kubelet-client "$tmp" "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client_ext"
    issue scheduler "$tmp" "/CN=system:kube-scheduler" "$client_ext"
    openssl genrsa -out "$tmp/sa.key" 2048 2>/dev/null
    openssl rsa -in "$tmp/sa.key" -pubout -out "$tmp/sa.pub" 2>/dev/null
    chmod 600 "$tmp"/*.key
    rm -rf "$pki"
    mv "$tmp" "$pki"
  fi
  local stem n
  for stem in kubelet kubelet2; do
    n="$node"
    if [ "$stem" = kubelet2 ]; then
      [ "$nodes" = 2 ] || continue
      n="$(node2_name "$node")" || die "no second host name resolves to 127.0.0.1 for the second node (SLIPWAY_K8S_NODES=1 starts one)"
    fi
    if [ "$(cat "$pki/$stem.node" 2>/dev/null)" != "$n" ] || [ ! -s "$pki/$stem.crt" ]; then
      issue "$stem" "$pki" "/O=system:nodes/CN=system:node:$n" "$client_ext"
      chmod 600 "$pki/$stem.key"
      echo "$n" >"$pki/$stem.node"
    fi
    write_kubeconfig "$pki/$stem.kubeconfig" "$stem" "system:node:$n"
  done
  write_kubeconfig "$kubeconfig" admin slipway-admin
  write_kubeconfig "$pki/scheduler.kubeconfig" scheduler system:kube-scheduler
}

# $1: file, $2: certificate stem, $3: user name.
write_kubeconfig() {
  local b64ca b64crt b64key
  b64ca="$(base64 -w0 <"$pki/ca.crt")"
  b64crt="$(base64 -w0 <"$pki/$2.crt")"
  b64key="$(base64 -w0 <"$pki/$2.key")"
  (
    umask 077
    cat >"$1.new" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: slipway-test
  cluster:
    server: $api
    certificate-authority-data: $b64ca
contexts:
- name: slipway-test
  context: {cluster: slipway-test, user: $3, namespace: default}
current-context: slipway-test
users:
- name: $3
  user:
    client-certificate-data: $b64crt
    client-key-data: $b64key
EOF
  )
  if cmp -s "$1.new" "$1"; then rm -f "$1.new"; else mv -f "$1.new" "$1"; fi
}

# ------------------------------------------------------------------ processes

# The PID recorded for a daemon, if that process is still the program this
# script started (its argv[0] is the recorded binary).
running_pid() {
  local pidfile="$run/$1.pid" pid prog
  [ -s "$pidfile" ] || return 1
  read -r pid prog <"$pidfile" || true
  [ -n "$pid" ] && [ -n "$prog" ] || return 1
  [ "$({ tr '\0' '\n' <"/proc/$pid/cmdline"; } 2>/dev/null | head -n 1)" = "$prog" ] || return 1
  echo "$pid"
}

# The daemons this start launched, to notice any of them exiting.
launched=()

# Starts a daemon in its own session (it outlives the caller's terminal and
# process group), with no inherited stdout or lock descriptor, so a caller
# reading our stdout to its end does not wait for the cluster.
#
# `$!` is the forked shell, which execs setsid, which execs the program: until
# then its argv[0] is not the program's and running_pid would call it gone.
# On a busy machine that takes a while, so wait for the exec (or the exit).
# With `within` set (an nsenter command line), the program runs in those
# namespaces; nsenter execs it, so its argv[0] is still the program.
within=()
launch() {
  local name="$1" pid argv0
  shift
  setsid ${within[@]+"${within[@]}"} "$@" >"$run/$name.log" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid $1" >"$run/$name.pid"
  launched+=("$name")
  for _ in $(seq 1 300); do
    argv0="$({ tr '\0' '\n' <"/proc/$pid/cmdline"; } 2>/dev/null | head -n 1)"
    [ "$argv0" = "$1" ] && return 0
    alive "$pid" || return 0
    sleep 0.1
  done
  log "$name (pid $pid) did not start $1 within 30 s"
}

# A process that exists and has not exited (a zombie waits for PID 1 to reap
# it, which can take a second).
alive() {
  local state
  state="$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" && [ -n "$state" ] && [ "$state" != Z ]
}

# Kubelets running on this machine, whoever started them.
live_kubelets() {
  local p
  for p in $(pgrep -x kubelet || true); do alive "$p" && echo "$p"; done
  return 0
}

# Stops daemons together: SIGTERM, up to 10 s, then SIGKILL.
stop_daemons() {
  local name pid pids=() names=()
  for name in "$@"; do
    if pid="$(running_pid "$name")"; then
      log "stopping $name (pid $pid)"
      kill "$pid" 2>/dev/null || true
      pids+=("$pid")
      names+=("$name")
    fi
  done
  local i left
  for _ in $(seq 1 100); do
    left=0
    for pid in "${pids[@]}"; do alive "$pid" && left=1; done
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  for i in "${!pids[@]}"; do
    if alive "${pids[i]}"; then
      log "${names[i]} (pid ${pids[i]}) did not exit in 10 s: SIGKILL"
      kill -9 "${pids[i]}" 2>/dev/null || true
    fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
  done
  for name in "$@"; do rm -f "$run/$name.pid"; done
}

# Fails with the tail of a daemon's log.
fail_with_log() {
  local name="$1"
  shift
  printf 'test-cluster: error: %s\n--- last lines of %s\n' "$*" "$run/$name.log" >&2
  tail -n 30 "$run/$name.log" >&2 || true
  echo "---" >&2
  exit 1
}

# Waits until a command succeeds; fails with a daemon's log if any daemon
# exits, or with the given one's if the time runs out. $1: daemon, $2: what we
# wait for, rest: command.
wait_for() {
  local name="$1" what="$2" end=$((SECONDS + wait_limit)) d
  shift 2
  until "$@" >/dev/null 2>&1; do
    for d in "${launched[@]}"; do
      running_pid "$d" >/dev/null || fail_with_log "$d" "$d exited while waiting for $what"
    done
    [ $SECONDS -lt $end ] || fail_with_log "$name" "no $what after $wait_limit s"
    sleep 0.2
  done
}

admin_curl() {
  curl -fs -m 5 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "$@"
}

etcd_healthy() { curl -fsS -m 2 "http://127.0.0.1:$etcd_port/health" | grep -q '"health":"true"'; }
api_ready() { admin_curl "$api/readyz" >/dev/null; }
default_sa() { admin_curl "$api/api/v1/namespaces/default/serviceaccounts/default" >/dev/null; }

# Ready, not cordoned, and without NoSchedule/NoExecute taints (the kubelet
# registers with a not-ready taint that the node lifecycle controller lifts).
node_schedulable() {
  admin_curl "$api/api/v1/nodes/$1" | jq -e '
    (.status.conditions // [] | any(.type == "Ready" and .status == "True"))
    and (.spec.unschedulable // false | not)
    and (.spec.taints // [] | map(select(.effect == "NoSchedule" or .effect == "NoExecute")) | length == 0)' >/dev/null
}

healthy() {
  local d
  for d in "${daemons[@]}"; do running_pid "$d" >/dev/null || return 1; done
  [ -s "$kubeconfig" ] && api_ready && node_schedulable "$(cat "$pki/kubelet.node")" || return 1
  [ "$nodes" = 1 ] || node_schedulable "$(cat "$pki/kubelet2.node" 2>/dev/null)"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Kernel settings the kubelet's container manager forces (vm.overcommit_memory
# and the panic ones): saved before it starts, restored by stop.
sysctls=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

# Host paths kubelet 1.20 always uses whatever its root directory; the ones
# this start creates are recorded, and removed by stop if empty.
host_paths=(/var/log/pods /var/log/containers /var/lib/kubelet)

# A kubelet's settings. $1: the engine's cgroup driver, $2 and $3: its port
# and healthz port, $4: its volume plugin folder, $5: its cgroup root (the
# second node's pods live under their own).
kubelet_config() {
  local cgroup_driver="$1" port="$2" healthz_port="$3" plugins="$4" cgroup_root="${5:-}"
  cat <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz_port
# Only clients with a certificate from the cluster CA (the apiserver).
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: AlwaysAllow}
cgroupDriver: $cgroup_driver
failSwapOn: false
# No kube-proxy, and the host's iptables stay as they are.
makeIPTablesUtilChains: false
hairpinMode: none
# Images cannot be pulled again here: never garbage-collect or evict them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%"}
volumePluginDir: $plugins
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
rotateCertificates: false
serverTLSBootstrap: false
serializeImagePulls: false
# Events are posted as they happen: the tests read the kubelet's (an image
# pulled), and the Pods run by the kubernetes backend's tests make many at
# once. The kubelet posts them one by one through a client limited to
# eventRecordQPS; at the default (5 a second) a backlog held the flagship's
# pull event back for longer than the test looked. 0 is no help in this
# kubelet: the client reads 0 as its own default of 5.
eventRecordQPS: 1000
eventBurst: 1000
# Pod statuses reach the API server without queueing behind each other
# (the defaults of kubelets since 1.27; 1.20's 5 a second held them back
# for seconds while the tests made Pods).
kubeAPIQPS: 50
kubeAPIBurst: 100
# Node status computed every 2 s (Ready sooner), posted when it changes.
nodeStatusUpdateFrequency: 2s
nodeStatusReportFrequency: 1m
EOF
  [ -z "$cgroup_root" ] || echo "cgroupRoot: /$cgroup_root"
}

kubelet1_config() { kubelet_config "$1" "$kubelet_port" "$kubelet_healthz_port" "$run/volume-plugins"; }
kubelet2_config() {
  kubelet_config "$1" "$kubelet2_port" "$kubelet2_healthz_port" "$node2/volume-plugins" "$node2_cgroup"
}

# The controllers kube-controller-manager runs (see start).
kcm_controllers='*,-nodeipam,-cloud-node-lifecycle,-route,-service,-attachdetach,-persistentvolume-expander'

# The default StorageClass: host folders, provisioned as claims come.
storage_class='{"apiVersion":"storage.k8s.io/v1","kind":"StorageClass","metadata":{"name":"standard","annotations":{"storageclass.kubernetes.io/is-default-class":"true"}},"provisioner":"kubernetes.io/host-path","reclaimPolicy":"Delete","volumeBindingMode":"Immediate"}'

# Everything a running cluster was started with that start may change: a
# cluster started otherwise is started again.
settings() {
  kubelet1_config "$1"
  [ "$nodes" = 1 ] || { kubelet2_config "$1"; echo "second node: pods on $node2_pods via $node2_link, bridges to $registry_port and $api_port"; }
  echo "controllers: $kcm_controllers"
  echo "storage class: $storage_class"
}

# ------------------------------------------------------------------ second node

node2_docker() { timeout 30 "$docker_bin" -H "unix://$node2_sock" "$@"; }

# The second node's name: another name for 127.0.0.1 than the first node's
# (the apiserver reaches a kubelet at its node's name, and each kubelet at
# its own port).
node2_name() {
  local first="$1" h
  for h in localhost $(awk '$1 ~ /^127\./ { for (i = 2; i <= NF; i++) print tolower($i) }' /etc/hosts); do
    [ "$h" = "$first" ] && continue
    [[ $h =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || continue
    getent ahostsv4 "$h" 2>/dev/null | awk 'NR == 1 && $1 ~ /^127\./ { ok = 1 } END { exit !ok }' && {
      echo "$h"
      return 0
    }
  done
  return 1
}

mounted() { grep -q " $1 " /proc/self/mountinfo; }

# The second node's namespaces: a network namespace for its engine, and a
# mount namespace (a slave of the host's, so host mounts still show) where
# its kubelet's host folders are its own. A reference to the host's network
# namespace lets the registry bridge reach the host's loopback.
node2_namespaces() {
  mkdir -p "$node2_rt" "$node2"/{kubelet,dockershim,volume-plugins,docker,log/pods,log/containers,lib-kubelet}
  [ -e "/run/netns/$node2_netns" ] || ip netns add "$node2_netns"
  ip -n "$node2_netns" link set lo up
  # Pod addresses on the second node are reachable from the host, as on the
  # first: a link into the namespace, and a route to the pods through it.
  if ! ip link show "$node2_veth_host" >/dev/null 2>&1; then
    ip link add "$node2_veth_host" type veth peer name "$node2_veth"
    ip link set "$node2_veth" netns "$node2_netns"
    ip addr add "$node2_link_host/30" dev "$node2_veth_host"
    ip -n "$node2_netns" addr add "$node2_link/30" dev "$node2_veth"
  fi
  ip link set "$node2_veth_host" up
  ip -n "$node2_netns" link set "$node2_veth" up
  ip route replace "$node2_pods" via "$node2_link"
  if ! mounted "$node2_rt"; then
    mount --bind "$node2_rt" "$node2_rt"
    mount --make-private "$node2_rt"
  fi
  if ! mounted "$node2_rt/hostnet"; then
    touch "$node2_rt/hostnet"
    mount --bind /proc/self/ns/net "$node2_rt/hostnet"
  fi
  if ! mounted "$node2_rt/mnt"; then
    touch "$node2_rt/mnt"
    unshare --mount="$node2_rt/mnt" --propagation slave sh -euc '
      for p in /var/log/pods:log/pods /var/log/containers:log/containers /var/lib/kubelet:lib-kubelet; do
        mkdir -p "${p%%:*}"
        mount --bind "$1/${p#*:}" "${p%%:*}"
      done' sh "$node2"
  fi
  local c
  for c in /sys/fs/cgroup/*/; do
    [ -L "${c%/}" ] || mkdir -p "$c$node2_cgroup"
  done
}

# The images Pods use, copied from the first engine (nothing can be pulled
# here): the pause image, local/busybox and local/debian (the examples'),
# the tests' local/slipway-* images, plus any named. Copies only what the
# second engine lacks or has in another version (its data root is kept
# across starts, so each is copied once).
node2_load() {
  local images=() i
  for i in "$pause_image" local/busybox:latest local/debian:latest \
    $("$docker_bin" images --format '{{.Repository}}:{{.Tag}}' 'local/slipway-*') "$@"; do
    [ "$("$docker_bin" image inspect -f '{{.Id}}' "$i" 2>/dev/null || echo none)" = \
      "$(node2_docker image inspect -f '{{.Id}}' "$i" 2>/dev/null || echo other)" ] || images+=("$i")
  done
  [ ${#images[@]} -eq 0 ] && return 0
  log "copying ${#images[@]} images to the second node's engine"
  "$docker_bin" save "${images[@]}" | node2_docker load -q >/dev/null
  # The versions they replace.
  node2_docker image prune -f >/dev/null
}

# Listens on port $2 of the second node's loopback and carries each
# connection to the same port on the host's.
bridge() {
  within=(ip netns exec "$node2_netns")
  launch "$1" "$(command -v socat)" "TCP-LISTEN:$2,bind=127.0.0.1,fork,reuseaddr" \
    "EXEC:nsenter --net=$node2_rt/hostnet socat STDIO TCP\\:127.0.0.1\\:$2"
  within=()
}

# The other way: port $2 of the host's loopback, carried into the node's.
bridge_in() {
  launch "$1" "$(command -v socat)" "TCP-LISTEN:$2,bind=127.0.0.1,fork,reuseaddr" \
    "EXEC:nsenter --net=/run/netns/$node2_netns socat STDIO TCP\\:127.0.0.1\\:$2"
}

# Starts the second node's engine and its bridges to the registry and the
# API server.
start_node2_engine() {
  local cgroup_driver="$1"
  node2_namespaces
  echo '{}' >"$node2/daemon.json"
  log "starting the second node's Docker engine (netns $node2_netns, socket $node2_sock)"
  within=(nsenter --mount="$node2_rt/mnt" --net="/run/netns/$node2_netns")
  launch node2-dockerd "$(command -v dockerd)" --config-file="$node2/daemon.json" \
    --host="unix://$node2_sock" --data-root="$node2/docker" --exec-root="$node2_rt/exec" \
    --pidfile="$node2_rt/dockerd.pid" --exec-opt "native.cgroupdriver=$cgroup_driver" \
    --bip="$node2_bip"
  # Images pushed to the registry on the host's 127.0.0.1:5000 are pulled by
  # the second engine from its own loopback, and host-network Pods reach the
  # API server on it as on the first node: each connection is carried to
  # the host's loopback.
  bridge node2-registry "$registry_port"
  bridge node2-api "$api_port"
  wait_for node2-dockerd "second Docker engine" node2_docker info
  # The engine drops forwarded traffic to its bridge that its own rules do
  # not expect: let the host's connections to the pods through.
  ip netns exec "$node2_netns" iptables -C DOCKER-USER -i "$node2_veth" -o docker0 -j ACCEPT 2>/dev/null ||
    ip netns exec "$node2_netns" iptables -I DOCKER-USER -i "$node2_veth" -o docker0 -j ACCEPT
  node2_load
}

# The second kubelet runs in the node's network namespace too: it probes
# its Pods (HTTP and TCP readiness checks) at their addresses on the
# second engine's bridge, which the host's namespace does not reach (and
# where the same addresses are the first engine's). It reaches the API
# server through the bridge on its loopback; the API server reaches it at
# the node's name (127.0.0.1 on the host) through the bridge the other way.
# Its node address is the engine's bridge gateway: a kubelet refuses a
# loopback one, and the namespace has no other.
start_node2_kubelet() {
  local cgroup_driver="$1" node="$2" node_ip
  node_ip="$(node2_docker network inspect bridge --format '{{(index .IPAM.Config 0).Gateway}}')"
  [ -n "$node_ip" ] || die "the second engine has no bridge gateway for the node's address"
  kubelet2_config "$cgroup_driver" >"$node2/kubelet-config.yaml"
  bridge_in node2-kubelet-port "$kubelet2_port"
  log "starting the second kubelet (node $node, pods on the second engine)"
  within=(nsenter --mount="$node2_rt/mnt" --net="/run/netns/$node2_netns")
  launch node2-kubelet "$bin/kubelet" \
    --node-ip="$node_ip" \
    --config="$node2/kubelet-config.yaml" \
    --kubeconfig="$pki/kubelet2.kubeconfig" \
    --hostname-override="$node" \
    --container-runtime=docker --docker-endpoint="unix://$node2_sock" \
    --pod-infra-container-image="$pause_image" \
    --root-dir="$node2/kubelet" \
    --cert-dir="$node2/kubelet-pki" \
    --experimental-dockershim-root-directory="$node2/dockershim" \
    --container-runtime-endpoint="unix://$node2_rt/dockershim.sock" \
    --image-service-endpoint="unix://$node2_rt/dockershim.sock" \
    --v=1
  within=()
}

# Stops the second node (whether or not this start wants one): its kubelet
# is already stopped. Its pod containers, engine and bridge go, then the
# namespaces; every mount made in the mount namespace (volumes, image
# layers) goes with it.
stop_node2() {
  local ids
  if running_pid node2-dockerd >/dev/null && node2_docker info >/dev/null 2>&1; then
    ids="$(node2_docker ps -aq --filter label=io.kubernetes.docker.type)"
    if [ -n "$ids" ]; then
      log "removing $(echo "$ids" | wc -w) pod containers of the second node"
      # shellcheck disable=SC2086 # a list of IDs
      node2_docker rm -f -v $ids >/dev/null
    fi
  fi
  stop_daemons node2-kubelet-port node2-registry node2-api node2-dockerd
  local m
  for m in "$node2_rt/mnt" "$node2_rt/hostnet" "$node2_rt"; do
    mounted "$m" && { umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: cannot unmount $m"; }
  done
  ip route del "$node2_pods" via "$node2_link" 2>/dev/null || true
  ip link del "$node2_veth_host" 2>/dev/null || true
  [ -e "/run/netns/$node2_netns" ] && { ip netns del "$node2_netns" 2>/dev/null || log "warning: cannot delete netns $node2_netns"; }
  rm -rf "$node2/kubelet/pods" "$node2/dockershim/sandbox" "$node2"/log/pods/* "$node2"/log/containers/*
  local d
  for d in /sys/fs/cgroup/*/"$node2_cgroup"; do
    [ -d "$d" ] && { find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; }
  done
  return 0
}

load() {
  running_pid node2-dockerd >/dev/null || return 0
  node2_load "$@"
}

# ------------------------------------------------------------------ start

# When start fails after launching something: stop it all again.
on_start_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    log "start failed: stopping what it started"
    stop_all quiet || true
  fi
}

start() {
  [ "$(id -u)" -eq 0 ] || die "start needs root (the kubelet mounts volumes and makes cgroups)"
  timeout 10 "$docker_bin" info >/dev/null 2>&1 ||
    die "the Docker engine does not answer on $docker_sock: run scripts/dev-env.sh first"

  if healthy; then
    if settings "$("$docker_bin" info --format '{{.CgroupDriver}}')" | cmp -s - "$run/settings"; then
      echo "$kubeconfig"
      return 0
    fi
    log "the cluster's settings changed: starting it again"
  fi

  local other ours
  ours="$( (running_pid kubelet; running_pid node2-kubelet) || true)"
  other="$(live_kubelets | grep -vxF "${ours:-none}" || true)"
  [ -z "$other" ] || die "a kubelet not started by this script is running (pid ${other//$'\n'/, }); only one kubelet can use a Docker engine"

  # Whatever is left of an earlier start (a crash, a reboot, a half start).
  stop_all quiet

  local p
  for p in $etcd_port $etcd_peer_port $api_port $kcm_port $sched_port $kubelet_port $kubelet_healthz_port \
    $([ "$nodes" = 1 ] || echo "$kubelet2_port $kubelet2_healthz_port"); do
    port_busy "$p" && die "port $p on 127.0.0.1 is already in use"
  done

  install_packages
  build
  build_pause_image

  local t0=$SECONDS node cgroup_driver node2_node=""
  node="$(node_name)"
  make_certs "$node"
  [ "$nodes" = 1 ] || node2_node="$(cat "$pki/kubelet2.node")"
  cgroup_driver="$("$docker_bin" info --format '{{.CgroupDriver}}')"

  # From here on, a failure stops what was started (logs stay in $run).
  trap on_start_exit EXIT

  # A fresh cluster each time: no objects from an earlier run.
  rm -rf "$run/etcd"
  log "starting etcd on 127.0.0.1:$etcd_port"
  launch etcd "$etcd_bin" --name slipway-test --data-dir "$run/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "slipway-test=http://127.0.0.1:$etcd_peer_port" \
    --log-level warn
  wait_for etcd "healthy etcd" etcd_healthy
  log "etcd healthy after $((SECONDS - t0)) s"

  # 1.20 needs the service-account issuer and keys; with no reachable
  # endpoint for the `kubernetes` Service, its endpoints are not reconciled.
  log "starting kube-apiserver on $api"
  launch kube-apiserver "$bin/kube-apiserver" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=Hostname \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --endpoint-reconciler-type=none \
    --allow-privileged=true \
    --profiling=false \
    --v=1
  wait_for kube-apiserver "ready apiserver" api_ready
  log "kube-apiserver ready after $((SECONDS - t0)) s"

  # The bootstrap system:node ClusterRoleBinding has no subjects: bind the
  # role to each node's user (the apiserver has RBAC only, no Node authorizer).
  local crb code n
  for n in "$node" ${node2_node:+"$node2_node"}; do
    crb="$(jq -n --arg n "$n" '{apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRoleBinding",
      metadata: {name: ("slipway:node:" + $n)},
      roleRef: {apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "system:node"},
      subjects: [{apiGroup: "rbac.authorization.k8s.io", kind: "User", name: ("system:node:" + $n)}]}')"
    code="$(curl -sS -m 10 -o /dev/null -w '%{http_code}' --cacert "$pki/ca.crt" --cert "$pki/admin.crt" \
      --key "$pki/admin.key" -X POST -H 'Content-Type: application/json' -d "$crb" \
      "$api/apis/rbac.authorization.k8s.io/v1/clusterrolebindings")"
    case "$code" in 201 | 409) ;; *) die "creating node $n's ClusterRoleBinding: HTTP $code" ;; esac
  done

  # All controllers that make sense without a cloud or a pod network, node
  # lifecycle included (it lifts the kubelet's not-ready taint), and the
  # volume binder with the host-path provisioner: claims of the `standard`
  # StorageClass bind to folders on this machine (under
  # /tmp/hostpath_provisioner).
  log "starting kube-controller-manager"
  launch kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$kubeconfig" \
    --authentication-kubeconfig="$kubeconfig" --authorization-kubeconfig="$kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$kcm_port" --port=0 \
    --leader-elect=false \
    --service-account-private-key-file="$pki/sa.key" \
    --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
    --use-service-account-credentials=false \
    --controllers="$kcm_controllers" \
    --enable-hostpath-provisioner \
    --node-monitor-period=2s \
    --v=1

  log "starting kube-scheduler"
  launch kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig="$pki/scheduler.kubeconfig" \
    --authentication-kubeconfig="$pki/scheduler.kubeconfig" \
    --authorization-kubeconfig="$pki/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$sched_port" --port=0 \
    --leader-elect=false \
    --v=1

  # Host state the kubelet changes, for stop to put back.
  [ -s "$run/sysctl.saved" ] || for p in "${sysctls[@]}"; do echo "$p $(cat "/proc/sys/$p")"; done >"$run/sysctl.saved"
  for p in "${host_paths[@]}"; do
    [ -e "$p" ] || grep -qx "$p" "$run/created-paths" 2>/dev/null || echo "$p" >>"$run/created-paths"
  done

  [ -z "$node2_node" ] || start_node2_engine "$cgroup_driver"

  mkdir -p "$run/kubelet" "$run/dockershim" "$run/volume-plugins"
  kubelet1_config "$cgroup_driver" >"$run/kubelet-config.yaml"
  settings "$cgroup_driver" >"$run/settings"
  log "starting kubelet (node $node, pods on the Docker engine)"
  launch kubelet "$bin/kubelet" \
    --config="$run/kubelet-config.yaml" \
    --kubeconfig="$pki/kubelet.kubeconfig" \
    --hostname-override="$node" \
    --container-runtime=docker --docker-endpoint="unix://$docker_sock" \
    --pod-infra-container-image="$pause_image" \
    --root-dir="$run/kubelet" \
    --cert-dir="$run/kubelet-pki" \
    --experimental-dockershim-root-directory="$run/dockershim" \
    --container-runtime-endpoint="unix://$run/dockershim.sock" \
    --image-service-endpoint="unix://$run/dockershim.sock" \
    --v=1
  [ -z "$node2_node" ] || start_node2_kubelet "$cgroup_driver" "$node2_node"

  wait_for kubelet "Ready and schedulable node $node" node_schedulable "$node"
  log "node $node Ready and schedulable after $((SECONDS - t0)) s"
  if [ -n "$node2_node" ]; then
    wait_for node2-kubelet "Ready and schedulable node $node2_node" node_schedulable "$node2_node"
    log "node $node2_node Ready and schedulable after $((SECONDS - t0)) s"
  fi
  wait_for kube-controller-manager "default ServiceAccount" default_sa
  code="$(curl -s -o /dev/null -w '%{http_code}' -m 5 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" \
    --key "$pki/admin.key" -X POST -H 'Content-Type: application/json' -d "$storage_class" \
    "$api/apis/storage.k8s.io/v1/storageclasses")"
  case "$code" in 201 | 409) ;; *) die "creating the StorageClass: HTTP $code" ;; esac
  local d
  for d in "${launched[@]}"; do running_pid "$d" >/dev/null || fail_with_log "$d" "$d exited"; done
  trap - EXIT
  log "cluster ready in $((SECONDS - t0)) s: $api, node $node (logs: $run)"
  echo "$kubeconfig"
}

# ------------------------------------------------------------------ stop

stop_all() {
  local quiet="${1:-}"
  mkdir -p "$run"

  # The kubelets first: they would restart the containers removed below.
  stop_daemons kubelet node2-kubelet
  stop_node2

  # The pod containers dockershim made (sandboxes and app containers, named
  # k8s_*). Only one kubelet can use an engine, so with none running they are
  # all left over from this one.
  local ids uids=""
  if timeout 10 "$docker_bin" info >/dev/null 2>&1; then
    if [ -n "$(live_kubelets)" ]; then
      log "warning: another kubelet runs on this machine; its pod containers are left alone"
    else
      ids="$("$docker_bin" ps -aq --filter label=io.kubernetes.docker.type)"
      if [ -n "$ids" ]; then
        # shellcheck disable=SC2086 # lists of IDs
        uids="$("$docker_bin" inspect --format '{{index .Config.Labels "io.kubernetes.pod.uid"}}' $ids | sort -u)"
        log "removing $(echo "$ids" | wc -w) pod containers"
        # shellcheck disable=SC2086
        "$docker_bin" rm -f -v $ids >/dev/null
      fi
    fi
  fi

  # The control plane, all at once: the next start wipes its state anyway.
  stop_daemons kube-scheduler kube-controller-manager kube-apiserver etcd

  # The kubelet's mounts (secret and token tmpfs volumes, its root directory
  # bound onto itself), deepest first.
  local m
  awk -v p="$run/kubelet" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: cannot unmount $m"; done
  if ! grep -q " $run/kubelet[ /]" /proc/self/mountinfo; then
    rm -rf "$run/kubelet/pods" "$run/dockershim/sandbox"
  fi

  # Pod log directories and links in /var/log.
  local uid l
  for uid in $uids; do
    for l in /var/log/containers/*.log; do
      [ -L "$l" ] && case "$(readlink "$l")" in *"_$uid/"*) rm -f "$l" ;; esac
    done
    rm -rf /var/log/pods/*_"$uid"
  done
  if [ -s "$run/created-paths" ]; then
    local d
    while read -r d; do
      [ "$d" = /var/lib/kubelet ] && rm -rf /var/lib/kubelet/device-plugins
      rmdir "$d" 2>/dev/null || true
    done <"$run/created-paths"
    rm -f "$run/created-paths"
  fi

  # The kubepods cgroups (empty once the containers are gone), deepest first.
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$d" ] && { find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; }
  done
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$d" ] && log "warning: $d is still there"
  done

  if [ -s "$run/sysctl.saved" ]; then
    local k v
    while read -r k v; do
      [ "$(cat "/proc/sys/$k")" = "$v" ] || echo "$v" >"/proc/sys/$k" 2>/dev/null || log "warning: cannot restore $k"
    done <"$run/sysctl.saved"
    rm -f "$run/sysctl.saved"
  fi
  [ -n "$quiet" ] || log "stopped"
}

stop() {
  [ "$(id -u)" -eq 0 ] || die "stop needs root"
  stop_all
}

# ------------------------------------------------------------------ status

status() {
  local d pid
  if built; then
    echo "build                    $k8s_version in $bin"
  else
    echo "build                    missing (start builds it)"
  fi
  if have_image "$pause_image"; then echo "pause image              $pause_image"; else echo "pause image              missing"; fi
  for d in "${daemons[@]}"; do
    if pid="$(running_pid "$d")"; then
      printf '%-24s running (pid %s, log %s)\n' "$d" "$pid" "$run/$d.log"
    else
      printf '%-24s stopped\n' "$d"
    fi
  done
  if [ -s "$pki/admin.crt" ] && api_ready; then
    echo "apiserver                ready at $api"
    local node stem
    for stem in kubelet kubelet2; do
      [ "$stem" = kubelet2 ] && [ "$nodes" = 1 ] && continue
      node="$(cat "$pki/$stem.node" 2>/dev/null || true)"
      if [ -n "$node" ] && node_schedulable "$node"; then
        echo "node                     $node Ready and schedulable"
      else
        echo "node                     ${node:-?} not ready"
      fi
    done
    echo "kubeconfig               $kubeconfig"
  else
    echo "apiserver                down"
  fi
}

# ------------------------------------------------------------------ commands

case "${1:-}" in
  start | stop)
    mkdir -p "$dir" "$run"
    # One start or stop at a time (tests may start the cluster in parallel);
    # the daemons do not inherit this descriptor.
    exec 9>"$dir/lock"
    flock -w 1800 9 || die "another test-cluster.sh held $dir/lock for 30 minutes"
    "$1"
    ;;
  load)
    # Images built after start (the tests build some): with no second node
    # running there is nothing to do, and a start that launches one later
    # copies the local/slipway-* images itself.
    shift
    [ "$nodes" = 2 ] && running_pid node2-dockerd >/dev/null || exit 0
    exec 9>"$dir/lock"
    flock -w 1800 9 || die "another test-cluster.sh held $dir/lock for 30 minutes"
    load "$@"
    ;;
  status) status ;;
  *) die "usage: scripts/test-cluster.sh start|stop|status|load IMAGE..." ;;
esac
