#!/usr/bin/env bash
# system-deps.sh installs the Debian packages that `make` and CI need, and
# only those missing: one list for both, so they cannot drift apart.
#
#   debootstrap:  images/build.sh builds the images from Debian packages
#   haproxy:      the tests check the rendered haproxy.cfg with haproxy -c
#   ShellCheck:   the tests check the rendered and committed shell scripts
#   docker-compose: the bench runs the compose recipe it compares against
#   iproute2, util-linux, procps, e2fsprogs: the fault matrix's ip (in a
#                 container's namespace, through nsenter), fallocate, pgrep,
#                 mount and mkfs.ext4 (a small loop-mounted data volume)
#
# It needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(debootstrap haproxy shellcheck docker-compose iproute2 util-linux procps e2fsprogs)
missing=()
for pkg in "${packages[@]}"; do
	dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
((${#missing[@]})) || exit 0

sudo=()
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || {
		echo "system-deps.sh: missing ${missing[*]}; run as root, or install them with apt-get" >&2
		exit 1
	}
	sudo=(sudo)
fi
echo "system-deps.sh: installing ${missing[*]} (apt-get)" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Only haproxy's binary is wanted (haproxy -c), not the service its package
# starts on the host.
if [[ " ${missing[*]} " == *" haproxy "* ]] && command -v systemctl >/dev/null 2>&1; then
	"${sudo[@]}" systemctl disable --now haproxy >/dev/null 2>&1 || true
fi
if [[ " ${missing[*]} " == *" haproxy "* ]] && command -v service >/dev/null 2>&1; then
	"${sudo[@]}" service haproxy stop >/dev/null 2>&1 || true
fi
