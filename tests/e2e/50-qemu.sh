#!/bin/sh
# 50-qemu.sh: real QEMU save/restore through a snapshot directory.
#
# Boots a tiny Linux guest (the distribution's cloud kernel and an initramfs
# built here with busybox-static and tests/qemu/workload.c) that keeps
# rewriting part of its RAM and checks it against checksums it keeps in RAM,
# printing "snapwork counter=N verify=ok" once a second on its serial port.
# Saves SNAPS state files with contrib/snapfs-qemu-save while the counter
# advances, then one more exactly as a user would type it in the monitor,
# migrate "exec:cat > FILE" with the VM running (a live save: QEMU re-sends
# pages dirtied meanwhile), restores every one of them in a fresh QEMU with
# contrib/snapfs-qemu-restore (-incoming "exec:cat FILE"), and checks that
# each restored guest continues from its own counter (not from zero, not
# from another snapshot's) and keeps printing verify=ok. Also (as root): a
# migrate into a second, full store is reported as failed, by QEMU itself
# and by contrib/snapfs-qemu-save.
#
# Where the state files go:
#   SNAPFS_MOUNT_CMD unset: through snapfs, "$BUILD/snapfs -f STORE MOUNTDIR"
#                           (what make test runs): snapshots are saved and
#                           restored through MOUNTDIR, and bytes written are
#                           compared with du of STORE.
#   SNAPFS_MOUNT_CMD=""     a plain directory STORE (the baseline).
#   SNAPFS_MOUNT_CMD=cmd    "$SNAPFS_MOUNT_CMD STORE MOUNTDIR" instead.
#   SNAPFS_ENCODE_CMD set too: for a snapfs that cannot write yet. Saves into
#                           a plain directory, adds each file to STORE with
#                           "$SNAPFS_ENCODE_CMD STORE FILE NAME" (e.g.
#                           contrib/snapfs-encode), then mounts, compares
#                           every snapshot with cmp and restores through
#                           the mount.
#   SNAPFS_MOUNT_TIMEOUT    seconds to wait for the mount (default 60)
# Other knobs (environment):
#   SNAPFS_QEMU_ACCEL   kvm or tcg (default: kvm only if /dev/kvm is usable
#                       and is not the PVM layer, which cannot run a stock
#                       guest kernel; otherwise tcg)
#   SNAPFS_QEMU_MEM     guest RAM in MiB (default 320)
#   SNAPFS_QEMU_WORK_MB RAM the workload fills, MiB (default 192)
#   SNAPFS_QEMU_SNAPS   number of snapshots (default 4)
#   SNAPFS_QEMU_GAP     seconds of guest run time between snapshots (default 3)
#   SNAPFS_QEMU_KEEP    directory to copy the state files and logs into
#   SNAPFS_KEEP_WORKDIR=1  do not delete the work directory
# Prints "ok ..." / "not ok ..." per check and ends with "N passed, M failed".
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"

MEM=${SNAPFS_QEMU_MEM:-320}
WORK_MB=${SNAPFS_QEMU_WORK_MB:-192}
SNAPS=${SNAPFS_QEMU_SNAPS:-4}
GAP=${SNAPFS_QEMU_GAP:-3}
QMP="python3 $top/tests/qemu/qmp.py"
SAVE=$top/contrib/snapfs-qemu-save
RESTORE=$top/contrib/snapfs-qemu-restore

pass=0; fail=0
ok() { pass=$((pass + 1)); echo "ok $pass - $*"; }
notok() { fail=$((fail + 1)); echo "not ok - $*"; }
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ] && exit 0; exit 1; }

if ! sh contrib/deps.sh qemu; then
	notok "install qemu, kernel, busybox-static, cpio (sh contrib/deps.sh qemu)"; finish
fi

workdir=$(mktemp -d "${TMPDIR:-/tmp}/snapfs-e2e-qemu.XXXXXX")
qpids=""        # QEMU (or restore helper) processes we started
mount_pid=""; mounted=""
cleanup() {
	set +e
	for p in $qpids; do kill "$p" 2>/dev/null; done
	for p in $qpids; do wait "$p" 2>/dev/null; done
	if [ -n "$mounted" ]; then
		fusermount3 -u "$mounted" 2>/dev/null || umount -l "$mounted" 2>/dev/null
	fi
	if [ -n "$mount_pid" ]; then
		kill "$mount_pid" 2>/dev/null; wait "$mount_pid" 2>/dev/null
	fi
	if [ "${SNAPFS_KEEP_WORKDIR:-0}" = 1 ]; then
		echo "# work directory kept: $workdir"
	else
		rm -rf "$workdir"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t_start=$(date +%s)
elapsed() { echo $(( $(date +%s) - t_start )); }

# --- where snapshots go ----------------------------------------------------
store=$workdir/store
mnt=$workdir/mnt
mkdir -p "$store" "$mnt"
if [ -z "${SNAPFS_MOUNT_CMD+set}" ]; then
	SNAPFS_MOUNT_CMD="$(pwd)/${BUILD:-build}/snapfs -f"
fi
do_mount() { # runs "$SNAPFS_MOUNT_CMD $store $mnt", waits for the mount
	t=${SNAPFS_MOUNT_TIMEOUT:-60}
	# shellcheck disable=SC2086 # the command is a word list on purpose
	$SNAPFS_MOUNT_CMD "$store" "$mnt" >"$workdir/snapfs.log" 2>&1 &
	mount_pid=$!
	i=0
	# -f style commands keep running; daemonizing ones exit 0 once mounted
	while ! grep -q " $mnt fuse" /proc/mounts && [ $i -lt $((t * 5)) ]; do
		if ! kill -0 "$mount_pid" 2>/dev/null; then
			sleep 0.2; grep -q " $mnt fuse" /proc/mounts || break
		fi
		sleep 0.2; i=$((i + 1))
	done
	if grep -q " $mnt fuse" /proc/mounts; then
		mounted=$mnt
		ok "mounted in $((i / 5))s: $SNAPFS_MOUNT_CMD $store $mnt"
	else
		sed 's/^/#   /' "$workdir/snapfs.log" | tail -n 20
		notok "mount with '$SNAPFS_MOUNT_CMD': no fuse mount at $mnt (command exited, or ${t}s passed)"
		finish
	fi
}
if [ -n "${SNAPFS_ENCODE_CMD:-}" ]; then
	# read-only snapfs: save plain files, encode them into the store
	# with the given tool, then restore through the mount
	if [ -z "${SNAPFS_MOUNT_CMD:-}" ]; then
		notok "SNAPFS_ENCODE_CMD needs SNAPFS_MOUNT_CMD"; finish
	fi
	save_dir=$workdir/plain; mkdir -p "$save_dir"
	restore_dir=$mnt
	echo "# saving into $save_dir, then '$SNAPFS_ENCODE_CMD STORE FILE NAME' into $store, restoring through $mnt"
elif [ -n "${SNAPFS_MOUNT_CMD:-}" ]; then
	do_mount
	save_dir=$mnt; restore_dir=$mnt
else
	save_dir=$store; restore_dir=$store
	echo "# SNAPFS_MOUNT_CMD empty: saving into the plain directory $store"
fi

# --- the guest -------------------------------------------------------------
kernel=$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1)
[ -n "$kernel" ] || kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
if [ -z "$kernel" ] || [ ! -r "$kernel" ]; then
	notok "no readable guest kernel in /boot (sh contrib/deps.sh qemu)"; finish
fi
if initrd=$(sh tests/qemu/mkinitramfs.sh "$workdir/guest" 2>"$workdir/mkinitramfs.err"); then
	ok "built workload and initramfs ($(wc -c <"$initrd") bytes), kernel $kernel"
else
	cat "$workdir/mkinitramfs.err"; notok "build workload/initramfs"; finish
fi

accel=${SNAPFS_QEMU_ACCEL:-}
if [ -z "$accel" ]; then
	if [ -r /dev/kvm ] && [ -w /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ]; then
		accel=kvm
	else
		accel=tcg
	fi
fi

# The QEMU command line shared by the saved VM and every restored one; only
# the serial log and the QMP socket differ (a restore needs the same
# machine, memory, kernel and initrd).
set -- qemu-system-x86_64 -accel "$accel" -m "$MEM" -smp 1 \
	-nodefaults -no-user-config -display none \
	-kernel "$kernel" -initrd "$initrd" \
	-append "console=ttyS0 quiet panic=-1 snapwork.mb=$WORK_MB"

# complete (newline-terminated) lines of a log file
lines() { n=$(wc -l <"$1"); head -n "$n" "$1"; }
counters() { lines "$1" | sed -n 's/^snapwork counter=\([0-9]*\) verify=ok .*/\1/p'; }
last_counter() { counters "$1" | tail -n 1; }
first_counter() { counters "$1" | head -n 1; }
# wait_for FILE ERE SECONDS: wait until a complete line matches
wait_for() {
	i=0
	while [ "$i" -lt $(($3 * 5)) ]; do
		[ -f "$1" ] && lines "$1" | grep -Eq "$2" && return 0
		sleep 0.2; i=$((i + 1))
	done
	return 1
}

boot() { # accel: boots the source VM, serial log in $workdir/src.log
	rm -f "$workdir/src.log" "$workdir/src.qmp"
	"$@" -serial "file:$workdir/src.log" \
		-qmp "unix:$workdir/src.qmp,server=on,wait=off" \
		2>"$workdir/src.err" &
	src_pid=$!; qpids="$qpids $src_pid"
	wait_for "$workdir/src.log" '^snapwork counter=2 verify=ok' 90
}
if ! boot "$@"; then
	if [ "$accel" = kvm ] && [ -z "${SNAPFS_QEMU_ACCEL:-}" ]; then
		echo "# guest did not come up with kvm ($(head -c 200 "$workdir/src.err")); retrying with tcg"
		kill "$src_pid" 2>/dev/null; wait "$src_pid" 2>/dev/null || true
		accel=tcg
		# replace "-accel kvm" by "-accel tcg" in the shared command line
		shift 3; set -- qemu-system-x86_64 -accel tcg "$@"
		boot "$@" || true
	fi
fi
if counters "$workdir/src.log" | grep -q .; then
	ok "guest booted ($accel, ${MEM} MiB, workload ${WORK_MB} MiB) and prints counters, at $(elapsed)s"
else
	echo "# serial log:"; sed 's/^/#   /' "$workdir/src.log" 2>/dev/null | tail -n 20
	echo "# qemu stderr:"; sed 's/^/#   /' "$workdir/src.err" | tail -n 20
	notok "guest boot ($accel)"; finish
fi

# --- save ------------------------------------------------------------------
written=0
k=1
while [ "$k" -le "$SNAPS" ]; do
	before=$(last_counter "$workdir/src.log")
	wait_for "$workdir/src.log" "^snapwork counter=$((before + GAP)) verify=ok" $((GAP * 10 + 10)) || true
	f=$save_dir/snapshot_$k
	if out=$($SAVE --stop "$workdir/src.qmp" "$f" 2>&1); then
		c=$(last_counter "$workdir/src.log")    # the VM is stopped now
		eval "counter_$k=$c"
		size=$(stat -c %s "$f")
		written=$((written + size))
		secs=$(echo "$out" | sed -n 's/.* in \([0-9.]*\)s;.*/\1/p')
		ok "saved snapshot_$k at counter=$c: $size bytes in ${secs}s"
		echo "snapshot_$k counter=$c size=$size save_s=$secs" >>"$workdir/summary"
	else
		echo "$out" | sed 's/^/#   /'
		notok "save snapshot_$k"; eval "counter_$k="
	fi
	$QMP "$workdir/src.qmp" cmd cont >/dev/null
	k=$((k + 1))
done
# One more, the monitor way: VM running, no helper. QEMU leaves the source
# VM paused ("postmigrate") when done, so the counter read then is the one
# in the file; the file may appear a moment after QEMU reports completion
# (RELEASE reaches a FUSE file system after cat has exited).
f=$save_dir/snapshot_$k
wait_for "$workdir/src.log" "^snapwork counter=$(( $(last_counter "$workdir/src.log") + 2 )) verify=ok" 30 || true
if $QMP "$workdir/src.qmp" hmp "migrate \"exec:cat > $f\"" >"$workdir/hmp.out" 2>&1 &&
   $QMP "$workdir/src.qmp" wait-migration >"$workdir/live.json" 2>>"$workdir/hmp.out" &&
   i=0 && while [ ! -f "$f" ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done &&
   [ -f "$f" ]; then
	c=$(last_counter "$workdir/src.log")
	eval "counter_$k=$c"
	size=$(stat -c %s "$f"); written=$((written + size))
	tt=$(sed -n 's/.*"total-time": \([0-9]*\).*/\1/p' "$workdir/live.json")
	ok "saved snapshot_$k live with (qemu) migrate \"exec:cat > FILE\" at counter=$c: $size bytes in ${tt}ms"
	echo "snapshot_$k counter=$c size=$size save_ms=$tt live" >>"$workdir/summary"
else
	sed 's/^/#   /' "$workdir/hmp.out"
	tail -n 3 "$workdir/src.err" | sed 's/^/#   qemu: /'
	notok "live save snapshot_$k with the monitor's migrate command"; eval "counter_$k="
fi
$QMP "$workdir/src.qmp" cmd cont >/dev/null
wait_for "$workdir/src.log" "^snapwork counter=$(( $(last_counter "$workdir/src.log") + 1 )) verify=ok" 10 || true
nsaved=$k

# --- a full store: the save must be reported as failed ----------------------
# A second snapfs on an 8 MB tmpfs, empty store: the state (the store's
# base) cannot fit. QEMU's own migrate must end "failed" (cat's write or
# close fails, cat exits, the pipe breaks), snapfs-qemu-save must exit
# non-zero, the VM keeps running, and no snapshot appears.
if [ -n "$mounted" ] && [ "$(id -u)" -eq 0 ]; then
	tiny=$workdir/tiny; mkdir -p "$tiny"
	if mount -t tmpfs -o size=8m tmpfs "$tiny"; then
		mkdir -p "$tiny/store" "$tiny/mnt"
		"$top/${BUILD:-build}/snapfs" -f "$tiny/store" "$tiny/mnt" >"$workdir/tiny.log" 2>&1 &
		tiny_pid=$!
		i=0; while ! grep -q " $tiny/mnt fuse" /proc/mounts && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
		$QMP "$workdir/src.qmp" hmp "migrate \"exec:cat > $tiny/mnt/full\"" >"$workdir/full.out" 2>&1
		if $QMP "$workdir/src.qmp" wait-migration >>"$workdir/full.out" 2>&1; then
			notok "(qemu) migrate \"exec:cat > FILE\" into a full store reported completed"
		else
			ok "(qemu) migrate \"exec:cat > FILE\" into a full store reports failure: $(tail -n 1 "$workdir/full.out" | cut -c1-120)"
		fi
		$QMP "$workdir/src.qmp" cmd cont >/dev/null 2>&1
		if out=$($SAVE "$workdir/src.qmp" "$tiny/mnt/full2" 2>&1); then
			notok "snapfs-qemu-save into a full store exited 0"
		else
			ok "snapfs-qemu-save into a full store exits non-zero: $(echo "$out" | tail -n 1 | cut -c1-120)"
		fi
		st=$($QMP "$workdir/src.qmp" cmd query-status 2>&1)
		if echo "$st" | grep -q '"running": true'; then
			ok "the VM runs on after the failed saves"
		else
			notok "the VM after the failed saves: $st"
		fi
		sleep 0.5
		if [ -z "$(ls "$tiny/mnt")" ] && [ ! -e "$tiny/store/increments.txt" ] &&
		   [ -z "$(ls "$tiny/store/.snapfs/tmp" 2>/dev/null)" ]; then
			ok "no snapshot and no temporary left in the full store"
		else
			notok "the full store after the failed saves: $(ls "$tiny/mnt" "$tiny/store" "$tiny/store/.snapfs/tmp" 2>&1 | tr '\n' ' ')"
		fi
		fusermount3 -u "$tiny/mnt"; wait "$tiny_pid" 2>/dev/null
		umount "$tiny"
	else
		notok "cannot mount an 8 MB tmpfs for the full-store check"
	fi
fi
starts=$(lines "$workdir/src.log" | grep -c '^snapwork start' || true)
if lines "$workdir/src.log" | grep -q 'verify=FAIL' || [ "$starts" -ne 1 ]; then
	notok "source guest ran clean across the saves ($(grep -m1 'FAIL' "$workdir/src.log"), $starts starts)"
else
	ok "source guest still verify=ok after $nsaved saves (counter=$(last_counter "$workdir/src.log"))"
fi
$QMP "$workdir/src.qmp" quit >/dev/null 2>&1 || true
wait "$src_pid" 2>/dev/null || true
qpids=""

if [ -n "${SNAPFS_ENCODE_CMD:-}" ]; then
	k=1; enc_ok=1
	while [ "$k" -le "$nsaved" ]; do
		# shellcheck disable=SC2086
		if ! $SNAPFS_ENCODE_CMD "$store" "$save_dir/snapshot_$k" "snapshot_$k" \
			>>"$workdir/encode.log" 2>&1; then
			enc_ok=0; break
		fi
		k=$((k + 1))
	done
	if [ "$enc_ok" = 1 ]; then
		ok "encoded $nsaved state files into the store with $SNAPFS_ENCODE_CMD"
	else
		sed 's/^/#   /' "$workdir/encode.log" | tail -n 10
		notok "$SNAPFS_ENCODE_CMD $store snapshot_$k"; finish
	fi
	do_mount
fi
if [ -n "$mounted" ]; then
	listed=$(ls "$restore_dir" | grep -c '^snapshot_' || true)
	if [ "$listed" -eq "$nsaved" ]; then
		ok "mount lists $listed snapshots"
	else
		ls -l "$restore_dir" | sed 's/^/#   /'
		notok "mount lists $listed snapshots, expected $nsaved"
	fi
fi
if [ -n "${SNAPFS_ENCODE_CMD:-}" ]; then
	k=1
	while [ "$k" -le "$nsaved" ]; do
		if cmp "$save_dir/snapshot_$k" "$restore_dir/snapshot_$k"; then
			ok "snapshot_$k in the mount is byte-identical to the state QEMU wrote"
		else
			notok "snapshot_$k in the mount differs from the state QEMU wrote"
		fi
		k=$((k + 1))
	done
fi

# --- restore every snapshot, newest first -----------------------------------
# Each restored guest runs 4 ticks: the workload verifies a quarter of its
# pages per tick (plus every page it rewrites), so that is every page.
k=$nsaved
while [ "$k" -ge 1 ]; do
	eval "c=\${counter_$k:-}"
	f=$restore_dir/snapshot_$k
	if [ -z "$c" ] || [ ! -f "$f" ]; then
		notok "restore snapshot_$k: nothing was saved"; k=$((k - 1)); continue
	fi
	log=$workdir/restore_$k.log
	"$RESTORE" "$f" -- "$@" -serial "file:$log" \
		-qmp "unix:$workdir/r$k.qmp,server=on,wait=off" \
		2>"$workdir/restore_$k.err" &
	rpid=$!; qpids="$qpids $rpid"
	if wait_for "$log" "^snapwork counter=$((c + 4)) verify=ok" 60; then :; fi
	$QMP "$workdir/r$k.qmp" quit >/dev/null 2>&1 || true
	rc=0; wait "$rpid" 2>/dev/null || rc=$?
	qpids=""
	first=$(first_counter "$log"); last=$(last_counter "$log")
	nok=$(counters "$log" | wc -l)
	loaded=$(sed -n 's/.* in \([0-9.]*\)s.*/\1/p' "$workdir/restore_$k.err" | head -n 1)
	if grep -q 'snapwork start' "$log" 2>/dev/null; then
		notok "snapshot_$k: restored guest booted from scratch"
	elif grep -q 'verify=FAIL' "$log"; then
		notok "snapshot_$k: restored guest reports $(grep -m1 'verify=FAIL' "$log")"
	elif [ -z "$first" ] || [ "$nok" -lt 4 ]; then
		sed 's/^/#   /' "$workdir/restore_$k.err" | tail -n 10
		notok "snapshot_$k: restored guest printed $nok counter lines (need 4)"
	elif [ "$first" -le "$c" ] || [ "$first" -gt $((c + 2)) ]; then
		notok "snapshot_$k: saved at counter=$c but restored guest starts at counter=$first"
	elif [ "$rc" -ne 0 ]; then
		sed 's/^/#   /' "$workdir/restore_$k.err" | tail -n 10
		notok "snapshot_$k: snapfs-qemu-restore exited $rc"
	else
		ok "restored snapshot_$k (saved at counter=$c) in ${loaded}s: counter $first..$last, verify=ok x$nok"
		echo "snapshot_$k restore_s=$loaded" >>"$workdir/summary"
	fi
	k=$((k - 1))
done

# --- sizes -----------------------------------------------------------------
echo "# bytes written: $written ($((written / 1048576)) MiB in $nsaved state files)"
if [ -n "$mounted" ]; then
	stored=$(du -sb --exclude=.snapfs "$store" | cut -f1)
	derived=$(du -sb "$store/.snapfs" 2>/dev/null | cut -f1)
	pct=""; [ "$written" -gt 0 ] && pct=" ($((stored * 100 / written))% of written)"
	echo "# bytes stored:  $stored in $store$pct, plus ${derived:-0} in .snapfs/"
	# One full state compresses to ~45% with zstd; the rest are deltas.
	if [ "$written" -gt 0 ] && [ $((stored * 4)) -lt "$written" ]; then
		ok "the store is much smaller than what was written ($stored of $written bytes)"
	else
		notok "the store is not much smaller than what was written ($stored of $written bytes)"
	fi
	if fusermount3 -u "$mounted"; then
		mounted=""
		ok "unmounted"
	else
		notok "fusermount3 -u $mounted"
	fi
	if [ -n "$mount_pid" ]; then
		rc=0; wait "$mount_pid" || rc=$?
		mount_pid=""
		if [ "$rc" -eq 0 ]; then ok "mount command exited 0"; else notok "mount command exited $rc"; fi
	fi
fi
if [ -n "${SNAPFS_QEMU_KEEP:-}" ]; then
	# Everything needed to restore these states again: the files, the
	# exact initramfs and kernel path, and the QEMU command line.
	mkdir -p "$SNAPFS_QEMU_KEEP"
	for f in "$save_dir"/snapshot_*; do cp "$f" "$SNAPFS_QEMU_KEEP/"; done 2>/dev/null || true
	cp "$workdir"/*.log "$workdir/summary" "$initrd" "$SNAPFS_QEMU_KEEP/" 2>/dev/null || true
	{
		echo "# QEMU command line of these state files (add -serial and -incoming):"
		printf '%s' "$1"; shift
		for a in "$@"; do
			[ "$a" = "$initrd" ] && a=$SNAPFS_QEMU_KEEP/$(basename "$initrd")
			printf " '%s'" "$a"
		done
		echo
	} >"$SNAPFS_QEMU_KEEP/qemu-cmdline"
	echo "# state files, initramfs, logs and qemu-cmdline copied to $SNAPFS_QEMU_KEEP"
fi
sed 's/^/# /' "$workdir/summary" 2>/dev/null || true
echo "# runtime $(elapsed)s"
finish
