#!/usr/bin/env python3
"""Hostile clients for a meshprobe HTTP port (/metrics), for bench/hostile_input.sh.

  metrics  --port P --requests R                      R GET /metrics, each on a fresh connection
  idle     --port P --conns N --hold S --requests R   N connections that never send a byte, held
                                                      S seconds; R /metrics spread over the hold
  slow     --port P --conns N --hold S --requests R   N slow-header clients (one header byte a
                                                      second, reconnecting within a second of
                                                      being closed) for S
                                                      seconds; R /metrics spread over the hold
  garbage  --port P --conns N                         N connections of random bytes, N of an
                                                      HTTP/2 preface then random bytes (for the
                                                      gRPC port): what each saw

Prints one "key=value ..." line per result. Everything goes to --host (default 127.0.0.1).
"""
import argparse
import os
import selectors
import socket
import sys
import threading
import time


def pct(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))]


def get_metrics(host, port, timeout=5.0):
    """One GET /metrics on a fresh connection: (ms, None) or (None, reason)."""
    t0 = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except socket.timeout:
        return None, "timeout"
    except ConnectionResetError:
        return None, "reset"
    except OSError as e:
        return None, "error_" + (e.strerror or str(e)).replace(" ", "_")
    if not data:
        return None, "closed_without_response"
    if not data.startswith(b"HTTP/1.1 200"):
        return None, "status_" + data.split(b"\r\n", 1)[0].decode(errors="replace").replace(" ", "_")
    return (time.monotonic() - t0) * 1000.0, None


class Prober(threading.Thread):
    """R /metrics requests spread evenly over `span` seconds."""

    def __init__(self, host, port, requests, span):
        super().__init__(daemon=True)
        self.host, self.port, self.requests, self.span = host, port, requests, span
        self.ms, self.failures, self.first_ok_s = [], {}, None
        self.start_time = time.monotonic()

    def run(self):
        for i in range(self.requests):
            due = self.start_time + self.span * i / self.requests
            time.sleep(max(0.0, due - time.monotonic()))  # pacing, not synchronisation
            ms, why = get_metrics(self.host, self.port)
            if ms is None:
                self.failures[why] = self.failures.get(why, 0) + 1
            else:
                self.ms.append(ms)
                if self.first_ok_s is None:
                    self.first_ok_s = time.monotonic() - self.start_time

    def line(self, what):
        fails = " ".join(f"fail_{k}={v}" for k, v in sorted(self.failures.items()))
        first = "none" if self.first_ok_s is None else f"{self.first_ok_s:.1f}"
        return (f"{what} requests={self.requests} answered={len(self.ms)} p50_ms={pct(self.ms, 0.5):.3f} "
                f"p99_ms={pct(self.ms, 0.99):.3f} first_answer_s={first} {fails}").rstrip()


def seen(sock):
    """What a readable held socket got: 'eof', 'reset' or the HTTP status line."""
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        return "reset"
    except BlockingIOError:
        return None
    except OSError:
        return "error"
    if not data:
        return "eof"
    return "http_" + data.split(b"\r\n", 1)[0].decode(errors="replace").replace(" ", "_")


def hold(args, slow):
    sel = selectors.DefaultSelector()
    start = time.monotonic()
    end = start + args.hold
    conns = {}  # fd -> dict(sock, opened, connected, sent)
    outcomes = {}
    lifetimes = []
    opened = connect_failures = reconnects = 0

    def open_one():
        nonlocal opened, connect_failures
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((args.host, args.port))
        if err not in (0, 115):  # EINPROGRESS
            connect_failures += 1
            s.close()
            return
        opened += 1
        conns[s.fileno()] = {"sock": s, "opened": time.monotonic(), "connected": False, "sent": 0}
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)

    for _ in range(args.conns):
        open_one()
    open_s = time.monotonic() - start
    for c in conns.values():  # lifetimes count from the moment all of them were open
        c["opened"] = start + open_s
    prober = Prober(args.host, args.port, args.requests, args.hold * 0.9)
    prober.start()
    prober.start_time = time.monotonic()
    slow_req = b"GET /metrics HTTP/1.1\r\nHost: bench\r\nX-Slow: " + b"a" * 4096
    next_tick = time.monotonic() + 1.0
    while time.monotonic() < end:
        for key, ev in sel.select(timeout=0.2):
            c = conns[key.fd]
            if ev & selectors.EVENT_WRITE and not c["connected"]:
                err = c["sock"].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    outcomes["connect_error"] = outcomes.get("connect_error", 0) + 1
                    sel.unregister(c["sock"])
                    c["sock"].close()
                    del conns[key.fd]
                    reconnects += slow
                    continue
                c["connected"] = True
                sel.modify(c["sock"], selectors.EVENT_READ)
            if ev & selectors.EVENT_READ:
                what = seen(c["sock"])
                if what is None:
                    continue
                outcomes[what] = outcomes.get(what, 0) + 1
                lifetimes.append(time.monotonic() - c["opened"])
                sel.unregister(c["sock"])
                c["sock"].close()
                del conns[key.fd]
                reconnects += slow  # a slow-header client comes back on the next tick
        if slow and time.monotonic() >= next_tick:
            next_tick += 1.0
            for _ in range(reconnects):
                open_one()
            reconnects = 0
            for c in list(conns.values()):
                if c["connected"] and c["sent"] < len(slow_req):
                    try:
                        c["sock"].send(slow_req[c["sent"]:c["sent"] + 1])
                        c["sent"] += 1
                    except OSError:
                        pass  # seen as closed on the next read
    prober.join(timeout=10)
    still_open = len(conns)
    for c in conns.values():
        c["sock"].close()
    long_lived = [t for t in lifetimes if t >= 1.0]
    kinds = " ".join(f"closed_{k}={v}" for k, v in sorted(outcomes.items()))
    mode = "slow" if slow else "idle"
    print(f"{mode}_conns conns={args.conns} hold_s={args.hold} opened={opened} connect_failures={connect_failures} "
          f"open_s={open_s:.2f} closed_by_server={len(lifetimes)} closed_within_1s={len(lifetimes) - len(long_lived)} "
          f"closed_after_1s={len(long_lived)} lifetime_after_1s_p50_s={pct(long_lived, 0.5):.1f} "
          f"still_open_at_end={still_open} {kinds}".rstrip())
    print(prober.line(f"{mode}_metrics"))
    sys.stdout.flush()


def garbage(args):
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    results = {}
    for kind in ("random", "preface_then_random"):
        for _ in range(args.conns):
            payload = os.urandom(64 * 1024)
            if kind != "random":
                payload = preface + payload
            t0 = time.monotonic()
            what = "no_close_within_5s"
            try:
                with socket.create_connection((args.host, args.port), timeout=5) as s:
                    try:
                        s.sendall(payload)
                    except OSError:
                        pass  # the server may close while we still write
                    data = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            what = "eof_after_goaway" if b"\x07" in data[:64] and data else "eof"
                            break
                        data += chunk
            except socket.timeout:
                pass
            except ConnectionResetError:
                what = "reset"
            ms = (time.monotonic() - t0) * 1000
            r = results.setdefault(kind, {"ms": [], "seen": {}})
            r["ms"].append(ms)
            r["seen"][what] = r["seen"].get(what, 0) + 1
    for kind, r in results.items():
        seen_s = " ".join(f"{k}={v}" for k, v in sorted(r["seen"].items()))
        print(f"garbage kind={kind} conns={args.conns} close_p50_ms={pct(r['ms'], 0.5):.1f} "
              f"close_p99_ms={pct(r['ms'], 0.99):.1f} {seen_s}")
    sys.stdout.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["metrics", "idle", "slow", "garbage"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--hold", type=float, default=15.0)
    p.add_argument("--requests", type=int, default=50)
    args = p.parse_args()
    if args.mode == "metrics":
        pr = Prober(args.host, args.port, args.requests, 0)
        pr.run()
        print(pr.line("baseline_metrics"))
    elif args.mode == "garbage":
        garbage(args)
    else:
        hold(args, slow=args.mode == "slow")


if __name__ == "__main__":
    main()
