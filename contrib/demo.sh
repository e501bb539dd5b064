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

# The tree, on a copy (hard links: snapfs replaces files, never edits
# them), so the demo store stays as it is for the next run.
T=$D/tree; rm -rf "$T"; cp -al "$D/store" "$T"; rm -f "$T/.snapfs/lock"
echo
echo "== managing snapshots, on a copy of the store ($T)"
"$TOP/$BUILD/snapfs" "$T" "$D/mnt"
trap 'fusermount3 -u "$D/mnt" 2>/dev/null || true' EXIT
echo "   rm snapshot_3           (snapshot_4 is re-encoded against snapshot_2)"
rm "$D/mnt/snapshot_3"
echo "   mv snapshot_4 before-upgrade"
mv "$D/mnt/snapshot_4" "$D/mnt/before-upgrade"
echo "   setfattr -n user.description -v 'kernel 6.1, before the upgrade' before-upgrade"
setfattr -n user.description -v "kernel 6.1, before the upgrade" "$D/mnt/before-upgrade" 2>/dev/null ||
	python3 -c "import os,sys; os.setxattr(sys.argv[1], 'user.description', b'kernel 6.1, before the upgrade')" "$D/mnt/before-upgrade"
echo "   ln -sfn snapshot_2 current; cp state_3 experiment   (a branch off snapshot_2)"
ln -sfn snapshot_2 "$D/mnt/current"
cp "$D/states/state_3" "$D/mnt/experiment"
ls -l "$D/mnt"
for n in before-upgrade experiment snapshot_5; do
	printf '   %-15s parent=%s' "$n" "$(python3 -c "import os,sys
try: print(os.getxattr(sys.argv[1], 'user.snapfs.parent').decode(), end='')
except OSError: print('-', end='')" "$D/mnt/$n")"
	case $n in before-upgrade) k=4 ;; experiment) k=3 ;; *) k=5 ;; esac
	if cmp -s "$D/mnt/$n" "$D/states/state_$k"; then echo "  identical to state_$k"; else
		echo "  DIFFERS from state_$k"; exit 1; fi
done
echo "   increments.txt (the line from current down, for the plain scripts):"
grep -v '^#' "$T/increments.txt" | sed 's/^/      /'
fusermount3 -u "$D/mnt"
trap - EXIT
echo
echo "== unmounted. The demo store stays in $D/store; try:"
echo "    $BUILD/snapfs $D/store $D/mnt && ls -l $D/mnt && fusermount3 -u $D/mnt"
