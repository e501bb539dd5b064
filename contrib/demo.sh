#!/bin/sh
# make demo: builds a demo store the plain way (generator + stock zstd and
# xdelta3), mounts it, shows it, verifies every snapshot against the states
# it was made from, reads a few random blocks, and unmounts.
set -eu
BUILD=${BUILD:-build}
TOP=$(pwd)
D=$TOP/$BUILD/demo
SNAPGEN=$TOP/$BUILD/snapgen
export SNAPGEN
if [ ! -f "$D/store/increments.txt" ]; then
	rm -rf "$D"
	mkdir -p "$D"
	echo "== building a demo store: a 64 MiB QEMU-like state and 5 later snapshots"
	sh tests/mkstore.sh --depth 5 --size 64M --seed 2026 --states-dir "$D/states" "$D/store"
fi
echo
echo "== the store: a zstd base and one xdelta3 patch per later snapshot"
ls -l "$D/store"
echo "increments.txt (newest first):"; sed 's/^/    /' "$D/store/increments.txt"
mkdir -p "$D/mnt"
mountpoint -q "$D/mnt" && fusermount3 -u "$D/mnt"
echo
echo "== snapfs $D/store $D/mnt"
"$TOP/$BUILD/snapfs" "$D/store" "$D/mnt"
trap 'fusermount3 -u "$D/mnt" 2>/dev/null || true' EXIT
echo
echo "== ls -l $D/mnt   (full sizes; the store holds $(du -sh --exclude=.snapfs "$D/store" | cut -f1))"
ls -l "$D/mnt"
echo
echo "== every snapshot compared with the state it was made from"
for f in "$D"/mnt/snapshot_*; do
	k=${f##*_}
	if cmp "$f" "$D/states/state_$k"; then echo "    snapshot_$k: identical"; else
		echo "    snapshot_$k: DIFFERS"; exit 1; fi
done
echo
echo "== random access: 4 KiB blocks of snapshot_5 with dd"
for blk in 7 4242 12000; do
	a=$(dd if="$D/mnt/snapshot_5" bs=4k skip=$blk count=1 2>/dev/null | md5sum | cut -c1-12)
	b=$(dd if="$D/states/state_5" bs=4k skip=$blk count=1 2>/dev/null | md5sum | cut -c1-12)
	echo "    block $blk: mount $a original $b $([ "$a" = "$b" ] && echo same || echo DIFFERENT)"
	[ "$a" = "$b" ]
done
echo
echo "== counters (getfattr -n user.snapfs.stats $D/mnt)"
python3 -c "import os,sys; print(os.getxattr(sys.argv[1], 'user.snapfs.stats').decode())" "$D/mnt" | sed 's/^/    /'
fusermount3 -u "$D/mnt"
trap - EXIT
echo "== unmounted. The demo store stays in $D/store; try:"
echo "    $BUILD/snapfs $D/store $D/mnt && ls -l $D/mnt && fusermount3 -u $D/mnt"
