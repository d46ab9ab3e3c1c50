#!/usr/bin/env bash
# Builds the Docker images of docker/compose.yml and of the tests' Docker broker on a machine
# that reaches package registries (Debian's archive, the Python package index, Maven Central)
# but no image registry. With an image registry you do not need this script:
# `docker compose -f docker/compose.yml build` uses the public python and apache/kafka images.
#
#   bash docker/build-images.sh              build what is missing, skip what exists
#   bash docker/build-images.sh --rebuild    build every image again
#
# Images (names overridable, see below):
#   aion-local/debian:bookworm   a minimal Debian bookworm made with debootstrap, `docker import`ed
#   aion-local/python:3.11       + Debian's python3 (3.11) in a venv on PATH, like python:3.11-slim
#   aion-local/kafka:4.1.1       + Java 17 and the Kafka jars kafka-local resolves with Maven;
#                                configured with KAFKA_* variables like apache/kafka:4.1.1
#   aion-streams:dev             docker/Dockerfile on aion-local/python:3.11 (the project's wheel);
#                                rebuilt when its sources changed
# and prints the variables that make compose and the tests use them:
#   AION_BASE_IMAGE, AION_KAFKA_IMAGE (compose), AION_TEST_KAFKA_IMAGE (tests).
#
# Needs root (debootstrap, chroot), a running Docker engine, debootstrap, Maven and Java
# (as kafka-local does). The Debian mirror is $AION_DEBIAN_MIRROR, else the first bookworm
# mirror of this machine's apt sources. Certificates this machine adds to its trust store
# (/usr/local/share/ca-certificates) are added to the base image, so that the images' apt and
# pip trust the same servers the host does (e.g. behind a TLS-inspecting proxy).
#
# Environment: AION_DEBIAN_MIRROR, AION_LOCAL_BASE_IMAGE, AION_LOCAL_PYTHON_IMAGE,
# AION_LOCAL_KAFKA_IMAGE, AION_IMAGE (the project's), AION_IMAGES_WORKDIR (scratch folder,
# default /var/tmp/aion-images; removed parts after each build).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
SUITE=bookworm
BASE_IMAGE="${AION_LOCAL_BASE_IMAGE:-aion-local/debian:bookworm}"
PYTHON_IMAGE="${AION_LOCAL_PYTHON_IMAGE:-aion-local/python:3.11}"
KAFKA_IMAGE="${AION_LOCAL_KAFKA_IMAGE:-aion-local/kafka:4.1.1}"
PROJECT_IMAGE="${AION_IMAGE:-aion-streams:dev}"
WORK="${AION_IMAGES_WORKDIR:-/var/tmp/aion-images}"

REBUILD=0
for arg in "$@"; do
    case "$arg" in
        --rebuild) REBUILD=1 ;;
        -h|--help) sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-images: unknown argument $arg (--rebuild, --help)" >&2; exit 2 ;;
    esac
done

say() { printf 'build-images: %s\n' "$*"; }
die() { printf 'build-images: error: %s\n' "$*" >&2; exit 1; }

# Legacy builder on purpose: it needs no buildx plugin and no frontend image from a registry.
export DOCKER_BUILDKIT=0
command -v docker >/dev/null || die "docker not found (the Docker client)"
docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd, e.g. 'dockerd >/var/log/dockerd.log 2>&1 &')"

SUMMARY=()
record() { SUMMARY+=("$(printf '%-28s %-8s %s' "$1" "$2" "$3")"); }
# docker build, quiet, without the legacy builder's deprecation notice.
docker_build() {
    docker build -q "$@" 2> >(grep -v -E 'DEPRECATED: The legacy builder|BuildKit is currently disabled|environment-variable\.$|^$' >&2) >/dev/null
}
exists() { docker image inspect "$1" >/dev/null 2>&1; }
size_of() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1/1e6}'; }

# ------------------------------------------------------------------ the Debian mirror

# The mirror of this machine's apt sources that serves $SUITE (deb822 .sources or one-line
# sources.list); never written into a file of the repository.
debian_mirror() {
    if [[ -n "${AION_DEBIAN_MIRROR:-}" ]]; then echo "$AION_DEBIAN_MIRROR"; return; fi
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        # deb822 stanzas: the URIs of a stanza whose Suites include the bare suite name.
        awk -v suite="$SUITE" '
            /^[[:space:]]*$/ { if (ok && uri != "") { print uri; exit } ok = 0; uri = ""; next }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) ok = 1 }
            END { if (ok && uri != "") print uri }' "$f" | head -n 1
    done | head -n 1 | grep . && return
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk -v suite="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i == suite) { print ($2 ~ /^\[/ ? $3 : $2); exit } }' \
        | head -n 1 | grep . && return
    return 1
}

# ------------------------------------------------------------------ 1. base image

build_base() {
    [[ $EUID == 0 ]] || die "debootstrap needs root"
    command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
    local mirror rootfs
    mirror="$(debian_mirror)" || die "no $SUITE mirror in /etc/apt/sources.list*; set AION_DEBIAN_MIRROR"
    rootfs="$WORK/rootfs"
    rm -rf "$rootfs"
    mkdir -p "$rootfs"
    say "debootstrap $SUITE (minbase) into $rootfs ..."
    debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$rootfs" "$mirror" \
        >"$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log: $WORK/debootstrap.log)"; }

    # Slim like Debian's own container images: no docs, man pages or translations now or in
    # later installs, no recommended packages, no package lists or caches in the image.
    cat > "$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    cat > "$rootfs/etc/apt/apt.conf.d/90slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
    # Trust what the host trusts beyond the distribution's bundle.
    local extra=0 crt
    for crt in /usr/local/share/ca-certificates/*.crt; do
        [[ -f "$crt" ]] || continue
        cp "$crt" "$rootfs/usr/local/share/ca-certificates/"
        extra=$((extra + 1))
    done
    if ((extra > 0)); then
        chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in the base image"
    fi
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/doc/*/[!c]* \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log "$rootfs"/tmp/*
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +

    say "docker import -> $BASE_IMAGE"
    tar -C "$rootfs" --numeric-owner -c . \
        | docker import -c 'CMD ["bash"]' -c 'ENV LANG=C.UTF-8' -m "debootstrap --variant=minbase $SUITE" - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
}

# ------------------------------------------------------------------ 2. python image

build_python() {
    say "docker build -> $PYTHON_IMAGE"
    docker_build --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$PYTHON_IMAGE" "$HERE/images/python"
}

# ------------------------------------------------------------------ 3. kafka image

build_kafka() {
    command -v mvn >/dev/null || die "mvn not found (apt-get install maven): it resolves the Kafka jars"
    local ctx="$WORK/kafka-context"
    rm -rf "$ctx"
    mkdir -p "$ctx"
    cp "$HERE/images/kafka/"* "$ctx/"
    rm "$ctx/pom.xml"
    # kafka-local's pom (the broker and its logging) is the parent of the image's pom, which adds
    # Kafka's command-line tools (kafka-topics.sh); the same local Maven repository serves both.
    say "resolving the Kafka jars with Maven ..."
    mvn -q -B -f "$HERE/images/kafka/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$ctx/libs" -DincludeScope=runtime >"$WORK/mvn.log" 2>&1 \
        || { tail -n 30 "$WORK/mvn.log" >&2; die "Maven could not resolve the Kafka jars (log: $WORK/mvn.log)"; }
    say "docker build -> $KAFKA_IMAGE ($(ls "$ctx/libs" | wc -l) jars)"
    docker_build --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$KAFKA_IMAGE" "$ctx"
    rm -rf "$ctx"
}

# ------------------------------------------------------------------ 4. the project's image

# The files docker/Dockerfile uses (as docker/Dockerfile.dockerignore lets through).
project_files() {
    cd "$REPO"
    printf '%s\n' pyproject.toml setup.py MANIFEST.in README.md docker/Dockerfile
    find schemas streams -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' \
        ! -path 'streams/aion/_schemas/*' | LC_ALL=C sort
}

source_digest() {
    (cd "$REPO" && project_files | tr '\n' '\0' | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

build_project() {
    local digest="$1"
    local previous
    previous="$(docker image inspect -f '{{.Id}}' "$PROJECT_IMAGE" 2>/dev/null || true)"
    say "docker build -f docker/Dockerfile -> $PROJECT_IMAGE (sources $digest)"
    # The context is exactly the files the Dockerfile needs, piped as a tar: the same for the
    # legacy builder (which ignores Dockerfile.dockerignore) as for BuildKit.
    (cd "$REPO" && project_files | tar -c --no-recursion -T - -f -) \
        | docker_build --build-arg "BASE_IMAGE=$PYTHON_IMAGE" --label "aion.sources=$digest" \
            -f docker/Dockerfile -t "$PROJECT_IMAGE" -
    # The legacy builder keeps the wheel stage as an untagged image; BuildKit keeps none.
    docker image prune -f --filter label=aion.stage=wheel >/dev/null
    # The image it replaces, unless something else still uses it.
    if [[ -n "$previous" && "$previous" != "$(docker image inspect -f '{{.Id}}' "$PROJECT_IMAGE")" ]]; then
        docker rmi "$previous" >/dev/null 2>&1 || true
    fi
}

# ------------------------------------------------------------------ run

mkdir -p "$WORK"
total_started=$SECONDS

step() {  # step IMAGE FUNCTION [needs-rebuild-reason]
    local image="$1" fn="$2" reason="${3:-}"
    if [[ $REBUILD == 0 && -z "$reason" ]] && exists "$image"; then
        record "$image" kept "$(size_of "$image")"
        return
    fi
    local t=$SECONDS previous
    previous="$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)"
    "$fn"
    [[ -z "$previous" || "$previous" == "$(docker image inspect -f '{{.Id}}' "$image")" ]] || REPLACED+=("$previous")
    record "$image" built "$(size_of "$image"), $((SECONDS - t)) s"
}
REPLACED=()  # ids of the images a rebuild replaced, removed at the end (children first)

step "$BASE_IMAGE" build_base
step "$PYTHON_IMAGE" build_python
step "$KAFKA_IMAGE" build_kafka

digest="$(source_digest)"
stale=""
if exists "$PROJECT_IMAGE" && [[ "$(docker image inspect -f '{{index .Config.Labels "aion.sources"}}' "$PROJECT_IMAGE")" != "$digest" ]]; then
    stale="sources changed"
fi
t=$SECONDS
if [[ $REBUILD == 1 || -n "$stale" ]] || ! exists "$PROJECT_IMAGE"; then
    build_project "$digest"
    record "$PROJECT_IMAGE" built "$(size_of "$PROJECT_IMAGE"), $((SECONDS - t)) s"
else
    record "$PROJECT_IMAGE" kept "$(size_of "$PROJECT_IMAGE") (sources unchanged)"
fi

for ((i = ${#REPLACED[@]} - 1; i >= 0; i--)); do
    docker rmi "${REPLACED[$i]}" >/dev/null 2>&1 || true   # still used by a container: kept
done

say "done in $((SECONDS - total_started)) s:"
printf '  %s\n' "${SUMMARY[@]}"
cat <<EOF
build-images: to use them:
  export AION_BASE_IMAGE=$PYTHON_IMAGE AION_KAFKA_IMAGE=$KAFKA_IMAGE AION_TEST_KAFKA_IMAGE=$KAFKA_IMAGE
EOF
