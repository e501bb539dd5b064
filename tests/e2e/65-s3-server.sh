#!/bin/sh
# The S3 server the S3 tests run against (tests/e2e/s3lib.sh: Swift +
# s3api on loopback), and what a client of it can rely on: it starts;
# PUT/GET/ranged GET/HEAD/ListObjectsV2 give the right bytes and headers;
# signatures ARE checked (wrong secret, unknown key, wrong region, wrong
# payload hash are refused, so is a request without auth); missing keys
# give 404; the proxy can be stopped (mid-read too) and started again.
# Also pins the s3api quirks a libcurl client must know (s3lib.sh's top
# comment): ETag formats, 416, 501 for conditional PUT, pagination.
# Then fs/s3's own writes through tests/gen/s3tool: s3_put_fd as one PUT
# and as a multipart upload (real bytes back, ETags, request counts, the
# server's Date), s3_copy, s3_put_cond and s3_cond_support against the
# 501, and failed uploads (unreadable file, proxy killed mid-upload)
# that leave no object and say so.
. tests/e2e/lib.sh
. tests/e2e/s3lib.sh

s3_require

t0=$(date +%s)
check "the server starts (s3_start)" s3_start
[ -n "$S3_PROXY_PID" ] || { e2e_done; exit 1; }
echo "# started in $(( $(date +%s) - t0 )) s; $AWS_ENDPOINT_URL, $S3_DIR"

B=snapfs-test
D=$WORK/data
mkdir -p "$D"
# 300 KiB of random bytes, a 1-byte file, an empty file
head -c 307200 /dev/urandom >"$D/obj"
size=$(stat -c %s "$D/obj")
printf x >"$D/one"
: >"$D/empty"
hdr() { tr -d '\r' | sed -n "s/^$1: //Ip" | head -n 1; }
code() { s3_code "$@"; }
# xml_code: the <Code> of the last s3_code's body
xml_code() { sed -n 's:.*<Code>\([^<]*\)</Code>.*:\1:p' "$WORK/s3.body"; }

# --- basics ---
check "signed ListBuckets is 200" test "$(code GET /)" = 200
check "make a bucket" s3_mb $B
s3 GET / >"$WORK/l" 2>/dev/null
check "ListBuckets names the bucket" grep -q "<Name>$B</Name>" "$WORK/l"
check "PUT an object" s3_put "$D/obj" $B/dir/obj
check "GET it (s3_get)" s3_get $B/dir/obj "$WORK/got"
check "GET gives the bytes PUT (cmp)" cmp "$D/obj" "$WORK/got"
check "PUT a 1-byte object" s3_put "$D/one" $B/dir/one
check "PUT an empty object" s3_put "$D/empty" $B/dir/empty
s3_get $B/dir/empty "$WORK/got0"
check "GET of the empty object is empty" test -f "$WORK/got0" -a ! -s "$WORK/got0"

# --- ranges ---
s3 GET /$B/dir/obj -r 100-199 -D "$WORK/h" -o "$WORK/r" 2>/dev/null
check "ranged GET is 206" sh -c "head -n 1 '$WORK/h' | grep -q ' 206 '"
check "Content-Range bytes 100-199/$size" test "$(hdr content-range <"$WORK/h")" = "bytes 100-199/$size"
check "ranged GET gives exactly bytes 100..199" sh -c "test \$(stat -c %s '$WORK/r') = 100 &&
	dd if='$D/obj' bs=100 skip=1 count=1 2>/dev/null | cmp - '$WORK/r'"
s3 GET /$B/dir/obj -r "$((size - 10))-$((size + 1000))" -D "$WORK/h" -o "$WORK/r" 2>/dev/null
check "a range past the end is cut to the end (206, 10 bytes)" sh -c "
	test \"\$(sed -n 's/^content-range: //Ip' '$WORK/h' | tr -d '\r')\" = 'bytes $((size - 10))-$((size - 1))/$size' &&
	tail -c 10 '$D/obj' | cmp - '$WORK/r'"
s3 GET /$B/dir/obj -r -16 -o "$WORK/r" 2>/dev/null
check "a suffix range (-16) gives the last 16 bytes" sh -c "tail -c 16 '$D/obj' | cmp - '$WORK/r'"
check "a range starting past the end is 416" test "$(code GET /$B/dir/obj -r "$size-")" = 416
check "... InvalidRange" test "$(xml_code)" = InvalidRange
s3 GET /$B/dir/obj -r 0-9,20-29 -D "$WORK/h" -o /dev/null 2>/dev/null
check "two ranges: 206 multipart/byteranges" sh -c "head -n 1 '$WORK/h' | grep -q ' 206 ' &&
	grep -qi '^content-type: multipart/byteranges' '$WORK/h'"
s3 GET /$B/dir/obj -D "$WORK/h" -o /dev/null 2>/dev/null
check "a whole GET is 200, with no Accept-Ranges" sh -c "head -n 1 '$WORK/h' | grep -q ' 200 ' &&
	! grep -qi '^accept-ranges' '$WORK/h'"

# --- HEAD ---
s3 HEAD /$B/dir/obj >"$WORK/h" 2>/dev/null
check "HEAD is 200" sh -c "head -n 1 '$WORK/h' | grep -q ' 200 '"
check "HEAD: Content-Length is the size" test "$(hdr content-length <"$WORK/h")" = "$size"
md5=$(md5sum <"$D/obj" | cut -d' ' -f1)
check "HEAD: ETag is the quoted MD5" test "$(hdr etag <"$WORK/h")" = "\"$md5\""
check "HEAD: Last-Modified is there" test -n "$(hdr last-modified <"$WORK/h")"
check "HEAD of a missing key is 404" test "$(code HEAD /$B/nope)" = 404
etag=\"$md5\"
check "GET If-None-Match: the ETag is 304" test "$(code GET /$B/dir/obj -H "If-None-Match: $etag")" = 304
check "GET If-Match: another ETag is 412" test "$(code GET /$B/dir/obj -H 'If-Match: "0123"')" = 412
check "GET If-Match: the ETag is 200" test "$(code GET /$B/dir/obj -H "If-Match: $etag")" = 200

# --- ListObjectsV2 ---
check "PUT a key outside the prefix" s3_put "$D/one" $B/other
s3 GET "/$B?list-type=2&prefix=dir%2F" >"$WORK/l" 2>/dev/null
keys() { grep -o '<Key>[^<]*</Key>' "$1" | sed 's:</*Key>::g' | tr '\n' ' '; }
check "ListObjectsV2 prefix=dir/ lists the three keys, in order" test "$(keys "$WORK/l")" = "dir/empty dir/obj dir/one "
check "... KeyCount 3, not truncated" sh -c "grep -q '<KeyCount>3</KeyCount>' '$WORK/l' && grep -q '<IsTruncated>false</IsTruncated>' '$WORK/l'"
check "... with each Size" sh -c "grep -q '<Key>dir/obj</Key>.*<Size>$size</Size>' '$WORK/l'"
s3 GET "/$B?list-type=2&max-keys=2&prefix=dir%2F" >"$WORK/l" 2>/dev/null
tok=$(sed -n 's:.*<NextContinuationToken>\([^<]*\)</NextContinuationToken>.*:\1:p' "$WORK/l")
check "max-keys=2: truncated, two keys, a continuation token" sh -c "
	grep -q '<IsTruncated>true</IsTruncated>' '$WORK/l' && test \"\$(grep -o '<Key>' '$WORK/l' | wc -l)\" = 2 && test -n '$tok'"
# the token is base64: URI-encode it (curl signs the query as written)
etok=$(printf '%s' "$tok" | sed 's/+/%2B/g; s:/:%2F:g; s/=/%3D/g')
s3 GET "/$B?continuation-token=$etok&list-type=2&max-keys=2&prefix=dir%2F" >"$WORK/l" 2>/dev/null
check "the next page has the third key" test "$(keys "$WORK/l")" = "dir/one "
s3 GET "/$B?list-type=2&prefix=dir%2F&start-after=dir%2Fempty" >"$WORK/l" 2>/dev/null
check "start-after=dir/empty gives the two after it" test "$(keys "$WORK/l")" = "dir/obj dir/one "
s3 GET "/$B?delimiter=%2F&list-type=2" >"$WORK/l" 2>/dev/null
check "delimiter=/ gives CommonPrefixes dir/ and the key other" sh -c "
	grep -q '<CommonPrefixes><Prefix>dir/</Prefix></CommonPrefixes>' '$WORK/l' &&
	test \"\$(grep -o '<Key>[^<]*</Key>' '$WORK/l')\" = '<Key>other</Key>'"

# --- signatures are checked ---
EP=${AWS_ENDPOINT_URL#http://}
# raw CRED REGION [curl args] URL-PATH: a signed request with other
# credentials; prints the status, body in $WORK/s3.body
raw() {
	_cr=$1; _rg=$2; _pa=$3; shift 3
	curl -sS --aws-sigv4 "aws:amz:$_rg:s3" "$@" -o "$WORK/s3.body" -w '%{http_code}' \
		"http://$_cr@$EP$_pa" 2>/dev/null
}
check "the right credentials through raw are 200 (control)" test "$(raw "test%3Atester:$S3_SECRET" us-east-1 /$B/dir/one -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD')" = 200
check "a wrong secret is 403" test "$(raw "test%3Atester:wrong$S3_SECRET" us-east-1 /$B/dir/one -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD')" = 403
check "... SignatureDoesNotMatch" test "$(xml_code)" = SignatureDoesNotMatch
check "an unknown access key is 403" test "$(raw "nobody%3Anone:$S3_SECRET" us-east-1 /$B/dir/one -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD')" = 403
check "... SignatureDoesNotMatch too (not InvalidAccessKeyId)" test "$(xml_code)" = SignatureDoesNotMatch
check "a wrong secret cannot PUT" test "$(raw "test%3Atester:wrong" us-east-1 /$B/evil -T "$D/one" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD')" = 403
check "... and nothing was stored" test "$(code HEAD /$B/evil)" = 404
check "another region is 400" test "$(raw "test%3Atester:$S3_SECRET" eu-west-1 /$B/dir/one -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD')" = 400
check "... AuthorizationHeaderMalformed" test "$(xml_code)" = AuthorizationHeaderMalformed
check "no x-amz-content-sha256 is 400" test "$(raw "test%3Atester:$S3_SECRET" us-east-1 /$B/dir/one)" = 400
check "... InvalidRequest" test "$(xml_code)" = InvalidRequest
sha=$(sha256sum <"$D/one" | cut -d' ' -f1)
check "the payload's real sha256 is accepted" test "$(raw "test%3Atester:$S3_SECRET" us-east-1 /$B/sha -T "$D/one" -H "x-amz-content-sha256: $sha")" = 200
bad=$(sha256sum <"$D/obj" | cut -d' ' -f1)
check "a wrong payload sha256 is 400" test "$(raw "test%3Atester:$S3_SECRET" us-east-1 /$B/sha2 -T "$D/one" -H "x-amz-content-sha256: $bad")" = 400
check "... BadDigest" test "$(xml_code)" = BadDigest
check "... and nothing was stored" test "$(code HEAD /$B/sha2)" = 404
check "an unsorted query is 403 (curl 7.88 signs it as written)" test "$(code GET "/$B?prefix=dir%2F&list-type=2")" = 403
check "so is a parameter without = (?uploads)" test "$(code POST "/$B/k?uploads")" = 403
check "no auth at all: GET refused" sh -c "c=\$(curl -s -o '$WORK/anon' -w '%{http_code}' '$AWS_ENDPOINT_URL/$B/dir/one'); echo \$c; case \$c in 2??) exit 1;; esac; ! cmp -s '$WORK/anon' '$D/one'"
check "no auth at all: PUT refused" sh -c "c=\$(curl -s -o /dev/null -w '%{http_code}' -T '$D/one' '$AWS_ENDPOINT_URL/$B/anon'); echo \$c; case \$c in 2??) exit 1;; esac"
check "... and nothing was stored" test "$(code HEAD /$B/anon)" = 404

# --- errors ---
check "GET of a missing key is 404" test "$(code GET /$B/missing)" = 404
check "... NoSuchKey" test "$(xml_code)" = NoSuchKey
check "GET in a missing bucket is 404" test "$(code GET /no-such-bucket/k)" = 404
check "... NoSuchBucket" test "$(xml_code)" = NoSuchBucket
check "making the bucket again is 409" test "$(code PUT /$B)" = 409
check "... BucketAlreadyOwnedByYou" test "$(xml_code)" = BucketAlreadyOwnedByYou
check "a 2-character bucket name is 400" test "$(code PUT /ab)" = 400
check "... InvalidBucketName" test "$(xml_code)" = InvalidBucketName
check "DELETE a key is 204" test "$(code DELETE /$B/sha)" = 204
check "... it is gone" test "$(code HEAD /$B/sha)" = 404
check "DELETE a missing key is 204 too" test "$(code DELETE /$B/sha)" = 204
s3_get $B/missing "$WORK/m" 2>/dev/null; rc=$?
check "s3_get of a missing key fails (rc $rc), leaves no file" test $rc -ne 0 -a ! -e "$WORK/m"
check "conditional PUT (If-None-Match: *) is 501" test "$(code PUT /$B/cond -T "$D/one" -H 'If-None-Match: *')" = 501
check "... NotImplemented" test "$(xml_code)" = NotImplemented

# --- keys that need encoding; s3_sync_up with .snapfs/ ---
K='odd key+%=é.bin'
check "PUT a key with space + % = and UTF-8" s3_put "$D/one" "$B/$K"
s3_get "$B/$K" "$WORK/odd" 2>/dev/null
check "... GET it back" cmp "$D/one" "$WORK/odd"
S=$WORK/store
mkdir -p "$S/.snapfs/sub"
cp "$D/obj" "$S/snapshot_0.zst"; cp "$D/one" "$S/increments.txt"
cp "$D/one" "$S/.snapfs/layers"; cp "$D/empty" "$S/.snapfs/sub/x"
check "s3_sync_up a store with .snapfs/" s3_sync_up "$S" $B/stores/s1
s3 GET "/$B?list-type=2&prefix=stores%2Fs1%2F" >"$WORK/l" 2>/dev/null
check "... every file is a key, .snapfs/ too" test "$(keys "$WORK/l")" = "stores/s1/.snapfs/layers stores/s1/.snapfs/sub/x stores/s1/increments.txt stores/s1/snapshot_0.zst "
s3_get $B/stores/s1/snapshot_0.zst "$WORK/s0"
check "... with the bytes" cmp "$S/snapshot_0.zst" "$WORK/s0"

# --- multipart upload ---
head -c 5242880 /dev/urandom >"$WORK/p1"	# 5 MiB: the minimum part
head -c 1000 /dev/urandom >"$WORK/p2"
up=$(s3 POST "/$B/mp?uploads=" 2>/dev/null | sed -n 's:.*<UploadId>\([^<]*\)</UploadId>.*:\1:p')
check "initiate a multipart upload (?uploads=)" test -n "$up"
e1=$(s3 PUT "/$B/mp?partNumber=1&uploadId=$up" -T "$WORK/p1" -D - -o /dev/null 2>/dev/null | hdr etag)
e2=$(s3 PUT "/$B/mp?partNumber=2&uploadId=$up" -T "$WORK/p2" -D - -o /dev/null 2>/dev/null | hdr etag)
check "each part's ETag is its quoted MD5" test "$e1 $e2" = "\"$(md5sum <"$WORK/p1" | cut -d' ' -f1)\" \"$(md5sum <"$WORK/p2" | cut -d' ' -f1)\""
printf '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>%s</ETag></Part><Part><PartNumber>2</PartNumber><ETag>%s</ETag></Part></CompleteMultipartUpload>' \
	"$e1" "$e2" >"$WORK/complete.xml"
check "complete it" test "$(code POST "/$B/mp?uploadId=$up" --data-binary @"$WORK/complete.xml")" = 200
cat "$WORK/p1" "$WORK/p2" >"$WORK/mp"
s3_get $B/mp "$WORK/mpgot"
check "... GET gives both parts" cmp "$WORK/mp" "$WORK/mpgot"
mpetag=$("$S3_PY" -c 'import hashlib, sys
print(hashlib.md5(b"".join(hashlib.md5(open(f, "rb").read()).digest()
	for f in sys.argv[1:])).hexdigest())' "$WORK/p1" "$WORK/p2")
check "... its ETag is \"MD5(part MD5s)-2\", not the MD5 of the bytes" test "$(s3 HEAD /$B/mp 2>/dev/null | hdr etag)" = "\"$mpetag-2\""
s3 GET /$B/mp -r 5242870-5242889 -o "$WORK/r" 2>/dev/null
check "... a range across the part boundary" sh -c "dd if='$WORK/mp' bs=10 skip=524287 count=2 2>/dev/null | cmp - '$WORK/r'"
s3 GET / >"$WORK/l" 2>/dev/null
check "ListBuckets does not show the segments container" test "$(grep -o '<Name>[^<]*</Name>' "$WORK/l")" = "<Name>$B</Name>"
up=$(s3 POST "/$B/small?uploads=" 2>/dev/null | sed -n 's:.*<UploadId>\([^<]*\)</UploadId>.*:\1:p')
e1=$(s3 PUT "/$B/small?partNumber=1&uploadId=$up" -T "$WORK/p2" -D - -o /dev/null 2>/dev/null | hdr etag)
e2=$(s3 PUT "/$B/small?partNumber=2&uploadId=$up" -T "$WORK/p2" -D - -o /dev/null 2>/dev/null | hdr etag)
printf '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>%s</ETag></Part><Part><PartNumber>2</PartNumber><ETag>%s</ETag></Part></CompleteMultipartUpload>' \
	"$e1" "$e2" >"$WORK/complete.xml"
s3_code POST "/$B/small?uploadId=$up" --data-binary @"$WORK/complete.xml" >/dev/null
check "a first part under 5 MiB: completion says EntityTooSmall" test "$(xml_code)" = EntityTooSmall

# --- fs/s3's own writes, driven through tests/gen/s3tool ---
T=$TOP/$BUILD/s3tool
U=s3://$B/up
# tool ARGS...: s3tool's stdout in $WORK/t.out, its stderr in $WORK/t.err
tool() { "$T" "$@" >"$WORK/t.out" 2>"$WORK/t.err"; }
# field NAME: NAME=VALUE from the last tool's output
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" "$WORK/t.out" | head -n 1; }
fails_with() { # RC-NAME: the last tool failed with that errno
	grep -qx "rc=-[0-9]* $1" "$WORK/t.out" || { cat "$WORK/t.out" "$WORK/t.err"; return 1; }
}
said() { grep -q -- "$1" "$WORK/t.err" || { cat "$WORK/t.err"; return 1; }; }
# uploads: the UploadIds of multipart uploads in progress under up/
uploads() { s3 GET "/$B?prefix=up%2F&uploads=" 2>/dev/null | grep -o '<UploadId>[^<]*' | sed 's/<UploadId>//'; }
now_near() { # SECONDS: within 5 minutes of our clock
	test -n "$1" && test "$1" -gt $(( $(date +%s) - 300 )) -a "$1" -lt $(( $(date +%s) + 300 ))
}
mp_etag() { # FILE PART_SIZE: "MD5(binary part MD5s)-N"
	"$S3_PY" -c 'import hashlib, sys
f, p, d = open(sys.argv[1], "rb"), int(sys.argv[2]), []
while True:
    b = f.read(p)
    if not b:
        break
    d.append(hashlib.md5(b).digest())
print("%s-%d" % (hashlib.md5(b"".join(d)).hexdigest(), len(d)))' "$1" "$2"
}
P8=8388608
head -c 73400320 /dev/urandom >"$D/big"	# 70 MiB: 9 parts of 8 MiB
head -c 3145728 /dev/urandom >"$D/small"	# 3 MiB: one PUT

tool -p $P8 $U put-file big "$D/big"; rc=$?
check "s3_put_fd: 70 MiB with 8 MiB parts succeeds (rc $rc)" test $rc = 0
check "... as a multipart upload: 11 requests (create, 9 parts, complete)" test "$(field requests)" = 11
check "... ETag \"MD5(part MD5s)-9\", from the completion's body" test "$(field etag)" = "\"$(mp_etag "$D/big" $P8)\""
bigetag=$(field etag)
# bytes_out: the parts, and the completion's list of them (< 4 KiB)
check "... size 73400320, every byte sent once" sh -c "test $(field size) = 73400320 &&
	test $(field bytes_out) -ge 73400320 -a $(field bytes_out) -lt 73404416"
check "... the answer's Date is the server's clock (near ours)" now_near "$(field date)"
s3_get $B/up/big "$WORK/big.got"
check "... GET (curl) gives the 70 MiB back (cmp)" cmp "$D/big" "$WORK/big.got"
rm -f "$WORK/big.got"
check "... HEAD has the ETag s3_put_fd gave" test "$(s3 HEAD /$B/up/big 2>/dev/null | hdr etag)" = "$bigetag"
check "... no multipart upload is left in progress" test -z "$(uploads)"
tool -p $P8 $U put-file small "$D/small"
check "s3_put_fd: 3 MiB is one PUT (1 request)" test "$(field requests)" = 1
check "... its ETag is the quoted MD5" test "$(field etag)" = "\"$(md5sum <"$D/small" | cut -d' ' -f1)\""
tool $U get small "$WORK/small.got"
check "... s3_get gives it back (cmp)" cmp "$D/small" "$WORK/small.got"
check "... s3_get fills the Date" now_near "$(field date)"
tool $U head small
check "s3_head fills the Date" now_near "$(field date)"
# Swift's Last-Modified is its timestamp rounded UP to the second, the
# Date header rounded down: on a fresh object Last-Modified is the Date
# of the same answer, or one second AFTER it. A lease built on the two
# must allow for that second.
d=$(field date); m=$(field mtime)
check "... Last-Modified ($m) is Date ($d) or 1 s later, never earlier (a fresh object)" \
	test "$m" -ge "$d" -a "$m" -le $((d + 1))
tool -p 1048576 $U put-file small "$D/small"
check "s3_new refuses a part size under 5 MiB (EINVAL)" fails_with EINVAL
check "... and says the minimum" said "minimum part (5 MiB"

tool $U copy big big.copy
check "s3_copy copies the 70 MiB object: one request, no byte sent" test "$(field requests) $(field bytes_out)" = "1 0"
copyetag=$(field etag)
s3_get $B/up/big.copy "$WORK/copy.got"
check "... the copy reads back equal (cmp)" cmp "$D/big" "$WORK/copy.got"
rm -f "$WORK/copy.got"
check "... its ETag (from the CopyObjectResult) is HEAD's" test "$(s3 HEAD /$B/up/big.copy 2>/dev/null | hdr etag)" = "$copyetag"
check "... Swift keeps the source's multipart ETag" test "$copyetag" = "$bigetag"
tool $U copy small 'small copy&1'
check "s3_copy: a key with a space and &" test "$(field etag)" = "\"$(md5sum <"$D/small" | cut -d' ' -f1)\""
tool $U get 'small copy&1' "$WORK/small.got"
check "... reads back equal" cmp "$D/small" "$WORK/small.got"
tool $U copy nothing-here x
check "s3_copy of a missing key is ENOENT" fails_with ENOENT
check "... the message names both keys" said "s3://$B/up/x (copy of nothing-here)"
check "... nothing was made" test "$(code HEAD /$B/up/x)" = 404

# Conditional PUTs, as Swift 2.30's s3api answers them: 501
# NotImplemented whatever the key (s3lib.sh), so EOPNOTSUPP -- neither
# 412 nor ignored -- and the object stays as it was.
tool $U put small "$D/one" none
check "s3_put_cond If-None-Match: * on an existing key: EOPNOTSUPP (HTTP 501)" fails_with EOPNOTSUPP
check "... the message says so" said "HTTP 501 (NotImplemented): the server does not implement conditional PUTs"
check "... 501 is not retried: 1 request" test "$(field requests) $(field retries)" = "1 0"
tool $U put fresh "$D/one" none
check "s3_put_cond If-None-Match: * on a missing key: EOPNOTSUPP too" fails_with EOPNOTSUPP
check "... and it stays missing" test "$(code HEAD /$B/up/fresh)" = 404
tool $U put small "$D/one" match '"0123456789abcdef0123456789abcdef"'
check "s3_put_cond If-Match: a wrong ETag: EOPNOTSUPP (HTTP 501)" fails_with EOPNOTSUPP
tool $U put small "$D/one" match "\"$(md5sum <"$D/small" | cut -d' ' -f1)\""
check "s3_put_cond If-Match: the right ETag: EOPNOTSUPP as well" fails_with EOPNOTSUPP
tool $U get small "$WORK/small.got"
check "... after all four the object is unchanged (cmp)" cmp "$D/small" "$WORK/small.got"
tool $U cond-support probe
check "s3_cond_support: mask 0, neither condition enforced" test "$(field mask)" = 0
check "... and says so" said "If-None-Match: \\* is NOT enforced, with If-Match: NOT enforced"
check "... the probe key is deleted" test "$(code HEAD /$B/up/probe)" = 404
tool $U put plain "$D/one"
check "s3_put_cond without a condition: ETag, size 1, Date" sh -c "
	test '$(field etag) $(field size)' = '\"$(md5sum <"$D/one" | cut -d' ' -f1)\" 1'"
check "... the answer's Date" now_near "$(field date)"

# Failed uploads leave nothing: the file ends before the size given
# (the 10th part cannot be read), the file is a directory (EISDIR).
tool -p $P8 $U put-file short "$D/big" 83886080
check "s3_put_fd of a file shorter than the size: EIO" fails_with EIO
# Parts 9 and 10 both run past the end, four parts in flight: whichever
# fails first is reported (part 9 at the file's end, or part 10 at its
# start).
said_short() {
	said "s3://$B/up/short: PUT: the local file ends at byte 73400320 of 75497472 .*part 9 of 10" 2>/dev/null ||
	said "s3://$B/up/short: PUT: the local file ends at byte 75497472 of 83886080 .*part 10 of 10"
}
check "... the message names the key, the byte and the part" said_short
check "... and that the upload was aborted" said "the upload was aborted, nothing was stored"
check "... no object" test "$(code HEAD /$B/up/short)" = 404
check "... no multipart upload left (no parts)" test -z "$(uploads)"
tool -p $P8 $U put-file dir "$WORK" 20000000
check "s3_put_fd of a directory (pread: EISDIR): EISDIR" fails_with EISDIR
check "... names the key, aborted" said "s3://$B/up/dir: PUT: the local file cannot be read at byte .*(Is a directory).*the upload was aborted"
check "... no object" test "$(code HEAD /$B/up/dir)" = 404
check "... no upload left" test -z "$(uploads)"
tool $U put-file dir1 "$WORK" 100
check "... as one PUT too: EISDIR" fails_with EISDIR
check "... no object" test "$(code HEAD /$B/up/dir1)" = 404

# --- the proxy stopped and started again ---
pp=$S3_PROXY_PID
s3_kill_proxy
check "the proxy process is gone" sh -c "! kill -0 $pp 2>/dev/null"
s3 GET /$B/dir/one -o /dev/null 2>/dev/null; rc=$?
check "a request while it is down cannot connect (curl 7)" test $rc = 7
check "start the proxy again" s3_start_proxy
s3_get $B/dir/obj "$WORK/again"
check "GET works again, same bytes" cmp "$D/obj" "$WORK/again"
# mid-read: a slow GET, the proxy killed under it once 1 MiB has come,
# the rest by Range. 32 MiB at 4 MiB/s: what the loopback socket buffers
# hold when the proxy dies (a few MiB) still arrives, then the FIN;
# the object must be well larger than that.
big=33554432
head -c $big /dev/urandom >"$WORK/big"
s3_put "$WORK/big" $B/big
s3 GET /$B/big --limit-rate 4M -o "$WORK/part" 2>/dev/null &
cpid=$!
fsize() { stat -c %s "$1" 2>/dev/null || echo 0; }
i=0
while [ "$(fsize "$WORK/part")" -lt 1048576 ] && [ $i -lt 200 ]; do
	sleep 0.05; i=$((i + 1))
done
s3_kill_proxy KILL
wait $cpid; rc=$?
have=$(fsize "$WORK/part")
check "a GET cut by the proxy's death fails (curl $rc) with part of the bytes ($have)" \
	test $rc -ne 0 -a "$have" -ge 1048576 -a "$have" -lt $big
check "... which are a prefix of the object" sh -c "head -c $have '$WORK/big' | cmp - '$WORK/part'"
check "start the proxy again" s3_start_proxy
s3 GET /$B/big -r "$have-" -o "$WORK/rest" 2>/dev/null
check "... the rest by Range completes the object" sh -c "cat '$WORK/part' '$WORK/rest' | cmp - '$WORK/big'"
s3_kill_proxy STOP
c=$(s3_code GET /$B/dir/one -m 2)
check "a frozen proxy (SIGSTOP) times out (000)" test "$c" = 000
s3_start_proxy
check "... and answers after SIGCONT" test "$(code GET /$B/dir/one)" = 200

# mid-upload: the proxy killed once a part is in, 5 MiB parts of a 160
# MiB file. Started again at once, the parts that failed are retried
# (backoff up to 3.2 s, 10 retries) and the upload completes; left dead,
# the upload fails, the abort cannot reach the server either, and the
# message says which UploadId remains.
head -c 167772160 /dev/urandom >"$WORK/huge"
# the proxy logs each request as it ends (the query encoded in the path)
parts_done() { grep -c 'partNumber' "$S3_DIR/log/proxy.log"; }
wait_part() { # N: until the proxy has logged more than N parts
	_i=0
	while [ "$(parts_done)" -le "$1" ] && [ $_i -lt 1000 ]; do sleep 0.01; _i=$((_i + 1)); done
}
n0=$(parts_done)
"$T" -p 5242880 -r 10 $U put-file huge "$WORK/huge" >"$WORK/t.out" 2>"$WORK/t.err" &
tpid=$!
wait_part "$n0"
s3_kill_proxy KILL
s3_start_proxy
wait $tpid; rc=$?
check "the proxy killed mid-upload and started again: the upload completes (rc $rc)" test $rc = 0
check "... after retries ($(field retries))" test "$(field retries)" -gt 0
check "... ETag of 32 parts" test "$(field etag)" = "\"$(mp_etag "$WORK/huge" 5242880)\""
s3_get $B/up/huge "$WORK/huge.got"
check "... the bytes are the file's (cmp)" cmp "$WORK/huge" "$WORK/huge.got"
rm -f "$WORK/huge.got"
n0=$(parts_done)
"$T" -p 5242880 -r 3 $U put-file huge2 "$WORK/huge" >"$WORK/t.out" 2>"$WORK/t.err" &
tpid=$!
wait_part "$n0"
s3_kill_proxy KILL
wait $tpid; rc=$?
sed 's/^/# /' "$WORK/t.err"
check "the proxy killed mid-upload and left dead: the upload fails (rc $rc)" test $rc = 1
check "... the message names the key" said "s3://$B/up/huge2: PUT"
id=$(sed -n 's/.*AbortMultipartUpload of UploadId \([^ ]*\) .*/\1/p' "$WORK/t.err")
check "... says the abort failed too, and the UploadId left ($id)" test -n "$id"
check "start the proxy again" s3_start_proxy
check "... no object huge2" test "$(code HEAD /$B/up/huge2)" = 404
check "... the upload left is that one" test "$(uploads)" = "$id"
check "... aborting it by hand (DELETE ?uploadId=) is 204" test "$(code DELETE "/$B/up/huge2?uploadId=$id")" = 204
check "... then no upload is left" test -z "$(uploads)"
rm -f "$WORK/huge"

# --- stop ---
pids=$S3_PIDS
s3_stop
alive=""
for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
check "s3_stop leaves no server running" test -z "$alive"
e2e_done
