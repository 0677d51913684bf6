#!/usr/bin/env python3
"""The overlay's control plane at scale, by simulation: a real etcd, a few real vswitch daemons
(hosts with an overlay network, no containers needed) and many simulated hosts that write what
a host publishes (host record, membership, endpoints, address reservations, all under a lease)
straight into etcd. Measures, per new endpoint on a simulated host, the time until every real
daemon has its MAC pinned (p50, p99; goal p99 <= 1 s); etcd's CPU and database size; each
daemon's memory; and how long until a failed host (its lease revoked) is gone from every
daemon. Run as root from the repository root:

    python3 bench/overlay_scale.py [--hosts 100] [--endpoints 50] [--daemons 3] [--samples 50]

Everything runs in namespaces this script creates and removes (also on failure); etcd and the
daemons are ended by PID; no traffic is sent.
"""

import argparse
import base64
import ctypes
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

PREFIX = f"vsos{os.getpid()}"
ETCD = "10.206.0.100:2379"
NET = "ov"


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def b64(text):
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def etcd(path, body):
    request = urllib.request.Request(f"http://{ETCD}{path}", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def get_json(sock, path):
    conn = UnixHTTP(sock)
    conn.request("GET", path)
    data = conn.getresponse().read()
    conn.close()
    return json.loads(data)


def mac_of(host, endpoint):
    return "02:%02x:%02x:%02x:%02x:%02x" % (0x50, host >> 8, host & 0xff, endpoint >> 8, endpoint & 0xff)


def ip_of(host, endpoint):
    n = host * 64 + endpoint + 10
    return f"10.250.{n >> 8}.{n & 0xff}"


def publish_endpoint(host, endpoint, lease):
    name = f"sim{host}"
    record = {"host": name, "name": f"e{host}x{endpoint}", "mac": mac_of(host, endpoint),
              "addresses": [f"{ip_of(host, endpoint)}/16"]}
    etcd("/v3/kv/put", {"key": b64(f"/vswitch/networks/{NET}/endpoints/{name}/{record['name']}"),
                        "value": b64(json.dumps(record)), "lease": lease})
    etcd("/v3/kv/put", {"key": b64(f"/vswitch/networks/{NET}/addresses/{ip_of(host, endpoint)}"),
                        "value": b64(f"{name}/{record['name']}"), "lease": lease})


def simulate_host(host, endpoints):
    lease = etcd("/v3/lease/grant", {"TTL": 600})["ID"]
    name = f"sim{host}"
    underlay = f"10.207.{host >> 8}.{host & 0xff}:4789"
    etcd("/v3/kv/put", {"key": b64(f"/vswitch/hosts/{name}"), "value": b64(json.dumps({"underlay": underlay})),
                        "lease": lease})
    etcd("/v3/kv/put", {"key": b64(f"/vswitch/networks/{NET}/hosts/{name}"), "value": "", "lease": lease})
    for e in range(endpoints):
        publish_endpoint(host, e, lease)
    return lease


def pinned(sock):
    return {e["mac"] for e in get_json(sock, f"/v1/networks/{NET}/fdb") if e["kind"] == "static"}


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(check, limit):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if check():
            return time.monotonic() - start
        time.sleep(0.005)
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--endpoints", type=int, default=50)
    parser.add_argument("--daemons", type=int, default=3)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--json", default="bench/overlay_scale.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark creates network namespaces")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "vswitch"], check=True)
    binary = os.path.abspath("target/release/vswitch")
    work = tempfile.mkdtemp(prefix="vsos")
    namespaces, processes = [], []

    def netns(name):
        full = f"{PREFIX}{name}"
        sh("ip", "netns", "add", full)
        sh("ip", "-n", full, "link", "set", "lo", "up")
        namespaces.append(full)
        return full

    try:
        underlay = netns("u")
        sh("ip", "-n", underlay, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", underlay, "addr", "add", "10.206.0.100/16", "dev", "br0")
        sh("ip", "-n", underlay, "link", "set", "br0", "up")
        etcd_proc = subprocess.Popen(
            ["ip", "netns", "exec", underlay, "etcd", "--data-dir", os.path.join(work, "etcd"),
             "--listen-client-urls", f"http://{ETCD}", "--advertise-client-urls", f"http://{ETCD}",
             "--quota-backend-bytes", str(2 << 30)],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "etcd.log"), "w"))
        processes.append(etcd_proc)
        # The bench itself talks to etcd from the underlay namespace's side: through a veth leg.
        sh("ip", "link", "add", f"{PREFIX}b", "type", "veth", "peer", "name", "b0", "netns", underlay)
        sh("ip", "-n", underlay, "link", "set", "b0", "master", "br0", "up")
        bench_ns = netns("b")
        sh("ip", "link", "set", f"{PREFIX}b", "netns", bench_ns)
        sh("ip", "-n", bench_ns, "addr", "add", "10.206.0.200/16", "dev", f"{PREFIX}b")
        sh("ip", "-n", bench_ns, "link", "set", f"{PREFIX}b", "up")
        # This script's own etcd calls run inside the bench namespace.
        fd = os.open(f"/run/netns/{bench_ns}", os.O_RDONLY)
        if ctypes.CDLL(None, use_errno=True).setns(fd, 0) != 0:  # the namespace's own type
            sys.exit(f"setns: {os.strerror(ctypes.get_errno())}")
        os.close(fd)
        for _ in range(200):
            try:
                etcd("/v3/kv/range", {"key": b64("/")})
                break
            except OSError:
                time.sleep(0.05)
        socks = []
        for d in range(1, args.daemons + 1):
            host = netns(f"h{d}")
            sh("ip", "link", "add", "u0", "netns", host, "type", "veth", "peer", "name", f"h{d}", "netns", underlay)
            sh("ip", "-n", underlay, "link", "set", f"h{d}", "master", "br0", "up")
            sh("ip", "-n", host, "addr", "add", f"10.206.1.{d}/16", "dev", "u0")
            sh("ip", "-n", host, "link", "set", "u0", "up")
            sock = os.path.join(work, f"h{d}.sock")
            log = open(os.path.join(work, f"h{d}.log"), "w")
            processes.append(subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{host}", binary, "--socket", sock, "daemon", "--state-dir",
                 os.path.join(work, f"h{d}"), "--underlay", f"10.206.1.{d}", "--store", f"etcd://{ETCD}",
                 "--host-name", f"real{d}", "--workers", "1"], stdout=log, stderr=log))
            socks.append(sock)
            if wait_until(lambda: os.path.exists(sock), 10) is None:
                sys.exit(f"daemon {d} did not start: see {log.name}")
        time.sleep(0.5)
        subprocess.run([binary, "--socket", socks[0], "network", "create", NET, "-d", "overlay",
                        "--subnet", "10.250.0.0/16"], check=True)
        start = time.monotonic()
        leases = [simulate_host(h, args.endpoints) for h in range(args.hosts)]
        loaded = time.monotonic() - start
        expected = {mac_of(h, e) for h in range(args.hosts) for e in range(args.endpoints)}
        converged = wait_until(lambda: all(pinned(s) >= expected for s in socks), 300)
        print(f"{args.hosts} simulated hosts x {args.endpoints} endpoints written in {loaded:.1f} s; "
              f"every daemon programmed {converged if converged is None else round(converged, 2)} s later",
              file=sys.stderr)
        latencies = []
        for i in range(args.samples):
            host = i % args.hosts
            endpoint = args.endpoints + i // args.hosts
            t0 = time.monotonic()
            publish_endpoint(host, endpoint, leases[host])
            mac = mac_of(host, endpoint)
            took = wait_until(lambda: all(mac in pinned(s) for s in socks), 30)
            latencies.append(took if took is not None else float("inf"))
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        gone_mac = mac_of(0, 0)
        etcd("/v3/lease/revoke", {"ID": leases[0]})
        failover = wait_until(lambda: all(gone_mac not in pinned(s) for s in socks), 60)
        daemons = [p for p in processes[1:]]
        memory = [rss_mib(p.pid) for p in daemons]
        cpu = [cpu_seconds(p.pid) for p in daemons]
        status = etcd("/v3/maintenance/status", {})
        result = {
            "hosts": args.hosts, "endpoints_per_host": args.endpoints, "real_daemons": args.daemons,
            "initial_load_s": loaded, "initial_convergence_s": converged,
            "connect_to_programmed_p50_ms": p50 * 1000, "connect_to_programmed_p99_ms": p99 * 1000,
            "host_failure_to_gone_s": failover, "daemon_rss_mib": memory, "daemon_cpu_s": cpu,
            "etcd_cpu_s": cpu_seconds(etcd_proc.pid), "etcd_db_bytes": int(status.get("dbSize", 0)),
        }
        print(json.dumps(result, indent=2))
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    finally:
        for p in reversed(processes):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for n in namespaces:
            sh("ip", "netns", "del", n, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
