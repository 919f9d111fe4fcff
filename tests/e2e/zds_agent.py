"""A scripted ZDS server (the node agent's side of Istio's enrollment protocol) for driving a real
shared-mode ztunnel in tests: hand-encoded protobuf, SOCK_SEQPACKET, netns fds in SCM_RIGHTS.
Independent of our C codec on purpose, so the two check each other."""
import array
import os
import socket


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num, payload):
    """A length-delimited field (wire type 2)."""
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _str(num, s):
    return _field(num, s.encode()) if s else b""


def add(uid, name="", namespace="", sa=""):
    info = _str(1, name) + _str(2, namespace) + _str(3, sa)
    return _field(1, _str(1, uid) + (_field(2, info) if info else b""))


def keep(uid):
    return _field(5, _str(1, uid))


def delete(uid):
    return _field(2, _str(2, uid))  # DelWorkload.uid is field 2


def snapshot_sent():
    return _field(3, b"")


def _read_varint(b, i):
    n = shift = 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return n, i


def decode_ack(b):
    """WorkloadResponse{ack=1{error=1}} -> error text ('' = success)."""
    assert b[:1] == b"\x0a", b
    n, i = _read_varint(b, 1)
    ack = b[i:i + n]
    if not ack:
        return ""
    assert ack[:1] == b"\x0a", ack
    n, i = _read_varint(ack, 1)
    return ack[i:i + n].decode()


class Agent:
    """Listens on path; accept() takes one ztunnel connection and checks its hello."""

    def __init__(self, path):
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self.ls = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.ls.bind(path)
        self.ls.listen(4)
        self.conn = None

    def accept(self, timeout=15):
        self.ls.settimeout(timeout)
        c, _ = self.ls.accept()
        c.settimeout(timeout)
        hello = c.recv(1024)
        assert hello == b"\x08\x01", hello  # ZdsHello{version: V1}
        if self.conn:
            self.conn.close()
        self.conn = c
        return c

    def send(self, msg, fd=None, timeout=15):
        """Sends one request (with an fd in SCM_RIGHTS if given) and returns the ack's error."""
        anc = []
        if fd is not None:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
        self.conn.settimeout(timeout)
        self.conn.sendmsg([msg], anc)
        return decode_ack(self.conn.recv(1024))

    def add_netns(self, uid, ns_name, name="", namespace="", sa=""):
        fd = os.open(f"/var/run/netns/{ns_name}", os.O_RDONLY)
        try:
            return self.send(add(uid, name, namespace, sa), fd)
        finally:
            os.close(fd)

    def close(self):
        if self.conn:
            self.conn.close()
        self.ls.close()
        if os.path.exists(self.path):
            os.unlink(self.path)
