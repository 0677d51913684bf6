#!/usr/bin/env python3
"""What observability costs the data path: the same workloads between two containers on vswitch
plain, with Prometheus metrics served and scraped every second, and with a live capture of the
whole network streaming to a fast reader (/dev/null). Modes are interleaved run by run, so drift
over time hits all three alike. Run as root from the repository root:

    python3 bench/observability.py [--seconds 5] [--runs 3] [--json bench/observability.json]

Topologies, daemon and capture are started by this script in namespaces of its own and ended by
PID, also on failure; traffic is bounded by iperf3's -t. Goals (issue 6): metrics >= 98 % and
capture >= 70 % of plain throughput.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402  (the end-to-end harness's topology and workloads)


def scraper(port, stop):
    """Scrapes /metrics once a second until `stop` is set; returns the scrape count."""
    count = [0]

    def run():
        while not stop.wait(1.0):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                r.read()
            count[0] += 1
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, count


def run_mode(binary, mode, seconds):
    port = 19000 + os.getpid() % 1000
    extra = ["--metrics-addr", f"127.0.0.1:{port}"] if mode == "metrics" else []
    topo = e2e.Vswitch(binary, 1500, extra)
    capture, stop = None, threading.Event()
    try:
        e2e.ns_exec(topo.c1, "ping", "-c", "2", "-i", "0.2", "-W", "1", e2e.server_ip(topo), check=False,
                    capture=True)
        if mode == "metrics":
            scraper(port, stop)
        if mode == "capture":
            capture = subprocess.Popen([binary, "--socket", topo.socket, "capture", "--network", "bench",
                                        "-w", "-"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(0.5)
        result = {"tcp1": e2e.attempt(e2e.tcp, topo, seconds, 1), "udp64": e2e.attempt(e2e.udp64, topo, seconds)}
        if capture is not None:
            capture.send_signal(signal.SIGINT)
            _, err = capture.communicate(timeout=20)
            result["capture_summary"] = err.strip()
        return result
    finally:
        stop.set()
        if capture is not None and capture.poll() is None:
            capture.kill()
        topo.teardown()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default="bench/observability.json")
    parser.add_argument("--modes", default="plain,metrics,capture", help="comma-separated subset")
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
            runs[mode].append(run_mode(binary, mode, args.seconds))
    summary = {}
    for mode in modes:
        tcp = [r["tcp1"]["gbit_s"] for r in runs[mode] if r["tcp1"]]
        udp = [r["udp64"]["kpps"] for r in runs[mode] if r["udp64"]]
        summary[mode] = {"tcp1_gbit_s": statistics.median(tcp), "udp64_kpps": statistics.median(udp)}
    base = summary.get("plain")
    print(f"{'workload':<28}" + "".join(f"{m:>10}" for m in modes)
          + ("".join(f"{m + '/plain':>16}" for m in modes if m != "plain") if base else ""))
    for key, label in [("tcp1_gbit_s", "TCP 1 stream (Gbit/s)"), ("udp64_kpps", "UDP 64 B (kpps)")]:
        line = f"{label:<28}" + "".join(f"{summary[m][key]:>10.2f}" for m in modes)
        if base:
            line += "".join(f"{summary[m][key] / base[key]:>16.2f}" for m in modes if m != "plain")
        print(line)
    captures = [r.get("capture_summary") for r in runs.get("capture", [])]
    print("capture summaries:", *captures, sep="\n  ")
    with open(args.json, "w") as f:
        json.dump({"summary": summary, "runs": runs}, f, indent=2)
    print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
