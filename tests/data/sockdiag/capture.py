#!/usr/bin/env python3
"""Re-creates the captured NETLINK_SOCK_DIAG fixtures in this directory (see README.md).

Run as root from the repository root:
    python3 tests/data/sockdiag/capture.py BUILD_DIR/tests/tools/capture_sock_diag tests/data/sockdiag
    python3 tests/data/sockdiag/capture.py --stale BUILD_DIR/tests/tools/capture_sock_diag tests/data/sockdiag

The second form captures only the stale-connection case (unix_stale.bin and its
facts_stale.txt / capture_stale.txt / ss_stale.txt): ztunnel's end gone while istio-cni
still holds the accepted socket.

It makes a network namespace `mph-sockdiag-cap`, re-runs itself inside it (--inside),
builds the sockets listed in README.md, records what user space knows about them
(facts.txt: inodes from fstat, the socket file's stat) and runs capture_sock_diag, then
deletes the namespace and the temporary directory.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile

NS = "mph-sockdiag-cap"


def sh(*args):
    subprocess.run(args, check=True)


def inode(s):
    return os.fstat(s.fileno()).st_ino


def inside(capture_bin, outdir):
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer")
    sh("ip", "addr", "add", "198.51.100.1/24", "dev", "eth0")
    sh("ip", "link", "set", "eth0", "up")
    # flannel's device, with the runbook's port: its UDP socket is the kernel's (inode 0).
    sh("ip", "link", "add", "flannel.1", "type", "vxlan", "id", "1", "dstport", "4789",
       "local", "198.51.100.1", "dev", "eth0", "nolearning")
    sh("ip", "addr", "add", "10.244.1.0/32", "dev", "flannel.1")
    sh("ip", "link", "set", "flannel.1", "up")

    facts = {}
    keep = []

    # UDP: a bound v4 socket, a connected v4 socket, a v6-only wildcard socket.
    u4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u4.bind(("198.51.100.1", 9473))
    u4c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u4c.bind(("127.0.0.1", 40000))
    u4c.connect(("127.0.0.1", 9473))
    u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    u6.bind(("::", 9473))
    keep += [u4, u4c, u6]
    facts.update(udp4_bound_inode=inode(u4), udp4_connected_inode=inode(u4c), udp6_inode=inode(u6))

    # TCP listeners on ztunnel's in-pod ports.
    t1 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t1.bind(("0.0.0.0", 15001))
    t2 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t2.bind(("127.0.0.1", 15006))
    t3 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    t3.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    t3.bind(("::", 15008))
    for t in (t1, t2, t3):
        t.listen(16)
    keep += [t1, t2, t3]
    facts.update(tcp15001_inode=inode(t1), tcp15006_inode=inode(t2), tcp15008_inode=inode(t3))

    # istio-cni's SOCK_SEQPACKET listener with ztunnel connected (accepted), and a second
    # client still in the accept queue (UNIX_DIAG_ICONS).
    tmp = tempfile.mkdtemp(prefix="mph-sockdiag-")
    try:
        path = os.path.join(tmp, "ztunnel.sock")
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        lst.bind(path)
        lst.listen(8)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        client.connect(path)
        accepted, _ = lst.accept()
        pending = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pending.connect(path)
        # A SOCK_STREAM listener at another path, and an abstract datagram socket.
        other_path = os.path.join(tmp, "stream.sock")
        stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stream.bind(other_path)
        stream.listen(4)
        abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        abstract.bind(b"\0mph-sockdiag-abstract")
        keep += [lst, client, accepted, pending, stream, abstract]
        st = os.stat(path)
        facts.update(
            seqpacket_path=path, seqpacket_file_inode=st.st_ino, seqpacket_file_dev=st.st_dev,
            listener_inode=inode(lst), client_inode=inode(client), accepted_inode=inode(accepted),
            pending_client_inode=inode(pending), stream_path=other_path, stream_listener_inode=inode(stream),
            stream_file_inode=os.stat(other_path).st_ino, abstract_inode=inode(abstract))

        with open(os.path.join(outdir, "facts.txt"), "w") as f:
            for k, v in facts.items():
                f.write(f"{k}={v}\n")
        with open(os.path.join(outdir, "capture.txt"), "w") as f:
            subprocess.run([capture_bin, outdir], check=True, stdout=f)
        with open(os.path.join(outdir, "ss.txt"), "w") as f:
            subprocess.run(["ss", "-uaneH"], check=True, stdout=f, stderr=subprocess.DEVNULL)
            subprocess.run(["ss", "-tlneH"], check=True, stdout=f, stderr=subprocess.DEVNULL)
            subprocess.run(["ss", "-xaneH"], check=True, stdout=f, stderr=subprocess.DEVNULL)
    finally:
        for s in keep:
            s.close()
        shutil.rmtree(tmp)


def inside_stale(capture_bin, outdir):
    """istio-cni's listener with three accepted connections: ztunnel alive; ztunnel's
    process dead (its socket released: the accepted end stays ESTABLISHED with peer inode
    0 and both shutdown bits, until istio-cni closes it); ztunnel half-closed
    (shutdown(SHUT_WR): the accepted end has RCV_SHUTDOWN, the peer inode is kept)."""
    tmp = tempfile.mkdtemp(prefix="mph-sockdiag-")
    keep = []
    try:
        path = os.path.join(tmp, "ztunnel.sock")
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        lst.bind(path)
        lst.listen(8)
        keep.append(lst)
        alive = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        alive.connect(path)
        alive_acc, _ = lst.accept()
        keep += [alive, alive_acc]

        # A ztunnel process that connects, is accepted, then dies.
        up_r, up_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            c.connect(path)
            os.write(up_w, str(inode(c)).encode())
            os.read(go_r, 1)
            os._exit(0)
        gone_client = int(os.read(up_r, 64).decode())
        gone_acc, _ = lst.accept()
        keep.append(gone_acc)
        os.write(go_w, b"x")
        os.waitpid(pid, 0)
        for fd in (up_r, up_w, go_r, go_w):
            os.close(fd)

        half = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        half.connect(path)
        half_acc, _ = lst.accept()
        half.shutdown(socket.SHUT_WR)
        keep += [half, half_acc]

        st = os.stat(path)
        facts = dict(
            seqpacket_path=path, seqpacket_file_inode=st.st_ino, seqpacket_file_dev=st.st_dev,
            listener_inode=inode(lst), alive_client_inode=inode(alive), alive_accepted_inode=inode(alive_acc),
            gone_client_inode=gone_client, gone_accepted_inode=inode(gone_acc),
            halfclosed_client_inode=inode(half), halfclosed_accepted_inode=inode(half_acc))
        with open(os.path.join(outdir, "facts_stale.txt"), "w") as f:
            for k, v in facts.items():
                f.write(f"{k}={v}\n")
        with open(os.path.join(outdir, "capture_stale.txt"), "w") as f:
            subprocess.run([capture_bin, outdir, "--unix-only", "unix_stale"], check=True, stdout=f)
        with open(os.path.join(outdir, "ss_stale.txt"), "w") as f:
            subprocess.run(["ss", "-xaneH"], check=True, stdout=f, stderr=subprocess.DEVNULL)
    finally:
        for s in keep:
            s.close()
        shutil.rmtree(tmp)


def main():
    if len(sys.argv) == 4 and sys.argv[1] in ("--inside", "--inside-stale"):
        fn = inside if sys.argv[1] == "--inside" else inside_stale
        fn(os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3]))
        return
    stale = len(sys.argv) == 4 and sys.argv[1] == "--stale"
    if stale:
        del sys.argv[1]
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    capture_bin, outdir = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    sh("ip", "netns", "add", NS)
    try:
        sh("ip", "netns", "exec", NS, sys.executable, os.path.abspath(__file__),
           "--inside-stale" if stale else "--inside", capture_bin, outdir)
    finally:
        sh("ip", "netns", "del", NS)


if __name__ == "__main__":
    main()
