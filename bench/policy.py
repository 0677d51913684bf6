#!/usr/bin/env python3
"""What policy costs the data path: the same workloads between two containers on vswitch with no
policy, and with default deny and 1,000 rules that all select the two containers (999 allow other
TCP/UDP ports, the last allows the benchmark's flows), so a linear scan would test every rule.
Modes are interleaved run by run, so drift over time hits both alike. Run as root from the
repository root:

    python3 bench/policy.py [--seconds 5] [--runs 3] [--rules 1000] [--json bench/policy.json]

Topologies and daemons are started by this script in namespaces of its own and ended by PID, also
on failure; traffic is bounded by iperf3's -t. Goals (issue 5): with 1,000 rules, TCP >= 90 % and
64-byte UDP >= 80 % of the run without policy.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402  (the end-to-end harness's topology and workloads)


def policy_toml(client, server, rules):
    """Default deny; `rules - 1` rules for other ports, then the one the benchmark needs."""
    lines = ['default = "deny"']
    for i in range(rules - 1):
        proto = "tcp" if i % 2 == 0 else "udp"
        lines += ["[[rules]]", f'name = "other-{i}"', 'action = "allow"', 'direction = "to"',
                  f'select = "name={server}"', f'peer = "name={client}"', f'proto = "{proto}"',
                  f'ports = "{20000 + i}"']
    lines += ["[[rules]]", 'name = "bench"', 'action = "allow"', 'direction = "to"',
              f'select = "name={server}"', f'peer = "name={client}"']
    return "\n".join(lines) + "\n"


def run_mode(binary, mode, seconds, rules):
    topo = e2e.Vswitch(binary, 1500)
    try:
        if mode == "rules":
            with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
                f.write(policy_toml(topo.c1, topo.c2, rules))
            try:
                topo.cli("policy", "set", "bench", f.name)
            finally:
                os.unlink(f.name)
        e2e.ns_exec(topo.c1, "ping", "-c", "2", "-i", "0.2", "-W", "1", e2e.server_ip(topo), check=False,
                    capture=True)
        result = {"tcp1": e2e.attempt(e2e.tcp, topo, seconds, 1), "udp64": e2e.attempt(e2e.udp64, topo, seconds)}
        if mode == "rules":
            listing = json.loads(topo.cli("policy", "ls", "bench", "--format", "json").stdout)
            result["bench_rule_hits"] = next(s["hits"] for s in listing["stats"] if s["name"] == "bench")
        return result
    finally:
        topo.teardown()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--json", default="bench/policy.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark creates network namespaces")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "vswitch"], check=True)
    binary = os.path.abspath("target/release/vswitch")
    modes = ["none", "rules"]
    runs = {m: [] for m in modes}
    for i in range(args.runs):
        for mode in modes:
            print(f"run {i + 1}/{args.runs}: {mode}", file=sys.stderr)
            runs[mode].append(run_mode(binary, mode, args.seconds, args.rules))
    summary = {}
    for mode in modes:
        tcp = [r["tcp1"]["gbit_s"] for r in runs[mode] if r["tcp1"]]
        udp = [r["udp64"]["kpps"] for r in runs[mode] if r["udp64"]]
        summary[mode] = {"tcp1_gbit_s": statistics.median(tcp), "udp64_kpps": statistics.median(udp)}
    label = f"{args.rules} rules"
    print(f"{'workload':<24}{'no policy':>12}{label:>12}{'ratio':>8}")
    for key, name in [("tcp1_gbit_s", "TCP 1 stream (Gbit/s)"), ("udp64_kpps", "UDP 64 B (kpps)")]:
        none, rules = summary["none"][key], summary["rules"][key]
        print(f"{name:<24}{none:>12.2f}{rules:>12.2f}{rules / none:>8.2f}")
    print("packets decided by the last rule per run:", [r.get("bench_rule_hits") for r in runs["rules"]])
    with open(args.json, "w") as f:
        json.dump({"rules": args.rules, "summary": summary, "runs": runs}, f, indent=2)
    print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
