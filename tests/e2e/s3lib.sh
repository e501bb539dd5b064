# A real S3-compatible server for the end-to-end scripts (sourced, POSIX sh,
# after tests/e2e/lib.sh): OpenStack Swift with its s3api middleware, one
# node on loopback, installed and started by the scripts themselves.
#
#   s3_missing            prints the Swift packages not installed
#   s3_require            s3_install if needed, or skip the script (exit 77)
#   s3_install            apt-get installs those (root), quietly
#   s3_start [DIR]        sets up and starts the four servers, waits, exports
#                         AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION
#                         AWS_ENDPOINT_URL; S3_DIR is where it all is
#   s3_stop               stops every server (also run at exit)
#   s3_kill_proxy [SIG]   stops only the proxy (the S3 endpoint): TERM, or
#                         KILL, or STOP (frozen: connects, never answers)
#   s3_start_proxy        starts it again on the same port (or CONTs it)
#   s3 METHOD PATH [curl args...]   one signed request, body to stdout
#   s3_code METHOD PATH [curl args...]  only the HTTP status (000: none);
#                         the body in $WORK/s3.body
#   s3_mb BUCKET, s3_put FILE BUCKET/KEY, s3_get BUCKET/KEY FILE,
#   s3_sync_up DIR BUCKET/PREFIX    the usual verbs, curl only (no awscli)
#
# Decisions and what was found out (Debian 12: swift 2.30.1, eventlet
# 0.33.1, curl 7.88.1). tests/e2e/65-s3-server.sh checks every claim
# marked (t).
#
# Why Swift and not Ceph RGW: Swift is four Python daemons that need
# nothing but a directory with user xattrs and loopback ports; they start
# in 1-3 s, as root or not, and one of them (the proxy) is the S3
# endpoint, to stop and start alone. A one-host Ceph needs a monitor, a
# manager, an OSD on a block device or file, then radosgw: far more
# packages, memory and start-up time. s3api checks SigV4 signatures
# against the tempauth password (t).
#
# Packages: swift-proxy swift-object swift-container swift-account
# python3-swift (they pull eventlet, liberasurecode, rsyslog, uwsgi). The
# check is dpkg-query's Status, not `dpkg -s`, which also succeeds for a
# removed package whose config files remain. On a systemd host Debian's
# units may start on install; they use /etc/swift and ports 6200-6202 and
# 8080, and do not meet ours.
#
# Layout, all in one directory: etc/ (swift.conf, NAME-server.conf, the
# three rings: 16 partitions, 1 replica, one device), srv/d1/ (the
# "device", a plain directory: mount_check = false), log/NAME.log,
# launch.py. The servers run through launch.py, not swift-*-server: those
# always read /etc/swift/swift.conf (hash prefix, storage policies) and
# log only to syslog, and there is no /dev/log here (Swift then sends UDP
# to localhost:514). launch.py points swift.common.utils at our
# swift.conf, replaces the syslog handler by nothing and runs
# run_wsgi(verbose), so each log is the server's stderr. It also stops
# eventlet 0.33 from calling gc.collect() once per existing lock while
# monkey-patching (0.3-0.9 s of CPU per server, most of the start-up),
# and exits when the test script's shell is gone (a script killed by
# SIGKILL leaves no server behind). workers = 0: each server is one
# process whose pid we hold; it restarts on the same port (SO_REUSEADDR).
# /usr/bin/python3 on purpose: a python3 earlier in PATH (pyenv) has no
# swift module.
#
# Where: the object server keeps metadata in user.* extended attributes.
# ext4 (/tmp here) has them; tmpfs before Linux 6.6 does not, nor do some
# overlay set-ups. s3_start probes with setxattr: DIR, else $WORK/swift,
# else a new directory in /var/tmp, else in $TOP/build (removed by
# s3_stop).
#
# Ports: four free loopback ports, the kernel's choice for a bind to port
# 0, released just before the servers bind them; if one is taken
# meanwhile (a server retries for bind_timeout = 5 s), the start is tried
# again with new ones, up to three times.
#
# Auth: tempauth, user_test_tester = $S3_SECRET .admin. Through s3api the
# access key is "ACCOUNT:USER" = "test:tester" and the secret is the
# password. The colon matters: curl's --user KEY:SECRET splits at the
# first colon, so s3 puts both in the URL (http://test%3Atester:SECRET@
# host/...), which curl decodes; a libcurl client must set
# CURLOPT_USERNAME and CURLOPT_PASSWORD apart, not CURLOPT_USERPWD.
# tempauth insists on a memcache client but works without a memcached:
# memcache_servers = 127.0.0.1:1 (a closed port; proxy.log says so,
# error-limited). account_autocreate = true (the first PUT makes AUTH_test).
#
# Region: location = us-east-1, explicit; another region in the credential
# scope gets 400 AuthorizationHeaderMalformed (t). Service "s3". Path
# style only (no storage_domain): http://127.0.0.1:PORT/BUCKET/KEY.
# Bucket names must be DNS-compliant, 3-63 characters (400
# InvalidBucketName).
#
# x-amz-content-sha256 is REQUIRED with header auth: without it 400
# InvalidRequest (t). curl 7.88 does NOT add it by itself (it signs only
# host;x-amz-date), but when the header is given it signs it
# (SignedHeaders=host;x-amz-content-sha256;x-amz-date) and uses its value
# as the payload hash. UNSIGNED-PAYLOAD is accepted (t); so is the body's
# real sha256 (t), which Swift then verifies: a wrong one is 400 BadDigest
# (t; not XAmzContentSHA256Mismatch, and the message speaks of
# Content-MD5). For bodiless requests the value is only signed, not
# checked (seen). STREAMING-AWS4-HMAC-SHA256-PAYLOAD (aws-chunked) is 501
# (code).
#
# Canonical request (curl 7.88 signs the URL as written, it does not
# normalize): the path must already be URI-encoded the S3 way (every
# byte but A-Za-z0-9-._~ and / as %XX, once; _s3_enc), and the query must
# be in canonical form: parameters sorted by name (t), each with "="
# (?uploads= not ?uploads, t), values encoded like the path but with /
# encoded too (prefix=a%2Fb; "a/b" or "a+b" as such: 403
# SignatureDoesNotMatch, seen).
#
# The other quirks, all (t) but where marked (code): read in s3api's
# source, or (seen): tried by hand. A ranged GET is 206 with
# Content-Range "bytes A-B/SIZE"; an end past the size is cut to it; a
# suffix range (-N) works; a start at or past the size is 416
# InvalidRange; two ranges give multipart/byteranges; no Accept-Ranges
# header. ETag: the quoted MD5 of a plain PUT; a multipart object's is
# "MD5(binary part MD5s)-N" (listings too, seen). ListObjectsV2
# (list-type=2) works with prefix, delimiter, start-after,
# continuation-token (base64 of the last key: encode it in the query),
# KeyCount; keys in byte order; at most 1000 keys a page whatever
# max-keys says, and MaxKeys echoes the request (code). Multipart works
# (SLO underneath, its BUCKET+segments container hidden from
# ListBuckets): parts of at least 5 MiB but the last (else EntityTooSmall
# at completion), at most 1000 parts (code); ListMultipartUploads
# (?uploads=) lists the unfinished ones, AbortMultipartUpload (DELETE
# ?uploadId=) is 204 (t). CopyObject (x-amz-copy-source) answers 200 with
# a CopyObjectResult whose ETag is the source's, a multipart "-N" one
# included (t). A PUT with If-None-Match: * or If-Match is 501
# NotImplemented whether the key exists or not, the ETag right or wrong
# (t): no atomic create-if-absent, no compare-and-swap; GET with
# If-None-Match: ETAG is 304, with another If-Match 412. Last-Modified
# is the object's timestamp rounded UP to the second, the Date header
# the clock rounded down: on a fresh object Last-Modified is the Date of
# the same answer or one second after it (t). PUT and CopyObject answers
# carry Last-Modified; CompleteMultipartUpload's does not (seen). Errors are S3
# XML <Error><Code/><Message/><RequestId/>...</Error> (HEAD: the status
# only); an unknown access key is 403 SignatureDoesNotMatch, not
# InvalidAccessKeyId; PUT of one's own existing bucket is 409
# BucketAlreadyOwnedByYou; DELETE of a missing key is 204; a clock more
# than 15 min off is 403 RequestTimeTooSkewed (code; curl 7.88 given an
# X-Amz-Date header sends it twice: 403 AccessDenied, seen). Requests
# without any auth are refused with Swift's own HTML 400/404/412, not XML.

S3_PY=/usr/bin/python3
S3_PKGS="swift-proxy swift-object swift-container swift-account python3-swift"
S3_SECRET=${S3_SECRET:-snapfs-e2e-secret}
S3_DIR=""
S3_RMDIR=""
S3_PROXY_PID=""
S3_PIDS=""

# s3_require: what a script needs before s3_start -- the Swift packages
# (installed if missing, as root) and curl; otherwise the script is
# skipped: the reason, "0 passed, 0 failed", exit 77.
s3_require() {
	_m=$(s3_missing)
	if [ -n "$_m" ]; then
		[ "$(id -u)" -eq 0 ] || _s3_skip "not root, cannot install:$_m"
		s3_install || _s3_skip "could not install:$_m (apt-get failed, see above)"
	fi
	command -v curl >/dev/null || _s3_skip "no curl"
}
_s3_skip() {
	echo "SKIP: $*"
	echo "0 passed, 0 failed"
	exit 77
}

# s3_missing: prints the packages of $S3_PKGS not installed (none: empty).
s3_missing() {
	_m=""
	for _p in $S3_PKGS; do
		# dpkg -s also succeeds for "deinstall ok config-files"
		dpkg-query -W -f='${Status}' "$_p" 2>/dev/null | grep -q 'ok installed' ||
			_m="$_m $_p"
	done
	echo "$_m"
}

# s3_install: installs what is missing (root only). Tries without
# apt-get update first (fast), then with it.
s3_install() {
	_m=$(s3_missing)
	[ -z "$_m" ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "s3_install: need root to install:$_m" >&2; return 1
	fi
	echo "s3_install: installing:$_m" >&2
	_log=${WORK:-/tmp}/s3-apt.log
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends $_m >"$_log" 2>&1; then
		apt-get update -qq >>"$_log" 2>&1
		if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $_m >>"$_log" 2>&1; then
			echo "s3_install: apt-get failed:" >&2
			tail -n 15 "$_log" >&2
			return 1
		fi
	fi
	[ -z "$(s3_missing)" ]
}

# _s3_xattr_ok DIR: DIR is writable and takes user.* extended attributes.
_s3_xattr_ok() {
	mkdir -p "$1" 2>/dev/null || return 1
	"$S3_PY" - "$1" 2>/dev/null <<'EOF'
import os, sys
p = os.path.join(sys.argv[1], ".xattr-probe")
try:
    open(p, "w").close()
    os.setxattr(p, "user.swift.probe", b"x" * 300)
    ok = os.getxattr(p, "user.swift.probe") == b"x" * 300
finally:
    if os.path.exists(p):
        os.unlink(p)
sys.exit(0 if ok else 1)
EOF
}

# _s3_pick_dir [DIR]: sets S3_DIR (and S3_RMDIR when it made one outside
# $WORK).
_s3_pick_dir() {
	S3_RMDIR=""
	if [ -n "${1:-}" ]; then
		_s3_xattr_ok "$1" || {
			echo "s3_start: $1 does not take user.* xattrs (Swift needs them)" >&2
			return 1; }
		S3_DIR=$1; return 0
	fi
	if _s3_xattr_ok "$WORK/swift"; then S3_DIR=$WORK/swift; return 0; fi
	rmdir "$WORK/swift" 2>/dev/null
	for _c in /var/tmp "$TOP/build"; do
		[ -d "$_c" ] || continue
		_d=$(mktemp -d "$_c/snapfs-s3.XXXXXX" 2>/dev/null) || continue
		if _s3_xattr_ok "$_d"; then S3_DIR=$_d; S3_RMDIR=$_d; return 0; fi
		rm -rf "$_d"
	done
	echo "s3_start: no directory with user.* xattrs ($WORK, /var/tmp, $TOP/build)" >&2
	return 1
}

# _s3_free_ports N: N distinct free loopback TCP ports.
_s3_free_ports() {
	"$S3_PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# _s3_setup: writes etc/ and builds the rings for ports S3_{A,C,O,P}_PORT.
_s3_setup() {
	_e=$S3_DIR/etc
	rm -rf "$_e" "$S3_DIR/srv"
	mkdir -p "$_e" "$S3_DIR/srv/d1" "$S3_DIR/log"
	cat >"$_e/swift.conf" <<EOF
[swift-hash]
swift_hash_path_prefix = snapfs-e2e
swift_hash_path_suffix = snapfs-e2e

[storage-policy:0]
name = Policy-0
default = yes
EOF
	for _s in account:$S3_A_PORT container:$S3_C_PORT object:$S3_O_PORT; do
		_n=${_s%%:*}
		cat >"$_e/$_n-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = ${_s#*:}
workers = 0
bind_timeout = 5
user = $(id -un)
swift_dir = $_e
devices = $S3_DIR/srv
mount_check = false
disable_fallocate = true
log_name = $_n

[pipeline:main]
pipeline = $_n-server

[app:$_n-server]
use = egg:swift#$_n
EOF
	done
	cat >"$_e/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $S3_P_PORT
workers = 0
bind_timeout = 5
user = $(id -un)
swift_dir = $_e
log_name = proxy

[pipeline:main]
pipeline = catch_errors gatekeeper proxy-logging cache listing_formats bulk s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = $S3_SECRET .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:1

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:bulk]
use = egg:swift#bulk

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo
EOF
	cat >"$S3_DIR/launch.py" <<'EOF'
# launch.py SWIFT_CONF SERVER_CONF APP OWNER_PID: run_wsgi with our
# swift.conf and the log on stderr only (see s3lib.sh); exits when the
# process OWNER_PID (the test script's shell) is gone, so a test killed
# with SIGKILL leaves no server behind.
import logging, os, sys, threading, time

def watchdog(owner, sleep=time.sleep):  # the real sleep: a real thread
    while True:
        sleep(1)
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            os._exit(0)

threading.Thread(target=watchdog, args=(int(sys.argv[4]),), daemon=True).start()
import swift.common.utils as utils
utils.SWIFT_CONF_FILE = sys.argv[1]

class NoSyslog(logging.NullHandler):
    def __init__(self, *args, **kwargs):
        logging.NullHandler.__init__(self)

utils.ThreadSafeSysLogHandler = NoSyslog

# eventlet 0.33 runs gc.collect() once per RLock that exists when it
# monkey-patches: 0.3-0.9 s of CPU per server, most of the start-up.
import gc
monkey_patch = utils.eventlet_monkey_patch

def quick_monkey_patch():
    collect = gc.collect
    gc.collect = lambda *args: 0
    try:
        monkey_patch()
    finally:
        gc.collect = collect

utils.eventlet_monkey_patch = quick_monkey_patch
from swift.common import constraints, storage_policy
constraints.reload_constraints()
storage_policy.reload_storage_policies()
from swift.common.wsgi import run_wsgi
sys.exit(run_wsgi(sys.argv[2], sys.argv[3], verbose=True))
EOF
	"$S3_PY" - "$_e" "$S3_A_PORT" "$S3_C_PORT" "$S3_O_PORT" <<'EOF'
import sys
from swift.common.ring import RingBuilder
etc = sys.argv[1]
for name, port in zip(("account", "container", "object"), sys.argv[2:5]):
    b = RingBuilder(4, 1, 0)  # 16 partitions, 1 replica
    b.add_dev({"region": 1, "zone": 1, "ip": "127.0.0.1", "port": int(port),
               "device": "d1", "weight": 1.0, "meta": ""})
    b.rebalance()
    b.get_ring().save("%s/%s.ring.gz" % (etc, name))
EOF
}

# _s3_launch NAME: starts one server in the background; its pid in
# S3_LAST_PID.
_s3_launch() {
	_app=$1-server
	[ "$1" = proxy ] && _app=proxy-server
	"$S3_PY" "$S3_DIR/launch.py" "$S3_DIR/etc/swift.conf" \
		"$S3_DIR/etc/$1-server.conf" "$_app" $$ \
		</dev/null >>"$S3_DIR/log/$1.log" 2>&1 &
	S3_LAST_PID=$!
}

# _s3_wait_port NAME PID PORT DEADLINE: waits until PORT answers HTTP;
# fails when PID died or the date passes DEADLINE (seconds since epoch).
_s3_wait_port() {
	while :; do
		_c=$(curl -s -o /dev/null -m 3 -w '%{http_code}' "http://127.0.0.1:$3/" 2>/dev/null)
		[ "${_c:-000}" != 000 ] && return 0
		if ! kill -0 "$2" 2>/dev/null; then
			echo "s3_start: the $1 server (pid $2) exited; $S3_DIR/log/$1.log:" >&2
			tail -n 15 "$S3_DIR/log/$1.log" >&2
			return 1
		fi
		if [ "$(date +%s)" -ge "$4" ]; then
			echo "s3_start: the $1 server does not answer on port $3; $S3_DIR/log/$1.log:" >&2
			tail -n 15 "$S3_DIR/log/$1.log" >&2
			return 1
		fi
		sleep 0.1
	done
}

_s3_kill() { # PID [SIG]: signal, wait up to 5 s, then KILL
	kill -"${2:-TERM}" "$1" 2>/dev/null || return 0
	_i=0
	while kill -0 "$1" 2>/dev/null && [ $_i -lt 50 ]; do sleep 0.1; _i=$((_i + 1)); done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 0
}

# s3_start [DIR]: sets up Swift in DIR (default $WORK/swift), starts the
# account, container, object servers and the proxy, waits (S3_TIMEOUT s,
# default 60) until a signed ListBuckets succeeds, exports
# AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION AWS_ENDPOINT_URL.
s3_start() {
	[ -x "$S3_PY" ] && "$S3_PY" -c 'import swift.common.middleware.s3api' 2>/dev/null || {
		echo "s3_start: Swift is not installed (s3_install)" >&2; return 1; }
	_s3_pick_dir "${1:-}" || return 1
	_try=1
	while :; do
		set -- $(_s3_free_ports 4)
		S3_A_PORT=$1 S3_C_PORT=$2 S3_O_PORT=$3 S3_P_PORT=$4
		_s3_setup || return 1
		rm -f "$S3_DIR"/log/*.log
		S3_PIDS=""
		_dl=$(( $(date +%s) + ${S3_TIMEOUT:-60} ))
		_ok=1
		for _n in account container object proxy; do
			_s3_launch $_n
			S3_PIDS="$S3_PIDS $S3_LAST_PID"
			[ $_n = proxy ] && S3_PROXY_PID=$S3_LAST_PID
		done
		set -- $S3_PIDS
		for _s in account:$S3_A_PORT container:$S3_C_PORT object:$S3_O_PORT proxy:$S3_P_PORT; do
			_s3_wait_port "${_s%%:*}" "$1" "${_s#*:}" "$_dl" || { _ok=0; break; }
			shift
		done
		[ $_ok = 1 ] && break
		for _p in $S3_PIDS; do _s3_kill "$_p"; done
		S3_PIDS=""; S3_PROXY_PID=""
		if [ $_try -lt 3 ] && grep -q 'Could not bind' "$S3_DIR"/log/*.log; then
			echo "s3_start: a port was taken meanwhile; again with others" >&2
			_try=$((_try + 1)); continue
		fi
		return 1
	done
	export AWS_ACCESS_KEY_ID="test:tester"
	export AWS_SECRET_ACCESS_KEY="$S3_SECRET"
	export AWS_REGION=us-east-1
	export AWS_ENDPOINT_URL="http://127.0.0.1:$S3_P_PORT"
	while :; do
		_c=$(s3_code GET /)
		[ "$_c" = 200 ] && return 0
		if [ "$(date +%s)" -ge "$_dl" ]; then
			echo "s3_start: a signed ListBuckets gets HTTP $_c, not 200; proxy.log:" >&2
			tail -n 15 "$S3_DIR/log/proxy.log" >&2
			return 1
		fi
		sleep 0.2
	done
}

# s3_kill_proxy [SIG]: stops the proxy only (TERM, KILL after 5 s); the
# endpoint then refuses connections. SIG=STOP freezes it instead (a hung
# server: connections are accepted by the kernel but not answered);
# s3_start_proxy sends CONT to a frozen proxy.
s3_kill_proxy() {
	[ -n "$S3_PROXY_PID" ] || return 0
	if [ "${1:-TERM}" = STOP ]; then kill -STOP "$S3_PROXY_PID"; return; fi
	_s3_kill "$S3_PROXY_PID" "${1:-TERM}"
	S3_PIDS=$(echo " $S3_PIDS " | sed "s/ $S3_PROXY_PID / /")
	S3_PROXY_PID=""
}

# s3_start_proxy: starts the proxy again on its port and waits for it.
s3_start_proxy() {
	if [ -n "$S3_PROXY_PID" ] && kill -0 "$S3_PROXY_PID" 2>/dev/null; then
		kill -CONT "$S3_PROXY_PID"; return 0
	fi
	_s3_launch proxy
	S3_PROXY_PID=$S3_LAST_PID
	S3_PIDS="$S3_PIDS $S3_PROXY_PID"
	_s3_wait_port proxy "$S3_PROXY_PID" "$S3_P_PORT" $(( $(date +%s) + ${S3_TIMEOUT:-60} ))
}

# s3_stop: stops every server and removes a directory made outside $WORK.
s3_stop() {
	for _p in $S3_PIDS; do kill -CONT "$_p" 2>/dev/null; _s3_kill "$_p"; done
	S3_PIDS=""; S3_PROXY_PID=""
	[ -n "$S3_RMDIR" ] && rm -rf "$S3_RMDIR"
	S3_RMDIR=""
	return 0
}
# lib.sh's trap removes $WORK; the servers must be gone first.
trap 's3_stop; e2e_cleanup' EXIT

# _s3_enc KEY: percent-encodes all but A-Z a-z 0-9 - . _ ~ and /, the
# URI encoding SigV4 wants for S3 paths.
_s3_enc() {
	case $1 in *[!A-Za-z0-9._~/-]*) ;; *) printf '%s' "$1"; return ;; esac
	printf '%s' "$1" | od -An -v -tx1 | tr -s ' \n' '\n\n' | while read -r _h; do
		case $_h in
		'') ;;
		2d|2e|2f|5f|7e|3[0-9]|4[1-9a-f]|5[0-9a]|6[1-9a-f]|7[0-9a])
			printf "\\$(printf '%03o' "0x$_h")" ;;
		*) printf '%%%s' "$(echo "$_h" | tr a-f A-F)" ;;
		esac
	done
}

# s3 METHOD PATH [curl args...]: one SigV4-signed request to
# $AWS_ENDPOINT_URL/PATH (PATH = /BUCKET/KEY, already encoded, may have a
# ?query); the body to stdout. HEAD prints the headers.
s3() {
	_m=$1; _path=$2; shift 2
	case $_m in
	HEAD) set -- -I "$@" ;;
	GET) ;;
	*) set -- -X "$_m" "$@" ;;
	esac
	# The access key has a colon: in the URL's user part (decoded by curl),
	# as --user would split it there.
	_u=$(printf '%s' "$AWS_ACCESS_KEY_ID" | sed 's/:/%3A/g')
	_sec=$(printf '%s' "$AWS_SECRET_ACCESS_KEY" | sed 's/%/%25/g; s/:/%3A/g; s/@/%40/g')
	curl -sS --aws-sigv4 "aws:amz:$AWS_REGION:s3" \
		-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
		"$@" "http://$_u:$_sec@${AWS_ENDPOINT_URL#http://}$_path"
}

# s3_code METHOD PATH [curl args...]: prints only the HTTP status (000 if
# there was no answer); the body goes to $WORK/s3.body.
s3_code() {
	_m=$1; _path=$2; shift 2
	s3 "$_m" "$_path" -o "$WORK/s3.body" -w '%{http_code}' "$@" 2>/dev/null
	return 0
}

# _s3_ok CODE WHAT [BODY]: CODE is 2xx, else prints the error body.
_s3_ok() {
	case $1 in 2??) return 0 ;; esac
	echo "s3: $2: HTTP $1" >&2
	cat "${3:-$WORK/s3.body}" >&2 2>/dev/null; echo >&2
	return 1
}

# s3_mb BUCKET: creates a bucket.
s3_mb() { _s3_ok "$(s3_code PUT "/$1")" "PUT /$1"; }

# s3_put FILE BUCKET/KEY: uploads FILE.
s3_put() {
	_k=/$(_s3_enc "$2")
	_s3_ok "$(s3_code PUT "$_k" -T "$1")" "PUT $_k"
}

# s3_get BUCKET/KEY FILE: downloads to FILE (nothing left on failure).
s3_get() {
	_k=/$(_s3_enc "$1")
	_c=$(s3 GET "$_k" -o "$2.part" -w '%{http_code}' 2>/dev/null)
	if _s3_ok "${_c:-000}" "GET $_k" "$2.part"; then mv "$2.part" "$2"; else
		rm -f "$2.part"; return 1; fi
}

# s3_sync_up DIR BUCKET/PREFIX: uploads every regular file under DIR
# (hidden ones too, e.g. .snapfs/), key = PREFIX/relative path.
s3_sync_up() {
	_dst=${2%/}
	( cd "$1" && find . -type f ) | sed 's|^\./||' | sort | {
		_rc=0
		while IFS= read -r _f; do
			s3_put "$1/$_f" "$_dst/$_f" || _rc=1
		done
		exit $_rc
	}
}
