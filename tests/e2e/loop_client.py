"""A client that keeps making short HTTP/1.0 requests, each on a new TCP connection, until a stop
file appears, and records every outcome; the tests read the record to prove that enrollment,
restarts or upgrades did (or did not) fail a request.

usage: loop_client.py HOST PORT PATH OUT STOPFILE [--socks5 PORT] [--interval MS]
OUT gets one line per request: "<unix time> ok <status>" or "<unix time> fail <error>"."""
import socket
import struct
import sys
import time


def socks5_connect(sport, host, port, timeout):
    s = socket.create_connection(("127.0.0.1", sport), timeout=timeout)
    s.sendall(b"\x05\x01\x00")
    if s.recv(2) != b"\x05\x00":
        raise OSError("SOCKS5: method refused")
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(host) + struct.pack("!H", port))
    rep = s.recv(10)
    if len(rep) < 2 or rep[1] != 0:
        raise OSError(f"SOCKS5: reply {rep!r}")
    return s


def one(host, port, path, sport, timeout=5):
    if sport:
        s = socks5_connect(sport, host, port, timeout)
    else:
        s = socket.create_connection((host, port), timeout=timeout)
    with s:
        s.settimeout(timeout)
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    line = data.split(b"\r\n", 1)[0].decode(errors="replace")
    parts = line.split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise OSError(f"bad response {data[:80]!r}")
    return parts[1]


def main():
    host, port, path, out, stop = sys.argv[1:6]
    rest = sys.argv[6:]
    sport = int(rest[rest.index("--socks5") + 1]) if "--socks5" in rest else 0
    interval = int(rest[rest.index("--interval") + 1]) if "--interval" in rest else 20
    import os
    with open(out, "a", buffering=1) as f:
        while not os.path.exists(stop):
            t = time.time()
            try:
                st = one(host, int(port), path, sport)
                f.write(f"{t:.3f} ok {st}\n")
            except Exception as e:  # every failure is the record's point
                f.write(f"{t:.3f} fail {type(e).__name__}: {e}\n")
            time.sleep(interval / 1000)


if __name__ == "__main__":
    main()
