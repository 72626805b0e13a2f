#!/usr/bin/env python3
"""Slow HTTP clients, for test_033: each holds a connection open by sending a
request line and then one more header byte every --interval seconds, never
finishing the request.  When the server closes one, it records how long the
server let it live and opens another (after --reconnect seconds), so the load
stays on for --duration seconds.

  slowclients.py --port P --addresses 127.0.0.1,127.0.0.2 --per-address 8
                 --interval 2 --duration 10

Each address is a local source address (any 127.x.y.z works on Linux's
loopback).  Prints one JSON object on stdout: how many connections were
opened, how many the server closed, each closed one's lifetime ("holds",
seconds from connect to the close seen), and the ages of those still open at
the end ("open_ages")."""
import argparse
import errno
import json
import selectors
import socket
import sys
import time

REQUEST_LINE = b"GET /primary HTTP/1.1\r\nHost: slow\r\nX-Slow: "


class Slot:
    def __init__(self, src):
        self.src = src
        self.sock = None
        self.opened = 0.0
        self.next_byte = 0.0
        self.reopen_at = 0.0


def open_slot(sel, slot, port, now, interval, stats):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((slot.src, 0))
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
    except OSError as e:
        s.close()
        stats["connect_errors"] += 1
        stats["last_error"] = str(e)
        slot.reopen_at = now + 0.2
        return
    slot.sock = s
    slot.opened = now
    slot.next_byte = now            # the request line goes as soon as it is writable
    slot.sent_line = False
    stats["opened"] += 1
    sel.register(s, selectors.EVENT_READ, slot)


def closed(sel, slot, now, reconnect, stats):
    sel.unregister(slot.sock)
    slot.sock.close()
    slot.sock = None
    stats["holds"].append(round(now - slot.opened, 3))
    slot.reopen_at = now + reconnect


def send_due(sel, slot, now, interval, reconnect, stats):
    data = REQUEST_LINE if not slot.sent_line else b"a"
    try:
        slot.sock.send(data)
        slot.sent_line = True
        slot.next_byte = now + interval
    except BlockingIOError:
        slot.next_byte = now + 0.01          # not connected yet
    except OSError as e:
        if e.errno in (errno.ENOTCONN,):
            slot.next_byte = now + 0.01
        else:
            closed(sel, slot, now, reconnect, stats)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--addresses", required=True, help="comma-separated source addresses")
    ap.add_argument("--per-address", type=int, default=8)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--reconnect", type=float, default=0.2)
    a = ap.parse_args()
    sel = selectors.DefaultSelector()
    stats = {"opened": 0, "holds": [], "connect_errors": 0, "last_error": ""}
    slots = [Slot(src) for src in a.addresses.split(",") for _ in range(a.per_address)]
    start = time.monotonic()
    while True:
        now = time.monotonic()
        if now - start >= a.duration:
            break
        for slot in slots:
            if slot.sock is None and now >= slot.reopen_at:
                open_slot(sel, slot, a.port, now, a.interval, stats)
            elif slot.sock is not None and now >= slot.next_byte:
                send_due(sel, slot, now, a.interval, a.reconnect, stats)
        for key, _ in sel.select(timeout=0.02):
            slot = key.data
            try:
                data = slot.sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:                    # the server closed it (or reset it)
                closed(sel, slot, time.monotonic(), a.reconnect, stats)
            else:
                stats.setdefault("answers", 0)
                stats["answers"] += 1       # an error answer; the close follows
    now = time.monotonic()
    stats["open_ages"] = [round(now - s.opened, 3) for s in slots if s.sock is not None]
    stats["closed"] = len(stats["holds"])
    json.dump(stats, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
