# Shared helpers of the end-to-end scripts (sourced, POSIX sh).
#
# Each script gets a work directory removed at exit, mounts with
# snapfs_mount (foreground daemon in the background, log in the work dir,
# waits for the mount with a timeout), and counts checks with ok/check.
# The last line printed is "N passed, M failed" (tests/run.sh reads it).
# Under `make check` the daemon is the sanitized build; its log is scanned
# for sanitizer reports when it is unmounted.

set -u
BUILD=${BUILD:-build}
TOP=$(pwd)
SNAPFS=$TOP/$BUILD/snapfs
SNAPGEN=$TOP/$BUILD/snapgen
export SNAPGEN
E2E_PASS=0
E2E_FAIL=0
WORK=$(mktemp -d /tmp/snapfs-e2e.XXXXXX)
MOUNTS=""

e2e_cleanup() {
	for m in $MOUNTS; do
		fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	sleep 0.2
	rm -rf "$WORK"
}
trap e2e_cleanup EXIT
trap 'exit 1' INT TERM

ok() { E2E_PASS=$((E2E_PASS + 1)); echo "ok $*"; }
notok() { E2E_FAIL=$((E2E_FAIL + 1)); echo "FAIL $*"; }
# check "description" command...: passes if the command succeeds.
check() {
	_d=$1; shift
	if "$@" >"$WORK/check.out" 2>&1; then ok "$_d"; else
		notok "$_d"; sed 's/^/    /' "$WORK/check.out" | head -20; fi
}
# check_fails "description" command...: passes if the command fails.
check_fails() {
	_d=$1; shift
	if "$@" >"$WORK/check.out" 2>&1; then
		notok "$_d (succeeded, should fail)"
		sed 's/^/    /' "$WORK/check.out" | head -10
	else ok "$_d"; fi
}
e2e_done() {
	echo "$E2E_PASS passed, $E2E_FAIL failed"
	[ "$E2E_FAIL" -eq 0 ]
}

# snapfs_mount STORE MNT [options...]: starts snapfs -f in the background,
# waits up to 120 s (first mounts index) for the mount to appear.
# Returns the daemon's exit status if it died first.
snapfs_mount() {
	store=$1; mnt=$2; shift 2
	mkdir -p "$mnt"
	log=$WORK/snapfs.$(basename "$mnt").log
	"$SNAPFS" -f "$@" "$store" "$mnt" >>"$log" 2>&1 &
	pid=$!
	MOUNTS="$MOUNTS $mnt"
	i=0
	while [ $i -lt 1200 ]; do
		if mountpoint -q "$mnt"; then return 0; fi
		if ! kill -0 $pid 2>/dev/null; then
			wait $pid; rc=$?
			echo "snapfs exited with $rc before mounting; log:" >&2
			tail -5 "$log" >&2
			return $rc
		fi
		sleep 0.1; i=$((i + 1))
	done
	echo "snapfs did not mount within 120 s" >&2
	return 1
}

# snapfs_umount MNT: unmounts, waits for the daemon, scans its log.
snapfs_umount() {
	mnt=$1
	log=$WORK/snapfs.$(basename "$mnt").log
	fusermount3 -u "$mnt" || return 1
	i=0
	while pgrep -f "snapfs -f .* $mnt\$" >/dev/null 2>&1 && [ $i -lt 100 ]; do
		sleep 0.1; i=$((i + 1))
	done
	if grep -q Sanitizer "$log" 2>/dev/null; then
		echo "sanitizer report in $log:" >&2
		grep -A20 Sanitizer "$log" | head -40 >&2
		return 1
	fi
	return 0
}

# mkstore args...: tests/mkstore.sh with this build's snapgen.
mkstore() { sh "$TOP/tests/mkstore.sh" "$@"; }

# same_bytes A B OFF LEN: compares a range of two files with dd + cmp.
same_bytes() {
	a=$(dd if="$1" iflag=skip_bytes,count_bytes skip="$3" count="$4" bs=64k 2>/dev/null | md5sum)
	b=$(dd if="$2" iflag=skip_bytes,count_bytes skip="$3" count="$4" bs=64k 2>/dev/null | md5sum)
	[ "$a" = "$b" ]
}
