#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""restore_time: how long QEMU takes to load a state file, excluding its
own start-up. For comparing a plain file with the same snapshot read
through a snapfs mount.

usage: restore_time.py [-n RUNS] STATE_FILE... -- QEMU_COMMAND [ARGS...]
       restore_time.py [-n RUNS] STATE_FILE... --cmdline FILE

The QEMU command must be the one the states were saved with (for the
states kept by tests/e2e/50-qemu.sh, --cmdline DIR/qemu-cmdline). Each run
starts QEMU with -incoming defer, then times migrate-incoming
"exec:cat STATE" until query-migrate says completed (polled every 5 ms),
and quits QEMU without running the guest. Prints one line per run:
    STATE BYTES SECONDS MB/s
Example:
    tests/qemu/restore_time.py -n 3 /work/qemu-states/snapshot_5 \\
        /mnt/snaps/snapshot_5 --cmdline /work/qemu-states/qemu-cmdline
"""
import os
import shlex
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import QMP, QMPError  # noqa: E402


def main(argv):
    runs, states, cmd = 1, [], None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(__doc__.strip())
            return 0
        if a == "-n":
            runs = int(argv[i + 1]); i += 2; continue
        if a == "--":
            cmd = argv[i + 1:]; break
        if a == "--cmdline":
            with open(argv[i + 1]) as f:
                lines = [x for x in f.read().splitlines()
                         if x.strip() and not x.startswith("#")]
            cmd = shlex.split(lines[-1]); i += 2; continue
        states.append(a); i += 1
    if not states or not cmd:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    td = tempfile.mkdtemp(prefix="restore_time.")
    sock = os.path.join(td, "qmp.sock")
    rc = 0
    for _ in range(runs):
        for s in states:
            size = os.stat(s).st_size
            p = subprocess.Popen(cmd + ["-qmp", "unix:%s,server=on,wait=off" % sock,
                                        "-incoming", "defer", "-serial", "null"])
            try:
                with QMP(sock) as q:
                    t0 = time.monotonic()
                    q.cmd("migrate-incoming", uri="exec:cat %s" % shlex.quote(s))
                    q.migration_wait(poll=0.005)
                    dt = time.monotonic() - t0
                    print("%s %d %.3f %.0f" % (s, size, dt, size / dt / 1e6),
                          flush=True)
                    q.cmd("quit")
            except (QMPError, TimeoutError, OSError) as e:
                print("%s: %s" % (s, e), file=sys.stderr)
                rc = 1
                p.kill()
            p.wait()
            if os.path.exists(sock):
                os.unlink(sock)
    os.rmdir(td)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
