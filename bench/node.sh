#!/usr/bin/env bash
# Node-shaped comparison: nodelocaldns and its peers (unbound, dnsdist, kresd) on the
# shape a Kubernetes node runs, one core each, side by side in one run.
#
# Shape. A network namespace made for the run holds a veth pair; its end
# `nodelocaldns` carries the two local IPs of iptables mode, 169.254.20.10 and the
# kube-dns service IP 10.96.0.10 (a dummy interface dropped traffic inside a
# namespace, so a veth it is), plus the two upstreams: a knotd at 10.96.0.11 playing
# the cluster DNS (kube-dns-upstream, zone cluster.local) and a knotd at 192.0.2.53
# playing the outside (the node's /etc/resolv.conf servers, zone example.com with a
# wildcard). Both zones come from `dnsload --pods --write-zones`.
#   ours     the upstream ConfigMap's four server blocks (cluster.local, in-addr.arpa,
#            ip6.arpa, `.`), rendered as in deploy/kubernetes/iptables: `errors`,
#            `cache` (success 9984 30 / denial 9984 5 for cluster.local, `cache 30`
#            elsewhere), `reload`, `loop`, `bind` of both IPs, `force_tcp` to the
#            cluster DNS for the first three, `.` over UDP to the outside,
#            `prometheus :9253`, `health 169.254.20.10:8080`; `--shards 1`.
#   unbound  one thread; forward-zone with forward-tcp-upstream for cluster.local,
#            in-addr.arpa and ip6.arpa, plain forward for `.`; cache-max-ttl 30 and
#            cache-max-negative-ttl 5 (what the cache plugin caps), 4 MiB rcvbuf.
#   dnsdist  pools "cluster" (tcpOnly, cluster.local + reverse zones) and "outside",
#            each with a packet cache (maxTTL 30; negative 5 in the cluster pool),
#            4 MiB rcvbuf.
#   kresd    policy.suffix: TCP flag + FORWARD to the cluster DNS for the three
#            cluster zones, FORWARD to the outside for the rest, no trust anchor
#            (nothing here is signed), cache max TTL 30.
# No iptables rules are installed: nothing in a fresh namespace engages conntrack,
# which is what node-cache's NOTRACK rules achieve on a node.
#
# Load: dnsload's pod model (loadgen/README.md "Pod traffic"): PODS pods (one UDP
# socket each), lookups drawn Zipf-like, search-list expansion with ndots:5, A+AAAA,
# sent to the kube-dns IP; `--rate` counts lookups, so lookups/s = target QPS / 4.72.
# Points, each measured on every server back to back (order rotated every round):
#   open   RATES        open loop at each target QPS
#   churn  CHURN_RATES  open loop with --pods-churn (every outside lookup a new name)
#   dual   DUAL_RATES   servers restarted bound to v4+v6 local IPs (169.254.20.10,
#                       10.96.0.10, fd00:169:254::10, fd00:10:96::a); half the pods and
#                       half the rate to each of 10.96.0.10 and fd00:10:96::a, reports
#                       merged with `dnsload merge`
#   closed CLOSED=1     closed-loop max: a query file of the pod model's shape (generated
#                       here: the same profile, expanded as glibc does) from PODS sockets
#                       with CLOSED_Q queries outstanding
# Per point: CPU µs per answer (utime+stime of the server process from /proc/PID/stat
# before and after, over the answers; this kernel has no schedstats) and the kernel's
# part of it (stime alone), answers/s, loss,
# p50/p99/p99.9 (dnsload, latency from the intended send time) and dnsload's own send
# lag p99 (how late the generator sent: a large one means the load core was starved
# and the run's latency measures the machine, not the server). The servers run
# pinned to SERVER_CPU; knotd and dnsload share LOAD_CPU.
#
#   bench/node.sh                                   smoke: 3 s per point, one round
#   SECS=20 ROUNDS=3 bench/node.sh                  full run (the record's command)
#   env: OUT (record directory, default bench/runs/<date>-node), SECS (3), ROUNDS (1),
#        RATES ("1000 2000 10000 40000"), CHURN_RATES (2000), DUAL_RATES (10000; empty: none),
#        CLOSED (1; 0 skips), CLOSED_Q (512), PODS (256), WARM_SECS (5),
#        SERVERS ("nodelocaldns unbound dnsdist kresd"; "nodelocaldns-epoll" adds ours
#        with --io-engine=epoll; "nodelocaldns-base" adds the binary OURS_BASE, e.g. an
#        older build, side by side; "echo" adds bench/echo, the floor: see below),
#        OURS_ARGS (extra flags for ours), SERVER_CPU (1),
#        LOAD_CPU (0), CLUSTER_FRONT ("": the cluster DNS is knotd itself, which does
#        not set TCP_NODELAY; "dnsdist": a dnsdist without cache on the cluster DNS's
#        address forwards to that knotd, so TCP answers come with TCP_NODELAY, as
#        from a cluster's CoreDNS), DENIAL_CAP (9984, the ConfigMap's: our
#        cluster.local `denial` capacity; dnsdist's cluster packet cache holds 9984 +
#        DENIAL_CAP. Unbound (128 MB) and kresd (256 MB) evict nothing here, while
#        9984 negative entries do not hold the pods' working set at 40k QPS: a larger
#        cap gives every server the same misses), LOCAL_IPS (two: the kube-dns IP and
#        169.254.20.10, as in iptables mode; one: the kube-dns IP alone (and its v6
#        twin in the dual variant), so each server has one UDP socket per family)
# The echo (bench/echo: one socket on the kube-dns IP, recvmmsg, QR set, sendmmsg; no
# DNS work) is the floor of a UDP server on this shape. Its answers are NODATA, on
# which a pod's search would go on through every candidate, so its open points send
# the closed loop's query file (below: the pod model's queries, expanded as glibc
# does) open loop at the point's QPS from PODS sockets instead of --pods.
# Writes OUT/runs.tsv (every run), OUT/table.md (medians over rounds, ratios to the
# best peer; bench/node-report.py), OUT/raw/ (dnsload reports without histograms,
# server logs), OUT/conf/ (every config), OUT/env.txt (versions, uptime before/after).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
out=${OUT:-"bench/runs/$(date -u +%Y-%m-%d)-node"}
secs=${SECS:-3}
rounds=${ROUNDS:-1}
rates=${RATES:-"1000 2000 10000 40000"}
churn_rates=${CHURN_RATES-2000}
dual_rates=${DUAL_RATES-10000}
closed=${CLOSED:-1}
closed_q=${CLOSED_Q:-512}
pods=${PODS:-256}
warm_secs=${WARM_SECS:-5}
servers=${SERVERS:-"nodelocaldns unbound dnsdist kresd"}
case " $servers " in
  *" nodelocaldns-base "*) [ -x "${OURS_BASE:-}" ] || { echo "nodelocaldns-base needs OURS_BASE, an executable nodelocaldns" >&2; exit 2; };;
esac
server_cpu=${SERVER_CPU:-1}
load_cpu=${LOAD_CPU:-0}
target=${CARGO_TARGET_DIR:-target}

bench_install knot:knotd knot-dnsutils:kdig unbound:unbound dnsdist:dnsdist knot-resolver:kresd
cargo build --release -q -p nodelocaldns -p dnsload
ours_bin="$target/release/nodelocaldns"
echo_bin="$target/release/bench-echo"
case " $servers " in
  *" echo "*) cargo build --release -q --manifest-path bench/echo/Cargo.toml --target-dir "$target";;
esac
dnsload="$target/release/dnsload"
mkdir -p "$out/raw" "$out/conf"

# --- namespace, addresses, cleanup ------------------------------------------------
ns="nodebench-$$"
case ${LOCAL_IPS:-two} in
  two) local_v4="169.254.20.10 10.96.0.10" local_v6="fd00:169:254::10 fd00:10:96::a";;
  one) local_v4=10.96.0.10 local_v6=fd00:10:96::a;;
  *) echo "LOCAL_IPS: two or one, not \"$LOCAL_IPS\"" >&2; exit 2;;
esac
kube_dns=10.96.0.10
kube_dns6=fd00:10:96::a
cluster_dns=10.96.0.11
outside_dns=192.0.2.53
cluster_front=${CLUSTER_FRONT:-}
denial_cap=${DENIAL_CAP:-9984}
[[ $denial_cap =~ ^[1-9][0-9]*$ ]] || { echo "DENIAL_CAP: a positive integer, not \"$denial_cap\"" >&2; exit 2; }
case "$cluster_front" in
  "") cluster_knot=$cluster_dns;;
  dnsdist) cluster_knot=10.96.0.12;;
  *) echo "CLUSTER_FRONT: \"\" or dnsdist, not \"$cluster_front\"" >&2; exit 2;;
esac
work=$(mktemp -d)
pids=()
node_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap node_cleanup EXIT
trap 'exit 130' INT TERM HUP
ip netns add "$ns"
# inns CMD...: CMD in the namespace. Background jobs call `ip netns exec` themselves
# (not this function), so that $! is the process itself (ip and taskset exec into it)
# rather than a subshell: the cleanup kills by that pid.
inns() { ip netns exec "$ns" "$@"; }
inns sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
inns ip link set lo up
inns ip link add nodelocaldns type veth peer name nodelocalpeer
inns ip link set nodelocalpeer up
inns ip link set nodelocaldns up
for a in $local_v4 $cluster_dns $outside_dns; do inns ip addr add "$a/32" dev nodelocaldns; done
[ "$cluster_knot" = "$cluster_dns" ] || inns ip addr add "$cluster_knot/32" dev nodelocaldns
for a in $local_v6; do inns ip addr add "$a/128" dev nodelocaldns nodad; done

# --- upstreams --------------------------------------------------------------------
"$dnsload" --pods "$pods" --write-zones "$work/zones" > "$work/zones.txt"
# knot NAME ADDRESS ORIGIN: a knotd for ORIGIN on ADDRESS:53. Several TCP workers and
# a 5 s TCP I/O timeout (knotd's default 500 ms): on a shared load core, one worker
# with the default closed connections mid-exchange and the servers' misses failed
# (2026-12-04-node). The idle timeout stays at 10 s, as a cluster's CoreDNS has.
knot() {
  mkdir -p "$work/knot-$1"
  cat > "$work/knot-$1/knot.conf" <<KNOT
server:
    rundir: "$work/knot-$1"
    listen: [ $2@53 ]
    udp-workers: 2
    tcp-workers: 4
    background-workers: 1
    tcp-io-timeout: 5000
database:
    storage: "$work/knot-$1"
zone:
  - domain: $3
    file: "$(awk -v o="$3" '$1 == o {print $2}' "$work/zones.txt")"
log:
  - target: stderr
    any: warning
KNOT
  cp "$work/knot-$1/knot.conf" "$out/conf/knot-$1.conf"
  ip netns exec "$ns" taskset -c "$load_cpu" knotd -c "$work/knot-$1/knot.conf" 2>"$work/knot-$1.log" & pids+=($!)
}
knot cluster "$cluster_knot" cluster.local
if [ "$cluster_front" = dnsdist ]; then
  mkdir -p "$work/front"
  cat > "$work/front/dnsdist.conf" <<FRONT
setLocal("$cluster_dns:53")
setSecurityPollSuffix("")
newServer({address="$cluster_knot:53"})
FRONT
  cp "$work/front/dnsdist.conf" "$out/conf/cluster-front-dnsdist.conf"
  ip netns exec "$ns" taskset -c "$load_cpu" dnsdist --supervised --disable-syslog \
    -C "$work/front/dnsdist.conf" >"$work/front.log" 2>&1 & pids+=($!)
fi
knot outside "$outside_dns" example.com
cp "$work"/zones/*.zone "$out/conf/"

# --- servers ----------------------------------------------------------------------
declare -A port=([nodelocaldns]=5301 [unbound]=5302 [dnsdist]=5303 [kresd]=5304 [nodelocaldns-epoll]=5305 [nodelocaldns-base]=5306 [echo]=5307)
declare -A pid
cluster_zones="cluster.local in-addr.arpa ip6.arpa"
# configs VARIANT ADDRESSES: every server's configuration in $work/VARIANT/.
configs() {
  local v=$1 addrs=$2 d="$work/$1" a z p
  mkdir -p "$d/kresd"
  p=${port[nodelocaldns]}
  {
    for z in $cluster_zones .; do
      echo "$z:$p {"
      echo "    errors"
      if [ "$z" = cluster.local ]; then
        printf '    cache {\n        success 9984 30\n        denial %s 5\n    }\n' "$denial_cap"
      else
        echo "    cache 30"
      fi
      printf '    reload\n    loop\n    bind %s\n' "$addrs"
      if [ "$z" = . ]; then
        echo "    forward . $outside_dns"
      else
        printf '    forward . %s {\n        force_tcp\n    }\n' "$cluster_dns"
      fi
      echo "    prometheus :9253"
      [ "$z" = cluster.local ] && echo "    health ${addrs%% *}:8080"
      echo "}"
    done
  } > "$d/Corefile"
  sed "s/:${port[nodelocaldns]} {/:${port[nodelocaldns-epoll]} {/; s/prometheus :9253/prometheus :9254/; s/:8080/:8081/" \
    "$d/Corefile" > "$d/Corefile.epoll"
  sed "s/:${port[nodelocaldns]} {/:${port[nodelocaldns-base]} {/; s/prometheus :9253/prometheus :9255/; s/:8080/:8082/" \
    "$d/Corefile" > "$d/Corefile.base"
  p=${port[unbound]}
  {
    echo "server:"
    for a in $addrs; do echo "    interface: $a@$p"; done
    cat <<UB
    so-rcvbuf: 4m
    num-threads: 1
    do-daemonize: no
    do-ip6: $([ "$v" = dual ] && echo yes || echo no)
    username: ""
    chroot: ""
    directory: "$d"
    pidfile: ""
    use-syslog: no
    access-control: 0.0.0.0/0 allow
    access-control: ::/0 allow
    do-not-query-localhost: no
    module-config: "iterator"
    msg-cache-size: 128m
    rrset-cache-size: 256m
    cache-max-ttl: 30
    cache-max-negative-ttl: 5
    local-zone: "10.in-addr.arpa." nodefault
    local-zone: "254.169.in-addr.arpa." nodefault
    local-zone: "d.f.ip6.arpa." nodefault
UB
    for z in $cluster_zones; do
      printf 'forward-zone:\n    name: "%s."\n    forward-addr: %s@53\n    forward-tcp-upstream: yes\n' "$z" "$cluster_dns"
    done
    printf 'forward-zone:\n    name: "."\n    forward-addr: %s@53\n' "$outside_dns"
  } > "$d/unbound.conf"
  p=${port[dnsdist]}
  {
    local first=1
    for a in $addrs; do
      [[ $a == *:* ]] && a="[$a]"
      if [ $first = 1 ]; then echo "setLocal(\"$a:$p\")"; first=0; else echo "addLocal(\"$a:$p\")"; fi
    done
    cat <<DD
setSecurityPollSuffix("")
setUDPSocketBufferSizes(4194304, 0)
newServer({address="$cluster_dns:53", pool="cluster", tcpOnly=true})
newServer({address="$outside_dns:53", pool="outside"})
addAction({"cluster.local.", "in-addr.arpa.", "ip6.arpa."}, PoolAction("cluster"))
addAction(AllRule(), PoolAction("outside"))
getPool("cluster"):setCache(newPacketCache($((9984 + denial_cap)), {maxTTL=30, maxNegativeTTL=5}))
getPool("outside"):setCache(newPacketCache(9984, {maxTTL=30}))
DD
  } > "$d/dnsdist.conf"
  p=${port[kresd]}
  {
    [ "$v" = dual ] || echo "net.ipv6 = false"
    for a in $addrs; do echo "net.listen('$a', $p, { kind = 'dns' })"; done
    cat <<KR
cache.open(256 * MB, 'lmdb://$d/kresd/cache')
cache.max_ttl(30)
trust_anchors.remove('.')
local cluster = policy.todnames({'cluster.local.', 'in-addr.arpa.', 'ip6.arpa.'})
policy.add(policy.suffix(policy.FLAGS({'TCP'}), cluster))
policy.add(policy.suffix(policy.FORWARD('$cluster_dns@53'), cluster))
policy.add(policy.all(policy.FORWARD('$outside_dns@53')))
KR
  } > "$d/kresd.conf"
  for f in Corefile unbound.conf dnsdist.conf kresd.conf; do cp "$d/$f" "$out/conf/$v-$f"; done
}
server_cmd() { # SERVER VARIANT
  local d="$work/$2"
  case $1 in
    # shellcheck disable=SC2086
    nodelocaldns) echo "$ours_bin -conf $d/Corefile --shards 1${OURS_ARGS:+ $OURS_ARGS}";;
    nodelocaldns-epoll) echo "$ours_bin -conf $d/Corefile.epoll --shards 1 --io-engine=epoll${OURS_ARGS:+ $OURS_ARGS}";;
    nodelocaldns-base) echo "$OURS_BASE -conf $d/Corefile.base --shards 1${OURS_ARGS:+ $OURS_ARGS}";;
    echo) echo "$echo_bin $kube_dns:${port[echo]}";;
    unbound) echo "unbound -d -c $d/unbound.conf";;
    dnsdist) echo "dnsdist --supervised --disable-syslog -C $d/dnsdist.conf";;
    kresd) echo "kresd -n -c $d/kresd.conf $d/kresd";;
  esac
}
ask() { # PORT ADDRESS NAME: the addresses of NAME asked of ADDRESS:PORT (none: empty)
  { inns kdig +timeout=1 +retry=0 +short -p "$1" "@$2" "$3" A 2>/dev/null || true; } | paste -sd,
}
up=()
# start VARIANT: starts every server of $servers on the VARIANT's addresses and keeps
# in $up those that answer a cluster name and an outside name.
start() {
  local s r addr=$kube_dns
  [ "$1" = dual ] && addr=$kube_dns6
  up=()
  for s in $servers; do
    # shellcheck disable=SC2046
    ip netns exec "$ns" taskset -c "$server_cpu" $(server_cmd "$s" "$1") >"$work/$1-$s.log" 2>&1 & pid[$s]=$!; pids+=($!)
  done
  for s in $servers; do
    for _ in $(seq 1 20); do
      r="$(ask "${port[$s]}" "$kube_dns" svc0.ns0.svc.cluster.local) $(ask "${port[$s]}" "$addr" host0.example.com)"
      # The echo answers NODATA (no addresses): any answer will do.
      [ "$s" = echo ] && inns kdig +timeout=1 +retry=0 -p "${port[$s]}" "@$kube_dns" x A 2>/dev/null |
        grep -q "status: NOERROR" && r="10.0.0.1 192.0.2.1"
      kill -0 "${pid[$s]}" 2>/dev/null || r="exited: $r"
      [ "$r" = "10.0.0.1 192.0.2.1" ] && break
      sleep 0.5
    done
    if [ "$r" = "10.0.0.1 192.0.2.1" ]; then up+=("$s"); else
      echo "$s ($1) left out: its answers were '$r' (log: $out/raw/$1-$s.log)" | tee -a "$out/env.txt" >&2
      cp "$work/$1-$s.log" "$out/raw/"
    fi
  done
}
stop() { # VARIANT
  local s
  for s in $servers; do kill "${pid[$s]}" 2>/dev/null || true; done
  for s in $servers; do wait "${pid[$s]}" 2>/dev/null || true; cp "$work/$1-$s.log" "$out/raw/"; done
}

# --- load -------------------------------------------------------------------------
per_lookup=4.72
lookups() { python3 -c "print(max(1, round($1 / $per_lookup)))"; }
# dnsload_start ARGS...: dnsload in the namespace on LOAD_CPU, bounded by a timeout,
# its pid last in $pids so that an interrupted run kills it; dnsload_run waits for it.
dnsload_start() {
  ip netns exec "$ns" taskset -c "$load_cpu" timeout -k 5 $((secs + warm_secs + 30)) "$dnsload" --quiet --no-pin -t 2 "$@" \
    >/dev/null 2>>"$work/dnsload.err" & pids+=($!)
}
dnsload_run() {
  dnsload_start "$@"
  wait "${pids[-1]}" || echo "dnsload $*: exit $?" >&2
}
# The closed loop's query file: the pod profile's lookups (dnsload's defaults: 10
# namespaces of 20 services, 1,000 outside names, shares 0.3 outside / 0.1 full names /
# 0.6 own namespace, Zipf 1.0) expanded as glibc does with ndots:5, A and AAAA per step.
python3 - "$work/closed.txt" <<'PY'
import random, sys
rng = random.Random(1)
def zipf_cdf(n):
    w = [1 / (i + 1) for i in range(n)]
    t = sum(w); acc = 0; cdf = []
    for x in w:
        acc += x / t; cdf.append(acc)
    return cdf
import bisect
svc_cdf, out_cdf = zipf_cdf(20), zipf_cdf(1000)
pick = lambda cdf: min(bisect.bisect(cdf, rng.random()), len(cdf) - 1)
with open(sys.argv[1], "w") as f:
    for _ in range(60000):
        ns = f"ns{rng.randrange(10)}"
        search = [f"{ns}.svc.cluster.local", "svc.cluster.local", "cluster.local"]
        r = rng.random()
        if r < 0.3:
            host = f"host{pick(out_cdf)}.example.com"
            steps = [f"{host}.{s}" for s in search] + [host]
        else:
            svc, other = f"svc{pick(svc_cdf)}", f"ns{rng.randrange(10)}"
            r = rng.random()
            if r < 0.1:
                full = f"{svc}.{other}.svc.cluster.local"
                steps = [f"{full}.{s}" for s in search] + [full]
            elif r < 0.1 + 0.9 * 0.6:
                steps = [f"{svc}.{search[0]}"]
            else:
                steps = [f"{svc}.{other}.{s}" for s in search[:2]]
        for s in steps:
            f.write(f"{s} A\n{s} AAAA\n")
PY
hz=$(getconf CLK_TCK)
# cpu_ticks PID: "utime stime" of the process, or "gone".
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat" 2>/dev/null || echo gone; }
printf 'round\tvariant\tkind\ttarget_qps\tserver\tsecs\tsent\tanswered\tlost\tloss_pct\tanswers_per_s\tcpu_ticks\tcpu_us_per_answer\tp50_us\tp99_us\tp999_us\tlag_p99_us\tkernel_us_per_answer\n' > "$out/runs.tsv"
# point ROUND VARIANT KIND QPS SERVER: one measured run, a line of runs.tsv.
point() {
  local round=$1 v=$2 kind=$3 qps=$4 s=$5 before after json p=${port[$5]} n
  json="$work/$v-$kind-$qps-$s-r$round.json"
  before=$(cpu_ticks "${pid[$s]}")
  case $v-$kind in
    v4-open)
      if [ "$s" = echo ]; then
        dnsload_run -s "$kube_dns" -p "$p" -d "$work/closed.txt" -c "$pods" --rate "$qps" -l "$secs" --json "$json"
      else
        dnsload_run -s "$kube_dns" -p "$p" --pods "$pods" --rate "$(lookups "$qps")" -l "$secs" --json "$json"
      fi;;
    v4-churn) dnsload_run -s "$kube_dns" -p "$p" --pods "$pods" --pods-churn --seed "$round" \
      --rate "$(lookups "$qps")" -l "$secs" --json "$json";;
    dual-open)
      n=$(lookups "$((qps / 2))")
      dnsload_start -s "$kube_dns" -p "$p" --pods "$((pods / 2))" --rate "$n" -l "$secs" --json "$json.4"
      dnsload_run -s "$kube_dns6" -p "$p" --pods "$((pods / 2))" --seed 2 --rate "$n" -l "$secs" --json "$json.6"
      wait "${pids[-2]}" || echo "dnsload (v4 half): exit $?" >&2
      "$dnsload" merge --json "$json" "$json.4" "$json.6" >/dev/null || true;;
    v4-closed) dnsload_run -s "$kube_dns" -p "$p" -d "$work/closed.txt" -c "$pods" -q "$closed_q" -l "$secs" --json "$json";;
  esac
  after=$(cpu_ticks "${pid[$s]}")
  if [ ! -s "$json" ] || [ "$before" = gone ] || [ "$after" = gone ]; then
    echo "no figures for $v $kind $qps $s round $round (report missing or server gone)" | tee -a "$out/env.txt" >&2
    return 0
  fi
  python3 - "$json" "$round" "$v" "$kind" "$qps" "$s" "$secs" "$before" "$after" "$hz" "$out/raw" >> "$out/runs.tsv" <<'PY'
import json, os, sys
path, rnd, v, kind, qps, s, secs, before, after, hz, raw = sys.argv[1:]
(u0, k0), (u1, k1) = (map(int, x.split()) for x in (before, after))
ticks, kernel = (u1 - u0) + (k1 - k0), k1 - k0
r = json.load(open(path))
c, lat = r["counters"], r["latency"]
answered = c["answered"]
small = {k: x for k, x in r.items() if k not in ("histogram", "histograms", "series")}
small["server_cpu_ticks"], small["server_kernel_ticks"] = ticks, kernel
json.dump(small, open(os.path.join(raw, os.path.basename(path)), "w"), indent=1)
cpu, kcpu = (t * 1e6 / int(hz) / max(answered, 1) for t in (ticks, kernel))
print(f"{rnd}\t{v}\t{kind}\t{qps}\t{s}\t{secs}\t{c['sent']}\t{answered}\t{c['lost']}\t"
      f"{100 * c['lost'] / max(c['sent'], 1):.3f}\t{answered / float(secs):.0f}\t{ticks}\t{cpu:.1f}\t"
      f"{lat['p50_us']:.0f}\t{lat['p99_us']:.0f}\t{lat['p99_9_us']:.0f}\t{r['send_lag']['p99_us']:.0f}\t"
      f"{kcpu:.1f}")
PY
  tail -1 "$out/runs.tsv" >&2
}
warm() { # warms every started server's cache with the working set
  local s
  for s in "${up[@]}"; do
    dnsload_run -s "$kube_dns" -p "${port[$s]}" --pods "$pods" --rate "$(lookups 2000)" -l "$warm_secs" --json "$work/warm.json"
  done
}
# rotated ROUND: the started servers, starting at a different one each round.
rotated() {
  local n=${#up[@]} i
  for i in $(seq 0 $((n - 1))); do echo "${up[$(((i + $1) % n))]}"; done
}
# points ROUND VARIANT KIND RATES: a point at each of RATES for every started server.
points() {
  local qps s
  for qps in $4; do
    for s in $(rotated "$1"); do point "$1" "$2" "$3" "$qps" "$s"; done
  done
}

versions() {
  echo "nodelocaldns $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src crates Cargo.lock || echo +dirty) ($("$ours_bin" -version))"
  echo "unbound $(unbound -V 2>/dev/null | awk '/Version/ {print $2}')"
  echo "dnsdist $(dnsdist --version 2>/dev/null | head -1 | awk '{print $2}')"
  echo "kresd $(kresd --version 2>/dev/null | awk '{print $NF}')"
  echo "knotd $(knotd --version | awk '{print $NF}')"
  echo "dnsload $("$dnsload" --version | awk '{print $2}')"
  echo "kernel $(uname -r); $(nproc) CPUs; rustc $(rustc --version | awk '{print $2}')"
}
{
  echo "command: SECS=$secs ROUNDS=$rounds RATES=\"$rates\" CHURN_RATES=\"$churn_rates\" DUAL_RATES=\"$dual_rates\" CLOSED=$closed CLOSED_Q=$closed_q PODS=$pods SERVERS=\"$servers\" bench/node.sh${CLUSTER_FRONT:+ (CLUSTER_FRONT=$CLUSTER_FRONT)}${DENIAL_CAP:+ (DENIAL_CAP=$DENIAL_CAP)}${LOCAL_IPS:+ (LOCAL_IPS=$LOCAL_IPS)}${OURS_ARGS:+ (OURS_ARGS=$OURS_ARGS)}${OURS_BASE:+ (OURS_BASE=$(basename "$OURS_BASE"))}"
  versions
  echo "before: $(uptime)"
} > "$out/env.txt"

configs v4 "$local_v4"
configs dual "$local_v4 $local_v6"
start v4
warm
for round in $(seq 1 "$rounds"); do
  points "$round" v4 open "$rates"
  points "$round" v4 churn "$churn_rates"
  if [ "$closed" = 1 ]; then
    # Unmeasured: the closed loop's names (more than the pod load's warm-up asked)
    # into every cache, so the point measures the steady state, not a cold start.
    for s in "${up[@]}"; do
      dnsload_run -s "$kube_dns" -p "${port[$s]}" -d "$work/closed.txt" -c "$pods" -q "$closed_q" -l 2 --json "$work/warm.json"
    done
    points "$round" v4 closed 0
  fi
done
stop v4
if [ -n "$dual_rates" ]; then
  start dual
  warm
  for round in $(seq 1 "$rounds"); do points "$round" dual open "$dual_rates"; done
  stop dual
fi
echo "after: $(uptime)" >> "$out/env.txt"
cp "$work"/knot-*.log "$out/raw/" 2>/dev/null || true
[ -s "$work/dnsload.err" ] && cp "$work/dnsload.err" "$out/raw/"
python3 bench/node-report.py "$out/runs.tsv" > "$out/table.md"
cat "$out/env.txt" "$out/table.md"
