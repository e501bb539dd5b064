#!/bin/sh
# snapctl, the offline tool, on real stores: import then export through
# stock zstd and xdelta3 (snapfs-decode); check naming the damaged layer
# file and offset; ls/cat beside a mount and changes made through it
# (a forged mount token refused, compact refused);
# add/rm/mv/describe/prune with every snapshot compared after each step;
# 50 unmount-and-remount cycles with reads in between.
. tests/e2e/lib.sh

SNAPCTL=$TOP/$BUILD/snapctl
ST=$WORK/states; S=$WORK/store; MNT=$WORK/mnt
mkdir -p "$ST"
for k in 0 1 2 3 4; do
	"$SNAPGEN" --seed 60 --size 6M --index $k -o "$ST/state_$k"
done
ctl() { "$SNAPCTL" -s "$S" "$@"; }
# exact_ctl NAME STATE: snapctl cat NAME gives STATE's bytes.
exact_ctl() { ctl cat "$1" | cmp - "$ST/$2"; }

# --- help, usage, exit codes ---
check "snapctl --help" "$SNAPCTL" --help
for c in init ls tree cat add rm mv describe check import export prune stats compact; do
	"$SNAPCTL" "$c" --help >"$WORK/help.out" 2>&1 && grep -q "usage: snapctl.* $c" "$WORK/help.out" ||
		notok "$c --help"
done
ok "every subcommand has --help"
"$SNAPCTL" -s "$S" frobnicate >/dev/null 2>&1
check "an unknown command exits 2" test $? = 2
"$SNAPCTL" -s "$S" cat >/dev/null 2>&1
check "a missing operand exits 2" test $? = 2

# --- import (raw and zstd, a list), ls, cat ---
zstd -q "$ST/state_2" -o "$WORK/state_2.zst"
check "import a list of raw and zstd files" ctl import "$ST/state_0" "$ST/state_1" "$WORK/state_2.zst"
check "ls lists three snapshots" test "$(ctl ls --tsv | wc -l)" = 3
check "ls: parent of state_2 is state_1" sh -c "'$SNAPCTL' -s '$S' ls --tsv | grep -q '^state_2	.*	state_1	'"
size2=$(stat -c %s "$ST/state_2")
check "ls: full size is the state's size" sh -c "'$SNAPCTL' -s '$S' ls --tsv | grep -q '^state_2	$size2	'"
stored1=$(stat -c %s "$S/state_1.patch")
check "ls: stored size is the patch's size" sh -c "'$SNAPCTL' -s '$S' ls --tsv | awk -F'	' '\$1==\"state_1\"{print \$3}' | grep -qx $stored1"
check "tree indents the child under its parent" sh -c "'$SNAPCTL' -s '$S' tree | grep -q '^.   state_1'"
for k in 0 1 2; do
	check "cat state_$k is exact" exact_ctl state_$k state_$k
done

# --- export: full files, sparse, and a plain store for the stock scripts ---
mkdir -p "$WORK/ex" "$WORK/plain"
check "export full state files" ctl export state_0 state_2 "$WORK/ex"
check "exported state_2 is exact" cmp "$WORK/ex/state_2" "$ST/state_2"
check "export --plain state_2" ctl export --plain state_2 "$WORK/plain"
check "snapfs-decode (stock zstd, xdelta3) rebuilds state_2 from the export" \
	sh "$TOP/contrib/snapfs-decode" "$WORK/plain" state_2 "$WORK/decoded"
check "the stock decode is exact" cmp "$WORK/decoded" "$ST/state_2"
# An import of a layers file (increments.txt order) of zstd files made by
# stock zstd, round-tripped back out.
mkdir -p "$WORK/lay"
for k in 0 1 2 3; do zstd -q "$ST/state_$k" -o "$WORK/lay/s$k.zstd"; done
printf '# newest first\ns3.zstd\ns2.zstd\ns1.zstd\ns0.zstd\n' >"$WORK/lay/layers.txt"
check "import --layers" "$SNAPCTL" -s "$WORK/store2" import --layers "$WORK/lay/layers.txt"
check "its s3 is a child of s2" sh -c "'$SNAPCTL' -s '$WORK/store2' ls --tsv | grep -q '^s3	.*	s2	'"
mkdir -p "$WORK/plain2"
"$SNAPCTL" -s "$WORK/store2" export --plain s3 "$WORK/plain2" &&
	sh "$TOP/contrib/snapfs-decode" "$WORK/plain2" s3 "$WORK/decoded3" 2>/dev/null
check "import --layers then export --plain round-trips through xdelta3" cmp "$WORK/decoded3" "$ST/state_3"
check "an import into a store that is not empty is refused" sh -c "! '$SNAPCTL' -s '$WORK/store2' import '$ST/state_4' 2>/dev/null"

# --- add, mv, describe, rm ---
check "add state_3 as a child of state_1" ctl add b3 "$ST/state_3" --parent state_1
check "its parent is state_1" sh -c "'$SNAPCTL' -s '$S' ls --tsv | grep -q '^b3	.*	state_1	'"
check "add from stdin" sh -c "'$SNAPCTL' -s '$S' add s4 - < '$ST/state_4'"
check "s4 is a child of b3 (current followed the add)" sh -c "'$SNAPCTL' -s '$S' ls --tsv | grep -q '^s4	.*	b3	'"
check "mv b3 branch3" ctl mv b3 branch3
check "describe" ctl describe branch3 "the other branch"
check "the description shows in ls" sh -c "'$SNAPCTL' -s '$S' ls --tsv | grep -q '^branch3	.*	the other branch'"
ctl mv branch3 state_0 >/dev/null 2>&1
check "mv onto an existing name exits 2" test $? = 2
check "rm state_1 (two children rebased)" ctl rm state_1
for p in state_0:state_0 state_2:state_2 branch3:state_3 s4:state_4; do
	check "after rm: ${p%%:*} exact" exact_ctl "${p%%:*}" "${p#*:}"
done
check "state_2's parent is now state_0" sh -c "'$SNAPCTL' -s '$S' ls --tsv | grep -q '^state_2	.*	state_0	'"
check "check: a sound store passes" ctl check --deep

# --- mounted: readers work beside it, changes go through it ---
check "mount" snapfs_mount "$S" "$MNT"
check "ls beside the mount" ctl ls
check "cat beside the mount is exact" exact_ctl s4 state_4
check "check beside the mount" ctl check
zstd -q "$ST/state_1" -o "$WORK/state_1.zst"
ctl add r5 "$WORK/state_1.zst" --parent state_2 2>"$WORK/route.out"
check "add --parent while mounted" test $? = 0
check "... says it went through the mount" grep -q "mounted on .*through the mount" "$WORK/route.out"
check "... r5 appears in the mount, exact" cmp "$MNT/r5" "$ST/state_1"
check "... as a child of state_2" test "$(getfattr --only-values -n user.snapfs.parent "$MNT/r5" 2>/dev/null)" = state_2
check "... and is current" test "$(readlink "$MNT/current")" = r5
check "describe while mounted" ctl describe r5 "saved beside a mount"
check "... the mount shows it" test "$(getfattr --only-values -n user.description "$MNT/r5" 2>/dev/null)" = "saved beside a mount"
check "mv while mounted" ctl mv r5 r6
check "... the mount has r6 and not r5" sh -c "test -f '$MNT/r6' && ! test -e '$MNT/r5'"
ctl mv r6 ../escaped >/dev/null 2>&1
check "mv to a name with '/' exits 2" test $? = 2
check "... nothing left the mount" sh -c "! test -e '$WORK/escaped' && test -f '$MNT/r6'"
ctl mv r6 s4 >/dev/null 2>&1
check "mv onto a taken name exits 2" test $? = 2
head -c 200000 "$WORK/state_1.zst" >"$WORK/cut.zst"
ctl add cut "$WORK/cut.zst" >"$WORK/cut.out" 2>&1
check "add of a cut-short zstd file through the mount fails" test $? != 0
check "... naming the file" grep -q "cut.zst: not a valid zstd file" "$WORK/cut.out"
check "... and adds nothing" sh -c "! test -e '$MNT/cut' && ! '$SNAPCTL' -s '$S' ls --tsv | grep -q '^cut	'"
check "ln -sfn s4 current in the mount" ln -sfn s4 "$MNT/current"
check "rm while mounted" ctl rm r6
check "... gone from the mount" sh -c "! test -e '$MNT/r6'"
check "prune --keep 3 while mounted (removes the base, rebasing two)" ctl prune --keep 3
check "... the mount lists three" test "$(ls "$MNT" | grep -vx current | wc -l)" = 3
for p in state_2:state_2 branch3:state_3 s4:state_4; do
	check "after the routed changes: ${p%%:*} exact in the mount" cmp "$MNT/${p%%:*}" "$ST/${p#*:}"
done
# A lock file whose token the mount does not answer routes nothing: the
# change is refused (exit 3), never made through whatever is mounted there.
lock=$S/.snapfs/lock
cp "$lock" "$WORK/lock.saved"
python3 -c "
import sys; f=open(sys.argv[1],'r+'); t=f.read().replace('token ','token 0',1)
f.seek(0); f.truncate(); f.write(t)" "$lock"
ctl rm s4 >"$WORK/busy.out" 2>&1
check "a forged mount token: rm exits 3" test $? = 3
check "... and says to use the mount" grep -q "make the change in that mount" "$WORK/busy.out"
check "... and nothing was removed" cmp "$MNT/s4" "$ST/state_4"
# The right token, but the mountpoint reached through a symlink (a path
# the store's writer could swap): not routed either.
ln -s "$MNT" "$WORK/mntlink"
python3 -c "
import sys; t=open(sys.argv[2]).read(); f=open(sys.argv[1],'r+')
f.seek(0); f.truncate(); f.write(t.replace('mount '+sys.argv[3], 'mount '+sys.argv[4]))" \
	"$lock" "$WORK/lock.saved" "$(realpath "$MNT")" "$WORK/mntlink"
check "the lock file now names a symlink to the mount" grep -q "mount $WORK/mntlink" "$lock"
ctl rm s4 >"$WORK/busy.out" 2>&1
check "a mountpoint behind a symlink: rm exits 3" test $? = 3
check "... and nothing was removed" cmp "$MNT/s4" "$ST/state_4"
python3 -c "
import sys; f=open(sys.argv[1],'r+'); t=open(sys.argv[2]).read()
f.seek(0); f.truncate(); f.write(t)" "$lock" "$WORK/lock.saved"
ctl compact >"$WORK/busy.out" 2>&1
check "compact while mounted exits 3" test $? = 3

# --- 50 unmount-and-remount cycles, reads in between ---
fails=0; cyc=0
while [ $cyc -lt 50 ]; do
	snapfs_umount "$MNT" && snapfs_mount "$S" "$MNT" || fails=$((fails + 1))
	head -c 65536 "$MNT/state_2" | cmp -s -n 65536 - "$ST/state_2" || fails=$((fails + 1))
	cyc=$((cyc + 1))
done
check "50 remounts right after unmount, none refused, reads exact" test $fails = 0
check "no refusal in the logs" sh -c "! grep -q 'in use by another' '$WORK'/snapfs.*.log"
check "unmount" snapfs_umount "$MNT"

# --- a lock file naming a plain directory with a forged token: a root
# snapctl must not act there for whoever can write the store ---
mkdir -p "$WORK/decoy"
: > "$WORK/decoy/state_2"
setfattr -n user.snapfs.mount_token -v forged "$WORK/decoy"
printf '1\nmount %s\ntoken forged\n' "$WORK/decoy" > "$S/.snapfs/lock"
ctl describe state_2 "made directly" 2>"$WORK/decoy.out"
check "describe with a forged lock file works, directly" test $? = 0
check "... not through the named directory" sh -c "! grep -q 'through the mount' '$WORK/decoy.out' && ! getfattr -n user.description '$WORK/decoy/state_2' >/dev/null 2>&1"
check "... and the store has the description" sh -c "'$SNAPCTL' -s '$S' ls --tsv | grep -q '^state_2	.*	made directly'"

# --- prune ---
check "prune --keep 2 --dry-run changes nothing" sh -c "'$SNAPCTL' -s '$S' prune --keep 2 --dry-run >/dev/null 2>&1 && test \$('$SNAPCTL' -s '$S' ls --tsv | wc -l) = 3"
ctl prune --keep 2 2>"$WORK/prune.out"
check "prune --keep 2 (unmounted: the stale lock file routes nothing)" test $? = 0
check "... made directly" sh -c "! grep -q 'through the mount' '$WORK/prune.out'"
check "two snapshots left" test "$(ctl ls --tsv | wc -l)" = 2
cur=$(ctl ls | awk '$1=="*"{print $2}')
check "the current one (s4) is kept" test "$cur" = s4
check "s4 exact after prune" exact_ctl s4 state_4
check "prune --older-than 1d removes nothing new" sh -c "'$SNAPCTL' -s '$S' prune --older-than 1d 2>/dev/null && test \$('$SNAPCTL' -s '$S' ls --tsv | wc -l) = 2"
check "prune --older-than 0s keeps only current" sh -c "sleep 1; '$SNAPCTL' -s '$S' prune --older-than 0s 2>/dev/null && test \$('$SNAPCTL' -s '$S' ls --tsv | wc -l) = 1"
check "the survivor is exact" exact_ctl s4 state_4

# --- the plain scripts' own layout: increments.txt names the full files,
# snapshot_4.zstd down to snapshot_0.zstd, patches snapshot_K.patch beside
# them (xdelta3 -e against the full file before) ---
P=$WORK/plainlay; PM=$WORK/pmnt
mkdir -p "$P"
for k in 0 1 2 3 4; do
	zstd -q "$ST/state_$k" -o "$P/snapshot_$k.zstd"
	touch -d "@$((1700000000 + k * 60))" "$P/snapshot_$k.zstd"
done
for k in 1 2 3 4; do
	xdelta3 -e -f -s "$ST/state_$((k - 1))" "$ST/state_$k" "$P/snapshot_$k.patch"
done
(cd "$P" && ls -t snapshot_*.zstd > increments.txt)
check "increments.txt lists snapshot_4.zstd first" test "$(head -1 "$P/increments.txt")" = snapshot_4.zstd
# Later full files deleted, except snapshot_2's: a full layer in the middle.
rm "$P/snapshot_1.zstd" "$P/snapshot_3.zstd" "$P/snapshot_4.zstd"
cp -r "$P" "$WORK/plainlay2"
check "the scripts' layout mounts" snapfs_mount "$P" "$PM"
for k in 0 1 2 3 4; do
	check "snapshot_$k exact" cmp "$PM/snapshot_$k" "$ST/state_$k"
done
check "snapshot_1 is a patch" test "$(getfattr --only-values -n user.snapfs.kind "$PM/snapshot_1" 2>/dev/null)" = patch
check "snapshot_2 (its full file still there) is a full layer" test "$(getfattr --only-values -n user.snapfs.kind "$PM/snapshot_2" 2>/dev/null)" = full
check "... with its parent recorded" test "$(getfattr --only-values -n user.snapfs.parent "$PM/snapshot_2" 2>/dev/null)" = snapshot_1
check "... and it cuts the depth: snapshot_4 is at depth 2" test "$(getfattr --only-values -n user.snapfs.depth "$PM/snapshot_4" 2>/dev/null)" = 2
check "a description (the first change: snapfs writes snapshots.txt)" setfattr -n user.description -v "kept" "$PM/snapshot_3"
check "unmount the scripts' layout" snapfs_umount "$PM"
# The scripts delete snapshot_2.zstd later, now that snapfs has written
# snapshots.txt naming it: its patch takes its place.
check "snapshots.txt names snapshot_2.zstd" grep -q 'snapshot_2.zstd' "$P/snapshots.txt"
rm "$P/snapshot_2.zstd"
check "the layout mounts after the full file of a middle snapshot is deleted" snapfs_mount "$P" "$PM"
check "... snapshot_2 is now its patch" test "$(getfattr --only-values -n user.snapfs.kind "$PM/snapshot_2" 2>/dev/null)" = patch
check "... snapshot_4 at depth 4" test "$(getfattr --only-values -n user.snapfs.depth "$PM/snapshot_4" 2>/dev/null)" = 4
for k in 2 3 4; do
	check "... snapshot_$k exact" cmp "$PM/snapshot_$k" "$ST/state_$k"
done
check "... the description kept" test "$(getfattr --only-values -n user.description "$PM/snapshot_3" 2>/dev/null)" = kept
check "unmount" snapfs_umount "$PM"
check "snapctl check of it" "$SNAPCTL" -s "$P" check
# Without any later full file: every middle layer is its patch.
rm "$WORK/plainlay2/snapshot_2.zstd"
check "the scripts' layout with only the base's full file: snapctl check" "$SNAPCTL" -s "$WORK/plainlay2" check
for k in 0 1 2 3 4; do
	check "snapctl cat snapshot_$k exact (patches only)" sh -c "'$SNAPCTL' -s '$WORK/plainlay2' cat snapshot_$k | cmp - '$ST/state_$k'"
done
check "mount it" snapfs_mount "$WORK/plainlay2" "$PM"
check "snapshot_4 is at depth 4 without the full files" test "$(getfattr --only-values -n user.snapfs.depth "$PM/snapshot_4" 2>/dev/null)" = 4
check "snapshot_4 exact in the mount" cmp "$PM/snapshot_4" "$ST/state_4"
check "unmount" snapfs_umount "$PM"

# --- holes: SEEK_HOLE/SEEK_DATA from the index, sparse cp and export ---
H=$WORK/holes; HM=$WORK/hmnt
head -c 8388608 /dev/urandom >"$WORK/h0"
# h1: h0 with 2 MiB + 1234 bytes of zeros from 3 MiB on (a RUN in its patch).
zs=3145728; ze=$((zs + 2098386))
cp "$WORK/h0" "$WORK/h1"
python3 -c "
import sys; f=open(sys.argv[1],'r+b'); s,e=int(sys.argv[2]),int(sys.argv[3])
# Random bytes next to the run may be zeros (1 in 256): make them not, so
# the run is exactly [s, e).
f.seek(s-1); f.write(b'\x5a'+bytes(e-s)+b'\xa5')" "$WORK/h1" $zs $ze
"$SNAPCTL" -s "$H" import "$WORK/h0" "$WORK/h1" >/dev/null 2>&1
check "mount the store with a zero run" snapfs_mount "$H" "$HM"
seeks=$(python3 -c "
import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY)
h=os.lseek(fd,0,os.SEEK_HOLE); d=os.lseek(fd,h,os.SEEK_DATA); e=os.lseek(fd,d,os.SEEK_HOLE)
print(h,d,e)" "$HM/h1")
set -- $seeks
check "SEEK_HOLE finds the zero run's start ($1, zeros from $zs)" test "$1" -ge $zs -a "$1" -lt $((zs + 4096))
check "SEEK_DATA finds its end ($2, zeros up to $ze)" test "$2" -le $ze -a "$2" -gt $((ze - 4096))
check "after it, the next hole is the end of the file" test "$3" = "$(stat -c %s "$WORK/h1")"
nz=$(dd if="$HM/h1" iflag=skip_bytes,count_bytes skip=$1 count=$(($2 - $1)) 2>/dev/null | tr -d '\000' | wc -c)
check "the hole reads as zeros" test "$nz" = 0
check "a base (all data) has only the hole at the end" test "$(python3 -c "
import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); print(os.lseek(fd,0,os.SEEK_HOLE))" "$HM/h0")" = 8388608
cp --sparse=always "$HM/h1" "$WORK/h1.copy"
check "cp --sparse=always from the mount is exact" cmp "$WORK/h1.copy" "$WORK/h1"
check "... and sparse: du < size - 1.5 MiB" test $(( $(du -k "$WORK/h1.copy" | cut -f1) * 1024 )) -lt $(( $(stat -c %s "$WORK/h1") - 1572864 ))
check "unmount" snapfs_umount "$HM"
mkdir -p "$WORK/hex"
check "snapctl export --sparse" "$SNAPCTL" -s "$H" export --sparse h1 "$WORK/hex"
check "the sparse export is exact" cmp "$WORK/hex/h1" "$WORK/h1"
check "... and sparse: du < size - 1.5 MiB" test $(( $(du -k "$WORK/hex/h1" | cut -f1) * 1024 )) -lt $(( $(stat -c %s "$WORK/h1") - 1572864 ))

# --- capacity bound: -o max_store and --max-store ---
C=$WORK/cap; CM=$WORK/cmnt
"$SNAPCTL" -s "$C" import "$ST/state_0" "$ST/state_1" >/dev/null 2>&1
used() { find "$C" -type f -printf '%s\n' | awk '{s+=$1} END {print s}'; }
bound=$(( $(used) + 1048576 ))
head -c 6291456 /dev/urandom >"$WORK/rand"
"$SNAPCTL" -s "$C" --max-store $bound add big "$WORK/rand" >"$WORK/cap.out" 2>&1
check "snapctl add past --max-store exits 4" test $? = 4
check "... saying it would pass the bound" grep -q "max-store" "$WORK/cap.out"
check "... and adds nothing" test "$("$SNAPCTL" -s "$C" ls --tsv | wc -l)" = 2
check "snapctl add under the bound works" "$SNAPCTL" -s "$C" --max-store $((bound + 16777216)) add s2 "$ST/state_2"
bound=$(( $(used) + 1048576 ))
check "mount with -o max_store" snapfs_mount "$C" "$CM" -o max_store=$bound
fr=$(stat -f -c %S "$CM")
check "df shows the bound as the size" test "$(df -B1 --output=size "$CM" | tail -1 | tr -d ' ')" = $(( bound / fr * fr ))
cp "$WORK/rand" "$CM/big" 2>"$WORK/cap.out"
check "a write past the bound fails" test $? != 0
check "... with ENOSPC" grep -q "No space left" "$WORK/cap.out"
check "... and adds no snapshot" test ! -e "$CM/big"
for p in state_0:state_0 state_1:state_1 s2:state_2; do
	check "after ENOSPC: ${p%%:*} exact" cmp "$CM/${p%%:*}" "$ST/${p#*:}"
done
check "a small snapshot still fits" cp "$ST/state_3" "$CM/s3"
check "... and is exact" cmp "$CM/s3" "$ST/state_3"
check "unmount" snapfs_umount "$CM"

# --- check names the damaged layer file and offset ---
D=$WORK/dmg
"$SNAPCTL" -s "$D" import "$ST/state_0" "$ST/state_1" "$ST/state_2" >/dev/null 2>&1
check "a fresh store checks clean" "$SNAPCTL" -s "$D" check
mid=state_1.patch
cp -p "$D/$mid" "$WORK/mid.orig"
flip() {	# flip one bit in the middle of file $1
	python3 -c "
import sys; p=sys.argv[1]; f=open(p,'r+b'); f.seek(0,2); o=f.tell()//2
f.seek(o); b=f.read(1); f.seek(o); f.write(bytes([b[0]^0x10])); print(o)" "$1"
}
flip "$D/$mid" >/dev/null
"$SNAPCTL" -s "$D" check >"$WORK/chk.out" 2>&1
check "check of a flipped bit in the middle patch exits 1" test $? = 1
check "... naming the layer file" grep -q "DAMAGED: $mid" "$WORK/chk.out"
check "... and not the base" sh -c "! grep -q '^state_0: DAMAGED' '$WORK/chk.out'"
# The same flip with the file's time kept: the saved index is reused, so
# only --deep, which re-reads every stored byte, can see it.
cp -p "$WORK/mid.orig" "$D/$mid"
"$SNAPCTL" -s "$D" check >/dev/null 2>&1
off=$(flip "$D/$mid")
touch -r "$WORK/mid.orig" "$D/$mid"
"$SNAPCTL" -s "$D" check --deep >"$WORK/chk.out" 2>&1
check "check --deep of a flipped bit exits 1" test $? = 1
blk=$((off / 4096 * 4096))
# The reading check may see it first (windowed patches are read through
# their checksums): either message names the file and an offset inside
# the flipped block.
named_off=$(sed -n "s/^.*$mid: .*checksum mismatch[^0-9]*offset \([0-9]*\).*/\1/p" "$WORK/chk.out" | head -1)
check "... naming the layer file and an offset in the flipped block ($named_off in $blk..+4096)" \
	sh -c "[ -n '$named_off' ] && [ '$named_off' -ge $blk ] && [ '$named_off' -lt $((blk + 4096)) ]"

e2e_done
