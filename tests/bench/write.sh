#!/bin/sh
# make bench, write side: a new snapshot written into the mount, next to
# the same bytes copied onto the store's disk and stock xdelta3 -e of the
# same pair, all in one run. Patch size next to xdelta3 -e (defaults) and
# xdelta3 -e -9 -B <file size>. Peak RSS of snapfs while writing.
#
#   BENCH_SIZE=1G   state size (generator)
set -eu
BUILD=${BUILD:-build-bench}
TOP=$(pwd)
SIZE=${BENCH_SIZE:-1G}
DATA=${BENCH_DATA:-$TOP/$BUILD/bench-data}
SNAPFS=$TOP/$BUILD/snapfs
SNAPGEN=$TOP/$BUILD/snapgen
W=$DATA/write
MNT=$W/mnt
OUT=$TOP/$BUILD/bench-write.txt

now() { date +%s.%N; }
elapsed() { echo "$(now) $1" | awk '{printf "%.3f", $1 - $2}'; }
mbps() { echo "$1 $2" | awk '{printf "%.0f", $1 / $2 / 1e6}'; }
umount_wait() {
	fusermount3 -u "$MNT" 2>/dev/null || true
	i=0; while pgrep -f "$SNAPFS .* $MNT" > /dev/null && [ $i -lt 100 ]; do
		sleep 0.1; i=$((i+1)); done
}
trap 'umount_wait; rm -rf "$W"' EXIT
rm -rf "$W"; mkdir -p "$W/store" "$MNT"
"$SNAPGEN" --seed 7 --size "$SIZE" --index 0 -o "$W/s0"
"$SNAPGEN" --seed 7 --size "$SIZE" --index 1 -o "$W/s1"
bytes=$(stat -c %s "$W/s1")
cat "$W/s0" "$W/s1" > /dev/null

"$SNAPFS" -o quiet "$W/store" "$MNT"
PID=$(pgrep -f "$SNAPFS .* $MNT" | head -1)
t=$(now); cp "$W/s0" "$MNT/base"; ls "$MNT/base" > /dev/null; cat "$MNT/base" > /dev/null
# (the read waits for the commit; its own time is small next to the write;
# the close itself encodes the rest, indexes and checks the patch)
base_s=$(elapsed "$t")
t=$(now); cat "$W/s1" > "$MNT/snap1"; write_s=$(elapsed "$t")
t2=$(now); head -c1 "$MNT/snap1" > /dev/null; commit_s=$(elapsed "$t2")
rss=$(awk '/VmHWM/ {printf "%d", $2 / 1024}' /proc/$PID/status)
cmp "$MNT/snap1" "$W/s1"
umount_wait
ours=$(stat -c %s "$W/store/snap1.patch")

t=$(now); cp "$W/s1" "$W/copy"; sync "$W/copy"; cp_s=$(elapsed "$t"); rm -f "$W/copy"
t=$(now); xdelta3 -e -f -s "$W/s0" "$W/s1" "$W/x.default"; xd_s=$(elapsed "$t")
B=$bytes; [ $B -gt 2147483648 ] && B=2147483648
t=$(now); xdelta3 -e -f -9 -B $B -s "$W/s0" "$W/s1" "$W/x.best"; xb_s=$(elapsed "$t")
xdef=$(stat -c %s "$W/x.default"); xbest=$(stat -c %s "$W/x.best")
B2=$((B < 1048576 ? 1048576 : B))
xdelta3 -d -f -B $B2 -s "$W/s0" "$W/store/snap1.patch" "$W/check"
cmp "$W/check" "$W/s1"

{
printf '# snapfs write benchmark, %s states (%s bytes), %s, %s cores\n' "$SIZE" \
	"$bytes" "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)"
printf '%-38s %10s %10s %12s\n' what seconds MB/s patch-bytes
printf '%-38s %10s %10s %12s\n' "snapfs: cat > mount (delta)" "$write_s" "$(mbps $bytes $write_s)" "$ours"
printf '%-38s %10s %10s %12s\n' "  + commit after close (publish)" "$commit_s" "" ""
printf '%-38s %10s %10s %12s\n' "snapfs: cp > mount (first = base)" "$base_s" "$(mbps $bytes $base_s)" "$(stat -c %s "$W/store/base.zst")"
printf '%-38s %10s %10s %12s\n' "cp onto the store's disk (+sync)" "$cp_s" "$(mbps $bytes $cp_s)" ""
printf '%-38s %10s %10s %12s\n' "xdelta3 -e (defaults)" "$xd_s" "$(mbps $bytes $xd_s)" "$xdef"
printf '%-38s %10s %10s %12s\n' "xdelta3 -e -9 -B <size>" "$xb_s" "$(mbps $bytes $xb_s)" "$xbest"
printf '# patch / xdelta3 -9 -B: %s; snapfs peak RSS while writing: %s MiB\n' \
	"$(echo "$ours $xbest" | awk '{printf "%.3f", $1 / $2}')" "$rss"
echo "# stock xdelta3 -d decoded snapfs's patch to the exact bytes."
} | tee "$OUT"

# Patch size with windowed lzma (tests/bench/size.sh) on the same pair, and
# on the real QEMU states an earlier `make bench` kept (tests/bench/qemu.sh
# runs after this script), their first 6.
BENCH_STATES="$W/s0 $W/s1" BENCH_SIZE_OUT=$TOP/$BUILD/bench-size.txt \
	BUILD=$BUILD sh tests/bench/size.sh
qs=$(ls -d "$DATA"/qemu-states-* 2>/dev/null | head -1)
if [ -n "$qs" ]; then
	BENCH_STATES="$(ls "$qs"/snapshot_* | sort -t_ -k2 -n | head -6)" \
	BENCH_SIZE_OUT=$TOP/$BUILD/bench-size-qemu.txt \
		BUILD=$BUILD sh tests/bench/size.sh
fi
