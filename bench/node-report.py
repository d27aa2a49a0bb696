#!/usr/bin/env python3
"""table.md of bench/node.sh: medians over rounds of every point and server from
runs.tsv, and ours against the best peer on issue #18's targets (CPU per answer
<= 0.8x, p50 and p99 <= 1x at each open-loop rate; closed-loop max >= 1.5x)."""
import csv
import statistics
import sys

OURS = "nodelocaldns"  # nodelocaldns-* (other engines, flags) are ours too, never a peer
FLOORS = {"echo"}  # no DNS work: the floor of the shape, never a peer


def ours(server):
    return server.split("-")[0] == OURS

rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
points, groups = [], {}
for r in rows:
    key = (r["variant"], r["kind"], int(r["target_qps"]))
    if key not in points:
        points.append(key)
    groups.setdefault(key, {}).setdefault(r["server"], []).append(r)


def med(runs, col):
    return statistics.median(float(r[col]) for r in runs)


def name(key):
    v, kind, qps = key
    if kind == "closed":
        return "closed loop" if v == "v4" else f"closed loop ({v})"
    label = f"{qps:,}" + (" churn" if kind == "churn" else "")
    return label + (" dual-stack" if v == "dual" else "")


def kernel(runs):
    """Median kernel µs per answer, "-" for records made before the column."""
    if any(not r.get("kernel_us_per_answer") for r in runs):
        return "-"
    return f"{med(runs, 'kernel_us_per_answer'):.1f}"


print("| point | server | answers/s | loss % | CPU µs/answer | of it kernel | p50 µs | p99 µs | p99.9 µs | send lag p99 µs | runs |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for key in points:
    for s, runs in groups[key].items():
        b = "**" if ours(s) else ""
        print(f"| {name(key)} | {b}{s}{b} | {med(runs, 'answers_per_s'):,.0f} | "
              f"{med(runs, 'loss_pct'):.2f} | {med(runs, 'cpu_us_per_answer'):.1f} | {kernel(runs)} | "
              f"{med(runs, 'p50_us'):,.0f} | {med(runs, 'p99_us'):,.0f} | "
              f"{med(runs, 'p999_us'):,.0f} | {med(runs, 'lag_p99_us'):,.0f} | {len(runs)} |")

print()
print("Ours against the best peer (the peer best on that figure), medians:")
print()
print("| point | CPU/answer: ours / best peer (target <= 0.8) | p50 (<= 1) | p99 (<= 1) | max QPS (>= 1.5) |")
print("|---|---|---|---|---|")


def ratio(key, col, higher_better=False, us=OURS):
    g = groups[key]
    peers = {s: med(r, col) for s, r in g.items() if not ours(s) and s not in FLOORS}
    if us not in g or not peers:
        return "-"
    best = (max if higher_better else min)(peers, key=peers.get)
    if peers[best] == 0:
        return "-"
    x = med(g[us], col) / peers[best]
    ok = x >= 1.5 if higher_better else None
    return f"{x:.2f} ({best})" + ("" if ok is None else (" met" if ok else " not met"))


def mark(text, limit):
    if text == "-":
        return text
    return text + (" met" if float(text.split()[0]) <= limit else " not met")


variants = sorted({s for g in groups.values() for s in g if ours(s)})
for key in points:
    for us in variants:
        label = name(key) + ("" if us == OURS else f" ({us})")
        if key[1] == "closed":
            print(f"| {label} | {ratio(key, 'cpu_us_per_answer', us=us)} | | | "
                  f"{ratio(key, 'answers_per_s', True, us)} |")
        else:
            print(f"| {label} | {mark(ratio(key, 'cpu_us_per_answer', us=us), 0.8)} | "
                  f"{mark(ratio(key, 'p50_us', us=us), 1.0)} | {mark(ratio(key, 'p99_us', us=us), 1.0)} | |")
