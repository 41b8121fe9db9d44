#!/usr/bin/env bash
# Set up agent-tracer on a Debian or Ubuntu machine, as root.
#
# Installs bcc and its Python bindings from the distribution, kernel headers
# for the running kernel where the distribution has them, makes a virtual
# environment in .venv that sees the distribution's bcc, installs the project
# into it, and checks that the BPF program compiles, loads and attaches.
# Running it again is harmless.
#
# Usage: sudo scripts/setup.sh [--demo]
#   --demo   run `agent-tracer demo` once set-up is done.
#
# Environment:
#   AGENT_TRACER_OFFLINE=1   install nothing from the network. Python
#                            packages come from AGENT_TRACER_WHEELHOUSE when
#                            it is set (a directory filled by
#                            `pip download`), else from the distribution
#                            (python3-psutil, python3-click, python3-msgpack,
#                            python3-pytest), which must be installed.
#                            The VM test stage uses it.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv="$repo/.venv"
offline=${AGENT_TRACER_OFFLINE:-0}
run_demo=0

for arg in "$@"; do
	case "$arg" in
	--demo) run_demo=1 ;;
	-h | --help)
		sed -n '2,18p' "$0"
		exit 0
		;;
	*)
		echo "setup.sh: unknown argument '$arg' (expected --demo)" >&2
		exit 2
		;;
	esac
done

if [ "$(id -u)" -ne 0 ]; then
	echo "setup.sh: must run as root (try: sudo $0 $*)" >&2
	exit 77
fi

log() { echo "setup: $*" >&2; }

install_packages() {
	if ! command -v apt-get >/dev/null; then
		log "no apt-get here: install bcc's Python bindings (python3-bcc), kernel headers and python3-venv with the distribution's package manager, then run this again"
		return
	fi

	local arch release wanted=(python3-bpfcc bpfcc-tools python3-venv python3-pip)
	arch=$(dpkg --print-architecture)
	release=$(uname -r)

	if [ "$offline" = 1 ]; then
		log "offline: skipping package installation"
		return
	fi

	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >&2

	# Headers for the running kernel where the distribution packages them;
	# otherwise the newest ones it has (see tracer/kernel_headers.py).
	if apt-cache show "linux-headers-$release" >/dev/null 2>&1; then
		wanted+=("linux-headers-$release")
	elif apt-cache show "linux-headers-$arch" >/dev/null 2>&1; then
		wanted+=("linux-headers-$arch")
	elif apt-cache show linux-headers-generic >/dev/null 2>&1; then
		wanted+=(linux-headers-generic)
	fi

	log "installing ${wanted[*]}"
	apt-get install -y -q --no-install-recommends "${wanted[@]}" >&2
}

make_venv() {
	if [ ! -x "$venv/bin/python" ]; then
		log "creating $venv (with system site packages, so that bcc imports)"
		/usr/bin/python3 -m venv --system-site-packages "$venv"
	fi

	if [ "$offline" = 1 ] && [ -n "${AGENT_TRACER_WHEELHOUSE:-}" ]; then
		"$venv/bin/pip" install -q --no-index --find-links "$AGENT_TRACER_WHEELHOUSE" \
			--no-build-isolation -e "$repo[test,plot,rich,metrics]" >&2
	elif [ "$offline" = 1 ]; then
		"$venv/bin/pip" install -q --no-index --no-deps --no-build-isolation -e "$repo" >&2
	else
		"$venv/bin/pip" install -q -e "$repo[test,plot,rich,metrics]" >&2
	fi

	ln -sf "$venv/bin/agent-tracer" /usr/local/bin/agent-tracer
}

install_packages
make_venv

# `check` mounts tracefs when it is missing, prepares kernel headers for BCC
# when the running kernel has none, then compiles, loads, attaches and
# detaches the BPF program.
"$venv/bin/agent-tracer" check

log "ready: $venv/bin/agent-tracer (also linked as /usr/local/bin/agent-tracer)"

if [ "$run_demo" = 1 ]; then
	exec "$venv/bin/agent-tracer" demo
fi
