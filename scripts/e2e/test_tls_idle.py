"""The panel's TLS costs nothing while a client is slow to finish its
handshake: a real `cloudbios daemon` with `tls: self-signed`, clients that
send their ClientHello, read the server's answer and then say nothing more
(the server waits for their Finished), and the daemon's CPU time over two
seconds of that stays near zero. An event loop that kept such connections
in its ready list would spin a core per thread for as long as they wait."""
import os
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from cbdaemon import Daemon  # noqa: E402


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def stalled_handshake(port):
    """A TCP connection whose TLS handshake is left half done by the client."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    s.sendall(outgoing.read())
    assert s.recv(65536), "the server did not answer the ClientHello"
    return s


def test_a_stalled_handshake_costs_no_cpu():
    d = Daemon(tls=True)
    try:
        proc = d.start()
        conns = [stalled_handshake(d.port) for _ in range(4)]
        time.sleep(0.3)
        c0 = cpu_seconds(proc.pid)
        time.sleep(2)
        used = cpu_seconds(proc.pid) - c0
        assert used < 0.25, f"the daemon used {used:.2f} s of CPU in 2 s while 4 handshakes waited for their clients"
        # and it still answers, stalled clients or not
        assert d.request("GET", "/api/v1/health", auth=False)[0] == 200
        for s in conns:
            s.close()
    finally:
        d.teardown()
