#!/usr/bin/env python3
"""Turns the raw record of bench/compare.sh into results.json and README.md.

usage: compare-report.py OUT_DIR RATE SECS ROUNDS
"""
import gzip
import json
import os
import statistics
import sys

out, rate, secs, rounds = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
OURS, ECHO = "nodelocaldns", "echo"
# Bytes of the one A record each RSS-phase entry caches (pointer name, type, class,
# TTL, rdlength, 4-byte address): the "answer bytes" an entry cannot do without.
ANSWER_RR_BYTES = 16


def load(name):
    path = os.path.join(out, "raw", name)
    try:
        if os.path.exists(path + ".gz"):
            with gzip.open(path + ".gz", "rt") as f:
                return json.load(f)
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# Stands for a percentile that falls among the lost queries (never answered).
LOST = float("inf")


def pct_of_sent(j, p):
    """The p-th latency percentile over every query sent, a lost one counting as never
    answered (LOST): a server that drops its slowest queries gains nothing by it."""
    sent = j["counters"]["sent"]
    rank = -(-p * sent // 100)  # ceil
    seen = 0
    for bucket in j.get("histogram") or []:
        seen += bucket["count"]
        if seen >= rank:
            return bucket["value_us"]
    return LOST


def noerror_qps(j):
    if not j:
        return None
    answered = j["counters"]["answered"] or 1
    share = j.get("rcodes", {}).get("NOERROR", 0) / answered
    return j["qps"] * share


versions = {}
with open(os.path.join(out, "versions.tsv")) as f:
    for line in f:
        name, version, command = (line.rstrip("\n").split("\t") + ["", ""])[:3]
        versions[name] = {"version": version, "command": command}

runs = {}
with open(os.path.join(out, "runs.tsv")) as f:
    for line in f:
        fields = line.rstrip("\n").split("\t")
        server, kind, rnd, a, b, idle = fields[:6]
        # Hit runs since compare-8: the server core's busy % and the server's CPU ns.
        server_busy, server_cpu_ns = (fields[6:8] + [None, None])[:2]
        r = runs.setdefault(server, {"hit": [], "rate": [], "miss": [], "rss": None})
        if kind == "rss":
            j = load(f"{server}-rss.json")
            entries = j["counters"]["rcodes"][0] if j else 0
            grown = (int(b) - int(a)) * 1024
            r["rss"] = {
                "before_kb": int(a),
                "after_kb": int(b),
                "noerror_answers": entries,
                "bytes_per_entry": grown / entries if entries else None,
            }
        elif kind == "hit":
            j = load(f"{server}-hit-{rnd}.json")
            answered = j["counters"]["answered"] if j else 0
            r["hit"].append({"round": int(rnd), "qps": noerror_qps(j), "idle_pct": int(idle),
                             "load_core_busy_pct": None if a == "-" else int(a),
                             "server_core_busy_pct": int(server_busy) if server_busy else None,
                             "cpu_us_per_query": (int(server_cpu_ns) / 1000 / answered
                                                  if server_cpu_ns and answered else None)})
        elif kind == "miss":
            j = load(f"{server}-miss-{rnd}.json")
            r["miss"].append({"round": int(rnd), "qps": noerror_qps(j), "idle_pct": int(idle),
                              "rcodes": j.get("rcodes") if j else None,
                              "loss_pct": j.get("loss_pct") if j else None})
        elif kind == "rate":
            j = load(f"{server}-rate-{rnd}.json")
            if not j:
                continue
            answered = j["counters"]["answered"]
            lat = j["latency"]
            r["rate"].append({
                "round": int(rnd), "idle_pct": int(idle), "answered": answered,
                "loss_pct": j["loss_pct"], "qps": j["qps"],
                "cpu_us_per_query": (int(b) - int(a)) / 1000 / answered if answered else None,
                "p50_us": lat["p50_us"], "p99_us": lat["p99_us"], "p99_9_us": lat["p99_9_us"],
                "p99_of_sent_us": pct_of_sent(j, 99), "p99_9_of_sent_us": pct_of_sent(j, 99.9),
            })


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


summary = {}
for s, r in runs.items():
    summary[s] = {
        "hit_qps": med(x["qps"] for x in r["hit"]),
        "hit_load_core_busy_pct": med(x.get("load_core_busy_pct") for x in r["hit"]),
        "hit_server_core_busy_pct": med(x.get("server_core_busy_pct") for x in r["hit"]),
        "hit_cpu_us_per_query": med(x.get("cpu_us_per_query") for x in r["hit"]),
        "miss_qps": med(x["qps"] for x in r["miss"]),
        "cpu_us_per_query": med(x["cpu_us_per_query"] for x in r["rate"]),
        "p50_us": med(x["p50_us"] for x in r["rate"]),
        "p99_us": med(x["p99_us"] for x in r["rate"]),
        "p99_of_sent_us": med(x.get("p99_of_sent_us") for x in r["rate"]),
        "p99_9_of_sent_us": med(x.get("p99_9_of_sent_us") for x in r["rate"]),
        "p99_9_us": med(x["p99_9_us"] for x in r["rate"]),
        "rate_loss_pct": med(x["loss_pct"] for x in r["rate"]),
        "rss_bytes_per_entry": (r["rss"] or {}).get("bytes_per_entry"),
        "rss_mb_after": ((r["rss"] or {}).get("after_kb") or 0) / 1024 or None,
    }
peers = [s for s in summary if s != ECHO and not s.startswith(OURS)]


def jsonable(o):
    """`o` with LOST written as "lost" (JSON has no infinity)."""
    if isinstance(o, dict):
        return {k: jsonable(v) for k, v in o.items()}
    if isinstance(o, list):
        return [jsonable(v) for v in o]
    return "lost" if o == LOST else o


def best(metric, higher):
    vals = [(summary[p][metric], p) for p in peers if summary[p][metric] is not None]
    if not vals:
        return None, None
    return (max if higher else min)(vals)


with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(jsonable({"rate_qps": rate, "secs_per_run": int(secs), "rounds": int(rounds),
                        "versions": versions, "runs": runs, "medians": summary}), f, indent=1)


def fmt(v, digits=0):
    return "–" if v is None else f"{v:,.{digits}f}"


def fmt_lat(v):
    return "lost" if v == LOST else f"{fmt(v)} µs"


def ratio(a, b):
    return "–" if a is None or not b else f"{a / b:.2f}"


load_txt = open(os.path.join(out, "load.txt")).read().strip()
commands = open(os.path.join(out, "commands.txt")).read().strip()
echo = summary.get(ECHO, {})
lines = [
    f"# nodelocaldns vs caching peers and the echo floor, one core each",
    "",
    "Servers pinned to core 0, dnsload and knotd (the upstream) to core 1; "
    f"{secs} s per run, {rounds} rounds alternating the order of the servers; medians.",
    "",
    "| server | version | hit QPS | ÷ best peer | ÷ echo | busy % server/load core (hit) | "
    "CPU µs/q (hit) | all-miss QPS | "
    f"CPU µs/q @ {rate // 1000}k | p50 µs | p99 µs | p99.9 µs | loss % @ {rate // 1000}k | "
    "RSS B/entry | RSS MB |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]
best_hit, best_hit_peer = best("hit_qps", True)
for s in sorted(summary, key=lambda k: (not k.startswith(OURS), k != ECHO, k)):
    m = summary[s]
    lines.append(
        f"| {s} | {versions.get(s, {}).get('version', '?')} | {fmt(m['hit_qps'])} | "
        f"{ratio(m['hit_qps'], best_hit)} | {ratio(m['hit_qps'], echo.get('hit_qps'))} | "
        f"{fmt(m['hit_server_core_busy_pct'])}/{fmt(m['hit_load_core_busy_pct'])} | "
        f"{fmt(m['hit_cpu_us_per_query'], 2)} | {fmt(m['miss_qps'])} | {fmt(m['cpu_us_per_query'], 2)} | {fmt(m['p50_us'])} | "
        f"{fmt(m['p99_us'])} | {fmt(m['p99_9_us'])} | {fmt(m['rate_loss_pct'], 2)} | "
        f"{fmt(m['rss_bytes_per_entry'])} | {fmt(m['rss_mb_after'], 1)} |")
for s, v in versions.items():
    if v["version"] == "not started":
        lines.append(f"| {s} | not started |" + " – |" * 13)

ours = summary.get(OURS, {})
targets = []


def target(name, ok, detail):
    targets.append(f"| {name} | {'met' if ok else 'NOT met'} | {detail} |")


if ours.get("hit_qps") and best_hit:
    busy = ours.get("hit_load_core_busy_pct")
    server_busy = ours.get("hit_server_core_busy_pct")
    bound = (f" (server core {server_busy:.0f} % busy, dnsload's {busy:.0f} %: the load "
             "generator's limit, a lower bound)"
             if busy is not None and busy >= 95 and server_busy is not None and server_busy < 90
             else "")
    target("hit QPS ≥ 1.3× best peer", ours["hit_qps"] >= 1.3 * best_hit,
           f"{ours['hit_qps'] / best_hit:.2f}× {best_hit_peer}{bound}")
nogso = summary.get(OURS + "-nogso", {})
if nogso.get("hit_qps") and best_hit:
    target("(not a target) hit QPS without GSO (`--udp-gso=false`) ≥ 1.3× best peer",
           nogso["hit_qps"] >= 1.3 * best_hit, f"{nogso['hit_qps'] / best_hit:.2f}× {best_hit_peer}")
if ours.get("hit_qps") and echo.get("hit_qps"):
    target("hit QPS ≥ 0.9× echo", ours["hit_qps"] >= 0.9 * echo["hit_qps"],
           f"{ours['hit_qps'] / echo['hit_qps']:.2f}× echo")
b, bp = best("cpu_us_per_query", False)
if ours.get("cpu_us_per_query") and b:
    target(f"CPU/q @ {rate // 1000}k ≤ 0.8× best peer", ours["cpu_us_per_query"] <= 0.8 * b,
           f"{ours['cpu_us_per_query'] / b:.2f}× {bp}")
b, bp = best("p99_us", False)
if ours.get("p99_us") and b:
    target(f"p99 @ {rate // 1000}k ≤ best peer", ours["p99_us"] <= b,
           f"{ours['p99_us']} µs vs {b} µs ({bp})")
b, bp = best("p99_of_sent_us", False)
if ours.get("p99_of_sent_us") and b:
    target(f"p99 @ {rate // 1000}k over every query sent (lost = never) ≤ best peer",
           ours["p99_of_sent_us"] <= b,
           f"{fmt_lat(ours['p99_of_sent_us'])} vs {fmt_lat(b)} ({bp})")
b, bp = best("p99_9_of_sent_us", False)
if ours.get("p99_9_of_sent_us") and b:
    target(f"(not a target) p99.9 @ {rate // 1000}k over every query sent ≤ best peer",
           ours["p99_9_of_sent_us"] <= b,
           f"{fmt_lat(ours['p99_9_of_sent_us'])} vs {fmt_lat(b)} ({bp})")
for peer, factor in (("unbound", 1.5), ("dnsdist", 1.0)):
    p = summary.get(peer, {}).get("miss_qps")
    if ours.get("miss_qps") and p:
        target(f"all-miss QPS ≥ {factor}× {peer}", ours["miss_qps"] >= factor * p,
               f"{ours['miss_qps'] / p:.2f}×")
if ours.get("rss_bytes_per_entry"):
    beyond = ours["rss_bytes_per_entry"] - ANSWER_RR_BYTES
    target("RSS ≤ 150 B/entry beyond the answer", beyond <= 150,
           f"{beyond:.0f} B beyond the {ANSWER_RR_BYTES} B record")

lines += ["", "## Targets (nodelocaldns)", "", "| target | status | figure |", "|---|---|---|"]
lines += targets
lines += [
    "",
    "## How each figure is measured",
    "",
    "- hit QPS: NOERROR answers per second of sending, closed loop, 1,000 names warm in the cache. "
    "Busy %: the server's and dnsload's core during the hit run (from /proc/stat); "
    "CPU µs/q (hit): the server's CPU time over the hit run per answer. A server core well "
    "below 100 % while dnsload's is at 100 % means the run measured dnsload (one core each on "
    "this machine); both at 100 % is a balanced pipeline and the QPS is the server's. "
    "dnsload spins while it has room for more queries, so its core at 100 % alone proves "
    "nothing.",
    "- nodelocaldns-nogso: the same binary with `--udp-gso=false`. dnsload sends bursts from "
    "each of its 16 sockets, so most answers of a batch go to one client and ours sends them as "
    "one UDP GSO send; a node's pods (a query or two per socket) get what this row shows. "
    "It is not a peer: ratios are to the best of the other servers.",
    "- all-miss QPS: NOERROR answers per second, every name unique (knotd wildcard); "
    "nodelocaldns forwards over TCP (`force_tcp`), every peer over UDP (its default).",
    "- CPU µs/q: the server's CPU time (all threads, /proc/PID/task/*/schedstat) over the "
    f"open-loop run at {rate} QPS, divided by the answers.",
    "- latency: dnsload open loop (from the intended send time), same run; p50/p99/p99.9 "
    "over the answered queries. The targets also give p99 and p99.9 over every query "
    "sent, from dnsload's histogram, a lost query counting as never answered (\"lost\" "
    "when the percentile falls among them): a server that drops its slowest queries "
    "(a full socket buffer during a stall) would otherwise look faster.",
    "- RSS B/entry: VmRSS growth over 100,000 unique names on a warm process, divided by "
    "the NOERROR answers (dnsmasq allocates its whole `--cache-size` at start, so it shows "
    "no growth; RSS MB is the total after the 100k names).",
    "",
    "## Commands",
    "",
    "```",
    commands,
    "```",
    "",
    "Server command lines: `versions.tsv`; configurations: `conf/`; raw dnsload JSON: `raw/`; "
    "per-run rows (CPU ns before/after, idle % of both cores before the run): `runs.tsv`.",
    "",
    "```",
    load_txt,
    "```",
]
with open(os.path.join(out, "README.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
