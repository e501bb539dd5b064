#!/bin/sh
# Measures how much deltas save on real QEMU state streams: for state files
# F1 F2 ... (in the given order), prints each file's size and the size of
# `xdelta3 -e -B <size> -s F(k-1) Fk` (source window as large as the file,
# so moved pages are still found), plus stock-default xdelta3 (-B 64 MiB)
# and `zstd -3` of the first file for comparison.
# Usage: tests/qemu/deltas.sh FILE1 FILE2 [FILE3...]
# Needs xdelta3 and zstd (sh contrib/deps.sh test). Output: one line per file.
set -eu
[ $# -ge 2 ] || { echo "usage: deltas.sh FILE1 FILE2 [FILE...]" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/snapfs-deltas.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
now() { date +%s.%N; }
calc() { awk "BEGIN { print $* }"; }
first=$1
size=$(stat -c %s "$first")
t0=$(now); z=$(zstd -3 -q -c "$first" | wc -c); t1=$(now)
printf '%s size=%s zstd-3=%s (%.1f%%, %.1fs)\n' "$(basename "$first")" "$size" "$z" \
	"$(calc "$z * 100 / $size")" "$(calc "$t1 - $t0")"
prev=$first; shift
total=$size; sum_big=0; sum_def=0
for f in "$@"; do
	size=$(stat -c %s "$f"); total=$((total + size))
	B=$(( (size + 1048575) / 1048576 * 1048576 ))
	t0=$(now); xdelta3 -e -f -B "$B" -s "$prev" "$f" "$tmp/p"; t1=$(now)
	big=$(stat -c %s "$tmp/p")
	xdelta3 -d -f -s "$prev" "$tmp/p" "$tmp/out" && cmp -s "$tmp/out" "$f" || {
		echo "deltas.sh: xdelta3 round trip of $f failed" >&2; exit 1; }
	t2=$(now); xdelta3 -e -f -s "$prev" "$f" "$tmp/p"; t3=$(now)
	def=$(stat -c %s "$tmp/p")
	sum_big=$((sum_big + big)); sum_def=$((sum_def + def))
	printf '%s size=%s xdelta3-B%dM=%s (%.2f%%, %.1fs) xdelta3-default=%s (%.2f%%, %.1fs)\n' \
		"$(basename "$f")" "$size" $((B / 1048576)) "$big" \
		"$(calc "$big * 100 / $size")" "$(calc "$t1 - $t0")" \
		"$def" "$(calc "$def * 100 / $size")" "$(calc "$t3 - $t2")"
	prev=$f
done
echo "total full=$total deltas(-B)=$sum_big deltas(default)=$sum_def"
