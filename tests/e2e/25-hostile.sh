#!/bin/sh
# A hostile or careless user against the store and the mount: symlinks
# planted by a non-root user (created here), names the layers file cannot
# carry, FIFOs where files belong, a patch claiming a 1 TiB target,
# allow_other with a non-root reader and writer, the daemon's log without
# /dev/log, rm/mv/mkdir/ln, comments in increments.txt, empty and lost
# writes, the open-file limit. One check per item; each fails on the
# behaviour issue 13 reported.
. tests/e2e/lib.sh

if [ "$(id -u)" -ne 0 ]; then
	echo "skipped: needs root (creates a user, mounts for others)"
	echo "0 passed, 0 failed"
	exit 77
fi
U=snapfs-e2e
if ! id "$U" >/dev/null 2>&1; then
	# Left in place: a parallel run may be using it.
	useradd -M -r -s /usr/sbin/nologin "$U" 2>/dev/null
	if ! id "$U" >/dev/null 2>&1; then
		echo "skipped: cannot create user $U"
		echo "0 passed, 0 failed"
		exit 77
	fi
fi
as_u() { runuser -u "$U" -- "$@"; }
chmod 755 "$WORK"

ST=$WORK/states
mkdir -p "$ST"
for k in 0 1 2 3 4 5; do
	"$SNAPGEN" --seed 25 --size 4M --index $k -o "$ST/state_$k"
done
chmod 644 "$ST"/state_*
good_store() {
	mkdir -p "$1"
	zstd -q -f "$ST/state_0" -o "$1/snapshot_0.zst"
	for k in 1 2 3; do
		xdelta3 -e -f -s "$ST/state_$((k-1))" "$ST/state_$k" "$1/snapshot_$k.patch"
	done
	printf 'snapshot_3.patch\nsnapshot_2.patch\nsnapshot_1.patch\nsnapshot_0.zst\n' > "$1/increments.txt"
}
mkdir -p "$WORK/never"
# refused DIR WORD [opts]: mounting fails, non-zero exit, the message
# names WORD, nothing is mounted.
refused() {
	_s=$1; _w=$2; shift 2
	out=$(${PFX:-} timeout 10 "$SNAPFS" -f "$@" "$_s" "$WORK/never" 2>&1); rc=$?
	echo "$out"
	[ $rc -ne 0 ] && [ $rc -ne 124 ] && echo "$out" | grep -q -- "$_w" &&
		! echo "$out" | grep -q Sanitizer && ! mountpoint -q "$WORK/never"
}
# errno_of PATH: the errno name a create of PATH gets ("OK" if none).
cat > "$WORK/errno_of.py" <<'EOF'
import errno, os, sys
try:
    os.close(os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))
    print("OK")
except OSError as e:
    print(errno.errorcode[e.errno])
EOF
errno_of() { python3 "$WORK/errno_of.py" "$1"; }
# settle FILE: opening a snapshot waits for its commit, which finishes
# after the writer's close returned (release is asynchronous).
settle() { head -c 1 "$1" >/dev/null 2>&1; true; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# --- 1. symlinks planted by a non-root user; root mounts ---
mkdir -p "$WORK/victim"
echo precious > "$WORK/victim/file"
echo precious > "$WORK/victim/file2"
cp "$WORK/victim/file" "$WORK/victim.ref"

S=$WORK/sym_shadow; good_store "$S"; chown -R "$U" "$S"
as_u sh -c "cd '$S' && ln -s /etc/shadow base.img && printf 'snapshot_1.patch\nbase.img\n' > increments.txt"
check "layer symlinked to /etc/shadow: mount refused, naming it" refused "$S" "base.img.*symbolic link" -o allow_other

S=$WORK/sym_dir; good_store "$S"; chown -R "$U" "$S"
as_u sh -c "cd '$S' && ln -s /etc etc && printf 'etc/passwd\n' > increments.txt"
check "'etc/passwd' through S/etc -> /etc: mount refused, naming it" refused "$S" "etc/passwd.*symbolic link"

S=$WORK/sym_meta; good_store "$S"; chown -R "$U" "$S"
as_u ln -s "$WORK/victim" "$S/.snapfs"
check ".snapfs itself a symlink: mount refused, naming it" refused "$S" "\.snapfs: is a symbolic link"
check ".snapfs symlink: nothing created in its target" test ! -e "$WORK/victim/index"

S=$WORK/sym_tmp; good_store "$S"; chown -R "$U" "$S"
as_u mkdir "$S/.snapfs"
as_u ln -s "$WORK/victim" "$S/.snapfs/tmp"
check ".snapfs/tmp a symlink: mount refused, naming it" refused "$S" "\.snapfs/tmp: is a symbolic link"
check ".snapfs/tmp symlink: the files of its target survive" cmp "$WORK/victim/file" "$WORK/victim.ref"

S=$WORK/sym_lock; good_store "$S"; chown -R "$U" "$S"
as_u mkdir "$S/.snapfs"
as_u ln -s "$WORK/victim/file" "$S/.snapfs/lock"
check ".snapfs/lock a symlink: mount refused, naming it" refused "$S" "\.snapfs/lock: is a symbolic link"
check ".snapfs/lock symlink: its target is not overwritten" cmp "$WORK/victim/file" "$WORK/victim.ref"

S=$WORK/sym_ltmp; good_store "$S"; chown -R "$U" "$S"
as_u ln -s "$WORK/victim/file2" "$S/increments.txt.tmp"
check "increments.txt.tmp a symlink: the store mounts" snapfs_mount "$S" "$WORK/m_ltmp"
check "a snapshot is written" sh -c "cat '$ST/state_4' > '$WORK/m_ltmp/snapshot_4'"
settle "$WORK/m_ltmp/snapshot_4"
check "increments.txt.tmp symlink: its target is not overwritten" cmp "$WORK/victim/file2" "$WORK/victim.ref"
check "increments.txt is a regular file naming the new layer first" \
	sh -c "test -f '$S/increments.txt' && test ! -L '$S/increments.txt' && head -1 '$S/increments.txt' | grep -qx snapshot_4.patch"
check "the new snapshot reads back" cmp "$WORK/m_ltmp/snapshot_4" "$ST/state_4"
check "unmount" snapfs_umount "$WORK/m_ltmp"

# --- 2. names the layers file cannot carry: EINVAL; the store remounts ---
S=$WORK/names; good_store "$S"; M=$WORK/m_names
check "mount" snapfs_mount "$S" "$M"
nl='
'
for n in "#note" " lead" "trail " "new${nl}line" "tab	x" "esc$(printf '\033')[2Jx" "del$(printf '\177')x"; do
	shown=$(printf '%s' "$n" | sed -n l | sed 's/\$$//' | tr -d '\n')
	check "create '$shown': EINVAL" test "$(errno_of "$M/$n")" = EINVAL
done
check "a usable name is still accepted" sh -c "cat '$ST/state_4' > '$M/fine name'"
check "unmount" snapfs_umount "$M"
check "the layers file holds exactly the 5 layers" test "$(grep -c . "$S/increments.txt")" -eq 5
check "the store mounts again after the refused names" snapfs_mount "$S" "$M"
check "and every snapshot reads" sh -c "cmp '$M/fine name' '$ST/state_4' && cmp '$M/snapshot_3' '$ST/state_3'"
check "unmount" snapfs_umount "$M"

# --- 3. FIFOs where files belong: refused at once, never a hang ---
S=$WORK/fifo_layer; good_store "$S"
rm "$S/snapshot_2.patch"; mkfifo "$S/snapshot_2.patch"
t0=$(now_ms)
check "a FIFO layer: mount refused, naming it as a FIFO" refused "$S" "snapshot_2.patch.*FIFO"
t1=$(now_ms)
check "a FIFO layer: refused within a second ($((t1 - t0)) ms)" test $((t1 - t0)) -lt 1000
t0=$(now_ms)
out=$(timeout 10 "$SNAPFS" "$S" "$WORK/never" 2>&1); rc=$?
t1=$(now_ms)
check "a FIFO layer, daemon mode: exits non-zero within a second ($((t1 - t0)) ms, rc=$rc)" \
	sh -c "[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $((t1 - t0)) -lt 1000 ] && ! mountpoint -q '$WORK/never'"
S=$WORK/fifo_list; good_store "$S"
rm "$S/increments.txt"; mkfifo "$S/increments.txt"
t0=$(now_ms)
check "a FIFO increments.txt: mount refused, naming it" refused "$S" "increments.txt.*FIFO"
t1=$(now_ms)
check "a FIFO increments.txt: refused within a second ($((t1 - t0)) ms)" test $((t1 - t0)) -lt 1000

S=$WORK/fifo_idx; good_store "$S"
check "mount (indexes built)" snapfs_mount "$S" "$WORK/m_fidx"
check "unmount" snapfs_umount "$WORK/m_fidx"
idx=$(ls "$S/.snapfs/index" | head -1)
rm "$S/.snapfs/index/$idx"; mkfifo "$S/.snapfs/index/$idx"
check "a FIFO in place of a saved index ($idx): the store still mounts (index rebuilt)" \
	snapfs_mount "$S" "$WORK/m_fidx" -o quiet
check "and every snapshot reads" cmp "$WORK/m_fidx/snapshot_3" "$ST/state_3"
check "the FIFO was replaced by a regular index file" test -f "$S/.snapfs/index/$idx" -a ! -p "$S/.snapfs/index/$idx"
check "unmount" snapfs_umount "$WORK/m_fidx"

# --- 4. a patch claiming a 1 TiB target ---
# 65,536 windows of 16 MiB each: RUN windows (a few bytes each) and, in
# a second patch, windows with no instructions at all.
python3 - "$WORK" <<'EOF'
import sys, zlib
def varint(v):
    out = [v & 0x7f]; v >>= 7
    while v:
        out.append(0x80 | (v & 0x7f)); v >>= 7
    return bytes(reversed(out))
W = 16 << 20
ad = zlib.adler32(b'\xab' * W)
for mode in ('run', 'noinst'):
    b = bytearray(b'\xd6\xc3\xc4\x00\x00')
    inst = b'\x00' + varint(W) if mode == 'run' else b''
    body = varint(W) + b'\x00' + varint(1) + varint(len(inst)) + varint(0)
    body += ad.to_bytes(4, 'big') + b'\xab' + inst
    win = b'\x04' + varint(len(body)) + body
    b += win * 65536
    open(sys.argv[1] + '/tib_' + mode + '.patch', 'wb').write(b)
open(sys.argv[1] + '/tib_head', 'wb').write(b'\xab' * (1 << 20))
EOF
for mode in run noinst; do
	S=$WORK/tib_$mode; mkdir -p "$S"
	head -c 1M /dev/zero > "$S/base.img"
	mv "$WORK/tib_$mode.patch" "$S/big.patch"
	printf 'big.patch\nbase.img\n' > "$S/increments.txt"
done
# Mounted or refused within TIB_SECONDS. The codec's O(1) adler32 of a
# run (vcdiff_adler32_run) lets the index builder check fill-only windows
# without building their bytes (fs/ibuild.c): work in proportion to the
# patch, not to what it claims.
if [ "${SNAPFS_SANITIZED:-0}" = 1 ]; then TIB_DEFAULT=20; else TIB_DEFAULT=5; fi
TIB_SECONDS=${SNAPFS_TIB_SECONDS:-$TIB_DEFAULT}
# mount_within DIR MNT SECONDS: 0 if mounted or refused in time.
mount_within() {
	mkdir -p "$2"
	"$SNAPFS" -f "$1" "$2" >"$WORK/snapfs.$(basename "$2").log" 2>&1 &
	_p=$!; MOUNTS="$MOUNTS $2"; _i=0
	while [ $_i -lt $(($3 * 10)) ]; do
		mountpoint -q "$2" && return 0
		kill -0 $_p 2>/dev/null || return 0
		sleep 0.1; _i=$((_i + 1))
	done
	kill $_p 2>/dev/null
	return 1
}
t0=$(now_ms)
check "65,536 RUN windows claiming 1 TiB: mounted or refused within ${TIB_SECONDS}s" \
	mount_within "$WORK/tib_run" "$WORK/m_run" "$TIB_SECONDS"
t1=$(now_ms)
echo "   (took $((t1 - t0)) ms)"
if mountpoint -q "$WORK/m_run"; then
	check "RUN patch: size is the claimed 1 TiB" test "$(stat -c %s "$WORK/m_run/big")" -eq $((65536 * 16777216))
	check "RUN patch: bytes are the run's" same_bytes "$WORK/m_run/big" "$WORK/tib_head" 0 1048576
	check "unmount" snapfs_umount "$WORK/m_run"
fi
t0=$(now_ms)
check "windows claiming output without instructions: mounted within 5 s" \
	mount_within "$WORK/tib_noinst" "$WORK/m_noinst" 5
t1=$(now_ms)
check "no-instruction windows: the snapshot gives EIO" sh -c "! cat '$WORK/m_noinst/big' >/dev/null 2>&1"
check "no-instruction windows: the log says why" grep -q "claims output but has no instructions" "$WORK/snapfs.m_noinst.log"
check "no-instruction windows: the base still reads" cmp "$WORK/m_noinst/base" "$WORK/tib_noinst/base.img"
check "unmount" snapfs_umount "$WORK/m_noinst"

# --- 5. allow_other: a non-root reader and writer ---
S=$WORK/ao; good_store "$S"; M=$WORK/m_ao
chmod 600 "$S/snapshot_2.patch"
chown "$U" "$S/snapshot_1.patch"; chmod 640 "$S/snapshot_1.patch"
check "mount -o allow_other (as the shipped unit does)" snapfs_mount "$S" "$M" -o allow_other
check "the mount has default_permissions" sh -c "grep ' $M ' /proc/mounts | grep -q default_permissions"
check "$U reads a snapshot whose store file it may read" as_u cmp "$M/snapshot_3" "$ST/state_3"
check_fails "$U cannot read a snapshot whose store file is 0600 root" as_u cat "$M/snapshot_2"
want1="$U $(printf '%o' $(( 0$(stat -c %a "$S/snapshot_1.patch") & 0555 )))"
check "a layer shows its store file's owner and mode less write bits ($want1)" \
	test "$(stat -c '%U %a' "$M/snapshot_1")" = "$want1"
check "$U cannot create in root's 0755 store" test "$(as_u python3 "$WORK/errno_of.py" "$M/u_snap")" = EACCES
# $U tries to hold a new file open across root's save (it made root's
# save fail with EBUSY when every user could create).
as_u python3 -c '
import os, sys, time
try:
    fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY)
    os.write(fd, b"x")
    time.sleep(3)
except OSError:
    pass' "$M/u_hold" &
hold=$!
sleep 0.5
check "so root's own save is never held up by $U" sh -c "cat '$ST/state_4' > '$M/snapshot_4'"
wait $hold
chmod 1777 "$S"; sleep 1.2	# the root's attributes are cached 1 s
check "$U creates a snapshot once it may write the store (umask 027)" \
	as_u sh -c "umask 027; cat '$ST/state_5' > '$M/u_snap'"
want="$U $(printf '%o' $(( 0666 & ~027 & 0555 )))"
check "the new snapshot is $U's, mode from its umask without write bits ($want)" \
	test "$(stat -c '%U %a' "$M/u_snap")" = "$want"
check "it reads back exactly" cmp "$M/u_snap" "$ST/state_5"
check "the stored file is $U's too" test "$(stat -c %U "$S/u_snap.patch")" = "$U"
check "unmount" snapfs_umount "$M"

# --- 6. the daemon's log with no syslog ---
S=$WORK/dlog; good_store "$S"; M=$WORK/m_dlog; mkdir -p "$M"
L=$S/.snapfs/log
if [ -e /dev/log ]; then
	# syslog would get the messages: ask for the file explicitly.
	"$SNAPFS" -o "log=$L" "$S" "$M" >"$WORK/dlog.out" 2>&1; rc=$?
else
	"$SNAPFS" "$S" "$M" >"$WORK/dlog.out" 2>&1; rc=$?
fi
MOUNTS="$MOUNTS $M"
check "daemon mode: snapfs returns 0 once mounted" sh -c "[ $rc -eq 0 ] && mountpoint -q '$M'"
check "the log file exists and says the store is mounted" grep -q "mounted on" "$L"
stats=$(python3 -c "import os,sys; print(os.getxattr(sys.argv[1], 'user.snapfs.stats').decode())" "$M" 2>&1)
check "user.snapfs.stats names the log" sh -c "echo '$stats' | grep -q 'log .*/.snapfs/log'"
touch "$S/notes.patch"
check_fails "cat > M/notes with an unlisted notes.patch in the way fails" sh -c "cat '$ST/state_4' > '$M/notes'"
check "and the log says why" grep -q "notes.patch exists but is not a snapshot" "$L"
check "a control-byte name is refused" test "$(errno_of "$M/esc$(printf '\033')[2Jx")" = EINVAL
check "the log has the name with the control byte escaped" grep -qF 'esc\x1b[2Jx' "$L"
check "no raw control byte reaches the log" sh -c "test -s '$L' && test \$(tr -d '\n' < '$L' | tr -d '[:print:]' | wc -c) -eq 0"
mkdir "$S/snapshots.txt.tmp"	# makes the commit point (the tree file) fail
cat "$ST/state_4" > "$M/snapshot_4"	# its publish fails, after close
settle "$M/snapshot_4"
check "the commit error is in the log" grep -q "snapshots.txt: cannot write" "$L"
check "and the snapshot was not added" test ! -e "$M/snapshot_4"
rmdir "$S/increments.txt.tmp"
python3 - "$M" <<'EOF'
import os, sys
for i in range(6000):
    try:
        os.close(os.open(os.path.join(sys.argv[1], "#" + "r" * 150 + str(i)), os.O_CREAT | os.O_WRONLY))
        break       # names not checked: nothing to rotate
    except OSError:
        pass
EOF
check "the log is rotated past 1 MiB (log.1 exists, log <= 1 MiB)" \
	sh -c "test -s '$L.1' && test \$(stat -c %s '$L') -le 1048576 && test \$(stat -c %s '$L.1') -le 1048576"
fusermount3 -u "$M"
i=0; while pgrep -f "$SNAPFS .*$S" >/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
check "the daemon exits after unmount" test $i -lt 100

# --- 7. what the mount does not do: EPERM, not ENOSYS ---
# (rm, mv and ln -sfn ... current are snapshot management: 40-tree.sh.)
S=$WORK/ops; good_store "$S"; M=$WORK/m_ops
check "mount" snapfs_mount "$S" "$M"
eperm() { ! "$@" 2>"$WORK/eperm.err" && grep -q "Operation not permitted" "$WORK/eperm.err"; }
check "rm current: EPERM" eperm rm -f "$M/current"
check "mv current: EPERM" eperm mv "$M/current" "$M/renamed"
check "mkdir: EPERM" eperm mkdir "$M/dir"
check "ln (hard): EPERM (the kernel's answer already when unimplemented)" eperm ln "$M/snapshot_1" "$M/hard"
check "mkfifo: EPERM" eperm mkfifo "$M/fifo"
check "the snapshot is untouched" cmp "$M/snapshot_1" "$ST/state_1"
check "unmount" snapfs_umount "$M"

# --- 8. comments and blank lines of increments.txt survive rewrites ---
S=$WORK/comments; good_store "$S"; M=$WORK/m_comments
printf '# store of vm1\n\nsnapshot_3.patch\n  # after the upgrade\nsnapshot_2.patch\n\nsnapshot_1.patch\nsnapshot_0.zst\n# end\n' > "$S/increments.txt"
# expect_after FILE NEW: FILE with NEW inserted above its first layer line.
expect_after() {
	awk -v n="$2" '!done && !/^[ \t]*(#|$)/ { print n; done = 1 } { print }' "$1"
}
check "mount" snapfs_mount "$S" "$M"
expect_after "$S/increments.txt" snapshot_4.patch > "$WORK/expect4"
check "write snapshot_4" sh -c "cat '$ST/state_4' > '$M/snapshot_4'"
settle "$M/snapshot_4"
check "comments and blank lines kept in place after one rewrite" diff "$WORK/expect4" "$S/increments.txt"
expect_after "$WORK/expect4" snapshot_5.patch > "$WORK/expect5"
check "write snapshot_5" sh -c "cat '$ST/state_5' > '$M/snapshot_5'"
settle "$M/snapshot_5"
check "and after a second rewrite" diff "$WORK/expect5" "$S/increments.txt"
check "unmount" snapfs_umount "$M"

# --- 9. empty and lost writers ---
S=$WORK/empty; good_store "$S"; M=$WORK/m_empty
check "mount" snapfs_mount "$S" "$M"
check_fails "cat /nonexistent > M/x fails" sh -c "cat /nonexistent > '$M/x'"
# The kernel sends the last release after close() returns: give it a moment.
check "no snapshot x is shown" sh -c "for t in 1 2 3 4 5 6 7 8 9 10; do test ! -e '$M/x' && exit 0; sleep 0.1; done; exit 1"
check "nor stored" sh -c "test ! -e '$S/x.patch' && ! grep -q '^x' '$S/increments.txt'"
check "the log says why (empty)" grep -q "x: closed with no data" "$WORK/snapfs.m_empty.log"
check "the next snapshot is built on snapshot_3, as before" sh -c "cat '$ST/state_4' > '$M/snapshot_4' && cmp '$M/snapshot_4' '$ST/state_4' && test \"\$(head -2 '$S/increments.txt' | tr '\n' ' ')\" = 'snapshot_4.patch snapshot_3.patch '"
python3 - "$M/lost" "$ST/state_5" <<'EOF' &
import sys, time
f = open(sys.argv[1], 'wb')
f.write(open(sys.argv[2], 'rb').read()[:1000000])
f.flush()
time.sleep(2)
f.write(b'x' * 1000)
f.close()
EOF
wpid=$!
sleep 0.7
umount -l "$M"
wait $wpid
i=0; while pgrep -f "snapfs -f .* $M\$" >/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
# The writer still closes its file after the lazy unmount; whether the
# kernel then reports the close decides: the snapshot is added whole
# (every byte was written and close() succeeded), or the log says it was
# not added. Never a partial snapshot, never silence.
python3 -c "import sys; d=open(sys.argv[1],'rb').read()[:1000000]; open(sys.argv[2],'wb').write(d + b'x'*1000)" "$ST/state_5" "$WORK/lost.expect"
lost_ok() {
	if grep -q 'lost: the mount went away.*not added' "$WORK/snapfs.m_empty.log"; then
		return 0
	fi
	snapfs_mount "$S" "$M" && cmp "$M/lost" "$WORK/lost.expect"; rc=$?
	snapfs_umount "$M"; return $rc
}
check "umount -l during a write: added whole, or the log says it was not added" lost_ok

# --- 10. the open-file limit is named as the cause ---
S=$WORK/deep; mkdir -p "$S"
head -c 65536 /dev/urandom > "$WORK/d_0"
zstd -q "$WORK/d_0" -o "$S/d_0.zst"
echo d_0.zst > "$S/increments.txt"
for k in $(seq 1 30); do
	cp "$WORK/d_$((k-1))" "$WORK/d_$k"
	printf 'k%05d' $k | dd of="$WORK/d_$k" bs=1 seek=$((k * 100)) conv=notrunc 2>/dev/null
	xdelta3 -e -f -s "$WORK/d_$((k-1))" "$WORK/d_$k" "$S/d_$k.patch"
	{ echo "d_$k.patch"; cat "$S/increments.txt"; } > "$WORK/inc" && mv "$WORK/inc" "$S/increments.txt"
done
check "31 layers mount with the usual limit" snapfs_mount "$S" "$WORK/m_deep"
check "unmount" snapfs_umount "$WORK/m_deep"
PFX="prlimit --nofile=24:24"
check "31 layers, hard open-file limit 24: refused, saying to raise the limit" \
	refused "$S" "too many open files.*raise the limit"
# Where the limit is met depends on how many descriptors the caller
# already holds (CI inherits more than a terminal does): the store's own
# files, .snapfs/, a layer or derived data. The message is the same.
many_fds() {
	exec 5</dev/null 6</dev/null 7</dev/null 8</dev/null 9</dev/null
	refused "$@"
}
check "the same with 5 more descriptors inherited" \
	many_fds "$S" "too many open files.*raise the limit"
rm -rf "$S/.snapfs"
check "the same on a first mount (derived data being built)" \
	refused "$S" "too many open files.*raise the limit"
check "and with 5 more descriptors inherited" \
	many_fds "$S" "too many open files.*raise the limit"
PFX=

# A second mount refused while the lock is held quotes the lock file's
# words (the holder's pid and mountpoint): the store's bytes, so escaped.
S=$WORK/s_lockmsg
good_store "$S"
mkdir -p "$S/.snapfs"
printf '1\033[2J\nmount /x\033]0;owned\007\ntoken t\n' > "$S/.snapfs/lock"
flock -o "$S/.snapfs/lock" sleep 60 &
holder=$!
sleep 0.3
refused "$S" 'in use by another snapfs (pid 1\\x1b\[2J, mounted on /x\\x1b]0;owned\\x07' \
	> "$WORK/lockmsg.out"
check "a held lock: the mount is refused, naming the holder, escaped" test $? = 0
check "... and no control byte from the lock file in the message" \
	sh -c "! grep -q \"\$(printf '\\033')\" '$WORK/lockmsg.out'"
pkill -P $holder 2>/dev/null
kill $holder 2>/dev/null
wait $holder 2>/dev/null
e2e_done
