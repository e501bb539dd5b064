#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""qmp: a small QMP (QEMU Machine Protocol) client for snapfs's QEMU tests.

Library:
    from qmp import QMP, save, wait_incoming
    with QMP("/tmp/vm.sock") as q:         # connects, negotiates capabilities
        q.cmd("query-status")               # -> the "return" value, or QMPError
        q.wait_event("STOP", timeout=5)     # events are buffered while waiting
    save("/tmp/vm.sock", "/mnt/snaps/snapshot_5")   # stop, migrate to file
    wait_incoming("/tmp/vm2.sock", cont=True)       # after -incoming: wait, cont

CLI (one QMP connection per call):
    qmp.py SOCK cmd NAME ['{"json": "args"}']   print the return value as JSON
    qmp.py SOCK save PATH [--keep-running]       save state to PATH (exec:cat)
    qmp.py SOCK save-cmd 'SHELL COMMAND' [--keep-running]
    qmp.py SOCK wait-incoming [--cont] [--timeout S]
    qmp.py SOCK wait-migration [--timeout S]     until query-migrate: completed
    qmp.py SOCK hmp 'MONITOR COMMAND'             as if typed at (qemu)
    qmp.py SOCK quit

Saving works like typing `migrate "exec:cat > PATH"` in the monitor, with
the details done right: the VM is stopped first (so the state is one
consistent point in time and the stream is written once), the default
bandwidth cap is lifted (max-bandwidth, 128 MiB/s in QEMU 7.2), and
success means both that QEMU reports "completed" and that the `cat`
process exited 0 (QEMU reports completion before it reaps cat, and ignores
cat's exit status, so a destination that fails at close(), e.g. a full
disk or a snapfs commit error, would otherwise go unnoticed).
Python 3 standard library only.
"""
import json
import os
import shlex
import socket
import sys
import tempfile
import time


class QMPError(Exception):
    """A QMP command failed, a connection failed, or a migration failed."""


class QMP:
    def __init__(self, path, timeout=30.0):
        self.path = path
        self.events = []
        self._buf = b""
        deadline = time.monotonic() + timeout
        while True:  # the socket appears a moment after QEMU starts
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError) as e:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise QMPError("cannot connect to QMP socket %s: %s "
                                   "(is QEMU running with -qmp unix:%s,"
                                   "server=on,wait=off?)" % (path, e, path))
                time.sleep(0.05)
        self.sock.settimeout(timeout)
        greeting = self._recv()
        if "QMP" not in greeting:
            raise QMPError("%s: not a QMP greeting: %r" % (path, greeting))
        self.version = greeting["QMP"].get("version", {}).get("qemu", {})
        self.cmd("qmp_capabilities")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _recv(self, timeout=None):
        if timeout is not None:
            self.sock.settimeout(max(timeout, 0.001))
        while b"\n" not in self._buf:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("QMP: no message within %.1fs" % timeout)
            if not chunk:
                raise QMPError("QMP connection %s closed by QEMU" % self.path)
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, args=None, timeout=60.0, **kw):
        """Execute a command; returns its "return" value, raises QMPError."""
        msg = {"execute": name}
        a = dict(args or {}, **kw)
        if a:
            msg["arguments"] = a
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            r = self._recv(deadline - time.monotonic())
            if "event" in r:
                self.events.append(r)
            elif "error" in r:
                raise QMPError("%s: %s: %s" % (name, r["error"].get("class"),
                                               r["error"].get("desc")))
            elif "return" in r:
                return r["return"]

    def wait_event(self, name, timeout=60.0):
        """Return the first event called name (buffered ones count)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name:
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("QMP: no %s event within %.1fs"
                                   % (name, timeout))
            r = self._recv(left)
            if "event" in r:
                self.events.append(r)

    def migration_wait(self, timeout=600.0, poll=0.05):
        """Poll query-migrate until completed; returns its last answer.
        Raises QMPError on failed/cancelled (with QEMU's reason)."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.cmd("query-migrate")
            st = m.get("status")
            if st == "completed":
                return m
            if st in ("failed", "cancelled"):
                raise QMPError("migration %s: %s" % (
                    st, m.get("error-desc", "no reason given by QEMU")))
            if time.monotonic() > deadline:
                raise QMPError("migration still %s after %.0fs" % (st, timeout))
            time.sleep(poll)


def _wait_file(path, timeout):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def save_cmd(sock, shell_cmd, keep_running=False, bandwidth=1 << 40,
             timeout=600.0):
    """Stop the VM behind QMP socket sock and migrate its state into the
    standard input of shell_cmd. Waits until the command has exited and
    checks its status. Resumes the VM afterwards if keep_running.
    Returns a dict: seconds (stop to cat exit), status, ram_total (guest
    RAM incl. ROMs) and ram_transferred (RAM bytes in the stream), as
    query-migrate counts them."""
    with QMP(sock) as q, tempfile.TemporaryDirectory(prefix="snapfs-qmp.") as td:
        rcfile = os.path.join(td, "rc")
        # QEMU runs the exec: command with /bin/sh -c. The rc file lives
        # outside the destination, so nothing extra lands in a snapfs mount.
        errfile = os.path.join(td, "err")
        wrapped = "{ %s; } 2> %s; echo $? > %s.tmp && mv %s.tmp %s" % (
            shell_cmd, shlex.quote(errfile), shlex.quote(rcfile),
            shlex.quote(rcfile), shlex.quote(rcfile))

        def cmd_error():
            try:
                with open(errfile) as f:
                    msg = f.read().strip()
            except OSError:
                msg = ""
            return (" (%s said: %s)" % (shell_cmd, msg)) if msg else ""
        was_running = q.cmd("query-status").get("running", False)
        t0 = time.monotonic()
        q.cmd("stop")
        try:
            q.cmd("migrate-set-parameters", {"max-bandwidth": bandwidth})
            q.cmd("migrate", uri="exec:" + wrapped)
            try:
                m = q.migration_wait(timeout)
            except QMPError as e:
                time.sleep(0.1)
                raise QMPError(str(e) + cmd_error())
            if not _wait_file(rcfile, timeout):
                raise QMPError("destination command did not exit within %.0fs: %s"
                               % (timeout, shell_cmd))
            with open(rcfile) as f:
                rc = f.read().strip()
            if rc != "0":
                raise QMPError("destination command failed with status %s: %s%s"
                               % (rc, shell_cmd, cmd_error()))
            seconds = time.monotonic() - t0
        finally:
            if keep_running and was_running:
                q.cmd("cont")
        return {"seconds": seconds, "status": m["status"],
                "ram_total": m.get("ram", {}).get("total", 0),
                "ram_transferred": m.get("ram", {}).get("transferred", 0)}


def save(sock, path, keep_running=False, **kw):
    """save_cmd with `cat > path`; also checks that path exists afterwards
    (in a FUSE mount it must be visible once cat has closed it)."""
    r = save_cmd(sock, "cat > %s" % shlex.quote(path), keep_running, **kw)
    if not _wait_file(path, 10):
        raise QMPError("%s does not exist after a successful save" % path)
    r["size"] = os.stat(path).st_size
    return r


def wait_incoming(sock, cont=True, timeout=600.0):
    """For a QEMU started with -incoming: wait until the incoming migration
    has completed, then (if cont) resume the guest. Returns seconds spent
    waiting (from connecting to completed)."""
    t0 = time.monotonic()
    with QMP(sock) as q:
        q.migration_wait(timeout)
        seconds = time.monotonic() - t0
        if cont:
            st = q.cmd("query-status")
            if not st.get("running"):
                q.cmd("cont")
    return seconds


def main(argv):
    if len(argv) < 3 or argv[1] in ("-h", "--help"):
        print("usage:\n" + __doc__.split("\nCLI")[1].split("\n\n")[0]
              .split("\n", 1)[1], file=sys.stderr)
        return 2
    sock, op, rest = argv[1], argv[2], argv[3:]
    try:
        if op == "cmd":
            with QMP(sock) as q:
                args = json.loads(rest[1]) if len(rest) > 1 else None
                print(json.dumps(q.cmd(rest[0], args), indent=1))
        elif op in ("save", "save-cmd"):
            keep = "--keep-running" in rest
            dest = [a for a in rest if not a.startswith("--")][0]
            r = (save if op == "save" else save_cmd)(sock, dest, keep)
            print(json.dumps(r))
        elif op == "wait-incoming":
            t = float(rest[rest.index("--timeout") + 1]) if "--timeout" in rest else 600
            print("%.3f" % wait_incoming(sock, "--cont" in rest, t))
        elif op == "wait-migration":
            t = float(rest[rest.index("--timeout") + 1]) if "--timeout" in rest else 600
            with QMP(sock) as q:
                print(json.dumps(q.migration_wait(t)))
        elif op == "hmp":
            with QMP(sock) as q:
                out = q.cmd("human-monitor-command", {"command-line": rest[0]})
                sys.stdout.write(out)
        elif op == "quit":
            with QMP(sock) as q:
                try:
                    q.cmd("quit")
                except QMPError:
                    pass  # QEMU may close the socket before answering
        else:
            print("qmp.py: unknown operation %r" % op, file=sys.stderr)
            return 2
    except (QMPError, TimeoutError, OSError, IndexError, ValueError) as e:
        print("qmp.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
