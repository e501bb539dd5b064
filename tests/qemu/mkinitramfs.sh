#!/bin/sh
# Builds the guest of the QEMU end-to-end test: compiles tests/qemu/workload.c
# statically and packs it with busybox-static and a tiny /init into a newc
# cpio archive, the initramfs for the distribution's cloud kernel.
#
# Usage: tests/qemu/mkinitramfs.sh OUTDIR
#   writes OUTDIR/workload (static binary) and OUTDIR/initramfs.cpio.gz
#   and prints the path of the initramfs on stdout.
# The guest's /init reads its parameters from the kernel command line:
#   snapwork.mb=MiB snapwork.permille=N snapwork.vfrac=N  (see workload.c)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: mkinitramfs.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
busybox=$(command -v busybox || true)
if [ -z "$busybox" ] || ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked'; then
	busybox=/bin/busybox
fi
[ -x "$busybox" ] || { echo "mkinitramfs: busybox-static is missing (sh contrib/deps.sh qemu)" >&2; exit 1; }

gcc -static -O2 -Wall -Wextra -o "$out/workload" "$here/workload.c"

root=$out/root
rm -rf "$root"
mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/tmp"
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$out/workload" "$root/bin/workload"
# The kernel opens /dev/console for init before anything is mounted; without
# the node init would start with no stdin/stdout (needs root to create).
mknod "$root/dev/console" c 5 1 2>/dev/null || true
cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mb=192 permille=10 vfrac=4
for a in $(/bin/busybox cat /proc/cmdline); do
	case $a in
	snapwork.mb=*) mb=${a#*=} ;;
	snapwork.permille=*) permille=${a#*=} ;;
	snapwork.vfrac=*) vfrac=${a#*=} ;;
	esac
done
echo "snapwork init: $(/bin/busybox cat /proc/meminfo | /bin/busybox head -n 1)"
/bin/workload "$mb" "$permille" "$vfrac"
echo "snapwork exited rc=$?"
# init must never exit (that panics the kernel and hides the message).
while :; do /bin/busybox sleep 3600; done
INIT
chmod 755 "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 >"$out/initramfs.cpio.gz"
rm -rf "$root"
echo "$out/initramfs.cpio.gz"
