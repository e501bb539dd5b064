#!/bin/sh
# Snapshots as a tree, managed with ordinary file operations in the mount:
# rm (children rebased) while readers read, rm of an open snapshot, of the
# base, of a leaf and of a node with two children; mv; descriptions and
# metadata as xattrs; branches through the `current` symlink; remounts;
# kill -9 in the middle of rm; ENOSPC during a rebase. Every snapshot is
# compared with the state it was made from after every step, and stock
# tools decode the store on disk.
. tests/e2e/lib.sh

ST=$WORK/states; S=$WORK/store; MNT=$WORK/mnt
mkdir -p "$ST" "$S"
for k in 0 1 2 3 4 5 6 7 8 9; do
	"$SNAPGEN" --seed 41 --size 8M --index $k -o "$ST/state_$k"
done

# exact NAME STATE: the mount's NAME has the bytes of $ST/STATE.
exact() { cmp "$MNT/$1" "$ST/$2"; }
xattr() { getfattr --only-values -n "$2" "$MNT/$1" 2>/dev/null; }
# all_exact "name:state ...": every listed snapshot is exact.
all_exact() {
	for p in $1; do exact "${p%%:*}" "${p#*:}" || { echo "$p differs"; return 1; }; done
}

check "mount an empty store" snapfs_mount "$S" "$MNT"
for k in 0 1 2 3 4 5; do
	cp "$ST/state_$k" "$MNT/snapshot_$k" || notok "cp snapshot_$k"
done
LIVE="snapshot_0:state_0 snapshot_1:state_1 snapshot_2:state_2 snapshot_3:state_3 snapshot_4:state_4 snapshot_5:state_5"
check "six snapshots written, all exact" all_exact "$LIVE"
check "current is a symlink to the newest" test "$(readlink "$MNT/current")" = snapshot_5
check "ls shows current as a symlink" sh -c "ls -l '$MNT' | grep -q '^l.* current -> snapshot_5'"

# Metadata.
check "parent xattr" test "$(xattr snapshot_3 user.snapfs.parent)" = snapshot_2
check "the base has no parent" test -z "$(xattr snapshot_0 user.snapfs.parent)"
check "depth xattr" test "$(xattr snapshot_3 user.snapfs.depth)" = 3
check "kind: base" test "$(xattr snapshot_0 user.snapfs.kind)" = base
check "kind: patch" test "$(xattr snapshot_3 user.snapfs.kind)" = patch
check "stored = the patch file's size" test "$(xattr snapshot_3 user.snapfs.stored)" = "$(stat -c %s "$S/snapshot_3.patch")"
check "created is ISO 8601" sh -c "xattr() { getfattr --only-values -n \$2 '$MNT/'\$1; }; xattr snapshot_3 user.snapfs.created | grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z\$'"
want=$(xxhsum -H2 "$ST/state_3" | cut -d' ' -f1)
check "digest is the XXH128 of the full state" test "$(xattr snapshot_3 user.snapfs.digest)" = "xxh128:$want"
check "getfattr -d lists the metadata" sh -c "getfattr -d '$MNT/snapshot_3' | grep -q user.snapfs.parent"
check "setfattr user.description" setfattr -n user.description -v "before the upgrade" "$MNT/snapshot_2"
check "the description reads back" test "$(xattr snapshot_2 user.description)" = "before the upgrade"
check "du counts stored bytes, not the full size" test "$(du -k "$MNT/snapshot_3" | cut -f1)" -lt "$(( $(stat -c %s "$ST/state_3") / 1024 / 4 ))"
ctime=$(stat -c %Y "$MNT/snapshot_3")
check "ls -l shows the creation time" test "$(date -u -d "$(xattr snapshot_3 user.snapfs.created)" +%s)" = "$ctime"

# rm of a middle snapshot while 4 readers compare other snapshots.
(
	for i in 1 2 3; do
		for p in snapshot_5:state_5 snapshot_4:state_4 snapshot_1:state_1 snapshot_0:state_0; do
			exact "${p%%:*}" "${p#*:}" || exit 1
		done
	done
) > "$WORK/readers.out" 2>&1 &
r1=$!
( for i in 1 2 3 4; do exact snapshot_5 state_5 || exit 1; done ) &
r2=$!
( for i in 1 2 3 4; do exact snapshot_1 state_1 || exit 1; done ) &
r3=$!
( for i in 1 2 3 4; do exact snapshot_4 state_4 || exit 1; done ) &
r4=$!
# Index files are named "<id>.<stamp>.idx": those of the snapshots below
# snapshot_3 (ids 1-3) must not change when it goes.
# idx_of PATTERN...: the index files matching, globbed in the index dir.
idx_of() { (cd "$S/.snapfs/index" && for p in "$@"; do ls $p 2>/dev/null; done | sort | tr '\n' ' '); }
below=$(idx_of '1.*' '2.*' '3.*')
check "rm a middle snapshot (snapshot_3) while 4 readers read" rm "$MNT/snapshot_3"
check "the snapshots below it keep their indexes ($below)" test "$(idx_of '1.*' '2.*' '3.*')" = "$below"
check "its derived data is gone (no index of id 4 left)" test -z "$(idx_of '4.*')"
check "reader 1 saw exact bytes" wait $r1
check "reader 2 saw exact bytes" wait $r2
check "reader 3 saw exact bytes" wait $r3
check "reader 4 saw exact bytes" wait $r4
LIVE="snapshot_0:state_0 snapshot_1:state_1 snapshot_2:state_2 snapshot_4:state_4 snapshot_5:state_5"
check "snapshot_3 is gone" test ! -e "$MNT/snapshot_3"
check "its patch is gone from the store" test ! -e "$S/snapshot_3.patch"
check "after rm: every other snapshot exact" all_exact "$LIVE"
check "snapshot_4 now has snapshot_2 as parent" test "$(xattr snapshot_4 user.snapfs.parent)" = snapshot_2
check "increments.txt no longer names snapshot_3" sh -c "! grep -q snapshot_3 '$S/increments.txt'"

# rm of a snapshot a reader holds open: its reads stay exact until close.
exec 3<"$MNT/snapshot_1"
check "rm a snapshot that is open" rm "$MNT/snapshot_1"
check "the open reader still reads exact bytes" sh -c "cmp - '$ST/state_1' <&3"
exec 3<&-
LIVE="snapshot_0:state_0 snapshot_2:state_2 snapshot_4:state_4 snapshot_5:state_5"
check "after rm of an open one: others exact" all_exact "$LIVE"

# rm of the base: its child becomes the base.
check "rm the base" rm "$MNT/snapshot_0"
check "snapshot_2 is the new base" test "$(xattr snapshot_2 user.snapfs.kind)" = base
check "the new base is stored as zstd" test -e "$S/snapshot_2.zst"
LIVE="snapshot_2:state_2 snapshot_4:state_4 snapshot_5:state_5"
check "after rm of the base: all exact" all_exact "$LIVE"

# mv.
all_idx=$(idx_of '*')
check "mv renames" mv "$MNT/snapshot_4" "$MNT/four"
check "unmount after mv" snapfs_umount "$MNT"
check "remount after mv" snapfs_mount "$S" "$MNT"
check "mv re-indexed nothing, even after a remount ($all_idx)" test "$(idx_of '*')" = "$all_idx"
check "the new name reads exact" exact four state_4
check "the old name is gone" test ! -e "$MNT/snapshot_4"
check "the file in the store is renamed" test -e "$S/four.patch"
check_fails "mv onto an existing name" mv -T "$MNT/four" "$MNT/snapshot_5"
check_fails "mv to a hidden name" mv "$MNT/four" "$MNT/.four"
check "the refused mvs changed nothing" all_exact "four:state_4 snapshot_5:state_5"
LIVE="snapshot_2:state_2 four:state_4 snapshot_5:state_5"

# A branch: current back to snapshot_2, then a new snapshot on it.
check "ln -sfn moves current" ln -sfn snapshot_2 "$MNT/current"
check "current points to snapshot_2" test "$(readlink "$MNT/current")" = snapshot_2
check "write a branch off snapshot_2" cp "$ST/state_6" "$MNT/branch"
check "the branch's parent is snapshot_2" test "$(xattr branch user.snapfs.parent)" = snapshot_2
check "current follows the snapshot just written" test "$(readlink "$MNT/current")" = branch
LIVE="$LIVE branch:state_6"
check "both branches exact" all_exact "$LIVE"
zstd -q -d -c "$S/snapshot_2.zst" > "$WORK/full2"
check "stock xdelta3 -d decodes the branch's patch against its real parent" \
	sh -c "xdelta3 -d -f -B 16777216 -s '$WORK/full2' '$S/branch.patch' '$WORK/dec' && cmp '$WORK/dec' '$ST/state_6'"
check "increments.txt is the line from current down" \
	test "$(grep -v '^#' "$S/increments.txt" | tr '\n' ' ')" = "branch.patch snapshot_2.zst "
check "contrib/snapfs-decode decodes the current line" \
	sh -c "sh contrib/snapfs-decode '$S' branch '$WORK/dec2' >/dev/null 2>&1 && cmp '$WORK/dec2' '$ST/state_6'"

# rm of a node with two children (snapshot_2 has four and branch).
check "write a second child under four" sh -c "ln -sfn four '$MNT/current' && cp '$ST/state_7' '$MNT/seven'"
check "rm snapshot_2 (the base, two children)" rm "$MNT/snapshot_2"
LIVE="four:state_4 snapshot_5:state_5 branch:state_6 seven:state_7"
check "after rm of a two-child base: all exact" all_exact "$LIVE"
nb=0
for n in four branch; do [ "$(xattr $n user.snapfs.kind)" = base ] && nb=$((nb + 1)); done
check "exactly one of its children became the base" test $nb = 1
check "unmount" snapfs_umount "$MNT"

# Remount: the tree, names and description persist.
check "remount" snapfs_mount "$S" "$MNT"
check "after remount: all exact" all_exact "$LIVE"
check "after remount: seven's parent is four" test "$(xattr seven user.snapfs.parent)" = four
check "after remount: current is kept" test "$(readlink "$MNT/current")" = seven
check "rm a leaf" rm "$MNT/seven"
LIVE="four:state_4 snapshot_5:state_5 branch:state_6"
check "after rm of a leaf: all exact" all_exact "$LIVE"
check "current moved to the leaf's parent" test "$(readlink "$MNT/current")" = four
check "setfattr on four" setfattr -n user.description -v "kept across remounts" "$MNT/four"
check "unmount" snapfs_umount "$MNT"
check "remount again" snapfs_mount "$S" "$MNT"
check "the description persists across a remount" test "$(xattr four user.description)" = "kept across remounts"
check "unmount" snapfs_umount "$MNT"

# kill -9 at 20 moments of an rm: the tree is the old one or the new one.
K=$WORK/kstore
rm -rf "$K"; mkdir -p "$K"
check "a 5-snapshot store for the kill test" snapfs_mount "$K" "$MNT"
for k in 0 1 2 3 4; do cp "$ST/state_$k" "$MNT/s$k"; done
check "unmount" snapfs_umount "$MNT"
mv "$K" "$WORK/kpristine"	# a rename keeps the inodes its derived data is named after
bad=0; gone=0
round=0
while [ $round -lt 20 ]; do
	# (round, not i: the helpers in lib.sh use i.)
	# Hard links: snapfs replaces files by rename, never in place, so the
	# pristine copy stays as it is, and its derived data (named after the
	# files' inodes) is reused instead of rebuilt each round.
	rm -rf "$K"; cp -al "$WORK/kpristine" "$K"
	snapfs_mount "$K" "$MNT" || { bad=$((bad + 1)); round=$((round + 1)); continue; }
	victim=s$((1 + round % 3))
	rm "$MNT/$victim" 2>/dev/null &
	rmpid=$!
	sleep "0.0$(( (round * 37) % 10 ))$(( round % 7 ))"
	pkill -KILL -f "snapfs -f $K $MNT"
	wait $rmpid 2>/dev/null
	fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
	if ! snapfs_mount "$K" "$MNT"; then
		echo "kill $round: remount failed"; bad=$((bad + 1)); round=$((round + 1)); continue
	fi
	for k in 0 1 2 3 4; do
		if [ -e "$MNT/s$k" ]; then
			exact "s$k" "state_$k" || { echo "kill $round: s$k differs"; bad=$((bad + 1)); }
		elif [ "s$k" = "$victim" ]; then
			gone=$((gone + 1))
		else
			echo "kill $round: s$k lost"; bad=$((bad + 1))
		fi
	done
	snapfs_umount "$MNT" >/dev/null 2>&1
	round=$((round + 1))
done
check "kill -9 during rm, 20 times: every survivor exact, the victim whole or gone ($gone gone)" test $bad = 0

# ENOSPC during a rebase: the old tree stays.
T=$WORK/tiny
mkdir -p "$T"
if mount -t tmpfs -o size=24m tmpfs "$T" 2>/dev/null; then
	MOUNTS="$MOUNTS $T"
	cp -a "$WORK/kpristine" "$T/store"
	check "mount a store on a 24 MB tmpfs" snapfs_mount "$T/store" "$MNT"
	cat "$MNT/s2" > /dev/null
	avail=$(df -k --output=avail "$T" | tail -1)
	head -c $(( (avail - 64) * 1024 )) /dev/zero > "$T/filler" 2>/dev/null
	before=$(cat "$T/store/increments.txt")
	out=$(rm "$MNT/s1" 2>&1); rc=$?
	check "rm that needs a rebase on a full disk fails ($out)" test $rc -ne 0
	check "the layers file is unchanged" test "$(cat "$T/store/increments.txt")" = "$before"
	check "the store keeps s1's patch" test -e "$T/store/s1.patch"
	check "every snapshot still exact" all_exact "s0:state_0 s1:state_1 s2:state_2 s3:state_3 s4:state_4"
	rm -f "$T/filler"
	check "with space again, the rm works" rm "$MNT/s1"
	check "and every other snapshot is exact" all_exact "s0:state_0 s2:state_2 s3:state_3 s4:state_4"
	check "unmount" snapfs_umount "$MNT"
	check "remount after the ENOSPC" snapfs_mount "$T/store" "$MNT"
	check "after remount: exact" all_exact "s0:state_0 s2:state_2 s3:state_3 s4:state_4"
	check "unmount" snapfs_umount "$MNT"
	umount "$T"
else
	notok "cannot mount a tmpfs for the ENOSPC test (needs root)"
fi
e2e_done
