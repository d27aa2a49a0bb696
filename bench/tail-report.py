#!/usr/bin/env python3
"""Turns the record of bench/tail.sh into results.json and README.md.

usage: tail-report.py OUT_DIR RATE SERVER_CORE SERVER...
"""
import gzip
import json
import os
import re
import statistics
import sys

out, rate, core = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
servers = sys.argv[4:]
# A stretch another task holds the server's core longer than this is a stall.
STALL_MS = 1.0


def load(name):
    try:
        with open(os.path.join(out, "raw", name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


runs = {s: [] for s in servers}
with open(os.path.join(out, "runs.tsv")) as f:
    for line in f:
        s, rnd, c0, c1 = line.split()
        j = load(f"{s}-{rnd}.json")
        if not j:
            continue
        answered, lat = j["counters"]["answered"], j["latency"]
        runs[s].append({
            "round": int(rnd), "answered": answered, "loss_pct": j["loss_pct"],
            "cpu_us_per_query": (int(c1) - int(c0)) / 1000 / answered if answered else None,
            "p50_us": lat["p50_us"], "p99_us": lat["p99_us"], "p99_9_us": lat["p99_9_us"],
            "max_us": lat["max_us"],
        })

pids = {}
with open(os.path.join(out, "raw", "pids.tsv")) as f:
    for line in f:
        s, p = line.split()
        pids[s] = p

ROW = re.compile(r"^\s*[\d.]+\s+\[(\d+)\]\s+(.+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")


def sched(s):
    """Other tasks' time on the server core, and the server's scheduling delays."""
    path = os.path.join(out, "raw", f"{s}-timehist.txt.gz")
    if not os.path.exists(path):
        return None
    others, delays = {}, []
    with gzip.open(path, "rt") as f:
        for line in f:
            m = ROW.match(line)
            if not m or int(m.group(1)) != core:
                continue
            task, delay, run = m.group(2), float(m.group(4)), float(m.group(5))
            ids = re.search(r"\[(\d+)(?:/(\d+))?\]$", task)
            pid = ids and (ids.group(2) or ids.group(1))
            if pid == pids.get(s):
                delays.append(delay)
            elif not task.startswith("<idle>"):
                name = re.sub(r"\[[\d/]+\]$", "", task)
                o = others.setdefault(name, {"ms": 0.0, "max_ms": 0.0, "stalls": 0})
                o["ms"] += run
                o["max_ms"] = max(o["max_ms"], run)
                o["stalls"] += run > STALL_MS
    top = sorted(others.items(), key=lambda kv: -kv[1]["max_ms"])[:5]
    delays.sort()
    return {
        "other_tasks": dict(top),
        "server_sched_delay_max_ms": delays[-1] if delays else None,
        "server_sched_delays_over_1ms": sum(d > STALL_MS for d in delays),
    }


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


summary = {s: {k: med(r[k] for r in runs[s]) for k in
               ("cpu_us_per_query", "p50_us", "p99_us", "p99_9_us", "max_us")} for s in servers}
stalls = {s: sched(s) for s in servers}
sched_lat = {s: (load(f"{s}-sched.json") or {}).get("latency") for s in servers}
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump({"rate_qps": rate, "runs": runs, "medians": summary, "sched": stalls,
               "sched_run_latency": sched_lat}, f, indent=1)


def fmt(v, digits=0):
    return "–" if v is None else f"{v:,.{digits}f}"


lines = [f"# Tail latency at {rate:,} QPS, and what held the server's core", "",
         "Servers on core 0, dnsload and knotd on core 1; open loop over 1,000 warm names, "
         "latency from the intended send time. Medians of the runs, then every run.", "",
         "| server | CPU µs/q | p50 µs | p99 µs | p99.9 µs | max µs | p99 of each run (µs) |",
         "|---|---|---|---|---|---|---|"]
for s in servers:
    m = summary[s]
    each = ", ".join(fmt(r["p99_us"]) for r in runs[s])
    lines.append(f"| {s} | {fmt(m['cpu_us_per_query'], 2)} | {fmt(m['p50_us'])} | "
                 f"{fmt(m['p99_us'])} | {fmt(m['p99_9_us'])} | {fmt(m['max_us'])} | {each} |")
if any(stalls.values()):
    lines += ["", f"## Who else ran on core {core} (one more run each, `perf sched timehist`)", "",
              f"The five tasks with the longest single stretch on the server's core; "
              f"stalls = stretches over {STALL_MS:g} ms. The server's delays: from its wake-up "
              "to running.", "",
              "| server | p99 µs of this run | server delays > 1 ms (max ms) | other tasks: longest stretch ms / stalls / total ms |",
              "|---|---|---|---|"]
    for s in servers:
        st = stalls[s]
        if not st:
            continue
        tasks = "; ".join(f"{n} {o['max_ms']:.1f} / {o['stalls']} / {o['ms']:.0f}"
                          for n, o in st["other_tasks"].items())
        lat = sched_lat.get(s) or {}
        lines.append(f"| {s} | {fmt(lat.get('p99_us'))} | {st['server_sched_delays_over_1ms']} "
                     f"({fmt(st['server_sched_delay_max_ms'], 1)}) | {tasks} |")
lines += ["", "## Commands", "", "```", open(os.path.join(out, "commands.txt")).read().strip(),
          open(os.path.join(out, "load.txt")).read().strip(), "```", ""]
with open(os.path.join(out, "README.md"), "w") as f:
    f.write("\n".join(lines))
