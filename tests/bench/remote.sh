#!/bin/sh
# make bench, remote part: a store of real QEMU states kept in an S3 bucket
# (snapfs s3://BUCKET/PREFIX MNT), on the S3 server of the e2e tests
# (Swift + s3api on loopback, tests/e2e/s3lib.sh), all in one run:
#   1. the store (the states of tests/bench/qemu.sh, written through a
#      local mount) uploaded as it is; the first remote mount, which builds
#      and uploads derived data, timed;
#   2. cold restore of the newest state (QEMU migrate-incoming
#      "exec:cat FILE" to completed, tests/qemu/restore_time.py) through a
#      fresh mount on a fresh cache directory, against (a) curl GET of the
#      plain state file, then a restore from it (and the same GET streamed
#      into QEMU through a FIFO) and (b) a fresh mount of the local store;
#      page caches dropped before each cold run;
#   3. bytes fetched by that restore (remote_fetched, remote_bytes_in of
#      the user.snapfs.stats xattr) against the bytes of the files it needs;
#   4. a warm remount (same cache directory) against the local mount;
#   5. four mounts on four cache directories (four hosts) restoring at
#      once, against four local stores restoring at once;
#   6. cold sequential cat throughput for s3_chunk 1M/4M/16M x s3_parallel
#      4/8/16 (BENCH_REMOTE_CONFS, "CHUNK:N ..."), against a cold local
#      mount in the same round;
#   7. the same states written through a remote -o writer mount (cat >
#      each, upload and commit included) into a fresh prefix, against
#      writing them through a local mount plus uploading the stored files
#      (s3_sync_up); one round, every snapshot compared after.
# Every figure is the median of BENCH_REMOTE_RUNS (3) rounds; each round
# measures a figure and its comparison back to back.
#   BENCH_QEMU_SNAPS=16   states (shared with tests/bench/qemu.sh)
#   BENCH_REMOTE_RUNS=3
#   BENCH_REMOTE_COLD_RUNS=$BENCH_REMOTE_RUNS  rounds of 2 + 3
#   BENCH_REMOTE_OPTS=...  more -o options for every remote mount
#   BENCH_REMOTE_SKIP="par sweep write"  leave out 5, 6 and/or 7 (their
#       rows print empty): more rounds of the others in the same time
# Not set -e: s3lib.sh's helpers are not written for it; steps that must
# work end in || die.
set -u
BUILD=${BUILD:-build-bench}
. tests/e2e/lib.sh
. tests/e2e/s3lib.sh
die() { echo "bench: $*" >&2; exit 1; }
DATA=${BENCH_DATA:-$TOP/$BUILD/bench-data}
NSNAP=${BENCH_QEMU_SNAPS:-16}
RUNS=${BENCH_REMOTE_RUNS:-3}
COLD_RUNS=${BENCH_REMOTE_COLD_RUNS:-$RUNS}
SKIP=" ${BENCH_REMOTE_SKIP:-} "
skip() { case $SKIP in *" $1 "*) return 0 ;; esac; return 1; }
QS=$DATA/qemu-states-$NSNAP
OUT=$TOP/$BUILD/bench-remote.txt
S=$DATA/rstore
B=snapfs-bench
P=vm
URL=s3://$B/$P
mkdir -p "$DATA"
sh contrib/deps.sh qemu test || die "deps.sh failed"

ALLM=""
umount_one() { # MNT: unmount (a reader may still be closing), wait for its daemon
	_i=0
	while mountpoint -q "$1" && ! fusermount3 -u "$1" 2>/dev/null && [ $_i -lt 200 ]; do
		sleep 0.05; _i=$((_i+1)); done
	_i=0; while pgrep -f "$SNAPFS .* $1\$" > /dev/null && [ $_i -lt 200 ]; do
		sleep 0.05; _i=$((_i+1)); done
	! mountpoint -q "$1" || die "cannot unmount $1"
}
cleanup() {
	for _m in $ALLM; do ( umount_one "$_m" ) || true; done
	mkdir -p "$DATA/remote-logs"; cp "$WORK"/snapfs.*.log "$DATA/remote-logs/" 2>/dev/null
	s3_stop; e2e_cleanup
}
trap cleanup EXIT
now() { date +%s.%N; }
elapsed() { echo "$(now) $1" | awk '{printf "%.3f", $1 - $2}'; }
med() { echo "$@" | tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { echo "$1 $2" | awk '{ if ($2 > 0) printf "%.2f", $1/$2; else print "-" }'; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
stat_of() { getfattr --only-values -n user.snapfs.stats "$1" 2>/dev/null | sed -n "s/^$2 //p"; }
# mount STORE MNT [snapfs options]: foreground daemon in the background,
# polled every 20 ms; prints nothing, fails if it died first.
mnt() {
	_s=$1; _m=$2; shift 2
	mkdir -p "$_m"; umount_one "$_m"
	mountpoint -q "$_m" && die "$_m is still mounted"
	case " $ALLM " in *" $_m "*) ;; *) ALLM="$ALLM $_m" ;; esac
	"$SNAPFS" -f -o quiet "$@" "$_s" "$_m" >> "$WORK/snapfs.$(basename "$_m").log" 2>&1 &
	_p=$!
	while ! mountpoint -q "$_m"; do
		kill -0 $_p 2>/dev/null || { tail -5 "$WORK/snapfs.$(basename "$_m").log" >&2; return 1; }
		sleep 0.02
	done
}
rmnt() { # CACHE MNT [more -o options]: remote mount (plus BENCH_REMOTE_OPTS)
	_c=$1; _m=$2; shift 2
	mnt "$URL" "$_m" -o "cache_dir=$_c${1:+,$1}${BENCH_REMOTE_OPTS:+,$BENCH_REMOTE_OPTS}"
}
rt() { python3 tests/qemu/restore_time.py -n 1 "$1" --cmdline "$QS/qemu-cmdline" | awk '{print $3}'; }

# --- the states, as tests/bench/qemu.sh keeps them ---
. tests/bench/states.sh
qemu_states "$QS" "$NSNAP"
states=$(ls "$QS"/snapshot_* | sort -t_ -k2 -n)
plainf=$(echo "$states" | tail -n 1)
n=$(echo "$states" | wc -l)
K=$((n - 1))
newest=snapshot_$K

# --- 1. the store, local and in the bucket ---
echo "bench: writing $n states through a local mount into $S" >&2
rm -rf "$S"; mkdir -p "$S"
M=$WORK/m
mnt "$S" "$M" || die "cannot mount $S"
k=0
t=$(now)
for f in $states; do cat "$f" > "$M/snapshot_$k" || die "cannot write snapshot_$k"; k=$((k + 1)); done
write_local_s=$(elapsed "$t")
cmp "$M/$newest" "$plainf" || die "$newest differs from $plainf"
umount_one "$M"
[ -z "$(s3_missing)" ] || s3_install || die "cannot install Swift"
s3_start || die "the S3 server does not start"
s3_mb "$B" || die "cannot make the bucket"
# The stored files only (no .snapfs/): the first remote mount derives.
UP=$WORK/up
mkdir -p "$UP"
for f in "$S"/* ; do ln "$f" "$UP/"; done
t=$(now)
s3_sync_up "$UP" "$B/$P" || die "upload failed"
upload_s=$(elapsed "$t")
s3_put "$plainf" "$B/plain/$newest" || die "upload failed"
stored=$(du -sb "$UP" | cut -f1)
t=$(now)
rmnt "$WORK/c-first" "$M" || die "the first remote mount failed"
first_s=$(elapsed "$t")
cmp "$M/$newest" "$plainf" || die "$newest through the remote mount differs"
umount_one "$M"
# The bucket's keys and sizes, derived ones (.snapfs/) included.
s3 GET "/$B?list-type=2&prefix=$P%2F" | tr '<' '\n' |
	awk '/^Key>/ {k=substr($0,5)} /^Size>/ {print k, substr($0,6)}' > "$WORK/keys"
derived=$(awk '$1 ~ "/.snapfs/" {s+=$2} END {print s+0}' "$WORK/keys")
sed "s|^$P/||" "$WORK/keys" > "$OUT.keys"

# Bytes the newest snapshot needs: every layer of its ancestry (here the
# whole chain), each as the file the mount reads: a derived copy
# (.snapfs/base/, .snapfs/plain/, named ID.STAMP.EXT after the layer's id in
# the tree file) where there is one, else the stored file.
need_layers=0; need_derived=0
for f in $(sed -n 's/^\(snapshot_[0-9]*[^ ]*\) .*/\1/p' "$OUT.keys"); do
	sz=$(awk -v k="$f" '$1 == k {print $2}' "$OUT.keys")
	need_layers=$((need_layers + sz))
done
# Copies standing for stored files, and the stored files they replace.
copies=$(awk '$1 ~ /^\.snapfs\/(base|plain)\// {s+=$2} END {print s+0}' "$OUT.keys")
ncopies=$(grep -c '^\.snapfs/\(base\|plain\)/' "$OUT.keys" || true)
# Whole-file derived data a mount fetches (index, aux, sums).
meta=$(awk '$1 ~ /^\.snapfs\/(index|aux|sums)\// {s+=$2} END {print s+0}' "$OUT.keys")

# --- the local stores: S, and three more for the concurrent restores ---
# (hard-linked layers, own .snapfs/ copies: one lock each)
for i in 2 3 4; do
	rm -rf "$S$i"; mkdir -p "$S$i"
	for f in "$S"/*; do ln "$f" "$S$i/"; done
	cp -a "$S/.snapfs" "$S$i/"
done
# Stored files replaced by a copy: the base when .snapfs/base/ has one.
replaced=0
if grep -q '^\.snapfs/base/' "$OUT.keys"; then
	b0=$(tail -n 1 "$S/increments.txt" 2>/dev/null || true)
	[ -n "$b0" ] && replaced=$(awk -v k="$b0" '$1 == k {print $2}' "$OUT.keys")
fi
if grep -q '^\.snapfs/plain/' "$OUT.keys"; then
	echo "bench: note: .snapfs/plain/ copies exist; the needed bytes count them beside the patches they stand for" >&2
fi
need=$((need_layers - ${replaced:-0} + copies))

# --- 2 + 3. cold restores ---
R_rem=""; R_loc=""; R_get=""; R_dl=""; R_getrt=""; R_fifo=""; F=""; BI=""
MT_rem=""; MT_loc=""
MKFIFO=$WORK/state.fifo
for i in $(seq "$COLD_RUNS"); do
	echo "bench: cold restores, round $i" >&2
	rm -rf "$WORK/c-cold$i"
	drop; t=$(now); rmnt "$WORK/c-cold$i" "$M" || die "mount failed"; MT_rem="$MT_rem $(elapsed "$t")"
	drop; r=$(rt "$M/$newest"); R_rem="$R_rem $r"
	F="$F $(stat_of "$M" remote_fetched)"; BI="$BI $(stat_of "$M" remote_bytes_in)"
	umount_one "$M"
	drop; t=$(now); mnt "$S" "$M" || die "mount failed"; MT_loc="$MT_loc $(elapsed "$t")"
	drop; R_loc="$R_loc $(rt "$M/$newest")"
	umount_one "$M"
	# (a) curl: the plain file fetched whole, then restored from it
	rm -f "$WORK/full"
	drop; t=$(now); s3_get "$B/plain/$newest" "$WORK/full"; dl=$(elapsed "$t")
	r=$(rt "$WORK/full")
	R_dl="$R_dl $dl"; R_getrt="$R_getrt $r"
	R_get="$R_get $(echo "$dl $r" | awk '{printf "%.3f", $1 + $2}')"
	rm -f "$WORK/full"
	# ... and streamed into QEMU: cat reads a FIFO that curl fills
	rm -f "$MKFIFO"; mkfifo "$MKFIFO"
	drop
	( s3 GET "/$B/plain/$newest" > "$MKFIFO" ) &
	cpid=$!
	R_fifo="$R_fifo $(rt "$MKFIFO")"
	wait $cpid || true
done

# --- 4. warm: the same cache directory, remounted ---
W_rem=""; W_loc=""; W_f=""; WC_rem=""; WC_loc=""
for i in $(seq "$RUNS"); do
	echo "bench: warm restores, round $i" >&2
	# page cache warm too (the cache's and the store's files)
	rmnt "$WORK/c-cold1" "$M" || die "mount failed"; cmp "$M/$newest" "$plainf" || die "remote $newest differs"; umount_one "$M"
	rmnt "$WORK/c-cold1" "$M" || die "mount failed"
	W_rem="$W_rem $(rt "$M/$newest")"; W_f="$W_f $(stat_of "$M" remote_fetched)"
	umount_one "$M"
	mnt "$S" "$M" || die "mount failed"; cat "$M/$newest" > /dev/null; umount_one "$M"
	mnt "$S" "$M" || die "mount failed"; W_loc="$W_loc $(rt "$M/$newest")"; umount_one "$M"
	# the disk cache full, the page cache dropped
	drop; rmnt "$WORK/c-cold1" "$M" || die "mount failed"; drop; WC_rem="$WC_rem $(rt "$M/$newest")"; umount_one "$M"
	drop; mnt "$S" "$M" || die "mount failed"; drop; WC_loc="$WC_loc $(rt "$M/$newest")"; umount_one "$M"
done

# --- 5. four hosts at once ---
par4() { # MNT-PREFIX: four restores at once; prints the wall time and the slowest
	_t=$(now)
	for _j in 1 2 3 4; do rt "$1$_j/$newest" > "$WORK/par.$_j" & done
	wait
	_w=$(elapsed "$_t")
	echo "$_w $(cat "$WORK"/par.1 "$WORK"/par.2 "$WORK"/par.3 "$WORK"/par.4 | sort -g | tail -n 1)"
}
C_rem=""; C_loc=""; C_remmax=""; C_locmax=""; C_f=""
skip par && RUNS5=0 || RUNS5=$RUNS
for i in $(seq "$RUNS5"); do
	echo "bench: four at once, round $i" >&2
	for j in 1 2 3 4; do rm -rf "$WORK/c-par$i-$j"; rmnt "$WORK/c-par$i-$j" "$WORK/p$j" || die "mount failed"; done
	drop; set -- $(par4 "$WORK/p"); C_rem="$C_rem $1"; C_remmax="$C_remmax $2"
	f=0; for j in 1 2 3 4; do f=$((f + $(stat_of "$WORK/p$j" remote_fetched))); done
	C_f="$C_f $f"
	for j in 1 2 3 4; do umount_one "$WORK/p$j"; rm -rf "$WORK/c-par$i-$j"; done
	mnt "$S" "$WORK/p1" || die "mount failed"; for j in 2 3 4; do mnt "$S$j" "$WORK/p$j" || die "mount failed"; done
	drop; set -- $(par4 "$WORK/p"); C_loc="$C_loc $1"; C_locmax="$C_locmax $2"
	for j in 1 2 3 4; do umount_one "$WORK/p$j"; done
done

# --- 6. s3_chunk x s3_parallel, cold sequential cat ---
# Of the newest state (15 patches on the base: lzma decoding bounds it)
# and of snapshot_0 (the base alone: the fetch path shows more).
size=$(stat -c %s "$plainf")
catmbs() { # FILE: cold cat, MB/s
	_t=$(now); cat "$1" > /dev/null || die "cat $1 failed"; _e=$(elapsed "$_t")
	echo "$(stat -c %s "$1") $_e" | awk '{printf "%.0f", $1 / $2 / 1e6}'
}
CONFS=${BENCH_REMOTE_CONFS:-"1M:4 1M:8 1M:16 4M:4 4M:8 4M:16 16M:4 16M:8 16M:16"}
SW="$newest snapshot_0"
for f in $SW; do
	eval "L_$f=''"
	for c in $CONFS; do eval "T_${f}_$(echo "$c" | tr ':' '_')=''"; done
done
skip sweep && RUNS6=0 || RUNS6=$RUNS
for i in $(seq "$RUNS6"); do
	echo "bench: s3_chunk x s3_parallel, round $i" >&2
	for f in $SW; do
		drop; mnt "$S" "$M" || die "mount failed"; drop
		x=$(catmbs "$M/$f"); umount_one "$M"
		eval "L_$f=\"\$L_$f $x\""
		for c in $CONFS; do
			v=${f}_$(echo "$c" | tr ':' '_')
			rm -rf "$WORK/c-sw"
			drop; rmnt "$WORK/c-sw" "$M" "s3_chunk=${c%:*},s3_parallel=${c#*:}" || die "mount failed"
			drop; x=$(catmbs "$M/$f"); umount_one "$M"
			eval "T_$v=\"\$T_$v $x\""
		done
	done
done
rm -rf "$WORK/c-sw"

# --- 7. writing through a remote writer mount ---
write_remote_s=""; uploaded=""
if ! skip write; then
echo "bench: writing $n states through s3://$B/w -o writer" >&2
rm -rf "$WORK/c-w"
mnt "s3://$B/w" "$M" -o "cache_dir=$WORK/c-w,writer" || die "the writer mount failed"
k=0
t=$(now)
for f in $states; do cat "$f" > "$M/snapshot_$k" || die "remote write of snapshot_$k failed"; k=$((k + 1)); done
write_remote_s=$(elapsed "$t")
uploaded=$(stat_of "$M" remote_uploaded)
k=0
for f in $states; do cmp "$M/snapshot_$k" "$f" || die "remote snapshot_$k differs"; k=$((k + 1)); done
umount_one "$M"
rm -rf "$WORK/c-w"
fi

# --- the table ---
mr=$(med $R_rem); ml=$(med $R_loc); mg=$(med $R_get); mf=$(med $F)
mw=$(med $W_rem); mwl=$(med $W_loc)
{
printf '# snapfs remote store (S3: Swift + s3api on loopback), %s, %s cores, %s\n' \
	"$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$(uname -r)"
printf '# %d real QEMU states of %s bytes (%s), restoring %s; medians of %s rounds\n' \
	"$n" "$size" "$QS" "$newest" "$RUNS"
printf '%-56s %s\n' "stored files uploaded (bytes, s3_sync_up s)" "$stored ($upload_s s)"
printf '%-56s %s\n' "first remote mount: builds + uploads derived (s)" "$first_s"
printf '%-56s %s\n' "derived data in the bucket (.snapfs/, bytes)" "$derived"
echo "## cold restore (page caches dropped; fresh mount, fresh cache dir)"
printf '%-56s %8s s  runs:%s\n' "remote mount (mount itself, not in the restore)" "$(med $MT_rem)" "$MT_rem"
printf '%-56s %8s s  runs:%s\n' "local mount (mount itself)" "$(med $MT_loc)" "$MT_loc"
printf '%-56s %8s s  runs:%s\n' "restore through the remote mount" "$mr" "$R_rem"
printf '%-56s %8s s  runs:%s\n' "restore through a local mount" "$ml" "$R_loc"
printf '%-56s %8s s  runs:%s\n' "curl GET of the plain file + restore from it" "$mg" "$R_get"
printf '%-56s %8s s  runs:%s\n' "  (the GET alone)" "$(med $R_dl)" "$R_dl"
printf '%-56s %8s s  runs:%s\n' "  (the restore alone, file page-cached)" "$(med $R_getrt)" "$R_getrt"
printf '%-56s %8s s  runs:%s\n' "curl GET streamed into QEMU (FIFO)" "$(med $R_fifo)" "$R_fifo"
printf '# cold remote / cold local: %s (target <= 1.5); remote / curl GET+restore: %s; remote / streamed GET: %s\n' \
	"$(ratio "$mr" "$ml")" "$(ratio "$mr" "$mg")" "$(ratio "$mr" "$(med $R_fifo)")"
echo "## bytes per cold restore"
printf '%-56s %12s  runs:%s\n' "remote_fetched (layer and copy bytes)" "$mf" "$F"
printf '%-56s %12s  runs:%s\n' "remote_bytes_in (every byte received)" "$(med $BI)" "$BI"
printf '%-56s %12s\n' "needed: ancestry's layers, as the files the mount reads" "$need"
printf '%-56s %12s\n' "  stored layers (all of snapshot_0..K)" "$need_layers"
printf '%-56s %12s\n' "  - stored files replaced by copies" "${replaced:-0}"
printf '%-56s %12s\n' "  + copies (.snapfs/base, .snapfs/plain: $ncopies)" "$copies"
printf '%-56s %12s\n' "whole-file derived data (index, aux, sums)" "$meta"
printf '# fetched / needed: %s (target <= 1.1); bytes_in / needed: %s; bytes_in / (needed + index etc.): %s\n' \
	"$(ratio "$mf" "$need")" "$(ratio "$(med $BI)" "$need")" "$(ratio "$(med $BI)" "$((need + meta))")"
echo "## warm: the same cache dir, remounted"
printf '%-56s %8s s  runs:%s\n' "restore, remote remount (page cache warm)" "$mw" "$W_rem"
printf '%-56s %8s s  runs:%s\n' "restore, local remount (page cache warm)" "$mwl" "$W_loc"
printf '%-56s %8s    runs:%s\n' "  remote_fetched on the warm remount" "$(med $W_f)" "$W_f"
printf '%-56s %8s s  runs:%s\n' "restore, remote remount, page cache dropped" "$(med $WC_rem)" "$WC_rem"
printf '%-56s %8s s  runs:%s\n' "restore, local remount, page cache dropped" "$(med $WC_loc)" "$WC_loc"
printf '# warm remote / local: %s (target <= 1.1); page cache dropped: %s\n' \
	"$(ratio "$mw" "$mwl")" "$(ratio "$(med $WC_rem)" "$(med $WC_loc)")"
echo "## four restores at once (cold: fresh cache dirs / fresh local mounts, page caches dropped)"
printf '%-56s %8s s  runs:%s\n' "4 remote mounts, 4 cache dirs: wall" "$(med $C_rem)" "$C_rem"
printf '%-56s %8s s  runs:%s\n' "  slowest restore" "$(med $C_remmax)" "$C_remmax"
printf '%-56s %12s  runs:%s\n' "  remote_fetched, sum of 4" "$(med $C_f)" "$C_f"
printf '%-56s %8s s  runs:%s\n' "4 local mounts, 4 stores (hard links): wall" "$(med $C_loc)" "$C_loc"
printf '%-56s %8s s  runs:%s\n' "  slowest restore" "$(med $C_locmax)" "$C_locmax"
printf '# 4 at once, remote / local (wall): %s\n' "$(ratio "$(med $C_rem)" "$(med $C_loc)")"
for f in $SW; do
echo "## cold sequential cat of $f, MB/s (page caches dropped, fresh mount, fresh cache dir)"
eval "l=\$L_$f"
printf '%-28s %8s  runs:%s\n' "local mount" "$(med $l)" "$l"
for c in $CONFS; do
	eval "x=\$T_${f}_$(echo "$c" | tr ':' '_')"
	printf '%-28s %8s  runs:%s  (/local %s)\n' "s3_chunk=${c%:*},s3_parallel=${c#*:}" "$(med $x)" "$x" \
		"$(ratio "$(med $x)" "$(med $l)")"
done
done
echo "## writing the $n states (cat > each; encode, upload, commit included)"
printf '%-56s %8s s\n' "through a remote -o writer mount" "$write_remote_s"
printf '%-56s %8s s\n' "through a local mount" "$write_local_s"
printf '%-56s %8s s\n' "  + uploading its stored files (s3_sync_up)" "$upload_s"
printf '%-56s %12s\n' "bytes uploaded by the writer mount (remote_uploaded)" "${uploaded:-?}"
printf '%-56s %12s\n' "the local store's stored files" "$stored"
printf '# remote write / local write: %s; / (local write + upload): %s\n' \
	"$(ratio "$write_remote_s" "$write_local_s")" \
	"$(ratio "$write_remote_s" "$(echo "$write_local_s $upload_s" | awk '{print $1 + $2}')")"
echo "# restore = QEMU migrate-incoming exec:cat FILE until completed (QEMU start excluded)"
} | tee "$OUT"
echo "bench: table saved in $OUT (bucket keys in $OUT.keys)" >&2
