#!/usr/bin/env python3
"""Egress side by side: a container talking to a server beyond its network, through vswitch's
gateway, slirp4netns and pasta (the ways out rootless Podman and Docker use), in one run;
reported as absolute figures and as ratios of vswitch to each. Run as root from the repository
root:

    python3 bench/egress.py [--seconds 5] [--runs 3] [--json bench/egress.json]

Each topology: a "host" namespace where the switch (vswitch's daemon, slirp4netns, pasta) runs
and opens its ordinary sockets, an "outside" namespace joined to it by a veth pair with the
iperf3 server on 10.251.0.2, and a container namespace. All are namespaces this script creates
and removes, also on failure; traffic is bounded by iperf3's -t and ping's -c. Workloads: TCP 1
and 4 streams container -> outside (iperf3 -c), outside -> container (-R), ping RTT (pings 20 ms
apart, the machine idle between them, and 0.2 ms apart); and a
published port (the host's 10.251.0.1:15201 forwarded to the container's iperf3 on 5201) with a
client in the outside namespace, 1 stream each way. Installs iperf3, slirp4netns and passt
(pasta) with apt-get when missing.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402  (namespaces, processes)

OUTSIDE = "10.251.0.2"
HOST = "10.251.0.1"
PUBLISHED = 15201


class Egress(e2e.Topology):
    """Host and outside namespaces joined by a veth pair; the switch and the container's link
    come from a subclass's `start`. What a failed setup made is removed before it raises."""

    def __init__(self, name):
        super().__init__(name)
        self.procs = []
        self.dirs = []
        try:
            self.build()
            self.start()
        except BaseException:
            self.teardown()
            raise

    def build(self):
        self.host = self.netns("host")
        self.outside = self.netns("out")
        e2e.sh("ip", "link", "add", "veg0", "netns", self.host, "type", "veth", "peer", "name", "veg1",
               "netns", self.outside)
        for ns, dev, addr in ((self.host, "veg0", "10.251.0.1/24"), (self.outside, "veg1", "10.251.0.2/24")):
            e2e.sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            e2e.sh("ip", "-n", ns, "link", "set", dev, "up")
        # pasta wants a default route to pick its interface; ping sockets as distributions allow.
        e2e.sh("ip", "-n", self.host, "route", "add", "default", "via", OUTSIDE)
        e2e.ns_exec(self.host, "sh", "-c", "echo 0 2147483647 > /proc/sys/net/ipv4/ping_group_range")
        self.container = self.netns("c")

    def start(self):
        raise NotImplementedError

    def spawn(self, *args):
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def tempdir(self, prefix):
        path = tempfile.mkdtemp(prefix=prefix)
        self.dirs.append(path)
        return path

    def teardown(self):
        for proc in reversed(self.procs):
            e2e.kill_pid(proc.pid)
        for path in self.dirs:
            shutil.rmtree(path, ignore_errors=True)
        super().teardown()


class Vswitch(Egress):
    def __init__(self, binary):
        self.binary = binary
        super().__init__("vs")

    def start(self):
        self.dir = self.tempdir("vswitch-bench-egress-")
        self.socket = os.path.join(self.dir, "sock")
        daemon = self.spawn("ip", "netns", "exec", self.host, self.binary, "--socket", self.socket, "daemon",
                            "--state-dir", os.path.join(self.dir, "state"))
        self.switch_pid = daemon.pid
        deadline = time.time() + 10
        while self.cli("network", "ls", check=False).returncode != 0:
            if time.time() > deadline:
                raise RuntimeError("vswitch daemon did not start")
            time.sleep(0.05)
        self.cli("network", "create", "bench", "--subnet", "10.77.0.0/24")
        self.cli("connect", "bench", self.container, "-p", f"{HOST}:{PUBLISHED}:5201")

    def cli(self, *args, check=True):
        return e2e.sh(self.binary, "--socket", self.socket, *args, check=check, capture=True)


class Slirp(Egress):
    """slirp4netns at MTU 65520 (its fastest), as rootless Podman runs it."""

    def __init__(self):
        super().__init__("slirp")

    def start(self):
        # `ip netns exec` becomes the command: its PID names the container's namespace.
        holder = self.spawn("ip", "netns", "exec", self.container, "sleep", "3600")
        time.sleep(0.2)
        api = os.path.join(self.tempdir("vswitch-bench-slirp-"), "api.sock")
        slirp = self.spawn("ip", "netns", "exec", self.host, "slirp4netns", "--configure", "--mtu=65520",
                           "--disable-host-loopback", "--api-socket", api, str(holder.pid), "tap0")
        self.switch_pid = slirp.pid
        e2e.wait_for_link(self.container, "tap0")
        time.sleep(0.5)
        # The published port, as rootless Podman asks slirp4netns's port driver for it.
        request = {"execute": "add_hostfwd", "arguments": {
            "proto": "tcp", "host_addr": HOST, "host_port": PUBLISHED, "guest_port": 5201}}
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(api)
            conn.sendall(json.dumps(request).encode())
            conn.shutdown(socket.SHUT_WR)
            answer = conn.recv(4096).decode()
        if "error" in answer:
            raise RuntimeError(f"slirp4netns add_hostfwd: {answer}")


class Pasta(Egress):
    """pasta (passt's namespace mode) attached to the container namespace: as root it must be
    told to stay root (--runas 0:0) to enter a namespace root made, and --no-map-gw, or the
    outside server (at the host's default gateway address) would be mapped to the host."""

    def __init__(self):
        super().__init__("pasta")

    def start(self):
        path = f"/run/netns/{self.container}"
        pasta = self.spawn("ip", "netns", "exec", self.host, "pasta", "--runas", "0:0", "--no-map-gw",
                           "--config-net", "-f", "-i", "veg0", "-t", f"{HOST}/{PUBLISHED}:5201",
                           "--netns", path)
        self.switch_pid = pasta.pid
        time.sleep(1.0)


def iperf(topology, seconds, streams, reverse):
    args = ["iperf3", "-c", OUTSIDE, "-t", str(seconds), "-J", "-P", str(streams)]
    if reverse:
        args.append("-R")
    out = e2e.ns_exec(topology.container, *args, capture=True)
    result = json.loads(out.stdout)
    return result["end"]["sum_received"]["bits_per_second"] / 1e9


def iperf_published(topology, seconds, reverse):
    """A client in the outside namespace to the published port; -R: the container sends."""
    args = ["iperf3", "-c", HOST, "-p", str(PUBLISHED), "-t", str(seconds), "-J"]
    if reverse:
        args.append("-R")
    out = e2e.ns_exec(topology.outside, *args, capture=True)
    result = json.loads(out.stdout)
    return result["end"]["sum_received"]["bits_per_second"] / 1e9


def ping_p50(topology, count, interval):
    """Median RTT of `count` pings `interval` seconds apart. At 20 ms the machine idles between
    them (each ping meets cold caches and sleeping threads); at 0.2 ms it stays awake."""
    res = e2e.ns_exec(topology.container, "ping", "-c", str(count), "-i", interval, OUTSIDE, capture=True,
                      check=False)
    times = [float(line.split("time=")[1].split()[0]) * 1000 for line in res.stdout.splitlines()
             if "time=" in line]
    return statistics.median(times) if times else None


WORKLOADS = [
    ("TCP 1 stream out (Gbit/s)", lambda t, s: iperf(t, s, 1, False)),
    ("TCP 4 streams out (Gbit/s)", lambda t, s: iperf(t, s, 4, False)),
    ("TCP 1 stream in (Gbit/s)", lambda t, s: iperf(t, s, 1, True)),
    ("ping RTT p50, 20 ms apart (µs)", lambda t, s: ping_p50(t, 200, "0.02")),
    ("ping RTT p50, 0.2 ms apart (µs)", lambda t, s: ping_p50(t, 1000, "0.0002")),
    ("published TCP in (Gbit/s)", lambda t, s: iperf_published(t, s, False)),
    ("published TCP out (Gbit/s)", lambda t, s: iperf_published(t, s, True)),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default="bench/egress.json")
    parser.add_argument("--binary", default="target/release/vswitch")
    args = parser.parse_args()
    wanted = {"iperf3": "iperf3", "ping": "iputils-ping", "slirp4netns": "slirp4netns", "pasta": "passt"}
    missing = [package for command, package in wanted.items() if not shutil.which(command)]
    if missing:
        e2e.sh("apt-get", "install", "-y", "-qq", *missing)
    if not os.path.exists(args.binary):
        e2e.sh("cargo", "build", "--release", "--bin", "vswitch")
    makers = {"vswitch": lambda: Vswitch(args.binary), "slirp4netns": Slirp, "pasta": Pasta}
    results = {name: {w: [] for w, _ in WORKLOADS} for name in makers}
    # All three set up at once and each workload taken by the three in turn, so a drift of the
    # machine's speed during the run shows in every tool's figures alike.
    topologies = {}
    try:
        for name, make in makers.items():
            topology = make()
            topologies[name] = topology
            topology.spawn("ip", "netns", "exec", topology.outside, "iperf3", "-s", "-B", OUTSIDE)
            topology.spawn("ip", "netns", "exec", topology.container, "iperf3", "-s", "-p", "5201")
        time.sleep(0.3)
        for run in range(args.runs):
            for workload, measure in WORKLOADS:
                print(f"run {run + 1}/{args.runs}: {workload}", flush=True)
                for name, topology in topologies.items():
                    try:
                        results[name][workload].append(measure(topology, args.seconds))
                    except Exception as e:  # a stalled rival stays in the table, marked
                        print(f"  {name} failed: {e}", flush=True)
    finally:
        for topology in topologies.values():
            topology.teardown()
    summary = {name: {w: (statistics.median(v) if v else None) for w, v in r.items()} for name, r in results.items()}
    print(f"{'workload':34} {'vswitch':>9} {'slirp4netns':>12} {'pasta':>9} {'vs/slirp':>9} {'vs/pasta':>9}")
    for workload, _ in WORKLOADS:
        row = [summary[n][workload] for n in ("vswitch", "slirp4netns", "pasta")]
        def fmt(x):
            return "-" if x is None else f"{x:.2f}" if x < 100 else f"{x:.0f}"
        def ratio(a, b):
            return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"
        print(f"{workload:34} {fmt(row[0]):>9} {fmt(row[1]):>12} {fmt(row[2]):>9} "
              f"{ratio(row[0], row[1]):>9} {ratio(row[0], row[2]):>9}")
    with open(args.json, "w") as f:
        json.dump({"runs": results, "median": summary, "seconds": args.seconds}, f, indent=1)
    print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
