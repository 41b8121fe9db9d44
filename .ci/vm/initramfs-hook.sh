#!/bin/sh
# initramfs-tools hook, installed in the VM image by build-image.sh. With
# MODULES=list the initramfs contains only the drivers listed here and their
# dependencies instead of every storage driver the kernel has, so it is
# smaller and loads faster under TCG.
case "$1" in
prereqs) exit 0 ;;
esac

. /usr/share/initramfs-tools/hook-functions
manual_add_modules virtio_pci virtio_blk ext4 9p 9pnet_virtio
