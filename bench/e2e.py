#!/usr/bin/env python3
"""End-to-end comparison: the same workloads between two containers over the Linux bridge
(+ veth, Docker's default) and over vswitch, in one run, reported as absolute figures and as
ratios to the bridge. Run as root from the repository root:

    python3 bench/e2e.py [--seconds 5] [--runs 3] [--json bench/results.json]

Every topology lives in network namespaces this script creates (nothing in the root namespace)
and is torn down afterwards, also on failure. Traffic loops are bounded by iperf3's -t and
ping's -c. Needs iperf3 and ping (installed with apt-get when missing).
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PREFIX = f"vswb{os.getpid()}"
SUBNET = "10.77.0"


def sh(*args, check=True, capture=False):
    return subprocess.run(args, check=check, text=True, capture_output=capture)


def ns_exec(ns, *args, **kw):
    return sh("ip", "netns", "exec", ns, *args, **kw)


def cpu_seconds(pid):
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Topology:
    """Two containers, c1 (client) and c2 (server), joined by something."""

    def __init__(self, name):
        self.name = name
        self.namespaces = []
        self.switch_pid = None

    def netns(self, suffix):
        ns = f"{PREFIX}{self.name}{suffix}"
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.namespaces.append(ns)
        return ns

    def teardown(self):
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)


class Bridge(Topology):
    def __init__(self):
        super().__init__("br")
        host = self.netns("host")
        sh("ip", "-n", host, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", host, "link", "set", "br0", "up")
        self.c1, self.c2 = self.netns("c1"), self.netns("c2")
        for i, ns in ((1, self.c1), (2, self.c2)):
            sh("ip", "-n", host, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", host, "link", "set", f"p{i}", "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{SUBNET}.{i + 1}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")


class Vswitch(Topology):
    def __init__(self, binary):
        super().__init__("vs")
        self.dir = tempfile.mkdtemp(prefix="vswitch-bench-")
        self.socket = os.path.join(self.dir, "sock")
        self.binary = binary
        self.daemon = subprocess.Popen(
            [binary, "--socket", self.socket, "daemon", "--state-dir", os.path.join(self.dir, "state")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.switch_pid = self.daemon.pid
        deadline = time.time() + 10
        while self.cli("network", "ls", check=False).returncode != 0:
            if time.time() > deadline:
                raise RuntimeError("vswitch daemon did not start")
            time.sleep(0.05)
        self.cli("network", "create", "bench", "--subnet", f"{SUBNET}.0/24", "--gateway", f"{SUBNET}.254")
        self.c1, self.c2 = self.netns("c1"), self.netns("c2")
        self.cli("connect", "bench", self.c1, "--ip", f"{SUBNET}.2")
        self.cli("connect", "bench", self.c2, "--ip", f"{SUBNET}.3")

    def cli(self, *args, check=True):
        return sh(self.binary, "--socket", self.socket, *args, check=check, capture=True)

    def teardown(self):
        super().teardown()
        self.daemon.send_signal(signal.SIGTERM)
        try:
            self.daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def server_ip(topo):
    return f"{SUBNET}.3"


def iperf(topo, seconds, extra):
    server = subprocess.Popen(["ip", "netns", "exec", topo.c2, "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        cpu0 = cpu_seconds(topo.switch_pid)
        out = ns_exec(topo.c1, "iperf3", "-c", server_ip(topo), "-t", str(seconds), "-J", *extra,
                      capture=True).stdout
        cpu = cpu_seconds(topo.switch_pid) - cpu0
    finally:
        server.wait(timeout=10)
    return json.loads(out), cpu


def tcp(topo, seconds, streams):
    result, cpu = iperf(topo, seconds, ["-P", str(streams)])
    return {"gbit_s": result["end"]["sum_received"]["bits_per_second"] / 1e9, "switch_cpu_s": cpu}


def udp64(topo, seconds):
    result, cpu = iperf(topo, seconds, ["-u", "-l", "64", "-b", "0"])
    s = result["end"]["sum"]
    received = s["packets"] - s["lost_packets"]
    return {"kpps": received / s["seconds"] / 1e3, "switch_cpu_s": cpu,
            "kframes_per_switch_cpu_s": (received / cpu / 1e3) if cpu > 0 else None}


def latency(topo, count=500):
    out = ns_exec(topo.c1, "ping", "-c", str(count), "-i", "0.002", "-W", "1", server_ip(topo),
                  capture=True).stdout
    times = sorted(float(line.split("time=")[1].split()[0]) * 1000
                   for line in out.splitlines() if "time=" in line)
    return {"p50_us": statistics.median(times), "p99_us": times[int(len(times) * 0.99) - 1]}


def measure(topo, seconds):
    # Warm up ARP/FDB so the first sample does not pay for learning.
    ns_exec(topo.c1, "ping", "-c", "2", "-i", "0.2", "-W", "1", server_ip(topo), capture=True)
    return {
        "tcp1": tcp(topo, seconds, 1),
        "tcp4": tcp(topo, seconds, 4),
        "udp64": udp64(topo, seconds),
        "latency": latency(topo),
    }


def median_runs(runs):
    """Median of every numeric leaf over the runs."""
    def merge(values):
        if isinstance(values[0], dict):
            return {k: merge([v[k] for v in values]) for k in values[0]}
        nums = [v for v in values if v is not None]
        return statistics.median(nums) if nums else None
    return merge(runs)


ROWS = [
    ("TCP 1 stream (Gbit/s)", ("tcp1", "gbit_s"), True),
    ("TCP 4 streams (Gbit/s)", ("tcp4", "gbit_s"), True),
    ("UDP 64 B received (kpps)", ("udp64", "kpps"), True),
    ("UDP 64 B frames per switch CPU-second (k)", ("udp64", "kframes_per_switch_cpu_s"), True),
    ("ping RTT p50 (us)", ("latency", "p50_us"), False),
    ("ping RTT p99 (us)", ("latency", "p99_us"), False),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="length of each iperf3 run")
    parser.add_argument("--runs", type=int, default=3, help="runs per topology (median reported)")
    parser.add_argument("--json", default="bench/results.json", help="where to write the figures")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark creates network namespaces")
    if not shutil.which("iperf3") or not shutil.which("ping"):
        sh("apt-get", "update", "-qq")
        sh("apt-get", "install", "-y", "-qq", "iperf3", "iputils-ping")
    sh("cargo", "build", "--release", "-q", "-p", "vswitch")
    binary = os.path.abspath("target/release/vswitch")

    makers = {"linux-bridge": Bridge, "vswitch": lambda: Vswitch(binary)}
    results = {}
    for name, make in makers.items():
        runs = []
        for _ in range(args.runs):
            topo = make()
            try:
                runs.append(measure(topo, args.seconds))
            finally:
                topo.teardown()
        results[name] = median_runs(runs)

    base = results["linux-bridge"]
    print(f"{'workload':44} {'linux-bridge':>13} {'vswitch':>10} {'vswitch/bridge':>15}")
    for label, (group, key), _higher_better in ROWS:
        b, v = base[group][key], results["vswitch"][group][key]
        fmt = lambda x: "-" if x is None else f"{x:.2f}" if x < 100 else f"{x:.0f}"
        ratio = "-" if not b or v is None else f"{v / b:.2f}"
        print(f"{label:44} {fmt(b):>13} {fmt(v):>10} {ratio:>15}")
    with open(args.json, "w") as f:
        json.dump({"seconds": args.seconds, "runs": args.runs, "results": results}, f, indent=2)
    print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
