#!/bin/sh
# Mount a chain made by stock zstd + xdelta3 (a different xdelta3 option
# set for every patch) and read it with ordinary tools: ls, stat, cmp, cp,
# dd, eight readers at once, thousands of random ranges, mmap, the page
# cache and -o direct_read; remount from the saved indexes; rebuild after .snapfs/ is deleted; raw and multi-frame
# zstd bases.
. tests/e2e/lib.sh

S=$WORK/store; ST=$WORK/states; MNT=$WORK/mnt
mkdir -p "$S" "$ST"
SIZE=24M
for k in 0 1 2 3 4 5 6; do
	"$SNAPGEN" --seed 11 --size $SIZE --index $k -o "$ST/state_$k"
done
zstd -q "$ST/state_0" -o "$S/snapshot_0.zst"
# One option set per patch: what stock xdelta3 users actually run.
set -- "" "-S none" "-9 -B 268435456" "-S none -W 16384" "-n" "-S djw"
k=1
for opts in "$@"; do
	xdelta3 -e -f $opts -s "$ST/state_$((k-1))" "$ST/state_$k" "$S/snapshot_$k.patch"
	k=$((k + 1))
done
# Layer k gets mtime 2026-01-01 + k hours (chain order; checked below).
for k in 0 1 2 3 4 5 6; do
	f=$(ls "$S"/snapshot_$k.*)
	touch -d "2026-01-01 $k:00:00 UTC" "$f"
done
(cd "$S" && ls -t snapshot_* > increments.txt)
N=6

check "mount" snapfs_mount "$S" "$MNT"
names=$(ls "$MNT" | tr '\n' ' ')
check "ls lists the chain and current: $names" test "$names" = "current snapshot_0 snapshot_1 snapshot_2 snapshot_3 snapshot_4 snapshot_5 snapshot_6 "
check "current points to the newest snapshot (top of increments.txt)" test "$(readlink "$MNT/current")" = snapshot_6
for k in $(seq 0 $N); do
	f=$(ls "$S"/snapshot_$k.*)
	check "snapshot_$k: size is the full state's" \
		test "$(stat -c %s "$MNT/snapshot_$k")" = "$(stat -c %s "$ST/state_$k")"
	check "snapshot_$k: mode 444, mtime of its layer file" \
		test "$(stat -c '%a %Y' "$MNT/snapshot_$k")" = "444 $(stat -c %Y "$f")"
	check "snapshot_$k: cmp with the original" cmp "$MNT/snapshot_$k" "$ST/state_$k"
done
check "st_blocks of snapshot_6 count the stored patch, not the full size" \
	test "$(stat -c %b "$MNT/snapshot_6")" -lt "$(( $(stat -c %s "$ST/state_6") / 512 / 4 ))"
check "2000 random ranges of snapshot_6" "$TOP/$BUILD/rangecmp" -n 2000 -s 1 "$MNT/snapshot_6" "$ST/state_6"
check "2000 random ranges of snapshot_3" "$TOP/$BUILD/rangecmp" -n 2000 -s 2 "$MNT/snapshot_3" "$ST/state_3"
for blk in 0 17 1234 4321 5999; do
	check "dd bs=4k skip=$blk of snapshot_5" same_bytes "$MNT/snapshot_5" "$ST/state_5" $((blk * 4096)) 4096
done
check "cp snapshot_4 out of the mount" cp "$MNT/snapshot_4" "$WORK/copy4"
check "the copy is exact" cmp "$WORK/copy4" "$ST/state_4"
rm -f "$WORK/copy4"
# Eight readers at once, on different and on the same snapshots.
printf '%s\n' 0 1 2 3 4 5 6 6 > "$WORK/jobs"
check "8 parallel readers" sh -c "xargs -P8 -I{} cmp '$MNT/snapshot_{}' '$ST/state_{}' < '$WORK/jobs'"
check "missing name: ENOENT" test ! -e "$MNT/snapshot_99"
check "missing name again (negative lookup)" test ! -e "$MNT/snapshot_99"
check_fails "appending to a snapshot is refused" sh -c "echo x >> '$MNT/snapshot_1'"
check "snapshot_1 unchanged after the refused write" cmp "$MNT/snapshot_1" "$ST/state_1"
stats=$(python3 -c "import os,sys; print(os.getxattr(sys.argv[1], 'user.snapfs.stats').decode())" "$MNT")
hits=$(echo "$stats" | sed -n 's/^cache_hits //p')
check "stats xattr counts cache hits ($hits)" test "${hits:-0}" -gt 0
check "df works on the mount" df "$MNT"
# Reads go through the kernel's page cache (fs/fuse_ops.c op_open): a
# second read is served from it (the mount's read count does not move),
# and maps of either kind work.
reads() { python3 -c "import os,sys; print(os.getxattr(sys.argv[1], 'user.snapfs.stats').decode())" "$MNT" | sed -n 's/^reads //p'; }
mmap_cmp() { # FILE ORIG shared|private: the mapping's bytes are ORIG's
	python3 -c "
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
fl = mmap.MAP_SHARED if sys.argv[3] == 'shared' else mmap.MAP_PRIVATE
m = mmap.mmap(fd, 0, flags=fl, prot=mmap.PROT_READ)
sys.exit(0 if m[:] == open(sys.argv[2], 'rb').read() else 1)" "$@"
}
# The count moves when a reply is sent, after the reader may have its
# bytes: let the last replies of the first read land before counting.
cat "$MNT/snapshot_6" > /dev/null; sleep 0.5; r1=$(reads)
check "a second read of snapshot_6 is exact" cmp "$MNT/snapshot_6" "$ST/state_6"
check "... and came from the page cache (reads $r1 -> $(reads))" test "$(reads)" = "$r1"
check "a shared mmap of snapshot_4 reads its bytes" mmap_cmp "$MNT/snapshot_4" "$ST/state_4" shared
check "a private mmap of snapshot_5 reads its bytes" mmap_cmp "$MNT/snapshot_5" "$ST/state_5" private
check "unmount" snapfs_umount "$MNT"

# -o direct_read: straight to the reader; a second read asks the mount
# again, a private map works, a shared one is refused by the kernel.
check "mount with -o direct_read" snapfs_mount "$S" "$MNT" -o direct_read
check "direct_read: snapshot_6 exact" cmp "$MNT/snapshot_6" "$ST/state_6"
sleep 0.5; r1=$(reads)
check "direct_read: snapshot_6 exact again" cmp "$MNT/snapshot_6" "$ST/state_6"
check "direct_read: the second read asked the mount (reads $r1 -> $(reads))" test "$(reads)" -gt "$r1"
check "direct_read: 500 random ranges of snapshot_3" "$TOP/$BUILD/rangecmp" -n 500 -s 4 "$MNT/snapshot_3" "$ST/state_3"
check "direct_read: a private mmap of snapshot_5 reads its bytes" mmap_cmp "$MNT/snapshot_5" "$ST/state_5" private
check_fails "direct_read: a shared mmap is refused" mmap_cmp "$MNT/snapshot_5" "$ST/state_5" shared
check "unmount" snapfs_umount "$MNT"

# Remount: indexes come from .snapfs/, nothing is rebuilt.
: > "$WORK/snapfs.mnt.log"
check "remount" snapfs_mount "$S" "$MNT"
check "remount did no first-mount work" sh -c "! grep -q -e indexing -e converting '$WORK/snapfs.mnt.log'"
check "after remount: snapshot_6 exact" cmp "$MNT/snapshot_6" "$ST/state_6"
check "after remount: random ranges of snapshot_2" "$TOP/$BUILD/rangecmp" -n 1000 -s 3 "$MNT/snapshot_2" "$ST/state_2"
check "unmount" snapfs_umount "$MNT"

# .snapfs/ is derived data: delete it and everything is rebuilt.
rm -rf "$S/.snapfs"
check "mount after deleting .snapfs/" snapfs_mount "$S" "$MNT"
check "rebuilt: snapshot_6 exact" cmp "$MNT/snapshot_6" "$ST/state_6"
check "rebuilt: snapshot_1 exact" cmp "$MNT/snapshot_1" "$ST/state_1"
check "unmount" snapfs_umount "$MNT"

# -o raw_base: the base decompressed once under .snapfs/base, same bytes.
check "mount with -o raw_base" snapfs_mount "$S" "$MNT" -o raw_base
check "raw_base: snapshot_6 exact" cmp "$MNT/snapshot_6" "$ST/state_6"
check "raw_base: random ranges of snapshot_4" "$TOP/$BUILD/rangecmp" -n 500 -s 9 "$MNT/snapshot_4" "$ST/state_4"
check "raw_base: the decompressed copy exists" sh -c "ls '$S'/.snapfs/base/*.raw"
check "unmount" snapfs_umount "$MNT"

# A raw base, and a base of several zstd frames without a seek table.
R=$WORK/raw; mkdir -p "$R"
cp "$ST/state_0" "$R/base.img"
xdelta3 -e -f -s "$ST/state_0" "$ST/state_1" "$R/s1.patch"
printf 's1.patch\nbase.img\n' > "$R/increments.txt"
check "mount with a raw base" snapfs_mount "$R" "$WORK/mraw"
check "raw base: base exact" cmp "$WORK/mraw/base" "$ST/state_0"
check "raw base: s1 exact" cmp "$WORK/mraw/s1" "$ST/state_1"
check "unmount" snapfs_umount "$WORK/mraw"

F=$WORK/frames; mkdir -p "$F"
# Frames of 6 MB: small enough to use in place (the limit is 8 MiB).
(cd "$WORK" && split -b 6000000 "$ST/state_0" part. && for p in part.*; do
	zstd -q -c "$p"; done > "$F/base.zst" && rm -f part.*)
cp "$R/s1.patch" "$F/"
printf 's1.patch\nbase.zst\n' > "$F/increments.txt"
check "mount with a multi-frame zstd base" snapfs_mount "$F" "$WORK/mfr"
check "multi-frame base: exact" cmp "$WORK/mfr/base" "$ST/state_0"
check "multi-frame base: s1 exact" cmp "$WORK/mfr/s1" "$ST/state_1"
check "multi-frame base used as it is (no transcode)" sh -c "[ -z \"\$(ls '$F/.snapfs/base')\" ]"
check "unmount" snapfs_umount "$WORK/mfr"
e2e_done
