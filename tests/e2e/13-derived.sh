#!/bin/sh
# Derived data kept small where a mount bounds it (issue 10), checked
# with ordinary tools. -o max_decoded=SIZE (fs/vcopy.c, fs/dlru.c): the
# decoded copies of the lzma sections of patches written through the
# mount (.snapfs/plain/*.sect) are optional: a default mount keeps one
# per patch; a bound of 0 deletes them and every snapshot still reads
# byte-exact, its reads decoding sections (the stats say so, the log
# says why once); a write into it keeps none; a mount without a bound
# makes them again; a bound with room for one keeps the oldest layer's
# and no more. Aux files (ibuild_aux_store): raw under a default mount,
# converted to seekable zstd (.auxz) that stock zstd decodes under a
# bounded one; damage in one is named by snapctl check --deep and by a
# read's EIO, and a mount after deleting .snapfs/ makes it again.
. tests/e2e/lib.sh

ST=$WORK/states; S=$WORK/store; MNT=$WORK/mnt
LOG=$WORK/snapfs.mnt.log
mkdir -p "$ST" "$S"
for k in 0 1 2 3 4; do
	"$SNAPGEN" --seed 13 --size 12M --index $k -o "$ST/state_$k"
done
stat_of() { # NAME: a counter of the mount's stats xattr
	python3 -c "import os,sys; print(os.getxattr(sys.argv[1], 'user.snapfs.stats').decode())" "$MNT" |
		sed -n "s/^$1 //p"
}
nsect() { find "$S/.snapfs/plain" -maxdepth 1 -type f -name '*.sect' 2>/dev/null | wc -l; }
sect_bytes() { find "$S/.snapfs/plain" -maxdepth 1 -type f -name '*.sect' -printf '%s\n' | awk '{t+=$1} END {print t+0}'; }
all_exact() { # [FIRST]: snapshots FIRST..3 through the mount
	k=${1:-0}
	while [ $k -le 3 ]; do cmp "$MNT/snapshot_$k" "$ST/state_$k" || return 1; k=$((k+1)); done
}
remount() { snapfs_umount "$MNT"; snapfs_mount "$S" "$MNT" "$@"; }

check "mount an empty store" snapfs_mount "$S" "$MNT"
for k in 0 1 2 3; do
	check "cat > snapshot_$k" sh -c "cat '$ST/state_$k' > '$MNT/snapshot_$k'"
done
check "every snapshot exact" all_exact
check "a default mount keeps a decoded copy per patch (3: $(nsect))" test "$(nsect)" -eq 3
check "reads went through the copies: no section decoded ($(stat_of sections_decoded))" \
	test "$(stat_of sections_decoded)" = 0
total=$(sect_bytes)
raw_aux=$(find "$S/.snapfs/aux" -name '*.aux' | wc -l)
check "a default mount keeps its aux files raw ($raw_aux)" \
	test "$raw_aux" -ge 1 -a -z "$(find "$S/.snapfs/aux" -name '*.auxz')"
aux_raw_bytes=$(cat "$S/.snapfs/aux"/*.aux | wc -c)

check "remount with -o max_decoded=0" remount -o max_decoded=0
check "... which deleted every decoded copy ($(nsect) left)" test "$(nsect)" -eq 0
check "every snapshot still exact" all_exact
check "... its reads decoding sections ($(stat_of sections_decoded))" \
	test "$(stat_of sections_decoded)" -gt 0
check "the log says once why layers have no copy" \
	test "$(grep -c "no decoded copy of its lzma sections (.*no room under -o max_decoded=0" "$LOG")" = 1
naux=$(find "$S/.snapfs/aux" -name '*.auxz' | wc -l)
check "... and its aux files were compressed ($naux .auxz of $raw_aux, no raw .aux left)" \
	test "$naux" -eq "$raw_aux" -a -z "$(find "$S/.snapfs/aux" -name '*.aux')"
check "... to zstd that stock zstd decodes to the raw bytes ($aux_raw_bytes)" \
	test "$(for f in "$S/.snapfs/aux"/*.auxz; do zstd -q -d -c "$f"; done | wc -c)" = "$aux_raw_bytes"
check "... smaller ($(cat "$S/.snapfs/aux"/*.auxz | wc -c) bytes)" \
	test "$(cat "$S/.snapfs/aux"/*.auxz | wc -c)" -lt "$aux_raw_bytes"
check "a snapshot written into that mount" sh -c "cat '$ST/state_4' > '$MNT/snapshot_4'"
check "... reads back exact" cmp "$MNT/snapshot_4" "$ST/state_4"
check "... and kept no decoded copy ($(nsect))" test "$(nsect)" -eq 0
check "... nor left its temporary copy in .snapfs/tmp" \
	test -z "$(find "$S/.snapfs/tmp" -name 'sect.*' 2>/dev/null)"
check "... nor a raw aux file" test -z "$(find "$S/.snapfs/aux" -name '*.aux')"
check "rm snapshot_4" rm "$MNT/snapshot_4"

snapfs_umount "$MNT"
check "snapctl cat of the deepest snapshot, with no decoded copies, is exact" \
	sh -c "'$TOP/$BUILD/snapctl' -s '$S' cat snapshot_3 | cmp - '$ST/state_3'"
check "... and made none of its own ($(nsect))" test "$(nsect)" -eq 0

# Damage in an aux file: a bit flipped in the middle of the largest one.
aux=$(ls -S "$S/.snapfs/aux"/*.auxz | head -1)
zstd -q -d -c "$aux" > "$WORK/aux.raw"
python3 -c "
import sys; p=sys.argv[1]; f=open(p,'r+b'); f.seek(0,2); o=f.tell()//2
f.seek(o); b=f.read(1); f.seek(o); f.write(bytes([b[0]^0x10]))" "$aux"
"$TOP/$BUILD/snapctl" -s "$S" check --deep > "$WORK/chk.out" 2>&1
check "snapctl check --deep of a flipped bit in an aux file exits 1" test $? = 1
check "... naming the aux file" grep -q "$(basename "$aux")" "$WORK/chk.out"
check "mount over the damaged aux file" snapfs_mount "$S" "$MNT"
bad=0
for k in 1 2 3; do
	cat "$MNT/snapshot_$k" > /dev/null 2>"$WORK/cat.err" || bad=$((bad + 1))
done
check "a read through the damaged frame fails ($bad of 3 snapshots)" test $bad -ge 1
check "... with EIO" grep -q 'Input/output error' "$WORK/cat.err"
check "... and the log names the aux file" grep -q "$(basename "$aux")" "$LOG"
snapfs_umount "$MNT"
rm -rf "$S/.snapfs"
check "after deleting .snapfs/, a mount makes it again" snapfs_mount "$S" "$MNT"
check "every snapshot exact" all_exact
check "... the aux file made again holds the same bytes" cmp "${aux%z}" "$WORK/aux.raw"

check "remount without a bound" remount
check "the copies are made again ($(nsect))" test "$(nsect)" -eq 3
check "... the same bytes as before ($(sect_bytes) of $total)" test "$(sect_bytes)" = "$total"
check "every snapshot exact" all_exact

# Room for the oldest layer's copy only (the copies differ in size a
# little; the bound is the largest copy's disk use plus half of it).
one=$(find "$S/.snapfs/plain" -maxdepth 1 -name '*.sect' -printf '%b\n' | sort -n | tail -1)
bound=$(( (one * 512 * 3 / 2 + 1023) / 1024 ))K
first=$(ls "$S/.snapfs/plain" | grep '\.sect$' | sort -n | head -1)
check "remount with -o max_decoded=$bound (room for one copy)" remount -o max_decoded=$bound
check "one decoded copy is left ($(nsect))" test "$(nsect)" -eq 1
check "... the oldest layer's ($first)" test -f "$S/.snapfs/plain/$first"
check "... within the bound" test "$(find "$S/.snapfs/plain" -name '*.sect' -printf '%b\n' | awk '{t+=$1*512} END {print t}')" -le "$(( ${bound%K} * 1024 ))"
check "every snapshot exact" all_exact
check "unmount" snapfs_umount "$MNT"
check "no sanitizer report" sh -c "! grep -q Sanitizer '$LOG'"
check "a bad value is refused with a message naming the option" \
	sh -c "'$SNAPFS' -f -o max_decoded=12X '$S' '$MNT' 2>&1 | grep -q 'max_decoded=12X: give a size'"
e2e_done
