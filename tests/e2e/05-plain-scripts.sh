#!/bin/sh
# 05-plain-scripts: the store format without snapfs. Builds a ~32 MiB,
# depth-5 chain with tests/mkstore.sh, rebuilds every layer with
# contrib/snapfs-decode and compares it with a fresh snapgen run, adds a
# layer with contrib/snapfs-encode, merges patches with contrib/snapfs-merge,
# and checks that the generated chain looks like a VM's: a few percent of
# the bytes change per step, zero pages shift later bytes, and xdelta3 still
# makes small patches. Needs no FUSE. Prints "ok"/"not ok" lines, then
# "N passed, M failed".
# The sh -c bodies are single-quoted on purpose: they get their values as $1..
# shellcheck disable=SC2016,SC2317
set -eu
BUILD=${BUILD:-build}
root=$(cd "$(dirname "$0")/../.." && pwd)
case $BUILD in /*) ;; *) BUILD=$root/$BUILD ;; esac
gen=$BUILD/snapgen
export SNAPGEN="$gen"
dec=$root/contrib/snapfs-decode
enc=$root/contrib/snapfs-encode
mrg=$root/contrib/snapfs-merge
SIZE=32M SEED=7 DEPTH=5

workdir=$(mktemp -d "${TMPDIR:-/tmp}/snapfs-e2e05.XXXXXX")
cleanup() { rm -rf "$workdir"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok $pass - $*"; }
notok() { fail=$((fail + 1)); echo "not ok - $*"; }
# check DESCRIPTION COMMAND...: one test; output of the command goes to the log.
check() {
	d=$1; shift
	if "$@" >"$workdir/out" 2>&1; then ok "$d"; else
		notok "$d"; sed 's/^/    /' "$workdir/out" | tail -n 20; fi
}
finish() {
	echo "$pass passed, $fail failed"
	[ "$fail" -eq 0 ]
	exit $?
}
size() { wc -c <"$1" | tr -d ' '; }

if [ ! -x "$gen" ]; then
	notok "snapgen missing at $gen (run make)"
	finish
fi
for t in xdelta3 zstd cmp; do
	command -v $t >/dev/null || { notok "$t not installed"; finish; }
done

w=$workdir
g() { "$gen" --seed $SEED --size $SIZE "$@"; }

# --- snapgen itself
check "snapgen is deterministic (same args, same bytes)" sh -c '
	"$1" --seed 7 --size 4M --index 3 -o "$2/a" &&
	"$1" --seed 7 --size 4M --index 3 -o - >"$2/b" && cmp "$2/a" "$2/b"' \
	_ "$gen" "$w"
check "snapgen: another seed gives other bytes" sh -c '
	"$1" --seed 8 --size 4M --index 3 -o "$2/c" && ! cmp -s "$2/a" "$2/c"' \
	_ "$gen" "$w"
check "snapgen --count writes the same states as --index" sh -c '
	"$1" --seed 7 --size 4M --count 4 -o "$2/cnt" && cmp "$2/cnt/state_3" "$2/a" &&
	"$1" --seed 7 --size 4M --index 0 -o "$2/a0" && cmp "$2/cnt/state_0" "$2/a0"' \
	_ "$gen" "$w"
check "snapgen writes a QEMU-like stream (QEVM magic, ram section)" sh -c '
	head -c 4 "$1" | grep -q QEVM && head -c 64 "$1" | grep -q pc.ram' _ "$w/a"
check "snapgen rejects bad options" sh -c '
	! "$1" --size 1X -o /dev/null 2>/dev/null &&
	! "$1" --index 1 --count 2 -o /dev/null 2>/dev/null' _ "$gen"

# --- mkstore.sh
check "mkstore.sh builds a depth-$DEPTH store of ~$SIZE states" \
	sh "$root/tests/mkstore.sh" --depth $DEPTH --size $SIZE --seed $SEED \
	--states-dir "$w/states" "$w/store"
sed 's/^/# /' "$workdir/out"
expect="snapshot_5.patch snapshot_4.patch snapshot_3.patch snapshot_2.patch snapshot_1.patch snapshot_0.zst"
check "increments.txt lists the layers newest first, base last" \
	test "$(tr '\n' ' ' <"$w/store/increments.txt")" = "$expect "
check "layer mtimes increase in chain order" sh -c '
	prev=0; for f in snapshot_0.zst snapshot_1.patch snapshot_2.patch \
	    snapshot_3.patch snapshot_4.patch snapshot_5.patch; do
		t=$(stat -c %Y "$1/$f"); [ "$t" -gt "$prev" ] || exit 1; prev=$t
	done' _ "$w/store"
check "mkstore.sh refuses a non-empty store directory" sh -c '
	! sh "$1/tests/mkstore.sh" --depth 1 --size 1M "$2" 2>/dev/null' \
	_ "$root" "$w/store"

# --- decode every layer, compare with a fresh snapgen run
k=0
while [ $k -le $DEPTH ]; do
	check "snapfs-decode snapshot_$k = snapgen --index $k" sh -c '
		"$1" "$2" snapshot_$3 "$4/dec" &&
		"$5" --seed '$SEED' --size '$SIZE' --index $3 -o "$4/ref" &&
		cmp "$4/dec" "$4/ref"' _ "$dec" "$w/store" $k "$w" "$gen"
	k=$((k + 1))
done
check "snapfs-decode with no NAME rebuilds the newest, to stdout too" sh -c '
	"$1" "$2" "$3/dec" && cmp "$3/dec" "$3/states/state_5" &&
	"$1" "$2" - | cmp - "$3/states/state_5"' _ "$dec" "$w/store" "$w"
check "snapfs-decode leaves no temporary files" sh -c '
	for f in "$1"/.snapfs*; do [ ! -e "$f" ] || exit 1; done' _ "$w"

# --- the chain looks like a VM's
s0=$(size "$w/states/state_0")
report=""
k=1
while [ $k -le $DEPTH ]; do
	p=$(size "$w/store/snapshot_$k.patch")
	sk=$(size "$w/states/state_$k")
	report="$report snapshot_$k.patch=$p/$sk"
	check "snapshot_$k.patch is 0.2%..5% of its state ($p of $sk bytes)" \
		test $((p * 1000)) -gt $((sk * 2)) -a $((p * 100)) -lt $((sk * 5))
	k=$((k + 1))
done
echo "# patch/state sizes:$report"
"$gen" --seed $SEED --size $SIZE --no-shift --index 0 -o "$w/n0"
"$gen" --seed $SEED --size $SIZE --no-shift --index 1 -o "$w/n1"
nd=$(cmp -l "$w/n0" "$w/n1" | wc -l)
ns=$(size "$w/n0")
echo "# without shifts, state_0 and state_1 differ in $nd of $ns bytes"
check "one step changes a few percent of the bytes (0.3%..10%: $nd of $ns)" \
	test $((nd * 1000)) -gt $((ns * 3)) -a $((nd * 100)) -lt $((ns * 10))
# With shifts: zero <-> data page toggles change the size by 4095 bytes each.
s1=$(size "$w/states/state_1")
first=$(cmp "$w/states/state_0" "$w/states/state_1" 2>/dev/null |
	sed -n 's/.* byte \([0-9]*\).*/\1/p')
dd=$(cmp -l "$w/states/state_0" "$w/states/state_1" 2>/dev/null | wc -l)
p1=$(size "$w/store/snapshot_1.patch")
echo "# state_0 $s0 bytes, state_1 $s1 bytes; first difference at byte $first;" \
	"$dd bytes differ at equal offsets; patch $p1 bytes"
check "zero-page toggles shift the stream (size change a multiple of 4095)" \
	test $((s1 - s0)) -ne 0 -a $(((s1 - s0) % 4095)) -eq 0
check "streams diverge early (first difference in the first half)" \
	test "${first:-0}" -gt 0 -a "${first:-0}" -lt $((s0 / 2))
check "most bytes differ at equal offsets, yet xdelta3 finds the moved data" \
	test $((dd * 100)) -gt $((s1 * 20)) -a $((p1 * 20)) -lt "$dd"

# --- encode a new state, decode it back
g --index 6 -o "$w/s6"
check "snapfs-encode adds snapshot_6.patch and rewrites increments.txt" sh -c '
	"$1" "$2" "$3/s6" && head -n 1 "$2/increments.txt" | grep -qx snapshot_6.patch &&
	[ $(wc -l <"$2/increments.txt") -eq 7 ]' _ "$enc" "$w/store" "$w"
check "snapfs-decode of the new layer gives the encoded file back" sh -c '
	"$1" "$2" snapshot_6 "$3/dec" && cmp "$3/dec" "$3/s6"' _ "$dec" "$w/store" "$w"
check "snapfs-encode into an empty store makes a zstd base (from stdin)" sh -c '
	"$1" "$2" - <"$3/states/state_0" && [ "$(cat "$2/increments.txt")" = snapshot_0.zst ] &&
	zstd -d -q -c "$2/snapshot_0.zst" | cmp - "$3/states/state_0"' \
	_ "$enc" "$w/fresh" "$w"
check "snapfs-encode with a NAME, then decode it" sh -c '
	"$1" "$2" "$3/states/state_1" monday && "$4" "$2" monday "$3/dec" &&
	cmp "$3/dec" "$3/states/state_1" && ! "$1" "$2" "$3/s6" monday 2>/dev/null' \
	_ "$enc" "$w/fresh" "$w" "$dec"

# --- merge
check "snapfs-merge 1..3 applied to state_0 gives state_3" sh -c '
	"$1" "$2" snapshot_1 snapshot_3 "$3/m13.patch" &&
	xdelta3 -d -f -s "$3/states/state_0" "$3/m13.patch" "$3/m3" &&
	cmp "$3/m3" "$3/states/state_3"' _ "$mrg" "$w/store" "$w"
echo "# merged 1..3: $(size "$w/m13.patch") bytes; separate:" \
	"$(( $(size "$w/store/snapshot_1.patch") + $(size "$w/store/snapshot_2.patch") + $(size "$w/store/snapshot_3.patch") ))"
check "snapfs-merge of one layer copies it" sh -c '
	"$1" "$2" snapshot_2.patch snapshot_2 "$3/m22" &&
	cmp "$3/m22" "$2/snapshot_2.patch"' _ "$mrg" "$w/store" "$w"
check "snapfs-merge refuses the base and reversed ranges" sh -c '
	! "$1" "$2" snapshot_0 snapshot_2 "$3/x" 2>/dev/null &&
	! "$1" "$2" snapshot_3 snapshot_2 "$3/x" 2>/dev/null' _ "$mrg" "$w/store" "$w"

# --- raw base
check "mkstore.sh --base raw, decode every layer" sh -c '
	sh "$1/tests/mkstore.sh" --depth 2 --size 4M --seed 3 --base raw \
		--keep-states "$2/raw/store" 2>/dev/null &&
	[ "$(tail -n 1 "$2/raw/store/increments.txt")" = snapshot_0 ] &&
	for k in 0 1 2; do "$3" "$2/raw/store" snapshot_$k "$2/rd" &&
		cmp "$2/rd" "$2/raw/states/state_$k" || exit 1; done &&
	"$4" "$2/raw/store" "$2/raw/states/state_2" &&
	"$3" "$2/raw/store" - | cmp - "$2/raw/states/state_2"' \
	_ "$root" "$w" "$dec" "$enc"

# --- errors name the file
mv "$w/store/snapshot_2.patch" "$w/p2"
check "snapfs-decode fails on a missing layer and names the file" sh -c '
	! "$1" "$2" snapshot_4 "$3/x" 2>"$3/err" &&
	grep -q "missing layer file .*snapshot_2.patch" "$3/err" && [ ! -e "$3/x" ]' \
	_ "$dec" "$w/store" "$w"
mv "$w/p2" "$w/store/snapshot_2.patch"
check "snapfs-decode fails on a corrupt patch and names it" sh -c '
	cp "$2/snapshot_4.patch" "$3/p4" &&
	printf "garbage" | dd of="$2/snapshot_4.patch" bs=1 seek=3000 conv=notrunc 2>/dev/null &&
	! "$1" "$2" snapshot_4 "$3/x" 2>"$3/err"; rc=$?;
	cp "$3/p4" "$2/snapshot_4.patch";
	[ $rc -eq 0 ] && grep -q "snapshot_4.patch" "$3/err" && [ ! -e "$3/x" ]' \
	_ "$dec" "$w/store" "$w"
check "snapfs-decode names an unknown layer" sh -c '
	! "$1" "$2" nosuch "$3/x" 2>"$3/err" && grep -q "no layer .nosuch." "$3/err"' \
	_ "$dec" "$w/store" "$w"
check "scripts print usage for -h" sh -c '
	"$1" -h | grep -q "^usage:" && "$2" -h | grep -q "^usage:" &&
	"$3" -h | grep -q "^usage:" && sh "$4/tests/mkstore.sh" -h | grep -q "^usage:"' \
	_ "$dec" "$enc" "$mrg" "$root"

finish
