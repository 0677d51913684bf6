#!/usr/bin/env python3
"""DNS side by side: the gateway's embedded DNS server (vswitch) against dnsmasq serving the same
name on a Linux bridge (the classic libvirt/Podman setup), both answering a container's queries
for a local name. Reports sequential query latency (p50, p99) and throughput with 32 queries in
flight, and the ratios. Run as root from the repository root:

    python3 bench/dns.py [--queries 3000] [--seconds 5] [--json bench/dns.json]

Every namespace, bridge and veth lives in namespaces this script creates (nothing in the root
namespace) and is deleted afterwards, also on failure; the daemon and dnsmasq are started by it
and stopped by their PIDs. Traffic is bounded by --queries and --seconds.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PREFIX = f"vswd{os.getpid()}"

# Runs inside the client namespace: sequential latencies, then pipelined throughput.
LOADGEN = r'''
import socket, struct, sys, time, json, random
server, name, queries, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
def query(qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((server, 53))
s.settimeout(1.0)
lat = []
for i in range(queries):
    t = time.perf_counter()
    s.send(query(i & 0xffff))
    while True:
        r = s.recv(512)
        if r[:2] == struct.pack(">H", i & 0xffff):
            break
    if r[3] & 0x0f != 0 or struct.unpack(">H", r[6:8])[0] != 1:
        sys.exit("bad answer")
    lat.append((time.perf_counter() - t) * 1e6)
lat.sort()
s.settimeout(0.2)
window, answered, sent = 32, 0, 0
end = time.perf_counter() + seconds
for _ in range(window):
    s.send(query(sent & 0xffff)); sent += 1
start = time.perf_counter()
while time.perf_counter() < end:
    try:
        s.recv(512)
        answered += 1
    except socket.timeout:
        for _ in range(window):
            s.send(query(sent & 0xffff)); sent += 1
        continue
    s.send(query(sent & 0xffff)); sent += 1
elapsed = time.perf_counter() - start
print(json.dumps({"p50_us": lat[len(lat) // 2], "p99_us": lat[len(lat) * 99 // 100],
                  "qps": answered / elapsed}))
'''


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


def netns(name):
    sh("ip", "netns", "add", name)
    sh("ip", "-n", name, "link", "set", "lo", "up")
    return name


def loadgen(ns, server, name, args):
    out = sh("ip", "netns", "exec", ns, sys.executable, "-c", LOADGEN, server, name,
             str(args.queries), str(args.seconds), timeout=args.seconds + 120)
    return json.loads(out.stdout)


def run_vswitch(args, made, workdir):
    binary = os.path.abspath("target/release/vswitch")
    sock = os.path.join(workdir, "sock")
    daemon = subprocess.Popen([binary, "--socket", sock, "daemon", "--state-dir",
                               os.path.join(workdir, "state")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    made.append(("pid", daemon.pid))
    for _ in range(100):
        if sh(binary, "--socket", sock, "network", "ls", check=False).returncode == 0:
            break
        time.sleep(0.05)
    client, web = netns(f"{PREFIX}vc"), netns(f"{PREFIX}vw")
    made += [("ns", client), ("ns", web)]
    sh(binary, "--socket", sock, "network", "create", "dnsbench", "--subnet", "10.88.0.0/24")
    sh(binary, "--socket", sock, "connect", "dnsbench", web, "--name", "web")
    sh(binary, "--socket", sock, "connect", "dnsbench", client, "--name", "client")
    result = loadgen(client, "10.88.0.1", "web", args)
    result["server_cpu_s"] = cpu_seconds(daemon.pid)
    return result


def run_dnsmasq(args, made, workdir):
    host, client = netns(f"{PREFIX}bh"), netns(f"{PREFIX}bc")
    made += [("ns", host), ("ns", client)]
    sh("ip", "-n", host, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", host, "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns", client)
    sh("ip", "-n", host, "link", "set", "veth0", "master", "br0")
    sh("ip", "-n", host, "addr", "add", "10.88.1.1/24", "dev", "br0")
    for ns, dev in [(host, "br0"), (host, "veth0"), (client, "eth0")]:
        sh("ip", "-n", ns, "link", "set", dev, "up")
    sh("ip", "-n", client, "addr", "add", "10.88.1.3/24", "dev", "eth0")
    dnsmasq = subprocess.Popen(["ip", "netns", "exec", host, "dnsmasq", "-k", "--no-resolv",
                                "--no-hosts", "--host-record=web,10.88.1.2", "--listen-address=10.88.1.1",
                                "--bind-interfaces", "--cache-size=1000", "--pid-file=",
                                "--user=root", "--log-facility=/dev/null"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    made.append(("pid", dnsmasq.pid))
    time.sleep(0.5)
    result = loadgen(client, "10.88.1.1", "web", args)
    result["server_cpu_s"] = cpu_seconds(dnsmasq.pid)
    return result


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cleanup(made):
    for kind, what in reversed(made):
        if kind == "pid":
            try:
                os.kill(what, signal.SIGTERM)
                os.waitpid(what, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        else:
            sh("ip", "netns", "del", what, check=False)
            shutil.rmtree(f"/etc/netns/{what}", ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--json", default="bench/dns.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark creates network namespaces")
    if not shutil.which("dnsmasq"):
        sh("apt-get", "install", "-y", "-qq", "dnsmasq-base")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "vswitch"], check=True)
    results = {}
    for name, run in [("vswitch", run_vswitch), ("dnsmasq", run_dnsmasq)]:
        made, workdir = [], tempfile.mkdtemp(prefix="vswitch-dns-")
        try:
            results[name] = run(args, made, workdir)
        finally:
            cleanup(made)
            shutil.rmtree(workdir, ignore_errors=True)
    v, d = results["vswitch"], results["dnsmasq"]
    print(f"{'local name, UDP':<34}{'dnsmasq+bridge':>16}{'vswitch':>12}{'vs/dnsmasq':>12}")
    for key, label in [("p50_us", "latency p50 (us)"), ("p99_us", "latency p99 (us)"),
                       ("qps", "answers/s, 32 in flight")]:
        print(f"{label:<34}{d[key]:>16.0f}{v[key]:>12.0f}{v[key] / d[key]:>12.2f}")
    with open(args.json, "w") as f:
        json.dump(results, f, indent=2)
    print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
