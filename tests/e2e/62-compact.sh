#!/bin/sh
# snapctl compact: a store made by stock tools (the plain scripts' layout:
# a single-frame zstd base, patches with one lzma stream, djw, none, a
# full file in the middle) stored again in snapfs's own form. Every
# snapshot is compared after it through snapctl, through a mount and
# through stock zstd + xdelta3; the copies under .snapfs/ that the stock
# forms needed must be gone, the store no larger, and a second run must
# change nothing. Also: --dry-run changes nothing, a named snapshot only,
# refused beside a mount, a mount left open during nothing (snapctl only).
. tests/e2e/lib.sh

SNAPCTL=$TOP/$BUILD/snapctl
ST=$WORK/states; S=$WORK/store; MNT=$WORK/mnt
mkdir -p "$ST" "$S"
for k in 0 1 2 3 4 5; do
	"$SNAPGEN" --seed 62 --size 12M --index $k -o "$ST/state_$k"
done
ctl() { "$SNAPCTL" -s "$S" "$@"; }
bytes() { find "$1" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}'; }
own_bytes() { find "$S" -maxdepth 1 -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}'; }
# all_exact WHERE: every snapshot through snapctl cat, or the mount.
all_exact() {
	for k in 0 1 2 3 4 5; do
		if [ "$1" = ctl ]; then ctl cat snapshot_$k | cmp -s - "$ST/state_$k" || return 1
		else cmp -s "$1/snapshot_$k" "$ST/state_$k" || return 1; fi
	done
}
# stock_exact: the store's own files decoded by stock zstd and xdelta3
# alone, each patch against the state before it (snapshot_3 is a full
# file, raw: as it is).
stock_exact() {
	zstd -q -d -c "$S/snapshot_0.zst" | cmp -s - "$ST/state_0" || { echo "base"; return 1; }
	for k in 1 2 4 5; do
		xdelta3 -d -c -s "$ST/state_$((k - 1))" "$S/snapshot_$k.patch" |
			cmp -s - "$ST/state_$k" || { echo "snapshot_$k"; return 1; }
	done
	f=$(ls "$S"/snapshot_3* | head -1)
	case $f in
	*.zst) zstd -q -d -c "$f" | cmp -s - "$ST/state_3" ;;
	*) cmp -s "$f" "$ST/state_3" ;;
	esac
}

# The scripts' layout, each file as stock tools make it: a base over
# ZFRAME_MAX_FRAME (8 MiB) in one frame, lzma patches of 1 MiB windows
# (one stream across several windows: read through a converted copy).
zstd -q -3 "$ST/state_0" -o "$S/snapshot_0.zst"
xdelta3 -e -S lzma -W 1048576 -s "$ST/state_0" "$ST/state_1" "$S/snapshot_1.patch"
xdelta3 -e -S djw -s "$ST/state_1" "$ST/state_2" "$S/snapshot_2.patch"
cp "$ST/state_3" "$S/snapshot_3"		# a full file, raw
xdelta3 -e -S none -s "$ST/state_3" "$ST/state_4" "$S/snapshot_4.patch"
xdelta3 -e -W 1048576 -s "$ST/state_4" "$ST/state_5" "$S/snapshot_5.patch"
printf '%s\n' snapshot_5.patch snapshot_4.patch snapshot_3 snapshot_2.patch \
	snapshot_1.patch snapshot_0.zst > "$S/increments.txt"
check "the stock files decode with stock tools" stock_exact

check "mount the stock store" snapfs_mount "$S" "$MNT"
check "every snapshot exact through the mount" all_exact "$MNT"
check "unmount" snapfs_umount "$MNT"
check "the first mount's log points to snapctl compact for each stock form" \
	test "$(grep -c 'snapctl compact. stores it' "$WORK/snapfs.mnt.log")" = 4
check "snapctl reads the stock store" all_exact ctl
check "... which needed copies: a seekable base in .snapfs/base" test -n "$(ls "$S/.snapfs/base")"
check "... and plain patches in .snapfs/plain" test -n "$(ls "$S/.snapfs/plain"/*.vcdiff)"
meta0=$(bytes "$S/.snapfs"); own0=$(own_bytes)

ctl compact --dry-run > "$WORK/dry.out" 2>&1
check "compact --dry-run exits 0" test $? = 0
check "... names every snapshot in a stock form (6 lines)" test "$(grep -c 'would be stored again' "$WORK/dry.out")" = 6
check "... and changes nothing" test "$(own_bytes)" = "$own0"

check "compact of one named snapshot" ctl compact snapshot_1
check "... makes it windowed lzma: no plain copy of it left" sh -c "! ls '$S/.snapfs/plain/' | grep -q '^2\..*vcdiff'"
check "... and the others still read" all_exact ctl

ctl compact > "$WORK/compact.out" 2>&1
rc=$?
check "compact of the whole store exits 0" test $rc = 0
sed 's/^/    /' "$WORK/compact.out"
check "... says what it did, with the store's bytes before and after" grep -q 'stored again.*the store.s files.*\.snapfs/' "$WORK/compact.out"
check "every snapshot exact after it (snapctl)" all_exact ctl
check "the files still decode with stock zstd and xdelta3" stock_exact
check "the base is seekable zstd: no copy in .snapfs/base" test -z "$(ls "$S/.snapfs/base")"
check "no converted plain patch left in .snapfs/plain" sh -c "! ls '$S/.snapfs/plain' | grep -q vcdiff"
check "the raw full file is now zstd (snapshot_3.zst)" test -f "$S/snapshot_3.zst" -a ! -e "$S/snapshot_3"
meta1=$(bytes "$S/.snapfs"); own1=$(own_bytes)
echo "    store files $own0 -> $own1 bytes, .snapfs $meta0 -> $meta1 bytes"
check "the store's files take less room ($own0 -> $own1)" test "$own1" -lt "$own0"
check ".snapfs/ takes less room ($meta0 -> $meta1)" test "$meta1" -lt "$meta0"
check "snapctl check: every snapshot verified" ctl check
check "snapshot_3 is still a full layer (it cuts the depth)" sh -c "'$SNAPCTL' -s '$S' ls --tsv | grep -q '^snapshot_4	' && test \"\$('$SNAPCTL' -s '$S' ls --tsv | grep -c .)\" = 6"

ctl compact > "$WORK/again.out" 2>&1
check "a second compact changes nothing" sh -c "grep -q '^0 stored again' '$WORK/again.out' && test $(own_bytes) = $own1"

check "mount the compacted store" snapfs_mount "$S" "$MNT"
check "every snapshot exact through the mount" all_exact "$MNT"
check "snapshot_3 is a full layer" test "$(getfattr --only-values -n user.snapfs.kind "$MNT/snapshot_3" 2>/dev/null)" = full
check "snapshot_5 is at depth 2 (above the full layer)" test "$(getfattr --only-values -n user.snapfs.depth "$MNT/snapshot_5" 2>/dev/null)" = 2
ctl compact >/dev/null 2>&1
check "compact beside a mount is refused with exit 3" test $? = 3
check "unmount" snapfs_umount "$MNT"

e2e_done
