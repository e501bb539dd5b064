#!/bin/sh
# 55-libvirt.sh: real libvirt (Debian's libvirtd, qemu:///system) saves
# into and restores from a snapfs mount.
#
# The guest is the one of 50-qemu.sh (the distribution's cloud kernel, an
# initramfs with tests/qemu/workload.c, which keeps a counter and checks
# its RAM against checksums it keeps, printing "snapwork counter=N
# verify=ok" every second on its serial port), defined as a libvirt domain
# of type 'qemu' (TCG). Saved with `virsh save` (first file: the base;
# then a patch) and `virsh save --bypass-cache` (O_DIRECT through libvirt's
# iohelper: aligned writes, ftruncate, fdatasync), each restored with
# `virsh restore` (also --bypass-cache); every restored guest must go on
# from its own counter with verify=ok. libvirt writes its save header with
# a "partial" magic, closes the file, reopens it and writes the final
# magic: the file must come out with the final one. A save with
# save_image_format = "gzip" must be named in snapfs's log as one that
# deltas cannot shrink.
#
# libvirtd runs here, not as a system service: in a private mount
# namespace (unshare -m), with empty directories bound over /etc/libvirt,
# /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt,
# so it neither sees nor touches the machine's libvirt, and everything it
# leaves goes with the namespace. qemu.conf keeps Debian's defaults (QEMU
# runs as libvirt-qemu, dynamic_ownership on) but turns off the security
# driver, cgroups and namespaces (none of which a CI container offers)
# and logs QEMU's output to files (no virtlogd needed).
# Exit 77 (skip) only when that cannot work at all: not root, no mount
# namespace, libvirt or QEMU not installable.
set -u
if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: libvirtd for qemu:///system needs root"; exit 77
fi
if [ -z "${SNAPFS_LIBVIRT_NS:-}" ]; then
	if ! sh contrib/deps.sh qemu libvirt >/tmp/snapfs-libvirt-deps.$$ 2>&1; then
		echo "SKIP: cannot install libvirt and QEMU (contrib/deps.sh qemu libvirt):"
		tail -n 5 /tmp/snapfs-libvirt-deps.$$; rm -f /tmp/snapfs-libvirt-deps.$$
		exit 77
	fi
	rm -f /tmp/snapfs-libvirt-deps.$$
	if ! unshare -m true 2>/dev/null; then
		echo "SKIP: no private mount namespace (unshare -m) to run libvirtd in"
		exit 77
	fi
	SNAPFS_LIBVIRT_NS=1 exec unshare -m --propagation private sh "$0" "$@"
fi
. tests/e2e/lib.sh
chmod 755 "$WORK"	# QEMU runs as libvirt-qemu: the initramfs is in here

MEM=256; WORK_MB=128
DOM=snapfs-e2e
V="timeout 180 virsh -q -c qemu:///system"
LV=$WORK/libvirt
S=$WORK/store; MNT=$WORK/mnt
CONS=$WORK/console.log
lvpid=""

lv_stop() {
	$V destroy "$DOM" >/dev/null 2>&1
	[ -n "$lvpid" ] && kill "$lvpid" 2>/dev/null
	i=0; while [ -n "$lvpid" ] && kill -0 "$lvpid" 2>/dev/null && [ $i -lt 50 ]; do
		sleep 0.1; i=$((i + 1)); done
	lvpid=""
}
cleanup() {
	lv_stop
	# a QEMU that outlived its libvirtd
	p=$(cat /run/libvirt/qemu/$DOM.pid 2>/dev/null) && kill "$p" 2>/dev/null
	e2e_cleanup
}
trap cleanup EXIT

# --- a private libvirt ------------------------------------------------------
mkdir -p /run/libvirt "$LV"
for d in /etc/libvirt /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do
	mkdir -p "$LV$d" "$d"
	if ! mount --bind "$LV$d" "$d"; then
		echo "SKIP: cannot bind a private directory over $d"; exit 77
	fi
done
printf 'log_outputs = "3:file:%s/libvirtd.log"\n' "$WORK" >/etc/libvirt/libvirtd.conf
qemu_conf() { # save_image_format
	cat >/etc/libvirt/qemu.conf <<EOF
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
save_image_format = "$1"
EOF
}
lv_start() {
	/usr/sbin/libvirtd -d -p "$WORK/libvirtd.pid" || return 1
	i=0
	while [ $i -lt 100 ]; do
		if $V version >/dev/null 2>&1; then
			lvpid=$(cat "$WORK/libvirtd.pid"); return 0
		fi
		sleep 0.2; i=$((i + 1))
	done
	return 1
}
qemu_conf raw
if lv_start; then
	ok "libvirtd started ($($V version 2>&1 | grep -i 'running hypervisor' | sed 's/^ *//'))"
else
	notok "libvirtd did not start; its log:"
	tail -n 20 "$WORK/libvirtd.log" 2>/dev/null | sed 's/^/    /'
	e2e_done; exit 1
fi

# --- the guest --------------------------------------------------------------
kernel=$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1)
[ -n "$kernel" ] || kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
if ! initrd=$(sh tests/qemu/mkinitramfs.sh "$WORK/guest" 2>"$WORK/mkinitramfs.err"); then
	notok "build the guest's initramfs: $(tail -n 3 "$WORK/mkinitramfs.err")"
	e2e_done; exit 1
fi
cat >"$WORK/dom.xml" <<EOF
<domain type='qemu'>
  <name>$DOM</name>
  <memory unit='MiB'>$MEM</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$kernel</kernel>
    <initrd>$initrd</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 snapwork.mb=$WORK_MB</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <serial type='file'>
      <source path='$CONS' append='on'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
EOF

# complete lines of the console from line $1 on; counters in them
lines_from() { n=$(wc -l <"$CONS"); head -n "$n" "$CONS" | tail -n +"$1"; }
counters_from() { lines_from "$1" | sed -n 's/^snapwork counter=\([0-9]*\) verify=ok .*/\1/p'; }
last_counter() { counters_from 1 | tail -n 1; }
# wait_counter FROM_LINE N SECONDS: until a line from FROM_LINE on has counter >= N
wait_counter() {
	i=0
	while [ $i -lt $(($3 * 5)) ]; do
		_c=$(counters_from "$1" | tail -n 1)
		[ -n "$_c" ] && [ "$_c" -ge "$2" ] && return 0
		sleep 0.2; i=$((i + 1))
	done
	return 1
}

mkdir -p "$S"
check "mount an empty store" snapfs_mount "$S" "$MNT"
if $V create "$WORK/dom.xml" >"$WORK/create.out" 2>&1 && touch "$CONS" &&
   wait_counter 1 2 120; then
	ok "domain $DOM (type qemu, TCG, $MEM MiB, QEMU as $(ps -o user= -p "$(cat /run/libvirt/qemu/$DOM.pid)")) booted: $(counters_from 1 | tail -n 1 | sed 's/^/counter=/')"
else
	notok "domain did not boot: $(cat "$WORK/create.out") $(tail -n 3 "$CONS" 2>/dev/null)"
	tail -n 10 "$WORK/libvirtd.log" | sed 's/^/    /'
	e2e_done; exit 1
fi

# save_restore K OPTS: virsh save OPTS, check the file, virsh restore OPTS,
# check the guest goes on from the saved counter.
save_restore() {
	k=$1; opts=$2; f=$MNT/snapshot_$k
	wait_counter 1 $(( $(last_counter) + 2 )) 20
	t0=$(date +%s.%N)
	if ! $V save $opts "$DOM" "$f" >"$WORK/save.out" 2>&1; then
		notok "virsh save $opts $DOM MNT/snapshot_$k: $(cat "$WORK/save.out")"
		tail -n 5 "$WORK/snapfs.mnt.log" | sed 's/^/    /'
		return 1
	fi
	t1=$(date +%s.%N)
	c=$(last_counter)	# the domain is gone now
	ok "virsh save $opts $DOM MNT/snapshot_$k at counter=$c: $(stat -c %s "$f") bytes in $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}")s"
	check "snapshot_$k starts with libvirt's final magic, not the partial one ($(head -c 16 "$f"))" \
		test "$(head -c 16 "$f")" = LibvirtQemudSave
	from=$(( $(wc -l <"$CONS") + 1 ))
	t0=$(date +%s.%N)
	if ! $V restore $opts "$f" >"$WORK/restore.out" 2>&1; then
		notok "virsh restore $opts MNT/snapshot_$k: $(cat "$WORK/restore.out")"
		return 1
	fi
	t1=$(date +%s.%N)
	wait_counter "$from" $((c + 3)) 30
	first=$(counters_from "$from" | head -n 1); last=$(counters_from "$from" | tail -n 1)
	if lines_from "$from" | grep -q 'snapwork start'; then
		notok "snapshot_$k: the restored guest booted from scratch"
	elif lines_from "$from" | grep -q 'verify=FAIL'; then
		notok "snapshot_$k: the restored guest reports $(lines_from "$from" | grep -m1 'verify=FAIL')"
	elif [ -z "$first" ] || [ "$first" -le "$c" ] || [ "$first" -gt $((c + 2)) ] ||
	     [ "$last" -lt $((c + 3)) ]; then
		notok "snapshot_$k: saved at counter=$c, the restored guest printed counters ${first:-none}..${last:-none}"
	else
		ok "virsh restore $opts MNT/snapshot_$k in $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}")s: counter $first..$last after $c, verify=ok"
	fi
}
save_restore 1 ""                  # the first file: the store's base
save_restore 2 "--bypass-cache"    # O_DIRECT through libvirt_iohelper
save_restore 3 ""                  # a patch, header fixed up by a reopen
check "the store holds a base and two patches" \
	test "$(cat "$S/increments.txt" | tr '\n' ' ')" = "snapshot_3.patch snapshot_2.patch snapshot_1.zst "
for k in 2 3; do
	st=$(stat -c %s "$MNT/snapshot_$k"); p=$(stat -c %s "$S/snapshot_$k.patch" 2>/dev/null || echo 0)
	check "snapshot_$k is stored as a patch of $p bytes, under a quarter of its $st" \
		test "$p" -gt 0 -a $((p * 4)) -lt "$st"
done
md5sum "$MNT"/snapshot_* >"$WORK/sums"
check "unmount" snapfs_umount "$MNT"
check "remount" snapfs_mount "$S" "$MNT"
check "after remount every save reads back the same" md5sum -c --quiet "$WORK/sums"

# A compressing save_image_format: detected and said in the log.
wait_counter 1 $(( $(last_counter) + 1 )) 20
lv_stop_keep_domain() { kill "$lvpid"; i=0; while kill -0 "$lvpid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done; lvpid=""; }
lv_stop_keep_domain
qemu_conf gzip
if lv_start && $V save "$DOM" "$MNT/snapshot_gz" >"$WORK/save.out" 2>&1; then
	ok "virsh save with save_image_format = \"gzip\""
	i=0; while ! grep -q 'snapshot_gz: a libvirt save image compressed' "$WORK/snapfs.mnt.log" && [ $i -lt 50 ]; do
		sleep 0.2; i=$((i + 1)); done
	check "snapfs's log says the gzip save image defeats deltas ($(grep -m1 'compressed with' "$WORK/snapfs.mnt.log" | cut -c1-100)...)" \
		grep -q 'snapshot_gz: a libvirt save image compressed with gzip' "$WORK/snapfs.mnt.log"
	check "and that no earlier (raw) save was named" \
		test "$(grep -c 'save image compressed' "$WORK/snapfs.mnt.log")" -eq 1
else
	notok "virsh save with save_image_format = \"gzip\": $(cat "$WORK/save.out")"
fi
lv_stop
check "unmount" snapfs_umount "$MNT"
e2e_done
