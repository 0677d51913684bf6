#!/usr/bin/env python3
"""Containers on two hosts, side by side: vswitch's overlay (VXLAN on a UDP socket of each
daemon) against the Linux kernel's (a vxlan device, a bridge and a veth per container: what
Docker's overlay driver builds); and encrypted, vswitch's `--encrypt` (VXLAN inside boringtun's
WireGuard) against a kernel vxlan device over wireguard-go (this kernel has no WireGuard module). Each "host" is a namespace; the underlay is a veth pair at MTU
1500 between them; the containers' MTU is 1450 in both. Runs are interleaved, so drift hits both
alike; medians and ratios to the kernel. Run as root from the repository root:

    python3 bench/overlay.py [--seconds 5] [--runs 3] [--modes kernel,vswitch,wireguard-go,vswitch-encrypt]

Everything runs in namespaces this script creates and removes (also on failure); daemons are
ended by PID; traffic is bounded by iperf3's -t and ping's -c. Goals (issue 14): TCP >= 0.7x the
kernel's vxlan; encrypted >= 1.5x vxlan over wireguard-go.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PREFIX = f"vsov{os.getpid()}"
VNI = "4242"


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def ns(name):
    return f"{PREFIX}{name}"


def in_ns(name, *args, check=True):
    return sh("ip", "netns", "exec", ns(name), *args, check=check)


class Topology:
    """Two hosts on a veth underlay (10.204.0.1, .2) and a container on each (c1, c2)."""

    def __init__(self):
        self.daemons = []
        self.dir = tempfile.mkdtemp(prefix="vsov")
        for n in ("h1", "h2", "c1", "c2"):
            sh("ip", "netns", "add", ns(n))
            in_ns(n, "ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "u0", "netns", ns("h1"), "type", "veth", "peer", "name", "u0", "netns", ns("h2"))
        for i, h in ((1, "h1"), (2, "h2")):
            in_ns(h, "ip", "addr", "add", f"10.204.0.{i}/24", "dev", "u0")
            in_ns(h, "ip", "link", "set", "u0", "up")

    def teardown(self):
        for proc in self.daemons:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for n in ("h1", "h2", "c1", "c2"):
            sh("ip", "netns", "del", ns(n), check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def kernel_overlay(topo):
    for i, (h, c) in enumerate((("h1", "c1"), ("h2", "c2")), start=1):
        other = 3 - i
        in_ns(h, "ip", "link", "add", "vx0", "type", "vxlan", "id", VNI, "local", f"10.204.0.{i}",
              "remote", f"10.204.0.{other}", "dstport", "4789")
        in_ns(h, "ip", "link", "add", "br0", "type", "bridge")
        in_ns(h, "ip", "link", "set", "vx0", "master", "br0", "up")
        in_ns(h, "ip", "link", "add", "k0", "type", "veth", "peer", "name", "eth0", "netns", ns(c))
        in_ns(h, "ip", "link", "set", "k0", "mtu", "1450", "master", "br0", "up")
        in_ns(h, "ip", "link", "set", "br0", "up")
        in_ns(c, "ip", "link", "set", "eth0", "mtu", "1450", "up")
        in_ns(c, "ip", "addr", "add", f"10.80.0.{10 * i}/24", "dev", "eth0")
    return "10.80.0.20"


def vswitch_overlay(topo, binary):
    for i, (h, c) in enumerate((("h1", "c1"), ("h2", "c2")), start=1):
        sock = os.path.join(topo.dir, f"{h}.sock")
        log = open(os.path.join(topo.dir, f"{h}.log"), "w")
        topo.daemons.append(subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{ns(h)}", binary, "--socket", sock, "daemon", "--state-dir",
             os.path.join(topo.dir, h), "--underlay", f"10.204.0.{i}"], stdout=log, stderr=log))
        for _ in range(100):
            if sh(binary, "--socket", sock, "network", "ls", check=False).returncode == 0:
                break
            time.sleep(0.05)
        half = "10.80.0.0/25" if i == 1 else "10.80.0.128/25"
        sh(binary, "--socket", sock, "network", "create", "ov", "-d", "overlay", "--subnet", "10.80.0.0/24",
           "--ip-range", half, "--peer", f"10.204.0.{3 - i}")
        sh(binary, "--socket", sock, "connect", "ov", ns(c), "--ip", f"10.80.0.{10 * i if i == 1 else 130}")
    return "10.80.0.130"


def wireguard_go_overlay(topo):
    """wireguard-go on each host, a kernel vxlan device over its tunnel, bridged to a veth."""
    keys = {}
    for h in ("h1", "h2"):
        private = os.path.join(topo.dir, f"{h}.key")
        with open(private, "w") as f:
            f.write(sh("wg", "genkey").stdout)
        keys[h] = (private, subprocess.run(["wg", "pubkey"], input=open(private).read(), capture_output=True,
                                           text=True, check=True).stdout.strip())
    for i, (h, c) in enumerate((("h1", "c1"), ("h2", "c2")), start=1):
        other = "h2" if h == "h1" else "h1"
        # wireguard-go's control socket is named after the interface, in one directory for
        # every namespace: one name per host.
        wgb = f"wgb{i}"
        topo.daemons.append(subprocess.Popen(["ip", "netns", "exec", ns(h), "wireguard-go", "-f", wgb],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(100):
            if in_ns(h, "ip", "link", "show", wgb, check=False).returncode == 0:
                break
            time.sleep(0.05)
        in_ns(h, "wg", "set", wgb, "private-key", keys[h][0], "listen-port", "51820", "peer", keys[other][1],
              "endpoint", f"10.204.0.{3 - i}:51820", "allowed-ips", f"10.98.0.{3 - i}/32")
        in_ns(h, "ip", "addr", "add", f"10.98.0.{i}/24", "dev", wgb)
        in_ns(h, "ip", "link", "set", wgb, "up")
        in_ns(h, "ip", "link", "add", "vx0", "type", "vxlan", "id", VNI, "local", f"10.98.0.{i}",
              "remote", f"10.98.0.{3 - i}", "dstport", "4789")
        in_ns(h, "ip", "link", "add", "br0", "type", "bridge")
        in_ns(h, "ip", "link", "set", "vx0", "master", "br0", "up")
        in_ns(h, "ip", "link", "add", "k0", "type", "veth", "peer", "name", "eth0", "netns", ns(c))
        in_ns(h, "ip", "link", "set", "k0", "mtu", "1370", "master", "br0", "up")
        in_ns(h, "ip", "link", "set", "br0", "up")
        in_ns(c, "ip", "link", "set", "eth0", "mtu", "1370", "up")
        in_ns(c, "ip", "addr", "add", f"10.80.0.{10 * i}/24", "dev", "eth0")
    return "10.80.0.20"


def vswitch_encrypted_overlay(topo, binary):
    socks, keys = {}, {}
    for i, h in ((1, "h1"), (2, "h2")):
        sock = os.path.join(topo.dir, f"{h}.sock")
        log = open(os.path.join(topo.dir, f"{h}.log"), "w")
        topo.daemons.append(subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{ns(h)}", binary, "--socket", sock, "daemon", "--state-dir",
             os.path.join(topo.dir, h), "--underlay", f"10.204.0.{i}", "--tunnel-address", f"10.98.0.{i}"],
            stdout=log, stderr=log))
        for _ in range(100):
            if sh(binary, "--socket", sock, "network", "ls", check=False).returncode == 0:
                break
            time.sleep(0.05)
        socks[h] = sock
        key_file = os.path.join(topo.dir, h, "wireguard.key")
        keys[h] = subprocess.run(["wg", "pubkey"], input=open(key_file).read(), capture_output=True, text=True,
                                 check=True).stdout.strip()
    for i, (h, c) in enumerate((("h1", "c1"), ("h2", "c2")), start=1):
        other = "h2" if h == "h1" else "h1"
        half = "10.80.0.0/25" if i == 1 else "10.80.0.128/25"
        peer = f"10.204.0.{3 - i},key={keys[other]},inner=10.98.0.{3 - i}"
        sh(binary, "--socket", socks[h], "network", "create", "ov", "-d", "overlay", "--encrypt", "--mtu", "1370",
           "--subnet", "10.80.0.0/24", "--ip-range", half, "--peer", peer)
        sh(binary, "--socket", socks[h], "connect", "ov", ns(c), "--ip", "10.80.0.10" if i == 1 else "10.80.0.130")
    return "10.80.0.130"


def tcp_gbit(server_ip, seconds):
    in_ns("c2", "iperf3", "-s", "-D", "-1")
    time.sleep(0.3)
    out = in_ns("c1", "iperf3", "-c", server_ip, "-t", str(seconds), "-J")
    return json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9


def ping_p50_us(server_ip):
    out = in_ns("c1", "ping", "-c", "50", "-i", "0.02", "-W", "1", server_ip, check=False).stdout
    times = [float(t) * 1000 for t in re.findall(r"time=([\d.]+) ms", out)]
    return statistics.median(times) if times else None


def run_mode(mode, binary, seconds):
    topo = Topology()
    try:
        server_ip = {
            "kernel": lambda: kernel_overlay(topo),
            "vswitch": lambda: vswitch_overlay(topo, binary),
            "wireguard-go": lambda: wireguard_go_overlay(topo),
            "vswitch-encrypt": lambda: vswitch_encrypted_overlay(topo, binary),
        }[mode]()
        in_ns("c1", "ping", "-c", "3", "-i", "0.2", "-W", "2", server_ip)
        return {"tcp_gbit_s": tcp_gbit(server_ip, seconds), "ping_p50_us": ping_p50_us(server_ip)}
    finally:
        topo.teardown()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default="bench/overlay.json")
    parser.add_argument("--modes", default="kernel,vswitch,wireguard-go,vswitch-encrypt")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark creates network namespaces")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "vswitch"], check=True)
    binary = os.path.abspath("target/release/vswitch")
    modes = args.modes.split(",")
    runs = {m: [] for m in modes}
    for i in range(args.runs):
        for mode in modes:
            print(f"run {i + 1}/{args.runs}: {mode}", file=sys.stderr)
            runs[mode].append(run_mode(mode, binary, args.seconds))
    summary = {m: {k: statistics.median([r[k] for r in runs[m] if r[k] is not None])
                   for k in ("tcp_gbit_s", "ping_p50_us")} for m in modes}
    print(f"{'':16}{'TCP Gbit/s':>12}{'ping p50 µs':>14}")
    for m in modes:
        print(f"{m:16}{summary[m]['tcp_gbit_s']:>12.2f}{summary[m]['ping_p50_us']:>14.0f}")
    for ours, theirs in (("vswitch", "kernel"), ("vswitch-encrypt", "wireguard-go")):
        if ours in summary and theirs in summary:
            tcp = summary[ours]["tcp_gbit_s"] / summary[theirs]["tcp_gbit_s"]
            rtt = summary[ours]["ping_p50_us"] / summary[theirs]["ping_p50_us"]
            summary[f"{ours}/{theirs}"] = {"tcp": tcp, "rtt": rtt}
            print(f"{ours}/{theirs}: TCP {tcp:.2f}x, RTT {rtt:.2f}x")
    with open(args.json, "w") as f:
        json.dump({"runs": runs, "summary": summary}, f, indent=2)


if __name__ == "__main__":
    main()
