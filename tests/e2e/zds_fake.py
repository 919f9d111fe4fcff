"""A fake ztunnel for testing `ambient cni agent`: the client side of ZDS (Istio's zds.proto).

It connects to the agent's SOCK_SEQPACKET socket, says hello (ZdsHello{version: V1} = 08 01),
then decodes every WorkloadRequest, records it (with the inode of the netns fd that came in
SCM_RIGHTS) and acks it: `0a 00` for success, `0a LEN 0a LEN ERROR` for a nack.
"""
import array
import os
import socket
import threading
import time

from zds_agent import _field, _read_varint as _varint, _str

TYPES = {1: "Add", 2: "Del", 3: "SnapshotSent", 5: "Keep"}


def _fields(b):
    """Yields (field, wire type, value) of a protobuf message (varint and bytes only)."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 2:
            n, i = _varint(b, i)
            v = bytes(b[i:i + n])
            i += n
        else:
            raise ValueError(f"unexpected wire type {wt}")
        yield f, wt, v


def decode_request(b):
    """WorkloadRequest -> dict(type, uid, name, namespace, serviceAccount)."""
    out = {}
    for f, _, v in _fields(b):
        out["type"] = TYPES.get(f, f"field{f}")
        for g, _, w in _fields(v):
            if f in (1, 5) and g == 1:
                out["uid"] = w.decode()
            elif f == 2 and g == 2:
                out["uid"] = w.decode()
            elif f == 1 and g == 2:
                for h, _, x in _fields(w):
                    key = {1: "name", 2: "namespace", 3: "serviceAccount"}.get(h)
                    if key:
                        out[key] = x.decode()
    return out


def encode_ack(error=""):
    """WorkloadResponse{ack: Ack{error}} (0a 00 for success)."""
    return _field(1, _str(1, error))


class FakeZtunnel:
    """Connects at start(); `nack` maps a uid (or "*") to an error text to answer Adds with."""

    def __init__(self, path, nack=None, hang=False):
        self.path = path
        self.nack = dict(nack or {})
        self.hang = hang  # never ack (to test the agent's timeout)
        self.events = []
        self.lock = threading.Lock()
        self.sock = None
        self.thread = None
        self.closed = threading.Event()

    def start(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                s.connect(self.path)
                break
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        s.send(b"\x08\x01")
        self.sock = s
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        fdsize = array.array("i").itemsize
        while True:
            try:
                msg, anc, flags, _ = self.sock.recvmsg(1024, socket.CMSG_SPACE(4 * fdsize))
            except OSError:
                break
            if not msg:
                break
            fds = array.array("i")
            for level, typ, data in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    fds.frombytes(data[:len(data) - (len(data) % fdsize)])
            ev = decode_request(msg)
            ev["nfds"] = len(fds)
            ev["inode"] = os.fstat(fds[0]).st_ino if fds else None
            for fd in fds:
                os.close(fd)
            with self.lock:
                self.events.append(ev)
            if self.hang:
                continue
            err = ""
            if ev.get("type") == "Add":
                err = self.nack.get(ev.get("uid"), self.nack.get("*", ""))
            try:
                self.sock.send(encode_ack(err))
            except OSError:
                break
        self.closed.set()

    def got(self, type_=None, uid=None):
        with self.lock:
            return [e for e in self.events
                    if (type_ is None or e.get("type") == type_)
                    and (uid is None or e.get("uid") == uid)]

    def types(self):
        with self.lock:
            return [e.get("type") for e in self.events]

    def close(self):
        if self.sock:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
        if self.thread:
            self.thread.join(5)
