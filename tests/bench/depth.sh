#!/bin/sh
# make bench-depth: does reading cost the same at any chain depth?
# For the newest snapshot of chains of depth 1..100: cold sequential
# throughput, time to first byte, random 4 KiB latency, mount time, index
# size on disk; and, in the same run, the peers: the plain decode script
# (zstd -d + xdelta3 -d per patch) and xdelta3 merge of all patches + one
# decode. Writes a table and a PNG plot of throughput against depth.
#
#   BENCH_SIZE=256M          state size
#   BENCH_DEPTHS="1 10 50 100"
#   BENCH_PEERS_MAX=100      skip the (slow) peers above this depth
#   BENCH_DATA=dir           where the chain is kept between runs
#   BENCH_STATES=dir         use the state files dir/snapshot_<n> (e.g. a
#                            real QEMU guest's, from tests/bench/qemu.sh)
#                            instead of the generator
#   BENCH_TAG=name           output names: $BUILD/bench-<name>.txt/.png
#   BENCH_RUNS=5             sequential reads per depth (median); the
#                            runs go round the depths in turn, so a noisy
#                            spell on this shared machine hits every depth
#
# The chain is made by writing the generator's states into a snapfs
# mount (the write path), so building a depth-100 chain takes minutes,
# not hours; the store stays stock: xdelta3 -d decodes every patch.
set -eu
BUILD=${BUILD:-build-bench}
TOP=$(pwd)
SIZE=${BENCH_SIZE:-256M}
DEPTHS=${BENCH_DEPTHS:-1 10 50 100}
PEERS_MAX=${BENCH_PEERS_MAX:-100}
DATA=${BENCH_DATA:-$TOP/$BUILD/bench-data}
SNAPFS=$TOP/$BUILD/snapfs
RB=$TOP/$BUILD/readbench
SNAPGEN=$TOP/$BUILD/snapgen
MAX=0
for d in $DEPTHS; do [ "$d" -gt "$MAX" ] && MAX=$d; done
TAG=${BENCH_TAG:-depth}
RUNS=${BENCH_RUNS:-5}
if [ -n "${BENCH_STATES:-}" ]; then
	CHAIN=$DATA/wchain-$TAG-d$MAX
	SIZE="$(basename "$BENCH_STATES")"
else
	CHAIN=$DATA/wchain-$SIZE-d$MAX
fi
MNT=$DATA/mnt
OUT=$TOP/$BUILD/bench-$TAG.txt
PNG=$TOP/$BUILD/bench-$TAG.png
mkdir -p "$DATA" "$MNT"
# The plot is drawn from the table: BENCH_PLOT_ONLY=1 redraws it from a
# saved table without measuring again.
plot() {
	awk '$1 ~ /^[0-9]+$/ { print $1, $3, $9, $10, $11 }' "$OUT" > "$OUT.dat"
	gnuplot <<GNUPLOT
set terminal png size 900,560
set output "$PNG"
set title "Reading the newest snapshot: throughput against chain depth ($SIZE)"
set xlabel "chain depth"
set ylabel "MB/s (log scale)"
set logscale xy
set key outside right
set grid
plot "$OUT.dat" using 1:2 with linespoints lw 2 title "snapfs (cold mount)", \
     "" using 1:3 with linespoints title "plain decode script", \
     "" using 1:4 with linespoints title "xdelta3 merge + decode", \
     "" using 1:5 with linespoints title "cat of a plain file"
GNUPLOT
	rm -f "$OUT.dat"
	echo "bench: plot in $PNG" >&2
}
if [ -n "${BENCH_PLOT_ONLY:-}" ]; then plot; exit 0; fi

now() { date +%s.%N; }
elapsed() { echo "$(now) $1" | awk '{printf "%.3f", $1 - $2}'; }
umount_wait() {
	fusermount3 -u "$MNT" 2>/dev/null || true
	i=0; while pgrep -f "$SNAPFS .* $MNT" > /dev/null && [ $i -lt 100 ]; do
		sleep 0.1; i=$((i+1)); done
}
trap 'umount_wait; rm -rf "$DATA/plain"' EXIT

if [ ! -f "$CHAIN/done" ]; then
	echo "bench: writing a chain of depth $MAX ($SIZE states) into a mount" >&2
	rm -rf "$CHAIN"; mkdir -p "$CHAIN"
	umount_wait
	"$SNAPFS" -o quiet "$CHAIN" "$MNT"
	k=0
	if [ -n "${BENCH_STATES:-}" ]; then
		for f in $(ls "$BENCH_STATES"/snapshot_* | sort -t_ -k2 -n); do
			[ $k -le "$MAX" ] || break
			cat "$f" > "$MNT/snapshot_$k"
			k=$((k+1))
		done
		[ $k -gt "$MAX" ] || { echo "bench: only $k states in $BENCH_STATES" >&2; exit 1; }
	fi
	while [ $k -le "$MAX" ]; do
		"$SNAPGEN" --seed 42 --size "$SIZE" --index $k -o - > "$MNT/snapshot_$k"
		k=$((k+1))
	done
	ls "$MNT/snapshot_$MAX" > /dev/null	# waits for the last commit
	umount_wait
	touch "$CHAIN/done"
fi

# A store of depth d: hard links to the first d+1 layers and their
# derived data (same files, same stamps: nothing is rebuilt).
store_of() {
	s=$DATA/wstore-$TAG-d$1
	if [ ! -f "$s/increments.txt" ]; then
		rm -rf "$s"; mkdir -p "$s"
		k=0; while [ $k -le "$1" ]; do
			ln "$CHAIN"/snapshot_$k.* "$s/"; k=$((k+1)); done
		(cd "$s" && ls snapshot_* | sort -t_ -k2 -n -r > increments.txt)
		cp -al "$CHAIN/.snapfs" "$s/.snapfs"
		rm -f "$s/.snapfs/lock"
	fi
	echo "$s"
}

{
printf '# snapfs depth benchmark, %s states, %s, %s cores\n' "$SIZE" \
	"$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)"
printf '%-5s %8s %9s %7s %8s %8s %8s %9s %10s %10s %10s\n' depth mount-s \
	seq-MB/s vs-min ttfb-ms rnd-p99 idx-KiB idx-%size plain-MB/s merge-MB/s cat-MB/s
} | tee "$OUT"

# "cold": a fresh mount, the store's files (derived ones included) in
# the OS page cache.
warm_store() {
	cat "$1"/snapshot_* > /dev/null
	find "$1/.snapfs" -type f -exec cat {} + > /dev/null 2>&1 || true
}
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

# Sequential reads first, round the depths in turn: one read per depth
# is too noisy here to compare depths (a single depth-1 read ranged
# 440-1440 MB/s in six fresh mounts by hand).
SEQS=$DATA/seq-$TAG.runs
: > "$SEQS"
for d in $DEPTHS; do warm_store "$(store_of "$d")"; done
r=0
while [ $r -lt "$RUNS" ]; do
	for d in $DEPTHS; do
		s=$(store_of "$d")
		umount_wait; "$SNAPFS" -o quiet "$s" "$MNT"
		echo "$d $("$RB" seq "$MNT/snapshot_$d" | sed 's/.*mbps=//')" >> "$SEQS"
	done
	r=$((r+1))
done
umount_wait
first=; base_seq=

for d in $DEPTHS; do
	s=$(store_of "$d")
	newest=snapshot_$d
	warm_store "$s"
	t=$(now); umount_wait; "$SNAPFS" -o quiet "$s" "$MNT"; mnt_s=$(elapsed "$t")
	ttfb=$("$RB" ttfb "$MNT/$newest" | sed 's/.*=//')
	seq=$(awk -v d="$d" '$1 == d {print $2}' "$SEQS" | median)
	# vs-min: this depth's median over the shallowest depth's.
	if [ -z "$first" ]; then first=$d; base_seq=$seq; fi
	vs=$(echo "$seq $base_seq" | awk '{printf "%.2f", $1 / $2}')
	umount_wait; "$SNAPFS" -o quiet "$s" "$MNT"
	p99=$("$RB" rand "$MNT/$newest" 2000 | sed 's/.*p99_ms=\([^ ]*\).*/\1/')
	full=$(stat -c %s "$MNT/$newest")
	umount_wait
	# Derived files are named after the snapshot's id: d + 1 (ids
	# count from the base, which is 1).
	idx=$(du -k -c "$s"/.snapfs/index/$((d + 1)).* "$s"/.snapfs/aux/$((d + 1)).* 2>/dev/null | tail -1 | cut -f1)
	idxb=$(cat "$s"/.snapfs/index/$((d + 1)).* | wc -c)
	idxpct=$(echo "$idxb $full" | awk '{printf "%.3f", 100 * $1 / $2}')
	plain=-; merge=-; catmb=-
	if [ "$d" -le "$PEERS_MAX" ]; then
		rm -rf "$DATA/plain"; mkdir -p "$DATA/plain"
		t=$(now)
		sh "$TOP/contrib/snapfs-decode" "$s" "$newest" "$DATA/plain/cur" 2>/dev/null
		plain=$(echo "$full $(elapsed "$t")" | awk '{printf "%.0f", $1 / $2 / 1e6}')
		# xdelta3 merge of every patch, then one decode of the base.
		zstd -q -d -c "$s/snapshot_0.zst" > "$DATA/plain/base"
		t=$(now)
		if [ "$d" -eq 1 ]; then
			cp "$s/snapshot_1.patch" "$DATA/plain/merged"
		else
			args=""; k=1
			while [ $k -lt "$d" ]; do args="$args -m $s/snapshot_$k.patch"; k=$((k+1)); done
			xdelta3 merge $args "$s/snapshot_$d.patch" "$DATA/plain/merged"
		fi
		B=$(stat -c %s "$DATA/plain/base"); [ $B -gt 2147483648 ] && B=2147483648
		xdelta3 -d -f -B $((B < 1048576 ? 1048576 : B)) -s "$DATA/plain/base" "$DATA/plain/merged" "$DATA/plain/m_out"
		merge=$(echo "$full $(elapsed "$t")" | awk '{printf "%.0f", $1 / $2 / 1e6}')
		cmp "$DATA/plain/cur" "$DATA/plain/m_out"
		cat "$DATA/plain/cur" > /dev/null
		catmb=$("$RB" seq "$DATA/plain/cur" | sed 's/.*mbps=//')
		rm -rf "$DATA/plain"
	fi
	printf '%-5s %8s %9s %7s %8s %8s %8s %9s %10s %10s %10s\n' "$d" "$mnt_s" "$seq" \
		"$vs" "$ttfb" "$p99" "$idx" "$idxpct" "$plain" "$merge" "$catmb" | tee -a "$OUT"
done
{
echo "# seq: cold sequential MB/s through a fresh mount (store in page cache),"
echo "# median of $RUNS reads taken round the depths in turn (every run in"
echo "# $SEQS); vs-min: that median over the first depth's;"
echo "# idx-KiB: index + aux of the newest layer on disk; idx-%size: index"
echo "# file / full size; plain: contrib/snapfs-decode (zstd -d + xdelta3 -d"
echo "# per patch); merge: xdelta3 merge of all patches + one xdelta3 -d;"
echo "# cat: the same bytes from a page-cached plain file."
} | tee -a "$OUT"
command -v gnuplot > /dev/null && plot
echo "bench: table in $OUT" >&2
