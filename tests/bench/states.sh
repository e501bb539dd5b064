# Sourced by the bench scripts that need real QEMU states (qemu.sh,
# remote.sh, write.sh, restore.sh): qemu_states DIR N [MEM_MIB WORK_MIB]
# saves N states of the e2e guest into DIR (snapshot_1..N, plain files,
# via tests/e2e/50-qemu.sh without a mount) unless DIR already holds them;
# MEM_MIB and WORK_MIB set the guest's RAM and its workload (defaults:
# the e2e test's). Its log goes to DIR.log. Needs $BUILD.
qemu_states() {
	_qs=$1; _n=$2
	[ -f "$_qs/snapshot_$_n" ] && return 0
	echo "bench: saving $_n states of a real guest into $_qs" >&2
	rm -rf "$_qs"
	SNAPFS_QEMU_MEM=${3:-} SNAPFS_QEMU_WORK_MB=${4:-} \
	SNAPFS_MOUNT_CMD= SNAPFS_QEMU_SNAPS=$((_n - 1)) SNAPFS_QEMU_KEEP="$_qs" \
		BUILD=$BUILD sh tests/e2e/50-qemu.sh > "$_qs.log" 2>&1 ||
		{ tail -20 "$_qs.log" >&2; exit 1; }
}
