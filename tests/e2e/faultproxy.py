#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""faultproxy: a TCP forwarder between snapfs and the test's S3 server
that misbehaves on demand, for the remote fault tests.

    faultproxy.py LISTEN_PORT UPSTREAM_PORT CONTROL_FILE

Bytes are forwarded unchanged (the Host header the client signed stays as
it is, so the server's signature check still applies). Before each new
client connection and each response chunk, the proxy reads CONTROL_FILE:
  pass           forward as is
  slow SECONDS   hold every chunk of every response that long (a stall;
                 per chunk, not per connection, because the client keeps
                 connections alive and a later response on one would
                 otherwise pass at full speed)
  cut BYTES      forward BYTES bytes of each response, then close both
                 sides (a truncated response)
  refuse         close new connections at once
A test tool under tests/, not part of snapfs.
"""
import socket
import sys
import threading
import time

LISTEN, UPSTREAM, CONTROL = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]


def mode():
    try:
        with open(CONTROL) as f:
            w = f.read().split()
    except OSError:
        return ("pass", 0)
    if not w:
        return ("pass", 0)
    return (w[0], float(w[1]) if len(w) > 1 else 0)


def pipe_up(c, u):
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            u.sendall(b)
    except OSError:
        pass
    finally:
        try:
            u.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def pipe_down(u, c):
    sent = 0
    try:
        while True:
            b = u.recv(65536)
            if not b:
                break
            m, v = mode()
            if m == "slow":
                time.sleep(v)
            if m == "cut":
                room = int(v) - sent
                if room <= 0:
                    break
                b = b[:room]
            c.sendall(b)
            sent += len(b)
    except OSError:
        pass
    finally:
        for s in (c, u):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def serve(c):
    if mode()[0] == "refuse":
        c.close()
        return
    try:
        u = socket.create_connection(("127.0.0.1", UPSTREAM))
    except OSError:
        c.close()
        return
    threading.Thread(target=pipe_up, args=(c, u), daemon=True).start()
    pipe_down(u, c)


def main():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", LISTEN))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


if __name__ == "__main__":
    main()
