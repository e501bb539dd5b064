#!/bin/sh
# make bench, real-VM part: state files of a real QEMU guest (the workload
# of tests/e2e/50-qemu.sh, saved QMP_SNAPS times a few guest seconds apart)
#   - store size: snapfs store vs the raw files vs zstd -3 of each file;
#   - restore time: QEMU loading the newest state from a fresh mount vs
#     from the plain file on disk, in the same run (tests/qemu/restore_time.py:
#     migrate-incoming "exec:cat FILE" to "completed");
#   - the depth table of tests/bench/depth.sh on these states.
#   BENCH_QEMU_SNAPS=16   states to save (kept in $BENCH_DATA/qemu-states)
set -eu
BUILD=${BUILD:-build-bench}
TOP=$(pwd)
DATA=${BENCH_DATA:-$TOP/$BUILD/bench-data}
NSNAP=${BENCH_QEMU_SNAPS:-16}
QS=$DATA/qemu-states-$NSNAP
SNAPFS=$TOP/$BUILD/snapfs
MNT=$DATA/qmnt
OUT=$TOP/$BUILD/bench-qemu.txt
mkdir -p "$DATA" "$MNT"
umount_wait() {
	fusermount3 -u "$MNT" 2>/dev/null || true
	i=0; while pgrep -f "$SNAPFS .* $MNT" > /dev/null && [ $i -lt 100 ]; do
		sleep 0.1; i=$((i+1)); done
}
trap 'umount_wait' EXIT
sh contrib/deps.sh qemu

. tests/bench/states.sh
qemu_states "$QS" "$NSNAP"
states=$(ls "$QS"/snapshot_* | sort -t_ -k2 -n)
raw=0; zs=0; n=0
for f in $states; do
	raw=$((raw + $(stat -c %s "$f")))
	zs=$((zs + $(zstd -3 -q -c "$f" | wc -c)))
	n=$((n + 1))
done
S=$DATA/qstore
rm -rf "$S"; mkdir -p "$S"
umount_wait
"$SNAPFS" -o quiet "$S" "$MNT"
k=0
for f in $states; do cat "$f" > "$MNT/snapshot_$k"; k=$((k + 1)); done
newest=snapshot_$((k - 1))
cmp "$MNT/$newest" "$(echo "$states" | tail -n 1)"
umount_wait
stored=$(du -sb --exclude=.snapfs "$S" | cut -f1)
derived=$(du -sb "$S/.snapfs" | cut -f1)

# Restore: a fresh mount each time, newest state; the plain file alike.
plainf=$(echo "$states" | tail -n 1)
rt() { python3 tests/qemu/restore_time.py -n 1 "$1" --cmdline "$QS/qemu-cmdline" | awk '{print $3}'; }
warm() { cat "$S"/snapshot_* > /dev/null; find "$S/.snapfs" -type f -exec cat {} + > /dev/null 2>&1 || true; }
# First a raw_base mount, so its decompressed copy exists before timing.
umount_wait; "$SNAPFS" -o quiet,raw_base "$S" "$MNT"; umount_wait
pl=""; mt=""; mr=""
for i in 1 2 3; do
	cat "$plainf" > /dev/null
	pl="$pl $(rt "$plainf")"
	umount_wait; warm; "$SNAPFS" -o quiet "$S" "$MNT"
	mt="$mt $(rt "$MNT/$newest")"
	umount_wait; warm; "$SNAPFS" -o quiet,raw_base "$S" "$MNT"
	mr="$mr $(rt "$MNT/$newest")"
done
umount_wait
med() { echo "$@" | tr ' ' '\n' | sort -n | sed -n 2p; }
{
printf '# snapfs on a real QEMU guest: %d states of %s bytes, %s, %s cores\n' \
	"$n" "$(stat -c %s "$plainf")" "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)"
printf '%-44s %14s %8s\n' what bytes "% raw"
printf '%-44s %14s %8s\n' "raw state files (sum)" "$raw" 100
printf '%-44s %14s %8s\n' "zstd -3 of each file (sum)" "$zs" "$(echo "$zs $raw" | awk '{printf "%.1f", 100*$1/$2}')"
printf '%-44s %14s %8s\n' "snapfs store (base + patches)" "$stored" "$(echo "$stored $raw" | awk '{printf "%.1f", 100*$1/$2}')"
printf '%-44s %14s %8s\n' "  + .snapfs/ (derived, deletable)" "$derived" "$(echo "$derived $raw" | awk '{printf "%.1f", 100*$1/$2}')"
printf '%-44s %10s s (runs:%s)\n' "restore from the plain file (median of 3)" "$(med $pl)" "$pl"
printf '%-44s %10s s (runs:%s)\n' "restore from a fresh mount (median of 3)" "$(med $mt)" "$mt"
printf '%-44s %10s s (runs:%s)\n' "restore from a fresh -o raw_base mount" "$(med $mr)" "$mr"
printf '# restore ratio mount/plain: %s; with -o raw_base: %s\n' \
	"$(echo "$(med $mt) $(med $pl)" | awk '{printf "%.2f", $1/$2}')" \
	"$(echo "$(med $mr) $(med $pl)" | awk '{printf "%.2f", $1/$2}')"
printf '%-44s %14s\n' "  + the raw_base copy (one full state)" "$(du -cb "$S"/.snapfs/base/*.raw | tail -1 | cut -f1)"
echo "# restore = QEMU migrate-incoming exec:cat FILE until completed (QEMU start excluded)"
} | tee "$OUT"
d=$((n - 1))
BENCH_STATES=$QS BENCH_TAG=qemu-depth BENCH_DEPTHS="1 $((d / 2)) $d" BUILD=$BUILD sh tests/bench/depth.sh
