#!/bin/sh
# 35-commit-errors.sh: an error found when a written snapshot is committed
# reaches the process that wrote it, through close() or fsync(), and the
# chain stays as it was.
#
# The store is on a small tmpfs that is filled up to 2 MiB. A 6 MiB file of
# random bytes is then written: every write() succeeds (the encoder holds
# up to one 8 MiB window), and the disk fills only when the file is
# finished, at close() or fsync(). Checked with cat (the shell's
# redirection), dd conv=fsync, and a program that checks write, fsync and
# close one by one. Then a temporary patch damaged behind snapfs's back
# (as a bad disk would): close() fails with EIO. After each failure: the
# older snapshots read back
# exactly, no new name is listed, the layers file is unchanged, no
# temporary is left behind; a remount reads everything. With room again the
# same writes succeed (the checks can fail), including a writer that closes
# a dup before writing and one that closes a dup between two writers.
. tests/e2e/lib.sh

ST=$WORK/states; T=$WORK/tiny; MNT=$WORK/mnt
mkdir -p "$ST" "$T"
for k in 0 1 2 3; do
	"$SNAPGEN" --seed 35 --size 4M --index $k -o "$ST/state_$k"
done
head -c 6291456 /dev/urandom > "$WORK/random"

if ! mount -t tmpfs -o size=24m tmpfs "$T" 2>"$WORK/tmpfs.err"; then
	notok "mount a 24 MB tmpfs for the store (needs root): $(cat "$WORK/tmpfs.err")"
	e2e_done; exit 1
fi
MOUNTS="$MNT $T"	# unmounted in this order at exit
S=$T/store
mkdir "$S"
check "mount an empty store on a 24 MB tmpfs" snapfs_mount "$S" "$MNT"
check "cp the base in" cp "$ST/state_0" "$MNT/snapshot_0"
check "cat > snapshot_1" sh -c "cat '$ST/state_1' > '$MNT/snapshot_1'"
# The commit that rewrites increments.txt runs at RELEASE, after cat has
# exited: opening the snapshot waits for it (else, on a loaded machine,
# the file is read before and every "unchanged" check below fails).
head -c 1 "$MNT/snapshot_1" >/dev/null
layers=$(cat "$S/increments.txt")

# intact WHEN: what must hold after each failure.
intact() {
	check "$1: snapshot_0 exact" cmp "$MNT/snapshot_0" "$ST/state_0"
	check "$1: snapshot_1 exact" cmp "$MNT/snapshot_1" "$ST/state_1"
	check "$1: only the older names are listed ($(ls "$MNT" | tr '\n' ' '))" \
		test "$(ls "$MNT" | tr '\n' ' ')" = "current snapshot_0 snapshot_1 "
	check "$1: the layers file is unchanged" test "$(cat "$S/increments.txt")" = "$layers"
	check "$1: no temporaries left in .snapfs/tmp" test -z "$(ls "$S/.snapfs/tmp")"
}

# Leave 2 MiB free.
avail=$(df --output=avail -B1 "$T" | tail -n 1)
check "fill the tmpfs to 2 MiB free" \
	dd if=/dev/zero of="$T/filler" bs=64k count=$(( (avail - 2097152) / 65536 )) status=none
echo "# free on the tmpfs: $(df --output=avail -B1 "$T" | tail -n 1) bytes"

out=$(sh -c "cat '$WORK/random' > '$MNT/full_cat'" 2>&1); rc=$?
check "cat > f into a store that fills at the end: cat exits non-zero ($rc: $out)" \
	sh -c "[ $rc -ne 0 ] && echo '$out' | grep -q 'No space'"
intact "after cat"

out=$(dd if="$WORK/random" of="$MNT/full_dd" bs=1M conv=fsync 2>&1); rc=$?
check "dd conv=fsync: exits non-zero, fsync fails ($rc: $(echo "$out" | head -n 1))" \
	sh -c "[ $rc -ne 0 ] && echo '$out' | grep -q 'fsync failed.*No space'"
intact "after dd"

# step by step: which call fails, and with what.
steps() { # FILE SRC fsync|close: prints one word per call, OK or the errno name
	python3 - "$@" <<'EOF'
import errno, os, sys
path, src, how = sys.argv[1:4]
data = open(src, 'rb').read()
def step(name, f):
    try:
        f()
        print(name, "OK")
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
# every write in one line: all must be OK for the error to be "at the end"
res = []
for i in range(0, len(data), 1 << 20):
    try:
        os.write(fd, data[i:i + (1 << 20)])
        res.append("OK")
    except OSError as e:
        res.append(errno.errorcode.get(e.errno, str(e.errno)))
print("writes", ",".join(sorted(set(res))))
if how == "fsync":
    step("fsync", lambda: os.fsync(fd))
step("close", lambda: os.close(fd))
EOF
}
steps "$MNT/full_py" "$WORK/random" close >"$WORK/py1" 2>&1
check "write() x6 all succeed, close() fails with ENOSPC ($(tr '\n' ' ' <"$WORK/py1"))" \
	sh -c "grep -qx 'writes OK' '$WORK/py1' && grep -qx 'close ENOSPC' '$WORK/py1'"
steps "$MNT/full_fsync" "$WORK/random" fsync >"$WORK/py2" 2>&1
check "fsync() fails with ENOSPC, and close() after it too ($(tr '\n' ' ' <"$WORK/py2"))" \
	sh -c "grep -qx 'writes OK' '$WORK/py2' && grep -qx 'fsync ENOSPC' '$WORK/py2' &&
		grep -qx 'close ENOSPC' '$WORK/py2'"
intact "after fsync"
grep -q 'No space left' "$WORK/snapfs.mnt.log" &&
	ok "the daemon's log names the failure ($(grep -m1 'No space left' "$WORK/snapfs.mnt.log" | cut -c1-150))" ||
	notok "the daemon's log does not mention the failure"

# A patch that does not read back as what was written (bytes of the
# temporary patch damaged behind snapfs's back, as a bad disk would):
# the verify at close() finds it, close() fails with EIO.
rm -f "$T/filler"
head -c 20971520 /dev/urandom > "$WORK/random20"
python3 - "$MNT/corrupt" "$WORK/random20" "$S/.snapfs/tmp" >"$WORK/py4" 2>&1 <<'EOF2'
import errno, glob, os, sys, time
path, src, tmpdir = sys.argv[1:4]
data = open(src, 'rb').read()
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, data)                   # 20 MiB: two 8 MiB windows are full
tmp = [f for f in glob.glob(tmpdir + "/corrupt.patch.*") if f[-1].isdigit()]
t = os.open(tmp[0], os.O_RDWR)
# snapfs encodes and writes full windows on worker threads: wait until
# the first one is in the file (a window of random bytes stays ~8 MiB).
for _ in range(200):
    if os.fstat(t).st_size >= 8 << 20:
        break
    time.sleep(0.05)
off = os.fstat(t).st_size // 2
b = os.pread(t, 16, off)
os.pwrite(t, bytes(x ^ 0xff for x in b), off)
os.close(t)
print("damaged 16 bytes at", off, "of", tmp[0].split("/")[-1])
try:
    os.close(fd)
    print("close OK")
except OSError as e:
    print("close", errno.errorcode.get(e.errno, e.errno))
EOF2
check "a damaged temporary patch: close() fails with EIO ($(tr '\n' ' ' <"$WORK/py4"))" \
	grep -qx 'close EIO' "$WORK/py4"
intact "after the failed verify"
grep -q 'corrupt: the encoded file does not read back' "$WORK/snapfs.mnt.log" &&
	ok "the daemon's log names the failed verify" ||
	notok "the daemon's log does not mention the failed verify"

check "unmount" snapfs_umount "$MNT"
check "remount after the failures" snapfs_mount "$S" "$MNT"
intact "after remount"

# With room again: the same calls succeed, so the checks above can fail.
steps "$MNT/snapshot_2" "$ST/state_2" fsync >"$WORK/py3" 2>&1
check "with room: write, fsync and close all succeed ($(tr '\n' ' ' <"$WORK/py3"))" \
	sh -c "grep -qx 'writes OK' '$WORK/py3' && grep -qx 'fsync OK' '$WORK/py3' &&
		grep -qx 'close OK' '$WORK/py3'"
check "snapshot_2 exact" cmp "$MNT/snapshot_2" "$ST/state_2"
check "with room: dd conv=fsync succeeds" \
	dd if="$WORK/random" of="$MNT/random_dd" bs=1M conv=fsync status=none
check "random_dd exact" cmp "$MNT/random_dd" "$WORK/random"
# A close of a dup before any write, and between two writers: neither
# ends the file (a flush with nothing new finishes nothing; a write after
# a finish reopens it).
python3 - "$MNT/snapshot_3" "$ST/state_3" <<'EOF'
import os, sys
data = open(sys.argv[2], 'rb').read()
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.close(os.dup(fd))                 # as the shell does before exec
os.write(fd, data[:len(data) // 2])
os.close(os.dup(fd))                 # a flush after data: finishes
os.write(fd, data[len(data) // 2:])  # and is undone by this write
os.close(fd)
EOF
check "dup closed before and in between the writes: exact" cmp "$MNT/snapshot_3" "$ST/state_3"
check "(cat a; cat b) > f: exact" sh -c "(head -c 3000000 '$ST/state_1'; tail -c +3000001 '$ST/state_1') > '$MNT/twocats'"
check "twocats exact" cmp "$MNT/twocats" "$ST/state_1"
check "unmount" snapfs_umount "$MNT"
check "remount" snapfs_mount "$S" "$MNT"
for f in snapshot_0:state_0 snapshot_1:state_1 snapshot_2:state_2 snapshot_3:state_3; do
	check "after remount: ${f%%:*} exact" cmp "$MNT/${f%%:*}" "$ST/${f#*:}"
done
check "unmount" snapfs_umount "$MNT"
e2e_done
