#!/bin/sh
# A store kept in a bucket, mounted as snapfs s3://BUCKET/PREFIX MNT, on a
# real S3 server that checks signatures (Swift + s3api, tests/e2e/s3lib.sh):
# a store uploaded as it is (s3_sync_up, like `aws s3 sync`) mounts and
# every snapshot reads byte-exact; derived data is uploaded and a second
# host (a fresh cache directory) does not rebuild it; it fetches no more
# than the layers the snapshot needs; a warm cache fetches nothing; the
# mount is read-only. Faults: wrong credentials, a missing store, a
# missing layer object, the server stopped mid-read (EIO naming the
# object, recovery when it is back), truncated and stalled responses
# (through tests/e2e/faultproxy.py; after a stall the reads that need the
# store fail at once for s3_timeout, then recover), an object replaced under the mount,
# a cache bound smaller than a snapshot and a cache directory that fills
# up. No wrong byte is ever served: every read that succeeds is compared.
. tests/e2e/lib.sh
. tests/e2e/s3lib.sh

s3_require
check "the S3 server starts" s3_start
[ -n "$S3_PROXY_PID" ] || { e2e_done; exit 1; }

B=snapfs-remote
URL=s3://$B/stores/vm1
S=$WORK/store
ST=$WORK/states
M=$WORK/m
mkstore --depth 3 --size 12M --states-dir "$ST" "$S" 2>/dev/null
check "make a bucket" s3_mb "$B"
check "upload a store as it is (like aws s3 sync)" s3_sync_up "$S" "$B/stores/vm1"

stat_of() { getfattr --only-values -n user.snapfs.stats "$1" 2>/dev/null | sed -n "s/^$2 //p"; }
cmp_all() { # MNT: every snapshot byte-exact
	for k in 0 1 2 3; do cmp "$1/snapshot_$k" "$ST/state_$k" || return 1; done
}
layer_bytes=$(cat "$S"/snapshot_* | wc -c)

# --- 1. first host: mounts, reads, builds and uploads derived data ---
check "mount s3://$B/stores/vm1" snapfs_mount "$URL" "$M" -o cache_dir="$WORK/c1"
check "ls shows the store's snapshots" sh -c "test \"\$(ls '$M' | tr '\n' ' ')\" = 'current snapshot_0 snapshot_1 snapshot_2 snapshot_3 '"
check "sizes are the full states'" sh -c "test \$(stat -c %s '$M/snapshot_3') -eq \$(stat -c %s '$ST/state_3')"
check "every snapshot reads byte-exact" cmp_all "$M"
ro_write() { ! sh -c "cat '$ST/state_1' > '$M/new'" 2>"$WORK/ro.err" && grep -q 'Read-only' "$WORK/ro.err"; }
check "the mount is read-only: cat > new fails with EROFS" ro_write
check "rm is refused" sh -c "! rm -f '$M/snapshot_1' 2>/dev/null && test -e '$M/snapshot_1'"
check "unmount" snapfs_umount "$M"
listed() { s3 GET "/$B?list-type=2&prefix=$(echo "$1" | sed 's#/#%2F#g')" | grep -q "<Key>$1"; }
check "derived data was uploaded beside the store (.snapfs/index/)" listed stores/vm1/.snapfs/index/
check "... with the converted base (read lazily by other hosts)" listed stores/vm1/.snapfs/base/
aux_zst() { # every aux file compressed (.zst), and smaller than the local one
	s3 GET "/$B?list-type=2&prefix=stores%2Fvm1%2F.snapfs%2Faux%2F" | tr '<' '\n' |
		awk '/^Key>/ {k=substr($0,5)} /^Size>/ {print k, substr($0,6)}' > "$WORK/auxkeys"
	[ -s "$WORK/auxkeys" ] || return 1
	while read -r k sz; do
		case $k in *.aux.zst) ;; *) echo "not compressed: $k"; return 1 ;; esac
		n=$(basename "$k" .zst)
		loc=$(find "$WORK/c1/stores" -name "$n" | head -1)
		[ -n "$loc" ] && [ "$sz" -lt "$(stat -c %s "$loc")" ] || { echo "$k: $sz bytes, local $loc"; return 1; }
	done < "$WORK/auxkeys"
}
check "... with the aux files compressed (.aux.zst, smaller than the local ones)" aux_zst
mv "$WORK/snapfs.m.log" "$WORK/host1.log"

# --- 2. second host: fresh cache, derived data fetched, not rebuilt ---
# 1 MiB chunks: with 4 MiB ones this small store is all fetched by the
# mount's own reads (headers, footers), leaving no restore to record.
check "a second host mounts (fresh cache directory)" snapfs_mount "$URL" "$M" -o cache_dir="$WORK/c2",s3_chunk=1M
check "... without building derived data" sh -c "! grep -q indexing '$WORK/snapfs.m.log'"
check "... reads snapshot_3 byte-exact" cmp "$M/snapshot_3" "$ST/state_3"
fetched=$(stat_of "$M" remote_fetched)
# What reading it needs: the layers, and the aux files (derived bytes a
# patch's index points at), which are read lazily like layers.
aux_bytes=$(s3 GET "/$B?list-type=2&prefix=stores%2Fvm1%2F.snapfs%2Faux%2F" | grep -o '<Size>[0-9]*' | sed 's/<Size>//' | awk '{s += $1} END {print s + 0}')
need=$((layer_bytes + aux_bytes))
echo "# fetched $fetched bytes for snapshot_3; its layers are $layer_bytes bytes, their aux files $aux_bytes"
check "... fetching at most 1.1x what it needs" test "${fetched:-999999999999}" -le $((need * 11 / 10))
check "unmount" snapfs_umount "$M"
mv "$WORK/snapfs.m.log" "$WORK/host2.log"
check "its restore's working set was saved beside the store" listed stores/vm1/.snapfs/ws/
# a third host prefetches that working set at mount, before any read
check "a third host mounts with -o prefetch=snapshot_3,prefetch_ws_only" snapfs_mount "$URL" "$M" -o cache_dir="$WORK/c2p",s3_chunk=1M,prefetch=snapshot_3,prefetch_ws_only
i=0; while ! grep -q "prefetch done" "$WORK/snapfs.m.log" && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
check "... its prefetch finishes (logged)" grep -q "prefetch done" "$WORK/snapfs.m.log"
pre=$(stat_of "$M" remote_prefetched)
echo "# prefetched $pre bytes"
check "... having fetched bytes" test "${pre:-0}" -gt 0
before=$(stat_of "$M" remote_fetched)
check "... then snapshot_3 reads byte-exact" cmp "$M/snapshot_3" "$ST/state_3"
after=$(stat_of "$M" remote_fetched)
check "... without fetching anything more ($before then $after bytes)" test "$after" = "$before"
check "unmount" snapfs_umount "$M"
mv "$WORK/snapfs.m.log" "$WORK/host3.log"
check "a warm remount (same cache)" snapfs_mount "$URL" "$M" -o cache_dir="$WORK/c2",s3_chunk=1M,prefetch=none
check "... every snapshot byte-exact" cmp_all "$M"
check "... fetching no layer bytes" test "$(stat_of "$M" remote_fetched)" = 0
check "unmount" snapfs_umount "$M"

# --- working sets of two restores at once: each records what it read ---
# (A fetch belongs to every snapshot open then; the last open alone used
# to take them all, leaving the other with no record. This store's small
# patches come with the mount's own first chunks: the reads fetch the
# base.)
ws_keys() { s3 GET "/$B?list-type=2&prefix=stores%2Fvm1%2F.snapfs%2Fws%2F" | tr '<' '\n' | sed -n 's/^Key>//p'; }
for k in $(ws_keys); do s3 DELETE "/$B/$k" > /dev/null; done
check "the working-set records are cleared" test -z "$(ws_keys)"
check "a fourth host mounts (fresh cache)" snapfs_mount "$URL" "$M" -o cache_dir="$WORK/cws",s3_chunk=1M,prefetch=none
both() { python3 -c "
import sys
f = [open(p, 'rb') for p in sys.argv[1:3]]
got = [bytearray(), bytearray()]
while True:
    parts = [x.read(1 << 20) for x in f]
    for g, b in zip(got, parts):
        g += b
    if not any(parts):
        break
sys.exit(0 if all(g == open(p, 'rb').read() for g, p in zip(got, sys.argv[3:5])) else 1)" \
	"$M/snapshot_1" "$M/snapshot_2" "$ST/state_1" "$ST/state_2"; }
check "... reads snapshot_1 and snapshot_2 at once, interleaved, byte-exact" both
check "unmount (the records are saved)" snapfs_umount "$M"
check "two records were saved, one per snapshot read: $(ws_keys | tr '\n' ' ')" test "$(ws_keys | wc -l)" = 2
ws_names() { for k in $(ws_keys); do s3 GET "/$B/$k" | grep -c "$1" || true; done | grep -c -v '^0$'; }
check "... both with the base's ranges" test "$(ws_names '.snapfs/base/')" = 2

# --- 3. refused mounts say why ---
refused() { # what-to-grep args...
	_w=$1; shift
	out=$(timeout 60 "$SNAPFS" -f "$@" "$WORK/never" 2>&1); rc=$?
	echo "$out"
	[ $rc -ne 0 ] && [ $rc -ne 124 ] && echo "$out" | grep -q -- "$_w" &&
		! mountpoint -q "$WORK/never"
}
mkdir -p "$WORK/never"
check "wrong secret (403) refused with a clear message" env AWS_SECRET_ACCESS_KEY=wrong sh -c \
	"out=\$(timeout 60 '$SNAPFS' -f -o cache_dir='$WORK/c3' '$URL' '$WORK/never' 2>&1); echo \"\$out\"; echo \"\$out\" | grep -q 'refused the credentials'"
check "no credentials at all: refused, saying how to give them" env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY HOME="$WORK" sh -c \
	"out=\$(timeout 60 '$SNAPFS' -f -o cache_dir='$WORK/c3' '$URL' '$WORK/never' 2>&1); echo \"\$out\"; echo \"\$out\" | grep -q 'AWS_ACCESS_KEY_ID'"
check "a prefix with no store (404): refused" refused "not a snapfs store" -o cache_dir="$WORK/c3" "s3://$B/nothing/here"
check "a missing bucket (404): refused" refused "NoSuchBucket" -o cache_dir="$WORK/c3" "s3://no-such-bucket/x"
# credentials from a profile in ~/.aws/credentials
mkdir -p "$WORK/home/.aws"
printf '[other]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
	"$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" > "$WORK/home/.aws/credentials"
profile_mount() {
	( unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
	  HOME=$WORK/home AWS_PROFILE=other snapfs_mount "$URL" "$WORK/mp" \
		-o cache_dir="$WORK/c2",s3_chunk=1M )
}
MOUNTS="$MOUNTS $WORK/mp"
check "credentials from a ~/.aws/credentials profile (AWS_PROFILE)" profile_mount
check "... reads byte-exact" cmp "$WORK/mp/snapshot_2" "$ST/state_2"
check "unmount" snapfs_umount "$WORK/mp"

# a layer object missing from the bucket
s3_sync_up "$S" "$B/broken" >/dev/null
s3 DELETE "/$B/broken/snapshot_2.patch" >/dev/null
check "a missing layer object (404): refused, naming it" refused "snapshot_2.patch.*no such object" -o cache_dir="$WORK/c3" "s3://$B/broken"

# --- 4. the server goes away mid-read, and comes back ---
mv "$WORK/snapfs.m.log" "$WORK/warm.log"
# 1 MiB chunks: the mount itself reads only a few (headers, footers).
check "mount with a fresh cache, 1 retry" snapfs_mount "$URL" "$M" -o cache_dir="$WORK/c4",s3_retries=1,s3_timeout=3,s3_chunk=1M,prefetch=none
check "stop the S3 server" s3_kill_proxy
check "a read now fails with EIO" sh -c "! cat '$M/snapshot_3' > /dev/null 2>'$WORK/eio.err' && grep -q 'Input/output error' '$WORK/eio.err'"
check "... and the log names the object" grep -q "s3://$B/stores/vm1/.*GET" "$WORK/snapfs.m.log"
check "start the server again" s3_start_proxy
check "the same read now succeeds, byte-exact" cmp "$M/snapshot_3" "$ST/state_3"
check "unmount" snapfs_umount "$M"

# --- 5. truncated and stalled responses (fault proxy) ---
PPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
UPORT=${AWS_ENDPOINT_URL##*:}
CTL=$WORK/proxy.ctl
echo pass > "$CTL"
python3 "$TOP/tests/e2e/faultproxy.py" "$PPORT" "$UPORT" "$CTL" &
PROXY=$!
sleep 0.5
EP=http://127.0.0.1:$PPORT
check "mount through the fault proxy" snapfs_mount "$URL" "$M" -o cache_dir="$WORK/c5",endpoint="$EP",s3_retries=2,s3_timeout=1,s3_chunk=1M,prefetch=none
echo "cut 70000" > "$CTL"
check "truncated responses: the read fails with EIO" sh -c "! cat '$M/snapshot_3' > /dev/null 2>/dev/null"
check "... after retries (logged, naming the object)" grep -q "s3://$B/stores/vm1/.*GET" "$WORK/snapfs.m.log"
echo "slow 3" > "$CTL"
check "stalled responses time out: EIO" sh -c "! cat '$M/snapshot_2' > /dev/null 2>/dev/null"
check "... the log says it timed out" grep -qi "timeout\|timed out" "$WORK/snapfs.m.log"
check "... and that reads needing the store fail at once for a while" grep -q "stalled.*fail at once for 1 s" "$WORK/snapfs.m.log"
echo pass > "$CTL"
sleep 1.5	# that while: one s3_timeout
check "healthy again: every snapshot byte-exact" cmp_all "$M"
check "unmount" snapfs_umount "$M"
kill $PROXY 2>/dev/null

# --- 6. an object replaced under the mount: EIO, never its bytes ---
s3_sync_up "$S" "$B/swap" >/dev/null
check "a first mount of another copy builds its derived data" snapfs_mount "s3://$B/swap" "$M" -o cache_dir="$WORK/c6"
check "unmount" snapfs_umount "$M"
base_copy=$(s3 GET "/$B?list-type=2&prefix=swap%2F.snapfs%2Fbase%2F" | grep -o '<Key>[^<]*' | sed 's/<Key>//' | head -n 1)
check "mount it on a fresh cache" snapfs_mount "s3://$B/swap" "$M" -o cache_dir="$WORK/c6b",s3_retries=0,s3_chunk=1M,prefetch=none
head -c "$(s3 HEAD "/$B/$base_copy" | tr -d '\r' | sed -n 's/^[Cc]ontent-[Ll]ength: //p')" /dev/urandom > "$WORK/junk"
check "replace the base's converted copy in the bucket ($base_copy)" s3_put "$WORK/junk" "$B/$base_copy"
check "reading it gives EIO" sh -c "! cat '$M/snapshot_0' > /dev/null 2>/dev/null"
check "... and the log says the object changed" grep -q "changed under the mount" "$WORK/snapfs.m.log"
check "unmount" snapfs_umount "$M"

# --- 7. a small cache bound, and a cache directory that fills up ---
check "mount with disk_cache=2M (chunks of 1M)" snapfs_mount "$URL" "$M" -o cache_dir="$WORK/c7",disk_cache=2M,s3_chunk=1M
check "every snapshot byte-exact" cmp_all "$M"
used=$(stat_of "$M" disk_cache_used)
check "the cache stays within its bound ($used bytes)" test "${used:-99999999}" -le $((2 << 20))
check "unmount" snapfs_umount "$M"
mkdir -p "$WORK/small"
if mount -t tmpfs -o size=3m tmpfs "$WORK/small" 2>/dev/null; then
	check "mount with the cache on a 3 MiB file system" snapfs_mount "$URL" "$M" -o cache_dir="$WORK/small/c",s3_chunk=1M
	check "every snapshot byte-exact although the cache fills up" cmp_all "$M"
	check "the log says the cache is bounded by what fits" grep -q "bounded by what fits" "$WORK/snapfs.m.log"
	check "unmount" snapfs_umount "$M"
	umount "$WORK/small"
else
	echo "# no tmpfs here: the full-cache-directory check is skipped"
fi
e2e_done
