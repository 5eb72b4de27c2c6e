#!/usr/bin/env bash
# build.sh SUITE builds the local RabbitMQ and HAProxy images from one
# Debian suite, with nothing pulled from a registry:
#
#   1. debootstrap a minimal root filesystem holding rabbitmq-server and haproxy;
#   2. `docker import` it as rabbitmq-ha-base:SUITE-local;
#   3. add the thin layers in rabbitmq/ and haproxy/, which give each image the
#      official image's contract (docker-library/rabbitmq, docker-library/haproxy).
#
# The tags name the packaged versions and end in -local, e.g. rabbitmq:3.10-local.
# An image that already exists is not rebuilt, unless its layer's files
# changed (a hash of them is a label of the image); FORCE=1 rebuilds all.
set -euo pipefail

suite=${1:?usage: build.sh SUITE (bookworm, trixie or sid)}
here=$(cd "$(dirname "$0")" && pwd)
work=${IMAGES_WORKDIR:-/var/tmp/rabbitmq-ha-images}
base="rabbitmq-ha-base:${suite}-local"

log() { printf '[images %s] %s\n' "$suite" "$*" >&2; }

# mirror prints the Debian mirror this machine's apt already uses, so the
# build reaches exactly the package source the machine is set up for.
mirror() {
	local uri
	uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v -- '-security' | head -n 1 || true)
	[ -n "$uri" ] || uri=$(grep -hsE '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v -- '-security' | head -n 1 || true)
	[ -n "$uri" ] || { echo "build.sh: no Debian mirror found in /etc/apt sources" >&2; exit 1; }
	printf '%s\n' "$uri"
}

exists() { docker image inspect "$1" >/dev/null 2>&1; }

# Step 1 and 2: the base image.
if [ "${FORCE:-0}" = 1 ] || ! exists "$base"; then
	rootfs="$work/$suite"
	rm -rf "$rootfs"
	mkdir -p "$rootfs"
	log "debootstrap $suite into $rootfs (a few minutes)"
	debootstrap --variant=minbase --include=rabbitmq-server,haproxy "$suite" "$rootfs" "$(mirror)" >"$work/$suite.debootstrap.log" 2>&1 ||
		{ tail -n 30 "$work/$suite.debootstrap.log" >&2; exit 1; }
	# Package caches and lists are not needed at run time.
	rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
	log "docker import $base"
	tar -C "$rootfs" -c . | docker import - "$base" >/dev/null
	rm -rf "$rootfs"
else
	log "$base exists"
fi

# pkgver prints the major.minor version of a package inside the base image.
pkgver() {
	docker run --rm "$base" dpkg-query -W -f '${Version}' "$1" | sed -E 's/^([0-9]+:)?([0-9]+\.[0-9]+).*/\2/'
}

# pkgfull prints a package's upstream version (3.10.8): no epoch, no revision.
pkgfull() {
	docker run --rm "$base" dpkg-query -W -f '${Version}' "$1" | sed -E 's/^([0-9]+:)?([^-+~]+).*/\2/'
}

# Step 3: the thin layers. VERSION becomes the image's RABBITMQ_VERSION or
# HAPROXY_VERSION, as in the official images.
build() {
	local tag=$1 dir=$2 version=$3 hash
	hash=$(cd "$dir" && sha256sum -- * | sha256sum | cut -c1-16)
	if [ "${FORCE:-0}" != 1 ] && exists "$tag" &&
		[ "$(docker image inspect -f '{{index .Config.Labels "org.rabbitmq-ha.layer"}}' "$tag")" = "$hash" ]; then
		log "$tag exists"
		return
	fi
	log "docker build $tag"
	DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$base" --build-arg "VERSION=$version" \
		--build-arg "MIRROR=$(mirror)" --build-arg "SUITE=$suite" \
		--label "org.rabbitmq-ha.suite=$suite" --label "org.rabbitmq-ha.layer=$hash" \
		-t "$tag" "$dir" >/dev/null 2>&1
}

build "rabbitmq:$(pkgver rabbitmq-server)-local" "$here/rabbitmq" "$(pkgfull rabbitmq-server)"
build "haproxy:$(pkgver haproxy)-local" "$here/haproxy" "$(pkgfull haproxy)"
# The tests' Docker host in a container (a daemon they may restart), from
# the suite whose docker.io matches the Docker Engine here (20.10).
if [ "$suite" = bookworm ]; then
	build "rabbitmq-ha-dockerhost:$suite-local" "$here/dockerhost" "$suite"
fi
