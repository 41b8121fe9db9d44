#!/usr/bin/env bash
# Provision a Debian or Ubuntu machine for agent-tracer, as root: install the
# headers of the running kernel, then run scripts/setup.sh (bcc, the virtual
# environment, `agent-tracer check`).
#
# The Vagrantfile runs it once as the "install" provisioner. The VM test
# stage (.ci/vm) runs it in its guest with AGENT_TRACER_OFFLINE=1, so both
# prove the same steps.
#
# Usage: sudo vagrant/install.sh [REPO]
#   REPO   the agent-tracer checkout (default: the parent of this script's
#          directory; Vagrant uploads the script elsewhere, so it passes REPO).
#
# Environment:
#   AGENT_TRACER_OFFLINE=1   install nothing: the headers and the packages
#                            that scripts/setup.sh lists must be there already.
set -eux -o pipefail

repo=${1:-$(cd "$(dirname "$0")/.." && pwd)}
offline=${AGENT_TRACER_OFFLINE:-0}
release=$(uname -r)

if [ "$(id -u)" -ne 0 ]; then
	echo "install.sh: must run as root (try: sudo $0 $*)" >&2
	exit 2
fi

if [ ! -x "$repo/scripts/setup.sh" ]; then
	echo "install.sh: $repo/scripts/setup.sh not found; pass the agent-tracer checkout as the first argument" >&2
	exit 2
fi

# BCC compiles against /lib/modules/RELEASE/build, which the headers package
# of exactly the running kernel provides.
if [ -d "/lib/modules/$release/build/include" ]; then
	echo "install.sh: headers for kernel $release are installed"
elif [ "$offline" = 1 ]; then
	echo "install.sh: no headers for the running kernel $release in /lib/modules/$release/build and AGENT_TRACER_OFFLINE=1: install linux-headers-$release first" >&2
	exit 1
else
	# NOTE: only the offline branch above runs in CI (the qemu guest has its
	# headers and no network); this one is untested so far.
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q

	if apt-cache show "linux-headers-$release" >/dev/null 2>&1; then
		apt-get install -y -q --no-install-recommends "linux-headers-$release"
	else
		# The box's kernel is older than the archive's, which keeps only the
		# headers of its current kernel. Install that kernel and its headers
		# (the meta-packages named after the flavour: amd64, cloud-amd64,
		# generic) and ask for a reboot into it.
		flavour=$(echo "$release" | sed -E 's/^[0-9.]+-[0-9]+-//')
		apt-get install -y -q "linux-image-$flavour" "linux-headers-$flavour"
		set +x
		echo "install.sh: linux-headers-$release is no longer in the archive, so the newest" >&2
		echo "install.sh: linux-image-$flavour and its headers are now installed. Boot into that kernel and" >&2
		echo "install.sh: run this again: vagrant reload --provision-with install" >&2
		exit 1
	fi
fi

"$repo/scripts/setup.sh"
