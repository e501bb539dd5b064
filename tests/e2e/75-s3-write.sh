#!/bin/sh
# Writing a store kept in a bucket, on a real S3 server that checks
# signatures (Swift + s3api, tests/e2e/s3lib.sh). One mount per store
# writes (-o writer takes the lease .snapfs/lease); it starts a store in
# an empty prefix, and `cat >` adds snapshots whose layers are uploaded
# (multipart when large) and decode with stock zstd and xdelta3. A
# second host's mount reads only, and follows the writer by polling:
# a new snapshot, a rename, a description and an rm (its child rebased,
# its object replaced in the bucket) show within seconds, every byte
# compared. A second writer is refused, naming the holder; a killed
# writer's lease lapses after its ttl and a new writer takes over. The
# bucket going away during a write fails the writer's close(), and
# nothing half-written shows. A fresh host then reads every snapshot
# byte-exact.
. tests/e2e/lib.sh
. tests/e2e/s3lib.sh

s3_require
check "the S3 server starts" s3_start
[ -n "$S3_PROXY_PID" ] || { e2e_done; exit 1; }

B=snapfs-write
URL=s3://$B/vm
ST=$WORK/states
W=$WORK/w
R=$WORK/r
mkstore --depth 4 --size 12M --states-dir "$ST" "$WORK/scratch" 2>/dev/null
check "make a bucket" s3_mb "$B"

listed() { s3 GET "/$B?list-type=2&prefix=$(echo "$1" | sed 's#/#%2F#g')" | grep -q "<Key>$1"; }
# wait_until SECONDS command...: polls the command every 0.2 s.
wait_until() {
	_t=$(($1 * 5)); shift
	while [ $_t -gt 0 ]; do "$@" 2>/dev/null && return 0; sleep 0.2; _t=$((_t - 1)); done
	"$@"
}
shown() { test "$(ls "$1" | tr '\n' ' ')" = "$2"; }

# --- 1. a writer starts a store in an empty prefix ---
# 5 MiB parts: the 12 MiB base is a multipart upload.
check "an empty prefix mounts with -o writer" snapfs_mount "$URL" "$W" -o writer,cache_dir="$WORK/cw",lease_ttl=6,s3_chunk=1M,s3_part=5M
check "... holding the lease (.snapfs/lease in the bucket)" listed vm/.snapfs/lease
check "cat > writes the base" sh -c "cat '$ST/state_0' > '$W/snapshot_0'"
check "cat > writes a patch on it" sh -c "cat '$ST/state_1' > '$W/snapshot_1'"
check "both read back byte-exact" sh -c "cmp '$W/snapshot_0' '$ST/state_0' && cmp '$W/snapshot_1' '$ST/state_1'"
check "the bucket holds their layers: snapshot_0.zst" listed vm/snapshot_0.zst
check "... and snapshot_1.patch" listed vm/snapshot_1.patch
layers_line() { test "$(s3 GET /$B/vm/increments.txt | tr '\n' ' ')" = "$1"; }
check "... and increments.txt names them, newest first" layers_line "snapshot_1.patch snapshot_0.zst "
up=$(getfattr --only-values -n user.snapfs.stats "$W" 2>/dev/null | sed -n 's/^remote_uploaded //p')
key_size() { s3 GET "/$B?list-type=2&prefix=vm%2F$1" | grep -o '<Size>[0-9]*' | sed 's/<Size>//'; }
stored=$(( $(key_size snapshot_0.zst) + $(key_size snapshot_1.patch) ))
echo "# uploaded $up bytes for $stored bytes of layers"
check "each layer was uploaded once (remote_uploaded = their sizes)" test "${up:-0}" -eq "$stored"
stock_decode() {
	s3 GET "/$B/vm/snapshot_0.zst" > "$WORK/b.zst" &&
	s3 GET "/$B/vm/snapshot_1.patch" > "$WORK/p1" &&
	zstd -q -d -f "$WORK/b.zst" -o "$WORK/b.raw" &&
	xdelta3 -d -f -s "$WORK/b.raw" "$WORK/p1" "$WORK/p1.out" &&
	cmp "$WORK/b.raw" "$ST/state_0" && cmp "$WORK/p1.out" "$ST/state_1"
}
check "stock zstd -d and xdelta3 -d rebuild both from the bucket's objects" stock_decode
# 12 MiB that do not compress: a patch over 5 MiB, uploaded in parts.
head -c 12M /dev/urandom > "$WORK/noise"
check "cat > writes 12 MiB of noise" sh -c "cat '$WORK/noise' > '$W/noise'"
multipart() { s3 HEAD "/$B/vm/noise.patch" | grep -i '^etag' | grep -q -- '-[0-9]'; }
check "... uploaded in parts (its ETag ends in -N)" multipart
check "... reads back byte-exact" cmp "$W/noise" "$WORK/noise"
check "rm of a leaf snapshot" rm "$W/noise"
check_fails "... deletes its object" listed vm/noise.patch

# --- 2. a second host reads, and follows the writer ---
check "a second host mounts (no -o writer: reads only)" snapfs_mount "$URL" "$R" -o cache_dir="$WORK/cr",poll=1,s3_chunk=1M
check "... shows both snapshots" shown "$R" "current snapshot_0 snapshot_1 "
check "... byte-exact" cmp "$R/snapshot_1" "$ST/state_1"
check "... and refuses writes (EROFS)" sh -c "! cat '$ST/state_2' > '$R/x' 2>/dev/null"
mkdir -p "$WORK/never"
check "a second writer is refused, naming the holder" sh -c \
	"out=\$(timeout 60 '$SNAPFS' -f -o writer,cache_dir='$WORK/cw2' '$URL' '$WORK/never' 2>&1); echo \"\$out\"; echo \"\$out\" | grep -q 'another writer holds the store'"
check "the writer adds snapshot_2" sh -c "cat '$ST/state_2' > '$W/snapshot_2'"
check "the reader shows snapshot_2 within 10 s" wait_until 10 test -e "$R/snapshot_2"
check "... byte-exact" cmp "$R/snapshot_2" "$ST/state_2"
check "the writer renames snapshot_2 to two" mv "$W/snapshot_2" "$W/two"
check "the reader shows the new name within 10 s" wait_until 10 shown "$R" "current snapshot_0 snapshot_1 two "
check "... byte-exact" cmp "$R/two" "$ST/state_2"
check_fails "the bucket has no snapshot_2.patch any more" listed vm/snapshot_2.patch
check "... but two.patch" listed vm/two.patch
check "the writer describes two" setfattr -n user.description -v "after the rename" "$W/two"
desc_seen() { test "$(getfattr --only-values -n user.description "$R/two" 2>/dev/null)" = "after the rename"; }
check "the reader shows the description within 10 s" wait_until 10 desc_seen
# rm snapshot_1: two (its child) is rebased onto snapshot_0, and its
# object replaced in the bucket while the reader may hold the old one.
exec 7<"$R/two"
check "the writer removes snapshot_1 (its child rebased)" rm "$W/snapshot_1"
check "the reader no longer shows snapshot_1 within 10 s" wait_until 10 shown "$R" "current snapshot_0 two "
check "... and two, opened again, is byte-exact" cmp "$R/two" "$ST/state_2"
old_fd_ok() { # the file opened before: its bytes right, or EIO; never wrong
	if cat <&7 > "$WORK/old.out" 2>/dev/null; then cmp "$WORK/old.out" "$ST/state_2"; else echo "EIO (allowed)"; fi
}
check "a file opened before the rebase reads right or fails, never wrong" old_fd_ok
exec 7<&-
check "the writer reads two byte-exact too" cmp "$W/two" "$ST/state_2"

# --- 3. the bucket goes away during a write: close() fails ---
s3_kill_proxy
check_fails "with the server stopped, cat > fails (the upload is at close)" sh -c "cat '$ST/state_3' > '$W/snapshot_3'"
check "the server comes back" s3_start_proxy
check "... and the failed snapshot is not shown" shown "$W" "current snapshot_0 two "
check "writing it again works" sh -c "cat '$ST/state_3' > '$W/snapshot_3'"
check "... byte-exact" cmp "$W/snapshot_3" "$ST/state_3"
check "the reader shows it within 10 s" wait_until 10 test -e "$R/snapshot_3"
check "... byte-exact" cmp "$R/snapshot_3" "$ST/state_3"

# --- 4. a killed writer's lease lapses; a new writer takes over ---
wpid=$(pgrep -f "snapfs -f .* $W\$")
kill -9 $wpid 2>/dev/null
fusermount3 -u -z "$W" 2>/dev/null
check "right after the kill, a new writer is refused (the lease is live)" sh -c \
	"out=\$(timeout 60 '$SNAPFS' -f -o writer,cache_dir='$WORK/cw3' '$URL' '$WORK/never' 2>&1); echo \"\$out\"; echo \"\$out\" | grep -q 'another writer holds the store'"
sleep 7
check "after its ttl (6 s) a new writer mounts" snapfs_mount "$URL" "$W" -o writer,cache_dir="$WORK/cw3",lease_ttl=6,s3_chunk=1M
check "... and writes snapshot_4" sh -c "cat '$ST/state_4' > '$W/snapshot_4'"
check "... byte-exact" cmp "$W/snapshot_4" "$ST/state_4"
check "unmount the writer" snapfs_umount "$W"
check_fails "... which lets the lease go" listed vm/.snapfs/lease
# A lease taken over behind a writer's back (another writer, after a
# partition): the writer notices at its next renewal and stops writing.
check "a writer mounts again" snapfs_mount "$URL" "$W" -o writer,cache_dir="$WORK/cw3",lease_ttl=6,s3_chunk=1M
printf 'snapfs-lease 1\nholder intruder 1\ntoken 0123456789abcdef\nttl 2\n' > "$WORK/fake"
s3_put "$WORK/fake" "$B/vm/.snapfs/lease" >/dev/null
sleep 3
check_fails "after its lease was taken over, cat > fails at close" sh -c "cat '$ST/state_3' > '$W/late'"
check "... saying the lease was lost" grep -q "lease was taken by another writer" "$WORK/snapfs.w.log"
check "... and nothing was added" shown "$W" "current snapshot_0 snapshot_3 snapshot_4 two "
check "unmount the writer" snapfs_umount "$W"
check "... which leaves the other's lease alone" listed vm/.snapfs/lease
sleep 2
check "the reader shows snapshot_4 within 10 s" wait_until 10 test -e "$R/snapshot_4"

# --- 5. a writer killed between the commit point and the roll-forward ---
# As it leaves the bucket: snapshots.txt with its pending records (a
# staged copy over a key the tree names, and a delete), the staged object
# still under .snapfs/tmp/.
s3 GET "/$B/vm/snapshots.txt" > "$WORK/tree.txt"
s3 GET "/$B/vm/snapshot_4.patch" > "$WORK/p4"
printf 'junk' > "$WORK/junk"
s3_put "$WORK/p4" "$B/vm/.snapfs/tmp/snapshot_4.patch" >/dev/null
s3_put "$WORK/junk" "$B/vm/junk.bin" >/dev/null
printf 'move\tfrom=.snapfs/tmp/snapshot_4.patch\tto=snapshot_4.patch\ndelete\tfile=junk.bin\n' >> "$WORK/tree.txt"
check "a half-done commit is left in the bucket" s3_put "$WORK/tree.txt" "$B/vm/snapshots.txt"
check "a reading mount refuses it, saying the writer finishes it" sh -c \
	"out=\$(timeout 60 '$SNAPFS' -f -o cache_dir='$WORK/ch' '$URL' '$WORK/never' 2>&1); echo \"\$out\"; echo \"\$out\" | grep -q 'interrupted change'"
kept_tree() { shown "$R" "current snapshot_0 snapshot_3 snapshot_4 two " && cmp "$R/snapshot_4" "$ST/state_4"; }
check "... while the mounted reader keeps showing the last whole tree" kept_tree
check "the next writer finishes the change at mount" snapfs_mount "$URL" "$W" -o writer,cache_dir="$WORK/cw3",lease_ttl=6,s3_chunk=1M
check_fails "... the staged object is gone" listed vm/.snapfs/tmp/
check_fails "... the deleted one too" listed vm/junk.bin
no_pending() { s3 GET "/$B/vm/snapshots.txt" > "$WORK/tree2.txt" && grep -q '^snap' "$WORK/tree2.txt" && ! grep -qE '^(move|delete)' "$WORK/tree2.txt"; }
check "... snapshots.txt has no pending record left" no_pending
check "... and snapshot_4 reads byte-exact" cmp "$W/snapshot_4" "$ST/state_4"
check "unmount the writer" snapfs_umount "$W"
check "unmount the reader" snapfs_umount "$R"

# --- 6. a fresh host reads the store the writers made ---
check "a fresh host mounts" snapfs_mount "$URL" "$R" -o cache_dir="$WORK/cf"
all_right() {
	cmp "$R/snapshot_0" "$ST/state_0" && cmp "$R/two" "$ST/state_2" &&
	cmp "$R/snapshot_3" "$ST/state_3" && cmp "$R/snapshot_4" "$ST/state_4"
}
check "... every snapshot byte-exact" all_right
check "... the description kept" test "$(getfattr --only-values -n user.description "$R/two" 2>/dev/null)" = "after the rename"
check "unmount" snapfs_umount "$R"

s3_stop
e2e_done
