"""max_connections_per_ip counts an IPv6 client by its /64 (issue
"Hardening, round 2", item 7): a host owns a whole /64 and may take any
address in it, so counting each address alone let one /64 hold every
slot.  An IPv4-mapped address (a dual-stack listener) counts as its IPv4
address.

Loopback has only ::1, so the test runs posternd and its clients in a
network namespace of their own (unshare -n, root only) with addresses of
2001:db8::/32 (RFC 3849) on its loopback.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
NET_A = "2001:db8:1:1::"      # one /64
NET_B = "2001:db8:1:2::"      # its neighbour
SERVER = "2001:db8:1:1::1"


def inner(tmp):
    """Runs inside the namespace: set up, connect, report as JSON."""
    sys.path.insert(0, HERE)
    from posternd_util import Posternd

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for a in (SERVER, NET_A + "10", NET_A + "11", NET_A + "12",
              NET_A + "ffff:1", NET_B + "10"):
        subprocess.run(["ip", "-6", "addr", "add", a + "/64", "dev", "lo",
                        "nodad"], check=True)

    class P(Posternd):
        def write_config(self):
            super().write_config()
            text = open(self.conf).read().replace("address = 127.0.0.1:",
                                                  "address = [::]:")
            open(self.conf, "w").write(text)

    p = P(tmp, extra_global="max_connections_per_ip = 2\n",
          listeners={"plain": "tls = none\nauth = required\n"
                              "auth_before_tls = all\n"}).start()
    port = p.ports["plain"]
    held, out = [], {}

    def greet(src, dst, fam=socket.AF_INET6):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.bind((src, 0))
        s.settimeout(10)
        s.connect((dst, port))
        line = b""
        while not line.endswith(b"\r\n"):
            chunk = s.recv(1024)
            if not chunk:
                break
            line += chunk
        held.append(s)
        return line.decode().split(" ")[0]

    try:
        out["a1"] = greet(NET_A + "10", SERVER)
        out["a2"] = greet(NET_A + "11", SERVER)
        out["a3"] = greet(NET_A + "12", SERVER)      # third in the /64
        out["b1"] = greet(NET_B + "10", SERVER)      # another /64
        # IPv4 through the dual-stack listener (::ffff:127.0.0.x).
        out["v4a"] = greet("127.0.0.1", "127.0.0.1", socket.AF_INET)
        out["v4b"] = greet("127.0.0.1", "127.0.0.1", socket.AF_INET)
        out["v4c"] = greet("127.0.0.1", "127.0.0.1", socket.AF_INET)
        out["v4d"] = greet("127.0.0.2", "127.0.0.1", socket.AF_INET)
        # A slot freed in the /64 is a slot for any address of it.
        held[0].close()
        time.sleep(0.5)
        out["a4"] = greet(NET_A + "ffff:1", SERVER)
        out["peers"] = [e.get("peer") for e in p.events("connect")]
    finally:
        for s in held:
            s.close()
        out["rc"] = p.stop()
    print(json.dumps(out))


@pytest.mark.skipif(os.geteuid() != 0,
                    reason="needs root (a network namespace)")
def test_ipv6_counted_by_64(tmp_path):
    # unshare (util-linux) and ip (iproute2): tools/deps.sh installs them.
    for tool in ("unshare", "ip"):
        assert shutil.which(tool), f"{tool} missing: run tools/deps.sh test"
    r = subprocess.run(["unshare", "-n", sys.executable, __file__,
                        str(tmp_path)], capture_output=True, text=True,
                       timeout=120, env=os.environ)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["rc"] == 0, out
    assert (out["a1"], out["a2"], out["a3"]) == ("220", "220", "421"), out
    assert out["b1"] == "220", out
    assert (out["v4a"], out["v4b"], out["v4c"], out["v4d"]) == \
        ("220", "220", "421", "220"), out
    assert out["a4"] == "220", out
    assert "2001:db8:1:1::12" in out["peers"], out


if __name__ == "__main__":
    inner(sys.argv[1])
