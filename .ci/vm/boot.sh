#!/bin/sh
# First program of the test VM (PID 1), installed in the image by
# build-image.sh. It mounts the repository share and hands over to the
# repository's own .ci/vm/guest-init.sh, so that the guest steps always come
# from the tree under test and changing them needs no image rebuild.
#
# If the share or the script is missing, it powers off at once: the host then
# finds no exit code and reports the boot as failed.

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

# The initramfs moves /proc, /sys and /dev into the new root; mount them when
# it did not.
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev

modprobe 9pnet_virtio
mkdir -p /mnt/repo

if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro repo /mnt/repo; then
	echo "boot: mounting the repository share (tag 'repo') failed; powering off" >/dev/console
elif [ ! -x /mnt/repo/.ci/vm/guest-init.sh ]; then
	echo "boot: /mnt/repo/.ci/vm/guest-init.sh is missing or not executable; powering off" >/dev/console
else
	exec /mnt/repo/.ci/vm/guest-init.sh
fi

mount -o remount,ro /
poweroff -f -d
