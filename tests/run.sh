#!/bin/sh
# Runs every unit-test binary, then every end-to-end script, and prints one
# aggregate closing line "N passed, M failed". Each program prints its own
# "N passed, M failed" as its last line; a program that crashes or prints no
# such line counts as one failure; one that exits 77 is skipped (printed
# with its reason, counted apart). Exit status 1 if anything failed.
#   BUILD=dir            where the binaries are (default build)
#   SNAPFS_ONLY_UNIT=1   skip the end-to-end scripts
#   SNAPFS_E2E=pattern   run only e2e scripts matching the glob pattern
set -u
BUILD=${BUILD:-build}
export BUILD
pass=0; fail=0; skip=0
logdir=$BUILD/test-logs
mkdir -p "$logdir"

run_one() { # name, command...
	name=$1; shift
	log=$logdir/$(basename "$name").log
	start=$(date +%s)
	"$@" >"$log" 2>&1
	rc=$?
	if [ $rc -eq 77 ]; then	# libfuse's convention: skipped, with a reason
		skip=$((skip + 1))
		echo "skip $name: $(grep -m1 '^SKIP' "$log" || tail -n 1 "$log")"
		return
	fi
	last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
	p=$(echo "$last" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
	f=$(echo "$last" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
	if [ -z "$last" ]; then p=0; f=1; fi
	if [ $rc -ne 0 ] && [ "${f:-0}" -eq 0 ]; then f=1; fi
	pass=$((pass + p)); fail=$((fail + f))
	el=$(( $(date +%s) - start ))
	if [ "$f" -gt 0 ]; then
		echo "FAIL $name ($p passed, $f failed, rc=$rc, ${el}s); log: $log"
		grep -E 'FAIL|not ok|Sanitizer|ERROR' "$log" | head -20 | sed 's/^/    /'
	else
		echo "ok   $name ($p passed, ${el}s)"
	fi
}

for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	run_one "$t" "$t"
done
if [ "${SNAPFS_ONLY_UNIT:-0}" != 1 ]; then
	for s in tests/e2e/[0-9][0-9]-*.sh; do
		[ -f "$s" ] || continue
		case $s in ${SNAPFS_E2E:-*}) ;; *) continue ;; esac
		run_one "$s" sh "$s"
	done
fi
[ $skip -gt 0 ] && echo "# $skip skipped (exit 77), not counted as passed"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
