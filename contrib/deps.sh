#!/bin/sh
# Installs the Debian packages snapfs needs that are missing. Groups:
#   build  compiler, libraries and headers
#   test   stock tools the tests compare against, clang for the fuzzers,
#          OpenStack Swift (the S3 server of tests/e2e/s3lib.sh)
#   qemu   what the real-VM end-to-end test boots
#   libvirt  the libvirt daemons and virsh (tests/e2e/55-libvirt.sh)
# Usage: contrib/deps.sh build test [qemu] [libvirt]. A no-op when all are
# present.
set -eu
pkgs=""
for g in "$@"; do
	case $g in
	build) pkgs="$pkgs gcc make pkg-config libfuse3-dev fuse3 libzstd-dev liblzma-dev libdeflate-dev libxxhash-dev uthash-dev libcurl4-openssl-dev liburing-dev" ;;
	test)  pkgs="$pkgs xdelta3 zstd clang util-linux attr xxhash swift-proxy swift-object swift-container swift-account python3-swift" ;;
	qemu)  pkgs="$pkgs qemu-system-x86 linux-image-cloud-amd64 busybox-static cpio python3" ;;
	libvirt) pkgs="$pkgs libvirt-daemon-system libvirt-clients" ;;
	bench) pkgs="$pkgs gnuplot-nox time" ;;
	*) echo "deps.sh: unknown group '$g' (build, test, qemu, libvirt, bench)" >&2; exit 2 ;;
	esac
done
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps.sh: installing:$missing" >&2
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null; then SUDO=sudo; else
		echo "deps.sh: need root to install:$missing" >&2; exit 1; fi
else SUDO=""; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
