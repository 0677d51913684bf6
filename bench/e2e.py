#!/usr/bin/env python3
"""End-to-end comparison: the same workloads between two containers over the Linux bridge
(+ veth, Docker's default), vswitch, and, when installed, Open vSwitch's userspace datapath
(TAP ports, userspace TSO on) and vde_switch (TAP ports), at MTU 1500 and 9000, in one run;
reported as absolute figures and as ratios of vswitch to each. Run as root from the repository
root:

    python3 bench/e2e.py [--seconds 5] [--runs 3] [--mtu 1500 --mtu 9000] [--install-rivals]

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


def configure_container(ns, ifname, index, mtu):
    sh("ip", "-n", ns, "link", "set", ifname, "mtu", str(mtu), "up")
    sh("ip", "-n", ns, "addr", "add", f"{SUBNET}.{index + 1}/24", "dev", ifname)


def wait_for_link(ns, ifname, seconds=10):
    deadline = time.time() + seconds
    while sh("ip", "-n", ns, "link", "show", ifname, check=False, capture=True).returncode != 0:
        if time.time() > deadline:
            raise RuntimeError(f"{ifname} did not appear in {ns}")
        time.sleep(0.05)


def read_pid(path, seconds=10):
    deadline = time.time() + seconds
    while not os.path.exists(path):
        if time.time() > deadline:
            raise RuntimeError(f"no pid file {path}")
        time.sleep(0.05)
    with open(path) as f:
        return int(f.read().strip())


def kill_pid(pid):
    """Ends a process this script started (by its PID), waiting up to 5 s."""
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Bridge(Topology):
    def __init__(self, mtu):
        super().__init__("br")
        host = self.netns("host")
        sh("ip", "-n", host, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", host, "link", "set", "br0", "up")
        self.c1, self.c2 = self.netns("c1"), self.netns("c2")
        for i, ns in ((1, self.c1), (2, self.c2)):
            sh("ip", "-n", host, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", host, "link", "set", f"p{i}", "mtu", str(mtu), "master", "br0", "up")
            configure_container(ns, "eth0", i, mtu)


class Ovs(Topology):
    """Open vSwitch, userspace (netdev) datapath, TAP ports moved into the containers."""

    def __init__(self, mtu):
        super().__init__("ovs")
        self.pids = []
        self.dir = tempfile.mkdtemp(prefix="vswitch-bench-ovs-")
        host = self.netns("host")
        db, sock = os.path.join(self.dir, "conf.db"), os.path.join(self.dir, "db.sock")
        sh("ovsdb-tool", "create", db, "/usr/share/openvswitch/vswitch.ovsschema")
        sh("ovsdb-server", db, f"--remote=punix:{sock}", f"--pidfile={self.dir}/ovsdb.pid", "--detach",
           f"--log-file={self.dir}/ovsdb.log", f"--unixctl={self.dir}/ovsdb.ctl", "-vconsole:off")
        self.pids.append(read_pid(f"{self.dir}/ovsdb.pid"))
        self.vsctl = ["ovs-vsctl", f"--db=unix:{sock}"]
        sh(*self.vsctl, "--no-wait", "init")
        sh(*self.vsctl, "--no-wait", "set", "Open_vSwitch", ".", "other_config:userspace-tso-enable=true")
        sh("ip", "netns", "exec", host, "ovs-vswitchd", f"unix:{sock}", f"--pidfile={self.dir}/vswitchd.pid",
           "--detach", f"--log-file={self.dir}/vswitchd.log", f"--unixctl={self.dir}/vswitchd.ctl",
           "-vconsole:off")
        self.switch_pid = read_pid(f"{self.dir}/vswitchd.pid")
        self.pids.append(self.switch_pid)
        sh(*self.vsctl, "add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev")
        self.c1, self.c2 = self.netns("c1"), self.netns("c2")
        for i, ns in ((1, self.c1), (2, self.c2)):
            tap = f"ovstap{i}"
            sh(*self.vsctl, "add-port", "br0", tap, "--", "set", "Interface", tap, "type=tap",
               f"mtu_request={mtu}")
            wait_for_link(host, tap)
            sh("ip", "-n", host, "link", "set", tap, "netns", ns)
            configure_container(ns, tap, i, mtu)

    def teardown(self):
        super().teardown()
        for pid in reversed(self.pids):
            kill_pid(pid)
        shutil.rmtree(self.dir, ignore_errors=True)


class Vde(Topology):
    """vde_switch with one TAP port per container, the TAPs moved into the containers."""

    def __init__(self, mtu):
        super().__init__("vde")
        self.dir = tempfile.mkdtemp(prefix="vswitch-bench-vde-")
        host = self.netns("host")
        sh("ip", "netns", "exec", host, "vde_switch", "-s", f"{self.dir}/ctl", "-t", "vdetap1", "-t", "vdetap2",
           "-d", "-p", f"{self.dir}/pid")
        self.switch_pid = read_pid(f"{self.dir}/pid")
        self.c1, self.c2 = self.netns("c1"), self.netns("c2")
        for i, ns in ((1, self.c1), (2, self.c2)):
            wait_for_link(host, f"vdetap{i}")
            sh("ip", "-n", host, "link", "set", f"vdetap{i}", "netns", ns)
            configure_container(ns, f"vdetap{i}", i, mtu)

    def teardown(self):
        super().teardown()
        kill_pid(self.switch_pid)
        shutil.rmtree(self.dir, ignore_errors=True)


class Vswitch(Topology):
    def __init__(self, binary, mtu, extra_args=()):
        super().__init__("vs")
        self.dir = tempfile.mkdtemp(prefix="vswitch-bench-")
        self.socket = os.path.join(self.dir, "sock")
        self.binary = binary
        self.daemon = subprocess.Popen(
            [binary, "--socket", self.socket, "daemon", "--state-dir", os.path.join(self.dir, "state"), *extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.switch_pid = self.daemon.pid
        deadline = time.time() + 10
        while self.cli("network", "ls", check=False).returncode != 0:
            if time.time() > deadline:
                raise RuntimeError("vswitch daemon did not start")
            time.sleep(0.05)
        self.cli("network", "create", "bench", "--subnet", f"{SUBNET}.0/24", "--gateway", f"{SUBNET}.254",
                 "--mtu", str(mtu))
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


def attempt(workload, *args):
    """A workload's figures, or None where this switch cannot do it (counted as missing)."""
    try:
        return workload(*args)
    except (subprocess.CalledProcessError, KeyError, ValueError, IndexError, statistics.StatisticsError) as e:
        print(f"  {workload.__name__} failed: {e}", file=sys.stderr)
        return None


def measure(topo, seconds):
    # Warm up ARP/FDB so the first sample does not pay for learning.
    ns_exec(topo.c1, "ping", "-c", "2", "-i", "0.2", "-W", "1", server_ip(topo), check=False, capture=True)
    return {
        "tcp1": attempt(tcp, topo, seconds, 1),
        "tcp4": attempt(tcp, topo, seconds, 4),
        "udp64": attempt(udp64, topo, seconds),
        "latency": attempt(latency, topo),
    }


def median_runs(runs):
    """Median of every numeric leaf over the runs (runs where a workload failed are skipped)."""
    def merge(values):
        values = [v for v in values if v is not None]
        if not values:
            return None
        if isinstance(values[0], dict):
            return {k: merge([v.get(k) for v in values]) for k in values[0]}
        return statistics.median(values)
    return merge(runs)


def figure(results, name, group, key):
    return ((results.get(name) or {}).get(group) or {}).get(key)


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
    parser.add_argument("--mtu", type=int, action="append", help="MTUs to run at (default 1500 and 9000)")
    parser.add_argument("--install-rivals", action="store_true",
                        help="apt-get install Open vSwitch and vde2 to compare against them")
    parser.add_argument("--only", action="append", help="run only these switches (linux-bridge, vswitch, ...)")
    parser.add_argument("--vswitch-args", default="", help="extra arguments for `vswitch daemon`")
    parser.add_argument("--json", default="bench/results.json", help="where to write the figures")
    args = parser.parse_args()
    mtus = args.mtu or [1500, 9000]
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark creates network namespaces")
    packages = ["iperf3", "iputils-ping"] + (["openvswitch-switch", "vde2"] if args.install_rivals else [])
    if args.install_rivals or not shutil.which("iperf3") or not shutil.which("ping"):
        sh("apt-get", "update", "-qq")
        sh("apt-get", "install", "-y", "-qq", *packages)
    sh("cargo", "build", "--release", "-q", "-p", "vswitch")
    binary = os.path.abspath("target/release/vswitch")

    extra = args.vswitch_args.split()
    makers = {"linux-bridge": Bridge, "vswitch": lambda mtu: Vswitch(binary, mtu, extra)}
    if shutil.which("ovs-vswitchd"):
        makers["ovs-userspace-tso"] = Ovs
    if shutil.which("vde_switch"):
        makers["vde_switch"] = Vde
    if args.only:
        makers = {n: m for n, m in makers.items() if n in args.only}
    results = {}
    for mtu in mtus:
        for name, make in makers.items():
            runs = []
            for _ in range(args.runs):
                topo = None
                try:
                    topo = make(mtu)
                    runs.append(measure(topo, args.seconds))
                except (subprocess.CalledProcessError, RuntimeError) as e:
                    print(f"  {name} at MTU {mtu} could not be set up: {e}", file=sys.stderr)
                finally:
                    if topo:
                        topo.teardown()
            results[f"{name}@{mtu}"] = median_runs(runs)

    rivals = [n for n in makers if n != "vswitch"] if "vswitch" in makers else []
    fmt = lambda x: "-" if x is None else f"{x:.2f}" if x < 100 else f"{x:.0f}"
    for mtu in mtus:
        print(f"\nMTU {mtu}")
        header = f"{'workload':42}" + "".join(f"{n:>19}" for n in makers) + "".join(f"{'vs/' + n:>22}" for n in rivals)
        print(header)
        for label, (group, key), _higher_better in ROWS:
            values = {n: figure(results, f"{n}@{mtu}", group, key) for n in makers}
            v = values.get("vswitch")
            ratios = ["-" if v is None or not values[n] else f"{v / values[n]:.2f}" for n in rivals]
            print(f"{label:42}" + "".join(f"{fmt(values[n]):>19}" for n in makers) + "".join(f"{r:>22}" for r in ratios))
    with open(args.json, "w") as f:
        json.dump({"seconds": args.seconds, "runs": args.runs, "mtus": mtus, "results": results}, f, indent=2)
    print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
