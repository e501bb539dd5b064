#!/bin/sh
# mkstore.sh: build a snapfs store from a synthetic snapgen chain, the plain
# way (stock zstd and xdelta3), for tests, benchmarks and the demo.
#
#   state_0 -> snapshot_0.zst (zstd -q) or snapshot_0 (raw, --base raw)
#   state_k -> snapshot_k.patch = xdelta3 -e OPTS -s state_{k-1} state_k
#   increments.txt lists them newest first, base last.
#
# States are generated one at a time (snapgen --index k), and only the
# previous one is kept unless --keep-states is given. Layer k gets mtime
# base + k minutes, so a mount lists the chain in order.
set -eu

prog=mkstore.sh
usage() {
	cat <<EOF
usage: tests/mkstore.sh [options] STOREDIR

Builds a store of DEPTH patches on top of a base in STOREDIR (created; must
be empty or missing). Progress goes to stderr.

  --depth N            number of patches (default 3); the chain has N+1 layers
  --size S             approximate state size, e.g. 32M, 1G (default 32M)
  --seed X             snapgen seed (default 1)
  --base raw|zst       base stored raw (snapshot_0) or zstd -q (snapshot_0.zst,
                       default)
  --xdelta-opts "..."  extra options for 'xdelta3 -e' (default: none, i.e.
                       stock defaults)
  --snapgen-opts "..." extra options for snapgen (e.g. "--change 5 --zero 10")
  --keep-states        keep every full state as STATES/state_K so tests can
                       cmp; STATES is STOREDIR/../states unless --states-dir
  --states-dir DIR     where to keep the states (implies --keep-states)
  -h, --help           this text

Environment: SNAPGEN (path of snapgen; default \$BUILD/snapgen, BUILD=build,
looked up in the current directory, then in the source tree).
EOF
}

die() { echo "$prog: $*" >&2; exit 1; }
say() { echo "$prog: $*" >&2; }

depth=3 size=32M seed=1 base=zst xopts="" gopts="" keep=0 states=""
while [ $# -gt 0 ]; do
	case $1 in
	--depth) depth=${2:?--depth needs N}; shift 2 ;;
	--size) size=${2:?--size needs S}; shift 2 ;;
	--seed) seed=${2:?--seed needs X}; shift 2 ;;
	--base) base=${2:?--base needs raw or zst}; shift 2 ;;
	--xdelta-opts) xopts=${2?--xdelta-opts needs a string}; shift 2 ;;
	--snapgen-opts) gopts=${2?--snapgen-opts needs a string}; shift 2 ;;
	--keep-states) keep=1; shift ;;
	--states-dir) keep=1; states=${2:?--states-dir needs DIR}; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	--) shift; break ;;
	-*) usage >&2; die "unknown option '$1'" ;;
	*) break ;;
	esac
done
[ $# -eq 1 ] || { usage >&2; die "need exactly one STOREDIR"; }
store=$1
case $depth in ''|*[!0-9]*) die "bad --depth '$depth': want a number" ;; esac
case $base in raw|zst) ;; *) die "bad --base '$base': want raw or zst" ;; esac

# Find snapgen.
root=$(cd "$(dirname "$0")/.." && pwd)
gen=${SNAPGEN:-}
if [ -z "$gen" ]; then
	b=${BUILD:-build}
	for g in "$b/snapgen" "$root/$b/snapgen"; do
		if [ -x "$g" ]; then gen=$g; break; fi
	done
fi
if [ -z "$gen" ] || [ ! -x "$gen" ]; then
	die "snapgen not found (looked for \$BUILD/snapgen); run 'make build/snapgen' in $root or set SNAPGEN"
fi
command -v xdelta3 >/dev/null || die "xdelta3 not installed (apt-get install xdelta3)"
[ "$base" = raw ] || command -v zstd >/dev/null ||
	die "zstd not installed (apt-get install zstd)"

if [ -e "$store" ] && [ -n "$(ls -A "$store" 2>/dev/null)" ]; then
	die "$store is not empty; remove it or choose another directory"
fi
mkdir -p "$store"
[ $keep = 1 ] && [ -z "$states" ] && states=$(dirname "$store")/states
if [ $keep = 1 ]; then
	mkdir -p "$states"
	work=$states
else
	work=$(mktemp -d "$store/.mkstore.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	trap 'exit 130' INT TERM
fi

bytes() { wc -c <"$1" | tr -d ' '; }
# a/b as a percentage with one decimal, integers only.
pct() { echo "$(( $1 * 100 / $2 )).$(( $1 * 1000 / $2 % 10 ))%"; }

# mtimes: base at t0, layer k at t0 + k minutes, all in the past.
t0=$(( $(date +%s) - (depth + 1) * 60 ))

# shellcheck disable=SC2086 # $gopts and $xopts are option lists
"$gen" --seed "$seed" --size "$size" $gopts --index 0 -o "$work/state_0"
s0=$(bytes "$work/state_0")
if [ "$base" = zst ]; then
	zstd -q "$work/state_0" -o "$store/snapshot_0.zst"
	basefile=snapshot_0.zst
else
	cp "$work/state_0" "$store/snapshot_0"
	basefile=snapshot_0
fi
touch -d "@$t0" "$store/$basefile"
say "$basefile: $(bytes "$store/$basefile") bytes (state_0: $s0 bytes, seed $seed)"

list=$basefile
k=1
while [ "$k" -le "$depth" ]; do
	p=$((k - 1))
	# shellcheck disable=SC2086
	"$gen" --seed "$seed" --size "$size" $gopts --index "$k" \
		-o "$work/state_$k"
	# shellcheck disable=SC2086
	xdelta3 -e $xopts -s "$work/state_$p" "$work/state_$k" \
		"$store/snapshot_$k.patch"
	touch -d "@$((t0 + k * 60))" "$store/snapshot_$k.patch"
	sk=$(bytes "$work/state_$k")
	pk=$(bytes "$store/snapshot_$k.patch")
	say "snapshot_$k.patch: $pk bytes ($(pct "$pk" "$sk") of state_$k, $sk bytes)"
	[ $keep = 1 ] || rm -f "$work/state_$p"
	list="snapshot_$k.patch
$list"
	k=$((k + 1))
done
[ $keep = 1 ] || rm -f "$work/state_$depth"

printf '%s\n' "$list" >"$store/increments.txt.tmp"
mv "$store/increments.txt.tmp" "$store/increments.txt"
msg="$store: $((depth + 1)) layers, newest first in increments.txt"
[ $keep = 1 ] && msg="$msg; full states in $states"
say "$msg"
