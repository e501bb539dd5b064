#!/bin/sh
# Bad stores and damaged files: the mount is refused with a message naming
# the file when it cannot work at all; otherwise damage gives EIO for the
# damaged layer and those built on it, never wrong bytes, never a crash,
# and the layers below stay readable.
. tests/e2e/lib.sh

ST=$WORK/states
mkdir -p "$ST"
for k in 0 1 2 3; do
	"$SNAPGEN" --seed 21 --size 8M --index $k -o "$ST/state_$k"
done
# good_store DIR [xdelta3 opts]: base + 3 patches.
good_store() {
	mkdir -p "$1"
	zstd -q -f "$ST/state_0" -o "$1/snapshot_0.zst"
	for k in 1 2 3; do
		xdelta3 -e -f ${2:-} -s "$ST/state_$((k-1))" "$ST/state_$k" "$1/snapshot_$k.patch"
	done
	printf 'snapshot_3.patch\nsnapshot_2.patch\nsnapshot_1.patch\nsnapshot_0.zst\n' > "$1/increments.txt"
}
# refused DIR WORD: mounting fails, non-zero exit, message names WORD.
refused() {
	_s=$1; _w=$2; shift 2
	out=$("$SNAPFS" -f "$@" "$_s" "$WORK/never" 2>&1); rc=$?
	echo "$out"
	[ $rc -ne 0 ] && echo "$out" | grep -q -- "$_w" && ! mountpoint -q "$WORK/never"
}
mkdir -p "$WORK/never"

# --- refused outright ---
good_store "$WORK/missing"
rm "$WORK/missing/snapshot_2.patch"
check "a missing layer file: refused, message names it" refused "$WORK/missing" snapshot_2.patch

good_store "$WORK/empty"
: > "$WORK/empty/increments.txt"
check "an empty layers file: refused, message names it" refused "$WORK/empty" increments.txt

good_store "$WORK/notvcd"
head -c 5000 /dev/urandom > "$WORK/notvcd/snapshot_2.patch"
check "a layer that is not VCDIFF: refused, message names it" refused "$WORK/notvcd" snapshot_2.patch

good_store "$WORK/order"
printf 'snapshot_0.zst\nsnapshot_3.patch\nsnapshot_2.patch\nsnapshot_1.patch\n' > "$WORK/order/increments.txt"
check "base last line is a patch (reversed order): refused" refused "$WORK/order" "base"

good_store "$WORK/unread"
chmod 000 "$WORK/unread/snapshot_1.patch"
if [ "$(id -u)" -eq 0 ]; then
	# root reads anything: make the file unreadable another way.
	chmod 644 "$WORK/unread/snapshot_1.patch"
	rm "$WORK/unread/snapshot_1.patch"; mkdir "$WORK/unread/snapshot_1.patch"
fi
check "an unreadable layer (a directory): refused, message names it" refused "$WORK/unread" snapshot_1.patch

good_store "$WORK/escape"
printf '../escape/snapshot_3.patch\nsnapshot_0.zst\n' > "$WORK/escape/increments.txt"
check "a path leaving the store: refused" refused "$WORK/escape" "inside"

check "no store directory: refused" refused "$WORK/nonexistent" nonexistent
check "usage error without arguments" sh -c "! '$SNAPFS' 2>&1 | grep -q never; ! '$SNAPFS' >/dev/null 2>&1"
good_store "$WORK/cs"
check "bad cache_size is refused" refused "$WORK/cs" cache_size -o cache_size=12x

# --- a second mount of a store in use ---
good_store "$WORK/busy"
check "first mount" snapfs_mount "$WORK/busy" "$WORK/m1"
check "second mount of the same store: refused (in use)" refused "$WORK/busy" "in use"
check "... naming where it is mounted" refused "$WORK/busy" "mounted on $(realpath "$WORK/m1")"
check "first mount still reads" cmp "$WORK/m1/snapshot_3" "$ST/state_3"
check "unmount" snapfs_umount "$WORK/m1"

# --- damage: EIO for the damaged layer and above, others readable ---
# eio FILE: reading it fails (and prints no bytes that could be wrong).
eio() { ! cat "$1" > "$WORK/eio.out" 2>"$WORK/eio.err" && grep -q "Input/output error" "$WORK/eio.err"; }

good_store "$WORK/trunc" "-S none"
size=$(stat -c %s "$WORK/trunc/snapshot_2.patch")
truncate -s $((size / 2)) "$WORK/trunc/snapshot_2.patch"
check "truncated patch: mounts" snapfs_mount "$WORK/trunc" "$WORK/mt"
check "truncated patch: its snapshot gives EIO" eio "$WORK/mt/snapshot_2"
check "truncated patch: the one built on it gives EIO" eio "$WORK/mt/snapshot_3"
check "truncated patch: the layers below read exactly" sh -c "cmp '$WORK/mt/snapshot_0' '$ST/state_0' && cmp '$WORK/mt/snapshot_1' '$ST/state_1'"
check "truncated patch: the log names file and problem" grep -q "snapshot_2.patch" "$WORK/snapfs.mt.log"
dmg=$(python3 -c "import os,sys; print(os.getxattr(sys.argv[1], 'user.snapfs.damage').decode())" "$WORK/mt/snapshot_2" 2>&1)
check "truncated patch: damage xattr says why ($dmg)" sh -c "echo '$dmg' | grep -q snapshot_2.patch"
check "unmount" snapfs_umount "$WORK/mt"

# Bit flips in a plain patch's data: adler32 catches it at index time.
for pos in 200 1000 3000 9000; do
	d=$WORK/flip$pos
	good_store "$d" "-S none"
	python3 - "$d/snapshot_1.patch" $pos <<'EOF'
import sys
p, pos = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, 'rb').read())
pos = min(pos, len(b) - 1)
b[pos] ^= 0x20
open(p, 'wb').write(b)
EOF
	check "bit flip at $pos of a patch: mounts" snapfs_mount "$d" "$d.m"
	check "bit flip at $pos: snapshot_1 gives EIO or exact bytes, never wrong ones" \
		sh -c "eio() { ! cat \"\$1\" > /dev/null 2>&1; }; eio '$d.m/snapshot_1' || cmp '$d.m/snapshot_1' '$ST/state_1'"
	check "bit flip at $pos: snapshot_3 gives EIO or exact bytes" \
		sh -c "! cat '$d.m/snapshot_3' > /dev/null 2>&1 || cmp '$d.m/snapshot_3' '$ST/state_3'"
	check "bit flip at $pos: the base still reads" cmp "$d.m/snapshot_0" "$ST/state_0"
	check "unmount" snapfs_umount "$d.m"
done

# Damage after indexing: block checksums catch it on read.
good_store "$WORK/later" "-S none"
check "mount (indexes built)" snapfs_mount "$WORK/later" "$WORK/ml"
check "unmount" snapfs_umount "$WORK/ml"
size=$(stat -c %s "$WORK/later/snapshot_2.patch")
# Same inode, size and mtime (to the nanosecond): the index is reused.
touch -r "$WORK/later/snapshot_2.patch" "$WORK/ref"
printf '\377\377\377\377' | dd of="$WORK/later/snapshot_2.patch" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
touch -r "$WORK/ref" "$WORK/later/snapshot_2.patch"
check "remount after silent damage" snapfs_mount "$WORK/later" "$WORK/ml"
check "silent damage: snapshot_2 gives EIO or exact bytes, never wrong ones" \
	sh -c "! cat '$WORK/ml/snapshot_2' > /dev/null 2>&1 || cmp '$WORK/ml/snapshot_2' '$ST/state_2'"
check "silent damage: snapshot_1 exact" cmp "$WORK/ml/snapshot_1" "$ST/state_1"
check "unmount" snapfs_umount "$WORK/ml"

# The same on a raw base, which every snapshot reads: strictly EIO.
R=$WORK/rawlater; mkdir -p "$R"
cp "$ST/state_0" "$R/base.img"
for k in 1 2 3; do
	xdelta3 -e -f -S none -s "$ST/state_$((k-1))" "$ST/state_$k" "$R/s$k.patch"
done
printf 's3.patch\ns2.patch\ns1.patch\nbase.img\n' > "$R/increments.txt"
check "raw base: mount (indexes and checksums built)" snapfs_mount "$R" "$WORK/mr"
check "unmount" snapfs_umount "$WORK/mr"
touch -r "$R/base.img" "$WORK/ref"
printf '\377\377\377\377' | dd of="$R/base.img" bs=1 seek=100000 conv=notrunc 2>/dev/null
touch -r "$WORK/ref" "$R/base.img"
check "raw base damaged after indexing: remount" snapfs_mount "$R" "$WORK/mr"
check "damaged base block: base gives EIO" eio "$WORK/mr/base"
check "damaged base block: s3 gives EIO" eio "$WORK/mr/s3"
check "damaged base block: an undamaged range still reads" same_bytes "$WORK/mr/s3" "$ST/state_3" 4194304 65536
check "the log names the file and the checksum mismatch" grep -q "base.img.*checksum mismatch" "$WORK/snapfs.mr.log"
check "unmount" snapfs_umount "$WORK/mr"

# A damaged zstd base: every snapshot is built on it.
good_store "$WORK/zb"
size=$(stat -c %s "$WORK/zb/snapshot_0.zst")
printf '\377\377\377\377\377\377\377\377' | dd of="$WORK/zb/snapshot_0.zst" bs=1 seek=$((size / 3)) conv=notrunc 2>/dev/null
check "damaged zstd base: mounts" snapfs_mount "$WORK/zb" "$WORK/mz"
check "damaged zstd base: base gives EIO" eio "$WORK/mz/snapshot_0"
check "damaged zstd base: snapshot_3 gives EIO" eio "$WORK/mz/snapshot_3"
check "damaged zstd base: ls still works" ls -l "$WORK/mz"
check "unmount" snapfs_umount "$WORK/mz"

# Write attempts on existing snapshots.
good_store "$WORK/ro"
check "mount" snapfs_mount "$WORK/ro" "$WORK/mro"
check_fails "truncating a snapshot is refused" truncate -s 0 "$WORK/mro/snapshot_1"
check_fails "opening a snapshot for writing is refused" dd if=/dev/zero of="$WORK/mro/snapshot_2" bs=1 count=1 conv=notrunc
check "snapshots unchanged" cmp "$WORK/mro/snapshot_2" "$ST/state_2"
check "unmount" snapfs_umount "$WORK/mro"
e2e_done
