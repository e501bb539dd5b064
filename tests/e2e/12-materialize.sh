#!/bin/sh
# -o materialize=SIZE (fs/fcopy.c): a snapshot read whole, in order (cat,
# cp), gets a full copy under .snapfs/full/, made in the background; later
# mounts read that copy instead of decoding. Checked with ordinary tools:
# the copy appears after a whole read and not after a partial one, a
# remount reads it (stats) byte-exact, the bound evicts the copy used least
# recently, a damaged copy is dropped and the snapshot still reads right,
# a rebase orphans the copy and it is deleted, a mount without the option
# ignores copies, and nothing planted in .snapfs/full is followed.
. tests/e2e/lib.sh

S=$WORK/store; ST=$WORK/states; MNT=$WORK/mnt
mkdir -p "$S" "$ST"
"$SNAPGEN" --seed 21 --size 24M --count 3 -o "$ST" > /dev/null
zstd -q "$ST/state_0" -o "$S/snapshot_0.zst"
xdelta3 -e -s "$ST/state_0" "$ST/state_1" "$S/snapshot_1.patch"
xdelta3 -e -s "$ST/state_1" "$ST/state_2" "$S/snapshot_2.patch"
printf 'snapshot_2.patch\nsnapshot_1.patch\nsnapshot_0.zst\n' > "$S/increments.txt"
SZ=$(stat -c %s "$ST/state_2")
LOG=$WORK/snapfs.mnt.log
FULL=$S/.snapfs/full

stat_of() { # NAME: a counter of the mount's stats xattr
	python3 -c "import os,sys; print(os.getxattr(sys.argv[1], 'user.snapfs.stats').decode())" "$MNT" |
		sed -n "s/^$1 //p"
}
ncopies() { find "$FULL" -maxdepth 1 -type f -name '*.full' | wc -l; }
wait_copies() { # N: up to 30 s for N full copies
	i=0; while [ "$(ncopies)" -lt "$1" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
	[ "$(ncopies)" -ge "$1" ]
}
remount() { snapfs_umount "$MNT"; snapfs_mount "$S" "$MNT" "$@"; }

check "mount with -o materialize=200M" snapfs_mount "$S" "$MNT" -o materialize=200M
check "a partial read (dd of 3 MiB) is byte-exact" same_bytes "$MNT/snapshot_1" "$ST/state_1" 0 3145728
check "cat of snapshot_2 is byte-exact" cmp "$MNT/snapshot_2" "$ST/state_2"
check "a full copy appears under .snapfs/full after the whole read" wait_copies 1
sleep 1
check "only one: the partial read of snapshot_1 made none ($(ncopies))" test "$(ncopies)" -eq 1
f=$(ls "$FULL"/*.full)
check "the copy has the snapshot's size" test "$(stat -c %s "$f")" = "$SZ"
check "the copy holds the snapshot's bytes" cmp "$f" "$ST/state_2"
check "stats count one copy made" test "$(stat_of full_copies_made)" = 1
check "the log says where the copy went" grep -q "snapshot_2: full copy made, .snapfs/full/" "$LOG"

check "remount" remount -o materialize=200M
check "snapshot_2 is byte-exact from the remount" cmp "$MNT/snapshot_2" "$ST/state_2"
check "it was read from its full copy ($(stat_of full_copy_read_bytes) bytes)" \
	test "$(stat_of full_copy_read_bytes)" = "$SZ"
ok_ranges=0
for off in 0 4095 1048577 7340031 $((SZ - 5000)); do
	same_bytes "$MNT/snapshot_2" "$ST/state_2" $off 4999 && ok_ranges=$((ok_ranges + 1))
done
check "ranges read through dd match the state ($ok_ranges of 5)" test $ok_ranges -eq 5
cp "$MNT/snapshot_1" "$WORK/copy_1"
check "cp of snapshot_1 is byte-exact" cmp "$WORK/copy_1" "$ST/state_1"
check "cp made a second copy" wait_copies 2

# The bound: room for one copy. The whole read of snapshot_0 evicts the
# copies used least recently.
check "remount with -o materialize=30M" remount -o materialize=30M
check "cat of snapshot_0 is byte-exact" cmp "$MNT/snapshot_0" "$ST/state_0"
i=0; while ! grep -q "snapshot_0: full copy made" "$LOG" && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
check "snapshot_0's copy was made" grep -q "snapshot_0: full copy made" "$LOG"
check "the bound kept one copy ($(ncopies))" test "$(ncopies)" -eq 1
check "the evictions are logged" grep -q "used least recently" "$LOG"
used=$(du -sb "$FULL" | cut -f1)
check ".snapfs/full holds $used bytes, within 30M (plus its directory)" test "$used" -le $((30 * 1048576 + 8192))
check "remount" remount -o materialize=30M
check "snapshot_0 reads byte-exact" cmp "$MNT/snapshot_0" "$ST/state_0"
check "... from its copy" test "$(stat_of full_copy_read_bytes)" = "$(stat -c %s "$ST/state_0")"
check "snapshot_2 (evicted) reads byte-exact" cmp "$MNT/snapshot_2" "$ST/state_2"
check "... not from a copy" test "$(stat_of full_copy_read_bytes)" = "$(stat -c %s "$ST/state_0")"
# That whole read makes snapshot_2's copy again, evicting snapshot_0's.
i=0; while [ "$(grep -c "snapshot_2: full copy made" "$LOG")" -lt 2 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
check "snapshot_2's copy was made again, in place of snapshot_0's ($(ncopies))" \
	test "$(grep -c "snapshot_2: full copy made" "$LOG")" -eq 2 -a "$(ncopies)" -eq 1

# Too big for the bound: no copy, and the log says why.
check "remount with -o materialize=1M" remount -o materialize=1M
cat "$MNT/snapshot_1" > /dev/null
i=0; while ! grep -q "snapshot_1: no full copy made" "$LOG" && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
check "a snapshot over the bound gets no copy, and the log says to raise it" \
	grep -q "snapshot_1: no full copy made.*do not fit -o materialize (raise it)" "$LOG"

# Without the option, copies are neither read nor made.
check "remount without -o materialize" remount
check "snapshot_2 reads byte-exact" cmp "$MNT/snapshot_2" "$ST/state_2"
check "snapshot_0 reads byte-exact" cmp "$MNT/snapshot_0" "$ST/state_0"
sleep 1
check "... neither from snapshot_2's copy" test "$(stat_of full_copy_read_bytes)" = 0
check "... nor making one" test "$(stat_of full_copies_made)" = 0 -a "$(ncopies)" -eq 1

# A damaged copy: dropped, and the snapshot still reads right.
f=$(ls "$FULL"/*.full)
snapfs_umount "$MNT"
printf 'X' | dd of="$f" bs=1 seek=2000000 conv=notrunc 2>/dev/null
check "remount after damaging the copy" snapfs_mount "$S" "$MNT" -o materialize=30M
check "snapshot_2 still reads byte-exact" cmp "$MNT/snapshot_2" "$ST/state_2"
check "stats count the copy dropped" test "$(stat_of full_copies_dropped)" = 1
check "the log names the damaged copy" grep -q "snapshot_2: its full copy .snapfs/full/.* is damaged" "$LOG"
check "the damaged copy is deleted" test ! -e "$f"

# Something planted in .snapfs/full is never followed.
echo outside > "$WORK/outside"
ln -s "$WORK/outside" "$FULL/planted.full"
check "remount" remount -o materialize=200M
check "snapshot_2 reads byte-exact" cmp "$MNT/snapshot_2" "$ST/state_2"
check "a copy of snapshot_2 is made again" wait_copies 1
sleep 1
check "the file a planted symlink pointed to is untouched" test "$(cat "$WORK/outside")" = outside
check "the planted symlink was removed" test ! -L "$FULL/planted.full"

# A rebase orphans the child's copy (named after its ancestry).
old=$(find "$FULL" -maxdepth 1 -type f -name '*.full')
check "rm snapshot_1 (snapshot_2 rebased onto snapshot_0)" rm "$MNT/snapshot_1"
check "snapshot_2 reads byte-exact after the rebase" cmp "$MNT/snapshot_2" "$ST/state_2"
check "its old copy was deleted with the old version" test ! -e "$old"
check "unmount" snapfs_umount "$MNT"
check "no sanitizer report" sh -c "! grep -q Sanitizer '$LOG'"
e2e_done
