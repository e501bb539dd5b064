#!/bin/sh
# make bench, write side: new snapshots written into the mount (`cat >`,
# close and commit included), next to stock xdelta3 -e (defaults) and
# xdelta3 -e -9 -B <size> of the same pairs, all in one run; ratios from
# this run only (the machine is shared and noisy). Patch sizes, peak RSS
# of snapfs while writing, and the writer's own per-stage times (its log).
# Every patch is decoded by stock xdelta3 -d and compared.
#
#   BENCH_SIZE=1G        state size for the generated pair (snapgen seed 7)
#   BENCH_STATES="a b c" instead: these states in order; the first becomes
#                        the base, each next one is written and compared
#                        (e.g. real QEMU states kept by SNAPFS_QEMU_KEEP)
#   BENCH_BEFORE=path    also run the same writes with this snapfs binary
#                        (another build), in the same run, for a before /
#                        after row each
#   BENCH_REPEAT=1       rounds (each: every build, then xdelta3)
#   BENCH_SIZE_TABLE=1   0: skip the patch-size table (tests/bench/size.sh)
#   BENCH_QEMU=1         0: without BENCH_STATES, only the generated pair;
#                        else then also issue 11's pairs, the six states of
#                        the 1 GiB guest that restore.sh uses (saved first
#                        if missing, a few minutes), into bench-write-qemu.txt
set -eu
BUILD=${BUILD:-build-bench}
TOP=$(pwd)
SIZE=${BENCH_SIZE:-1G}
DATA=${BENCH_DATA:-$TOP/$BUILD/bench-data}
SNAPFS=$TOP/$BUILD/snapfs
SNAPGEN=$TOP/$BUILD/snapgen
W=$DATA/write
MNT=$W/mnt
OUT=${BENCH_WRITE_OUT:-$TOP/$BUILD/bench-write.txt}
REPEAT=${BENCH_REPEAT:-1}

now() { date +%s.%N; }
elapsed() { echo "$(now) $1" | awk '{printf "%.3f", $1 - $2}'; }
mbps() { echo "$1 $2" | awk '{printf "%.0f", $1 / $2 / 1e6}'; }
umount_wait() { # BINARY
	fusermount3 -u "$MNT" 2>/dev/null || true
	i=0; while pgrep -f "$1 .* $MNT" > /dev/null && [ $i -lt 100 ]; do
		sleep 0.1; i=$((i+1)); done
}
trap 'umount_wait "$SNAPFS"; [ -n "${BENCH_BEFORE:-}" ] && umount_wait "$BENCH_BEFORE"; rm -rf "$W"' EXIT
rm -rf "$W"; mkdir -p "$W" "$MNT"
if [ -n "${BENCH_STATES:-}" ]; then
	set -- $BENCH_STATES
	what="given states"
else
	"$SNAPGEN" --seed 7 --size "$SIZE" --index 0 -o "$W/s0"
	"$SNAPGEN" --seed 7 --size "$SIZE" --index 1 -o "$W/s1"
	set -- "$W/s0" "$W/s1"
	what="snapgen --seed 7 --size $SIZE, states 0 and 1"
fi
STATES="$*"
rows=$W/rows
: > "$rows"

# One round of writes with snapfs binary $1 (label $2): the first state
# copied in as the base, every later one written with cat and closed;
# the commit is waited for by a read of its first byte.
write_series() { # BINARY LABEL ROUND
	bin=$1; label=$2; round=$3
	rm -rf "$W/store"; mkdir -p "$W/store"
	"$bin" -o quiet -o log="$W/log.$label.$round" "$W/store" "$MNT"
	pid=$(pgrep -f "$bin .* $MNT" | head -1)
	prev=; k=0
	for cur in $STATES; do
		cat "$cur" > /dev/null
		if [ -z "$prev" ]; then
			cp "$cur" "$MNT/base"; cat "$MNT/base" > /dev/null
			prev=$cur; continue
		fi
		k=$((k + 1))
		# The peak while writing this one, not the reads before it
		# (cmp below, the base's read): 5 resets VmHWM (proc(5)).
		{ echo 5 > /proc/$pid/clear_refs; } 2>/dev/null || true
		t=$(now); cat "$cur" > "$MNT/snap$k"; w_s=$(elapsed "$t")
		t=$(now); head -c1 "$MNT/snap$k" > /dev/null; c_s=$(elapsed "$t")
		rss=$(awk '/VmHWM/ {printf "%d", $2 / 1024}' /proc/$pid/status)
		cmp "$MNT/snap$k" "$cur"
		bytes=$(stat -c %s "$cur")
		B=$bytes; [ $B -gt 2147483648 ] && B=2147483648
		[ $B -lt 1048576 ] && B=1048576
		xdelta3 -d -f -B $B -s "$prev" "$W/store/snap$k.patch" "$W/check"
		cmp "$W/check" "$cur"; rm -f "$W/check"
		echo "$round $label $k $bytes $w_s $c_s $(stat -c %s "$W/store/snap$k.patch") $rss" >> "$rows"
		prev=$cur
	done
	umount_wait "$bin"
}

xdelta_series() { # ROUND
	prev=; k=0
	for cur in $STATES; do
		if [ -z "$prev" ]; then prev=$cur; continue; fi
		k=$((k + 1))
		bytes=$(stat -c %s "$cur")
		B=$bytes; [ $B -gt 2147483648 ] && B=2147483648
		t=$(now); xdelta3 -e -f -s "$prev" "$cur" "$W/x.default"; d_s=$(elapsed "$t")
		t=$(now); xdelta3 -e -f -9 -B $B -s "$prev" "$cur" "$W/x.best"; b_s=$(elapsed "$t")
		echo "$1 xdelta3 $k $bytes $d_s $b_s $(stat -c %s "$W/x.default") $(stat -c %s "$W/x.best")" >> "$rows"
		prev=$cur
	done
}

r=1
while [ $r -le $REPEAT ]; do
	[ -n "${BENCH_BEFORE:-}" ] && write_series "$BENCH_BEFORE" before $r
	write_series "$SNAPFS" snapfs $r
	xdelta_series $r
	r=$((r + 1))
done

{
printf '# snapfs write benchmark, %s, %s, %s cores, %s round(s)\n' "$what" \
	"$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$REPEAT"
printf '# time = cat > mount (close included) + commit; ratios against xdelta3 -e of the same pair in the same round\n'
awk '
$2 == "xdelta3" { xd[$1 " " $3] = $5; xb[$1 " " $3] = $6; xds[$1 " " $3] = $7; xbs[$1 " " $3] = $8; next }
{ row[n++] = $0 }
END {
	printf "%-5s %-7s %-4s %12s %8s %7s %8s %6s %10s %10s %11s %6s %6s %5s\n", "round", "build",
		"pair", "target", "cat s", "+commit", "total s", "MB/s", "xdelta3 -e", "x/total",
		"patch", "/-e", "/-9-B", "RSS"
	for (i = 0; i < n; i++) {
		split(row[i], f, " "); key = f[1] " " f[3]; tot = f[5] + f[6]
		printf "%-5s %-7s %-4s %12d %8.2f %7.2f %8.2f %6.0f %10.2f %9.2fx %11d %6.3f %6.3f %5d\n",
			f[1], f[2], f[3], f[4], f[5], f[6], tot, f[4] / tot / 1e6, xd[key],
			xd[key] / tot, f[7], f[7] / xds[key], f[7] / xbs[key], f[8]
	}
	for (k in xb) printf "# xdelta3 round.pair %s: -e %.2f s (%d bytes), -e -9 -B %.2f s (%d bytes)\n", k, xd[k], xds[k], xb[k], xbs[k]
}' "$rows"
echo "# RSS: snapfs peak (VmHWM, reset before the write) in MiB at the end of the write and its commit; cache budget 256 MiB."
echo "# stock xdelta3 -d decoded every snapfs patch to the exact bytes; every snapshot read back exact."
echo "# the writer's own per-stage times (snapfs log, this build):"
grep -h "bytes in" "$W"/log.snapfs.* 2>/dev/null | sed 's/^/#   /' || true
} | tee "$OUT"

if [ "${BENCH_SIZE_TABLE:-1}" != 0 ]; then
	# Patch size with windowed lzma (tests/bench/size.sh) on the same pairs,
	# and on the real QEMU states an earlier `make bench` kept
	# (tests/bench/qemu.sh runs after this script), their first 6.
	BENCH_STATES="$STATES" BENCH_SIZE_OUT=$TOP/$BUILD/bench-size.txt \
		BUILD=$BUILD sh tests/bench/size.sh
	qs=$(ls -d "$DATA"/qemu-states-* 2>/dev/null | head -1)
	if [ -n "$qs" ] && [ -z "${BENCH_STATES:-}" ]; then
		BENCH_STATES="$(ls "$qs"/snapshot_* | sort -t_ -k2 -n | head -6)" \
		BENCH_SIZE_OUT=$TOP/$BUILD/bench-size-qemu.txt \
			BUILD=$BUILD sh tests/bench/size.sh
	fi
fi
if [ -z "${BENCH_STATES:-}" ] && [ "${BENCH_QEMU:-1}" != 0 ]; then
	. tests/bench/states.sh
	QS=$DATA/qemu-1024m
	qemu_states "$QS" 6 1024 560	# as restore.sh saves them
	trap - EXIT; umount_wait "$SNAPFS"; rm -rf "$W"
	BENCH_STATES="$(ls "$QS"/snapshot_* | sort -t_ -k2 -n)" \
	BENCH_WRITE_OUT=$TOP/$BUILD/bench-write-qemu.txt BENCH_SIZE_TABLE=0 BUILD=$BUILD \
		sh tests/bench/write.sh
fi
