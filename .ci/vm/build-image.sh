#!/usr/bin/env bash
# Build the Debian 12 disk image that the VM test stage boots, or reuse the
# cached one.
#
# The image is a Debian 12 (bookworm) root filesystem made with mmdebstrap
# from the packages in packages.txt, with bookworm-security in its sources so
# that linux-image-amd64 and linux-headers-amd64 have the same version. Its
# kernel and a small initramfs are copied out so that qemu can boot them
# directly. The root filesystem goes into a sparse raw ext4 disk.
#
# The image is cached in a directory named after a hash of packages.txt,
# this script, boot.sh and initramfs-hook.sh, so changing any of them
# builds a new image. The archive moves on (new kernels, security fixes)
# without changing that hash: use --rebuild to pick up its current state.
#
# Usage: sudo .ci/vm/build-image.sh [--rebuild]
#   Prints the image directory on stdout; progress goes to stderr.
#
# Environment:
#   AGENT_TRACER_VM_CACHE   cache directory (default /var/cache/agent-tracer-vm)
#   AGENT_TRACER_VM_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#   AGENT_TRACER_VM_SECURITY_MIRROR
#                           security mirror (default http://deb.debian.org/debian-security)
#
# The image directory contains disk.raw, vmlinuz, initrd.img,
# kernel-release (the guest's `uname -r`), packages.lst (every installed
# package and version) and build.log.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${AGENT_TRACER_VM_CACHE:-/var/cache/agent-tracer-vm}
mirror=${AGENT_TRACER_VM_MIRROR:-http://deb.debian.org/debian}
security_mirror=${AGENT_TRACER_VM_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
disk_size=4G
rebuild=0

log() { echo "build-image: $*" >&2; }

for arg in "$@"; do
	case "$arg" in
	--rebuild) rebuild=1 ;;
	-h | --help)
		awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
		exit 0
		;;
	*)
		echo "build-image.sh: unknown argument '$arg' (expected --rebuild)" >&2
		exit 2
		;;
	esac
done

if [ "$(id -u)" -ne 0 ]; then
	echo "build-image.sh: must run as root (mmdebstrap installs packages as root); try: sudo $0 $*" >&2
	exit 2
fi

for tool in mmdebstrap mkfs.ext4; do
	if ! command -v "$tool" >/dev/null; then
		echo "build-image.sh: $tool not found; install it with: apt-get install mmdebstrap e2fsprogs" >&2
		exit 2
	fi
done

# The package list without comments and blank lines, comma-separated.
packages=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$here/packages.txt" | paste -sd, -)

key=$(cat "$here/packages.txt" "$here/build-image.sh" "$here/boot.sh" "$here/initramfs-hook.sh" | sha256sum | cut -c1-16)
image="$cache/image-$key"

mkdir -p "$cache"

# One build at a time per cache directory; a second caller waits, then
# reuses the image the first one built.
exec 9>"$cache/.lock"
flock 9

if [ "$rebuild" = 0 ] && [ -f "$image/complete" ]; then
	log "reusing $image (kernel $(cat "$image/kernel-release"))"
	echo "$image"
	exit 0
fi

work="$cache/build-$key"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

log "building $image (log: $work/build.log, moved into the image directory on success)"
start=$SECONDS

# mmdebstrap writes the root filesystem into $work/rootfs. The initramfs
# configuration goes in before the kernel is installed, so that the kernel's
# own postinst builds the small initramfs once. Documentation, man pages and
# translations are left out because nothing in the guest reads them.
mmdebstrap \
	--variant=minbase \
	--include="$packages" \
	--aptopt='Acquire::Retries "3"' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools/hooks"' \
	--essential-hook='echo MODULES=list > "$1/etc/initramfs-tools/conf.d/agent-tracer-vm"' \
	--essential-hook="upload '$here/initramfs-hook.sh' /etc/initramfs-tools/hooks/agent-tracer-vm" \
	--essential-hook='chmod 755 "$1/etc/initramfs-tools/hooks/agent-tracer-vm"' \
	--customize-hook="upload '$here/boot.sh' /usr/local/sbin/agent-tracer-vm-boot" \
	--customize-hook='chmod 755 "$1/usr/local/sbin/agent-tracer-vm-boot"' \
	--customize-hook='echo agent-tracer-vm > "$1/etc/hostname"' \
	--customize-hook='printf "127.0.0.1\tlocalhost\n127.0.1.1\tagent-tracer-vm\n" > "$1/etc/hosts"' \
	--customize-hook='printf "LABEL=agent-tracer\t/\text4\tdefaults\t0\t1\n" > "$1/etc/fstab"' \
	--customize-hook='chroot "$1" useradd --create-home --shell /bin/bash tester' \
	--customize-hook='chroot "$1" dpkg-query -W > "$1/root/packages.lst"' \
	bookworm "$work/rootfs" \
	"deb $mirror bookworm main" \
	"deb $mirror bookworm-updates main" \
	"deb $security_mirror bookworm-security main" \
	>"$work/build.log" 2>&1 || {
	tail -n 40 "$work/build.log" >&2
	log "mmdebstrap failed; the last lines of its log are above"
	exit 1
}
log "root filesystem ready after $((SECONDS - start)) s"

# Exactly one kernel is installed, so the globs match one file each.
mkdir -p "$work/image"
release=$(ls "$work/rootfs/lib/modules")
if [ "$(echo "$release" | wc -w)" -ne 1 ]; then
	log "expected one kernel in the image, found: $release"
	exit 1
fi
if [ ! -d "$work/rootfs/usr/src/linux-headers-$release" ]; then
	log "no headers for kernel $release in the image; check that bookworm-security is in the sources"
	exit 1
fi
echo "$release" >"$work/image/kernel-release"
cp "$work/rootfs/boot/vmlinuz-$release" "$work/image/vmlinuz"
cp "$work/rootfs/boot/initrd.img-$release" "$work/image/initrd.img"
mv "$work/rootfs/root/packages.lst" "$work/image/packages.lst"

# A sparse file: only the blocks mkfs writes take space on the host.
truncate -s "$disk_size" "$work/image/disk.raw"
mkfs.ext4 -q -F -L agent-tracer -E root_owner=0:0 -d "$work/rootfs" "$work/image/disk.raw" >>"$work/build.log" 2>&1
rm -rf "$work/rootfs"
log "disk ready after $((SECONDS - start)) s: $(du -h "$work/image/disk.raw" | cut -f1) used of $disk_size"

mv "$work/build.log" "$work/image/build.log"
rm -rf "$image"
mv "$work/image" "$image"
touch "$image/complete"

# Images built from older inputs are of no further use.
for old in "$cache"/image-*; do
	if [ "$old" != "$image" ]; then
		log "removing the outdated image $old"
		rm -rf "$old"
	fi
done

log "built $image in $((SECONDS - start)) s (kernel $release)"
echo "$image"
