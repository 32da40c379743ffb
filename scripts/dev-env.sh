#!/usr/bin/env bash
# The development environment slipway's runs and tests need, on a Debian
# machine: a Docker engine, the local images the examples and tests use (no
# image can be pulled here), and a local registry for push tests.
#
# The local images, all labelled dev.slipway.image:
#   local/busybox       FROM scratch + Debian's static busybox
#   local/debian        Debian bookworm (minbase), debootstrapped
#   local/debian:trixie Debian trixie (minbase), debootstrapped
#   local/node:18       bookworm's nodejs and npm   (scripts/images/node)
#   local/node:20       trixie's nodejs and npm     (scripts/images/node)
#   local/postgres:15   bookworm's postgresql-15    (scripts/images/postgres)
# The last three are built with `docker build` from the recipes in
# scripts/images/, which install Debian's packages with apt (the engine's
# containers reach deb.debian.org); a recipe that changed is built again.
#
#   scripts/dev-env.sh          install what is missing, start what is not
#                               running, build missing images (idempotent,
#                               a few seconds when everything is there)
#   scripts/dev-env.sh status   say what is installed and running
#   scripts/dev-env.sh stop     stop the engine and registry this script
#                               started (by their recorded PIDs), nothing else
#
# Everything slow is cached outside the repository, under
# ${SLIPWAY_CACHE:-~/.cache/slipway}.
set -euo pipefail

cache="${SLIPWAY_CACHE:-$HOME/.cache/slipway}"
run="$cache/run"
mkdir -p "$cache" "$run"

# Debian's client matches Debian's engine; a newer client may be first on PATH.
docker_bin=/usr/bin/docker
registry_addr=127.0.0.1:5000
# Where the recipes of the images built with `docker build` live.
images_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/images"

log() { printf 'dev-env: %s\n' "$*" >&2; }
die() { printf 'dev-env: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ------------------------------------------------------------------ packages

# neovim: the editor the language server's test drives (tests/it/nvim.rs).
packages=(docker.io busybox-static docker-registry debootstrap curl neovim)

install_packages() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ------------------------------------------------------------------ engine

engine_answers() { timeout 10 "$docker_bin" info >/dev/null 2>&1; }

start_engine() {
  if engine_answers; then
    return 0
  fi
  [ -S /var/run/docker.sock ] && log "a docker socket exists but does not answer; starting dockerd"
  log "starting dockerd (log: $run/dockerd.log)"
  # setsid: the engine outlives this script and its terminal.
  as_root setsid dockerd --host=unix:///var/run/docker.sock >"$run/dockerd.log" 2>&1 </dev/null &
  echo $! >"$run/dockerd.pid"
  for _ in $(seq 1 120); do
    engine_answers && { log "engine up: $("$docker_bin" version --format '{{.Server.Version}}')"; return 0; }
    sleep 0.5
  done
  tail -n 20 "$run/dockerd.log" >&2 || true
  die "dockerd did not answer on /var/run/docker.sock within 60 s"
}

# ------------------------------------------------------------------ images

have_image() { "$docker_bin" image inspect "$1" >/dev/null 2>&1; }

# local/busybox: FROM scratch with Debian's static busybox and its applets.
build_busybox() {
  have_image local/busybox:latest && return 0
  log "building local/busybox"
  local ctx
  ctx="$(mktemp -d)"
  cp /bin/busybox "$ctx/busybox"
  cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "mkdir", "-p", "/usr/bin", "/sbin", "/usr/sbin", "/tmp", "/root"]
RUN ["/bin/busybox", "--install", "-s"]
ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin
LABEL dev.slipway.image="busybox"
CMD ["sh"]
EOF
  DOCKER_BUILDKIT=0 "$docker_bin" build -q -t local/busybox:latest "$ctx" >/dev/null
  rm -rf "$ctx"
}

# local/debian (bookworm) and local/debian:trixie: a minimal Debian made with
# debootstrap, for realistic examples; each suite's root file system is cached
# as a tarball, so it is debootstrapped once.
build_debian() {
  local suite="$1" tag="$2"
  have_image "$tag" && return 0
  local tarball="$cache/debian-$suite.tar"
  if [ ! -s "$tarball" ]; then
    log "debootstrapping Debian $suite (a few minutes, once)"
    local root="$cache/debian-$suite.rootfs"
    as_root rm -rf "$root"
    as_root debootstrap --variant=minbase "$suite" "$root" http://deb.debian.org/debian >"$run/debootstrap-$suite.log" 2>&1 ||
      { tail -n 20 "$run/debootstrap-$suite.log" >&2; die "debootstrap of $suite failed"; }
    as_root tar -C "$root" -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    as_root rm -rf "$root"
  fi
  log "importing $tag"
  local label="${tag#local/}"
  "$docker_bin" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL dev.slipway.image=\"${label%:latest}\"" \
    --change 'CMD ["bash"]' \
    "$tarball" "$tag" >/dev/null
}

# What an image built from a recipe is made of: the recipe's files, the build
# arguments and the base image's id. Stored as the label dev.slipway.recipe,
# so that a changed recipe or base is built again and an unchanged one is not.
recipe_digest() {
  local recipe="$1" base="$2"
  shift 2
  {
    (cd "$images_dir/$recipe" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
    printf '%s\n' "$@"
    "$docker_bin" image inspect -f '{{.Id}}' "$base"
  } | sha256sum | cut -c1-16
}

recipe_label() {
  "$docker_bin" image inspect -f '{{index .Config.Labels "dev.slipway.recipe"}}' "$1" 2>/dev/null || true
}

# build_recipe TAG RECIPE BASE WHAT [NAME=VALUE...]: builds scripts/images/RECIPE
# FROM BASE as TAG, with the build arguments given, unless TAG is already
# built from exactly that.
build_recipe() {
  local tag="$1" recipe="$2" base="$3" what="$4"
  shift 4
  local digest
  digest="$(recipe_digest "$recipe" "$base" "$@")"
  [ "$(recipe_label "$tag")" = "$digest" ] && return 0
  local args=(--build-arg "BASE=$base") a
  for a in "$@"; do args+=(--build-arg "$a"); done
  local started=$SECONDS logfile="$run/build-${tag//[\/:]/-}.log"
  log "building $tag from $what (apt inside the build; a minute or two, once; log: $logfile)"
  DOCKER_BUILDKIT=0 "$docker_bin" build --rm --force-rm "${args[@]}" \
    --label "dev.slipway.image=${tag#local/}" --label "dev.slipway.recipe=$digest" \
    -t "$tag" "$images_dir/$recipe" >"$logfile" 2>&1 ||
    { tail -n 30 "$logfile" >&2; die "building $tag failed"; }
  log "built $tag in $((SECONDS - started)) s: $("$docker_bin" run --rm --entrypoint sh "$tag" -c 'if command -v postgres >/dev/null; then postgres --version; else echo "node $(node --version), npm $(npm --version)"; fi')"
}

build_node() {
  build_recipe local/node:18 node local/debian:latest "Debian bookworm's nodejs and npm" NODE_MAJOR=18
  build_recipe local/node:20 node local/debian:trixie "Debian trixie's nodejs and npm" NODE_MAJOR=20
}

build_postgres() {
  build_recipe local/postgres:15 postgres local/debian:latest "Debian bookworm's postgresql-15"
}

# ------------------------------------------------------------------ registry

registry_answers() { curl -fsS -m 2 "http://$registry_addr/v2/" >/dev/null 2>&1; }

start_registry() {
  registry_answers && return 0
  local dir="$cache/registry"
  mkdir -p "$dir/data"
  # Loopback only, filesystem storage, no auth: the packaged config listens
  # on every interface and wants htpasswd.
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $registry_addr
EOF
  log "starting the registry on $registry_addr (log: $run/registry.log)"
  setsid docker-registry serve "$dir/config.yml" >"$run/registry.log" 2>&1 </dev/null &
  echo $! >"$run/registry.pid"
  for _ in $(seq 1 60); do
    registry_answers && return 0
    sleep 0.5
  done
  tail -n 20 "$run/registry.log" >&2 || true
  die "the registry did not answer on $registry_addr within 30 s"
}

# ------------------------------------------------------------------ commands

status() {
  for p in "${packages[@]}"; do
    printf '%-16s %s\n' "$p" "$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo missing)"
  done
  if engine_answers; then echo "engine           up ($("$docker_bin" version --format '{{.Server.Version}}'))"; else echo "engine           down"; fi
  local i
  for i in local/busybox local/debian local/debian:trixie; do
    if have_image "$i"; then printf '%-20s present\n' "$i"; else printf '%-20s missing\n' "$i"; fi
  done
  for i in local/node:18 local/node:20 local/postgres:15; do
    if ! have_image "$i"; then
      printf '%-20s missing\n' "$i"
    else
      printf '%-20s present (recipe %s)\n' "$i" "$(recipe_label "$i")"
    fi
  done
  if registry_answers; then echo "registry         up ($registry_addr)"; else echo "registry         down"; fi
}

# Stops a process this script started, by its recorded PID, if it is still
# the program we started.
stop_recorded() {
  local name="$1" program="$2" pidfile="$run/$1.pid"
  [ -f "$pidfile" ] || return 0
  local pid
  pid="$(cat "$pidfile")"
  if [ -n "$pid" ] && grep -q "$program" "/proc/$pid/cmdline" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    as_root kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  fi
  rm -f "$pidfile"
}

case "${1:-up}" in
  up)
    install_packages
    start_engine
    build_busybox
    build_debian bookworm local/debian:latest
    build_debian trixie local/debian:trixie
    build_node
    build_postgres
    start_registry
    status
    ;;
  status) status ;;
  stop)
    stop_recorded registry docker-registry
    stop_recorded dockerd dockerd
    ;;
  *) die "usage: scripts/dev-env.sh [up|status|stop]" ;;
esac
