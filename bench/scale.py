#!/usr/bin/env python3
"""Scale: 256 containers attached to one vswitch network. Reports connect time per container
(p50, p99, measured at the control API), the daemon's resident memory, its CPU use while the
256 ports sit idle, whether every container reaches its neighbour, and the FDB's memory per entry
at 1 M entries. Run as root from the repository root:

    python3 bench/scale.py [--containers 256] [--json bench/scale.json]

Every namespace is created by this script and deleted afterwards, also on failure; the daemon
is started by it and stopped by its PID.
"""

import argparse
import http.client
import json
import os
import signal
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

PREFIX = f"vsws{os.getpid()}n"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def api(sock, method, path, body=None):
    conn = UnixHTTPConnection(sock)
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {data.decode()}")
    return json.loads(data) if data else None


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=256)
    parser.add_argument("--json", default="bench/scale.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark creates network namespaces")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "vswitch"], check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "vswitch-bench", "--example", "fdb_memory"], check=True)
    binary = os.path.abspath("target/release/vswitch")
    fdb = json.loads(subprocess.run([os.path.abspath("target/release/examples/fdb_memory"), "1000000"],
                                    check=True, capture_output=True, text=True).stdout)

    workdir = tempfile.mkdtemp(prefix="vswitch-scale-")
    sock = os.path.join(workdir, "sock")
    daemon = subprocess.Popen([binary, "--socket", sock, "daemon", "--state-dir", os.path.join(workdir, "state")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    names = [f"{PREFIX}{i}" for i in range(args.containers)]
    created = []
    try:
        deadline = time.time() + 10
        while not os.path.exists(sock):
            if time.time() > deadline:
                raise RuntimeError("daemon did not start")
            time.sleep(0.05)
        time.sleep(0.2)
        api(sock, "POST", "/v1/networks", {"name": "scale", "subnets": ["10.78.0.0/22"]})
        rss_empty = rss_bytes(daemon.pid)
        times, ips = [], []
        for name in names:
            subprocess.run(["ip", "netns", "add", name], check=True)
            created.append(name)
            start = time.perf_counter()
            endpoint = api(sock, "POST", "/v1/networks/scale/endpoints", {"netns": name})
            times.append((time.perf_counter() - start) * 1000)
            ips.append(endpoint["addresses"][0].split("/")[0])
        times.sort()
        rss_full = rss_bytes(daemon.pid)

        def reaches(i):
            neighbour = ips[(i + 1) % len(ips)]
            return subprocess.run(["ip", "netns", "exec", names[i], "ping", "-c", "1", "-W", "3", neighbour],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
        with ThreadPoolExecutor(max_workers=16) as pool:
            reached = sum(pool.map(reaches, range(len(names))))

        # The kernels' own chatter on new interfaces (IPv6 router solicitations, MLD reports)
        # is traffic, flooded to every port: let it settle, and count what remains.
        time.sleep(10)
        rx = lambda: sum(p["rx_packets"] for p in api(sock, "GET", "/v1/ports"))
        frames0, ticks0, t0 = rx(), cpu_ticks(daemon.pid), time.time()
        time.sleep(10)
        idle_cpu = (cpu_ticks(daemon.pid) - ticks0) / os.sysconf("SC_CLK_TCK") / (time.time() - t0) * 100
        idle_frames = rx() - frames0

        result = {
            "containers": len(names),
            "connect_ms_p50": statistics.median(times),
            "connect_ms_p99": times[max(0, int(len(times) * 0.99) - 1)],
            "daemon_rss_mib_empty": rss_empty / 2**20,
            "daemon_rss_mib": rss_full / 2**20,
            "reached_neighbour": reached,
            "idle_cpu_percent": idle_cpu,
            "frames_received_while_idle": idle_frames,
            "fdb_bytes_per_entry_at_1m": fdb["bytes_per_entry"],
        }
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        for name in created:
            subprocess.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(workdir, ignore_errors=True)

    for key, value in result.items():
        print(f"{key:28} {value:.2f}" if isinstance(value, float) else f"{key:28} {value}")
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
