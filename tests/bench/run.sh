#!/bin/sh
# make bench: read-path benchmark of the newest snapshot of chains of
# several depths, next to the same bytes read as a plain file and rebuilt
# the plain way (zstd -d, then xdelta3 -d per patch), all in one run:
# this machine is shared and noisy, so compare within a row, not across
# runs.
#
#   BENCH_SIZE=1G            state size (generator)
#   BENCH_DEPTHS="1 5 20"    chain depths measured
#   BENCH_DATA=dir           where the chain is kept between runs
#   BENCH_RAND=2000          random 4 KiB reads per depth
#
# "cold" = a fresh mount (snapfs's cache and the mount's page cache empty)
# with the store's files in the OS page cache, as after any recent use.
set -eu
BUILD=${BUILD:-build-bench}
TOP=$(pwd)
SIZE=${BENCH_SIZE:-1G}
DEPTHS=${BENCH_DEPTHS:-1 5 20}
NRAND=${BENCH_RAND:-2000}
DATA=${BENCH_DATA:-$TOP/$BUILD/bench-data}
SNAPFS=$TOP/$BUILD/snapfs
RB=$TOP/$BUILD/readbench
SNAPGEN=$TOP/$BUILD/snapgen
export SNAPGEN
MAX=0
for d in $DEPTHS; do [ "$d" -gt "$MAX" ] && MAX=$d; done
CHAIN=$DATA/chain-$SIZE-d$MAX
MNT=$DATA/mnt
OUT=$TOP/$BUILD/bench-read.txt
mkdir -p "$DATA" "$MNT"

now() { date +%s.%N; }
elapsed() { echo "$(now) $1" | awk '{printf "%.3f", $1 - $2}'; }
warm() { cat "$1"/snapshot_* > /dev/null; find "$1/.snapfs" -type f -exec cat {} + > /dev/null 2>&1 || true; }
umount_wait() {
	fusermount3 -u "$MNT" 2>/dev/null || true
	i=0; while pgrep -f "$SNAPFS .* $MNT" > /dev/null && [ $i -lt 100 ]; do
		sleep 0.1; i=$((i+1)); done
}
cleanup() { umount_wait; rm -rf "$DATA/plain"; }
trap cleanup EXIT

if [ ! -f "$CHAIN/increments.txt" ]; then
	echo "bench: building a chain of depth $MAX, $SIZE states (kept in $CHAIN)" >&2
	rm -rf "$CHAIN"
	sh tests/mkstore.sh --depth "$MAX" --size "$SIZE" --seed 42 "$CHAIN"
fi

# A store of depth d: hard links to the first d+1 layers of the chain.
store_of() {
	s=$DATA/store-$SIZE-d$1
	if [ ! -f "$s/increments.txt" ]; then
		rm -rf "$s"; mkdir -p "$s"
		ln "$CHAIN/snapshot_0.zst" "$s/"
		k=1; while [ $k -le "$1" ]; do ln "$CHAIN/snapshot_$k.patch" "$s/"; k=$((k+1)); done
		(cd "$s" && ls snapshot_* | sort -t_ -k2 -n -r > increments.txt)
	fi
	echo "$s"
}

mount_fresh() { # store -> sets PID
	umount_wait
	"$SNAPFS" -o quiet "$@" "$MNT"
	PID=$(pgrep -f "$SNAPFS .* $MNT" | head -1)
}

{
printf '# snapfs read benchmark, %s states, %s\n' "$SIZE" "$(date -u +%Y-%m-%dT%H:%MZ)"
printf '# machine: %s cores, %s\n' "$(nproc)" "$(uname -r)"
printf '%-5s %9s %8s %9s %9s %6s %8s %8s %8s %8s %10s %9s\n' \
	depth 1st-mount mount seq-MB/s cat-MB/s ratio ttfb-ms rnd-med rnd-p99 rss-MiB plain-s plain-MB/s
} | tee "$OUT"

for d in $DEPTHS; do
	s=$(store_of "$d")
	newest=snapshot_$d
	[ "$d" -eq 0 ] && newest=snapshot_0
	# First mount: everything under .snapfs/ built from scratch.
	rm -rf "$s/.snapfs"; umount_wait; warm "$s"
	t=$(now); "$SNAPFS" -o quiet "$s" "$MNT"; first=$(elapsed "$t")
	umount_wait
	# Later mounts: indexes from disk.
	warm "$s"
	t=$(now); mount_fresh "$s"; mnt_s=$(elapsed "$t")
	ttfb=$("$RB" ttfb "$MNT/$newest" | sed 's/.*=//')
	mount_fresh "$s"
	seq=$("$RB" seq "$MNT/$newest" | sed 's/.*mbps=//')
	mount_fresh "$s"
	rnd=$("$RB" rand "$MNT/$newest" "$NRAND")
	med=$(echo "$rnd" | sed 's/.*median_ms=\([^ ]*\).*/\1/')
	p99=$(echo "$rnd" | sed 's/.*p99_ms=\([^ ]*\).*/\1/')
	# A sequential read on top, so RSS includes a full pass.
	cat "$MNT/$newest" > /dev/null
	rss=$(awk '/VmHWM/ {printf "%d", $2 / 1024}' /proc/$PID/status)
	# The plain way, timed: decode base, apply every patch in turn.
	rm -rf "$DATA/plain"; mkdir -p "$DATA/plain"
	t=$(now)
	zstd -q -d -c "$s/snapshot_0.zst" > "$DATA/plain/cur"
	k=1
	while [ $k -le "$d" ]; do
		sz=$(stat -c %s "$DATA/plain/cur")
		B=$((sz < 536870912 ? 536870912 : sz)); [ $B -gt 2147483648 ] && B=2147483648
		xdelta3 -d -f -B $B -s "$DATA/plain/cur" "$s/snapshot_$k.patch" "$DATA/plain/next"
		mv "$DATA/plain/next" "$DATA/plain/cur"
		k=$((k+1))
	done
	plain=$(elapsed "$t")
	bytes=$(stat -c %s "$DATA/plain/cur")
	plain_mbps=$(echo "$bytes $plain" | awk '{printf "%.0f", $1 / $2 / 1e6}')
	# The same bytes as a plain, page-cached file.
	cat "$DATA/plain/cur" > /dev/null
	catmb=$("$RB" seq "$DATA/plain/cur" | sed 's/.*mbps=//')
	if ! cmp -s "$MNT/$newest" "$DATA/plain/cur"; then
		echo "bench: $newest through the mount differs from the plain rebuild" >&2
		exit 1
	fi
	ratio=$(echo "$seq $catmb" | awk '{printf "%.2f", $1 / $2}')
	printf '%-5s %9s %8s %9s %9s %6s %8s %8s %8s %8s %10s %9s\n' \
		"$d" "$first" "$mnt_s" "$seq" "$catmb" "$ratio" "$ttfb" "$med" "$p99" "$rss" "$plain" "$plain_mbps" | tee -a "$OUT"
done
umount_wait
{
echo "# seq: cold sequential read through a fresh mount; cat: the same bytes"
echo "# from a page-cached plain file; ratio = seq / cat. rnd: random 4 KiB"
echo "# preads (readahead off) on a fresh mount. plain: zstd -d + xdelta3 -d"
echo "# per patch, the way without snapfs. 1st-mount: from no .snapfs/."
} | tee -a "$OUT"
echo "bench: table saved in $OUT" >&2
