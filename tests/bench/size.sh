#!/bin/sh
# make bench, patch size: snapfs's encoder without and with windowed lzma
# (vcdiff_enc_opts.secondary) next to stock `xdelta3 -e` and
# `xdelta3 -e -9 -B <size>` on the same pairs, ratios from this run. Every
# windowed-lzma patch is decoded by stock `xdelta3 -d` and compared.
#
#   BENCH_STATES="a b c"   state files in chain order, each pair (a,b),
#                          (b,c), ... is measured (e.g. real QEMU states
#                          kept by SNAPFS_QEMU_KEEP=dir tests/e2e/50-qemu.sh)
#   BENCH_SIZE=256M        otherwise: a snapgen pair of this size (seed 7)
#   BENCH_LZMA_PRESET=0    liblzma preset for ours (1..9, e.g. 6e = extreme;
#                          0 = the encoder's default)
#   BENCH_WIN=0            window bytes for ours (0 = encoder default, 8 MiB)
#   BENCH_SIZE_OUT=file    where to write the table too
#                          (default $BUILD/bench-size.txt)
set -eu
BUILD=${BUILD:-build-bench}
TOP=$(pwd)
BP=$TOP/$BUILD/bench/bench_patch
PRESET=${BENCH_LZMA_PRESET:-0}
WIN=${BENCH_WIN:-0}
W=$(mktemp -d /tmp/snapfs-bench-size.XXXXXX)
OUT=${BENCH_SIZE_OUT:-$TOP/$BUILD/bench-size.txt}
trap 'rm -rf "$W"' EXIT

now() { date +%s.%N; }
elapsed() { echo "$(now) $1" | awk '{printf "%.1f", $1 - $2}'; }

if [ -n "${BENCH_STATES:-}" ]; then
	set -- $BENCH_STATES
	what="given states"
else
	SIZE=${BENCH_SIZE:-256M}
	"$TOP/$BUILD/snapgen" --seed 7 --size "$SIZE" --index 0 -o "$W/s0"
	"$TOP/$BUILD/snapgen" --seed 7 --size "$SIZE" --index 1 -o "$W/s1"
	set -- "$W/s0" "$W/s1"
	what="snapgen --seed 7 --size $SIZE, states 0 and 1"
fi

rows=$W/rows
: > "$rows"
prev=
for cur in "$@"; do
	if [ -z "$prev" ]; then prev=$cur; continue; fi
	n=$(stat -c %s "$cur")
	B=$n; [ "$B" -gt 2147483648 ] && B=2147483648
	[ "$B" -lt 524288 ] && B=524288
	plain=$(nice "$BP" "$prev" "$cur" "$W/p.none" none | sed 's/.*bytes=\([0-9]*\).*/\1/')
	t=$(now)
	ours=$(nice "$BP" "$prev" "$cur" "$W/p.lzma" lzma "$PRESET" "$WIN")
	ours_s=$(elapsed "$t")
	ours=$(echo "$ours" | sed 's/.*bytes=\([0-9]*\).*/\1/')
	t=$(now); nice xdelta3 -e -f -s "$prev" "$cur" "$W/x.def"; xd_s=$(elapsed "$t")
	t=$(now); nice xdelta3 -e -f -9 -B "$B" -s "$prev" "$cur" "$W/x.best"; xb_s=$(elapsed "$t")
	nice xdelta3 -d -f -B "$B" -s "$prev" "$W/p.lzma" "$W/check"
	cmp "$W/check" "$cur"
	rm -f "$W/check"
	echo "$(basename "$prev")->$(basename "$cur") $n $plain $ours $ours_s \
$(stat -c %s "$W/x.def") $xd_s $(stat -c %s "$W/x.best") $xb_s" >> "$rows"
	prev=$cur
done

{
printf '# snapfs patch size, %s, %s, lzma preset %s, %s cores\n' "$what" \
	"$(date -u +%Y-%m-%dT%H:%MZ)" \
	"$( [ "$PRESET" = 0 ] && echo "default" || echo "$PRESET")" "$(nproc)"
printf '# bytes (encode seconds); ratio = ours (lzma) / that\n'
awk '
function row(name, n, pl, ou, os, xd, xs, xb, bs) {
	printf "%-22s %11d %10d %10d (%4.1fs) %10d (%5.1fs) %10d (%5.1fs) %6.3f %6.3f\n",
		name, n, pl, ou, os, xd, xs, xb, bs, ou / xd, ou / xb
}
BEGIN {
	printf "%-22s %11s %10s %17s %18s %18s %6s %6s\n", "pair", "target",
		"ours-plain", "ours-lzma", "xdelta3 -e", "xdelta3 -9 -B", "/-e", "/-9B"
}
{
	row($1, $2, $3, $4, $5, $6, $7, $8, $9)
	for (i = 2; i <= 9; i++) t[i] += $i
	k++
}
END {
	if (k > 1) row("total", t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9])
}' "$rows"
echo "# stock xdelta3 -d decoded every ours-lzma patch to the exact bytes."
} | tee "$OUT"
