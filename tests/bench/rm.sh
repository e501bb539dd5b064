#!/bin/sh
# make bench, rm: deleting a snapshot in the middle of a chain, against
# composing its two patches with stock `xdelta3 merge`, in the same run.
#
# A chain of DEPTH+1 states is written through a mount; then, for the
# middle snapshot M and its child C:
#   - C's cold sequential read (fresh mount) before the rm;
#   - another snapshot's read speed idle, and while the rm runs;
#   - the rm's time, next to `xdelta3 merge -m M.patch C.patch` (the
#     composed patch a rebase by composition would start from) and its
#     size, next to the re-encoded patch snapfs writes;
#   - C's cold sequential read after the rm (now one level shallower,
#     its patch re-encoded against M's parent, its index built afresh).
#
#   BENCH_SIZE=1G     state size (the issue's figure; 256M for a quick run)
#   BENCH_DEPTH=20    patches in the chain
#   BENCH_DATA=dir    where the chain is kept between runs
set -eu
BUILD=${BUILD:-build-bench}
TOP=$(pwd)
SIZE=${BENCH_SIZE:-1G}
DEPTH=${BENCH_DEPTH:-20}
DATA=${BENCH_DATA:-$TOP/$BUILD/bench-data}
SNAPFS=$TOP/$BUILD/snapfs
RB=$TOP/$BUILD/readbench
SNAPGEN=$TOP/$BUILD/snapgen
CHAIN=$DATA/rmchain-$SIZE-d$DEPTH
S=$DATA/rmstore
MNT=$DATA/rmmnt
OUT=$TOP/$BUILD/bench-rm.txt
mkdir -p "$DATA" "$MNT"

now() { date +%s.%N; }
elapsed() { echo "$(now) $1" | awk '{printf "%.2f", $1 - $2}'; }
umount_wait() {
	fusermount3 -u "$MNT" 2>/dev/null || true
	i=0; while pgrep -f "$SNAPFS .* $MNT" > /dev/null && [ $i -lt 100 ]; do
		sleep 0.1; i=$((i+1)); done
}
mount_fresh() {
	umount_wait
	cat "$S"/*.patch "$S"/*.zst > /dev/null
	find "$S/.snapfs" -type f -exec cat {} + > /dev/null 2>&1 || true
	"$SNAPFS" -o quiet "$S" "$MNT"
}
trap 'umount_wait' EXIT

if [ ! -f "$CHAIN/done" ]; then
	echo "bench: writing a chain of depth $DEPTH ($SIZE states) into a mount" >&2
	rm -rf "$CHAIN"; mkdir -p "$CHAIN"
	umount_wait
	"$SNAPFS" -o quiet "$CHAIN" "$MNT"
	k=0
	while [ $k -le "$DEPTH" ]; do
		"$SNAPGEN" --seed 43 --size "$SIZE" --index $k -o - > "$MNT/snapshot_$k"
		k=$((k+1))
	done
	ls "$MNT/snapshot_$DEPTH" > /dev/null	# waits for the last commit
	umount_wait
	touch "$CHAIN/done"
fi
# A working copy: hard links (snapfs replaces files, never edits them).
rm -rf "$S"; cp -al "$CHAIN" "$S"; rm -f "$S/.snapfs/lock"

m=$((DEPTH / 2)); c=$((m + 1)); o=$((m - 3))
M=snapshot_$m; C=snapshot_$c; O=snapshot_$o

mount_fresh
before=$("$RB" seq "$MNT/$C" | sed 's/.*mbps=//')
mount_fresh
idle=$("$RB" seq "$MNT/$O" | sed 's/.*mbps=//')
full=$(stat -c %s "$MNT/$C")

# xdelta3 merge of the same two patches.
rm -f "$DATA/merged.patch"
t=$(now)
xdelta3 merge -m "$S/$M.patch" "$S/$C.patch" "$DATA/merged.patch"
merge_s=$(elapsed "$t")
merged=$(stat -c %s "$DATA/merged.patch")
old_patch=$(stat -c %s "$S/$C.patch")

# The rm, with a reader of another snapshot running alongside.
mount_fresh
( "$RB" seq "$MNT/$O" > "$DATA/during.txt" ) &
rpid=$!
t=$(now)
rm "$MNT/$M"
rm_s=$(elapsed "$t")
wait $rpid
during=$(sed 's/.*mbps=//' "$DATA/during.txt")
new_patch=$(stat -c %s "$S/$C.patch")
mount_fresh
after=$("$RB" seq "$MNT/$C" | sed 's/.*mbps=//')
umount_wait
rm -f "$DATA/merged.patch"

{
printf '# snapfs rm benchmark, %s states, depth %s, %s, %s cores\n' "$SIZE" \
	"$DEPTH" "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)"
printf 'rm %s (child %s): %s s; xdelta3 merge of the two patches: %s s (%.2fx)\n' \
	"$M" "$C" "$rm_s" "$merge_s" "$(echo "$rm_s $merge_s" | awk '{print $1 / $2}')"
printf 'patch of %s: before %s B, re-encoded %s B, xdelta3 merge %s B\n' \
	"$C" "$old_patch" "$new_patch" "$merged"
printf '%s cold read: before %s MB/s, after %s MB/s (%.2fx)\n' "$C" \
	"$before" "$after" "$(echo "$after $before" | awk '{print $1 / $2}')"
printf '%s read: idle %s MB/s, during the rm %s MB/s (%.2fx)\n' "$O" \
	"$idle" "$during" "$(echo "$during $idle" | awk '{print $1 / $2}')"
printf '# full state %s B; cold = fresh mount, store in page cache\n' "$full"
} | tee "$OUT"
echo "bench: table in $OUT" >&2
