# Sourced by the bench scripts: their scratch directory and the knotd upstream they share.

# bench_work: a scratch directory in $work; the processes whose pids are added to
# $pids are killed and the directory removed on exit.
bench_work() {
  work=$(mktemp -d)
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}

# bench_zone ORIGIN FILE [RECORD...]: zone ORIGIN (SOA, NS, the 1,000 hit names
# w0..w999) plus RECORDs (zone-file lines), written to FILE.
bench_zone() {
  local origin=$1 file=$2; shift 2
  {
    echo "\$ORIGIN $origin"; echo '$TTL 3600'
    echo "@ SOA ns.$origin admin.$origin 1 3600 600 86400 3600"
    echo "@ NS ns.$origin"; echo 'ns A 192.0.2.53'
    for record in "$@"; do echo "$record"; done
    for i in $(seq 0 999); do echo "w$i A 192.0.2.$((i % 250 + 1))"; done
  } > "$file"
}

# bench_knot_conf WORK PORT ORIGIN: WORK/knot.conf serving zone ORIGIN from
# WORK/ORIGIN-without-dot.zone on 127.0.0.1@PORT, logging warnings to stderr.
bench_knot_conf() {
  cat > "$1/knot.conf" <<KNOT
server:
    rundir: "$1"
    listen: 127.0.0.1@$2
database:
    storage: "$1"
zone:
  - domain: $3
    file: "$1/${3%.}.zone"
log:
  - target: stderr
    any: warning
KNOT
}

# bench_dnsdist_conf FILE PORT UPSTREAM_PORT: dnsdist on 127.0.0.1@PORT with a
# 200,000-entry packet cache, forwarding to 127.0.0.1@UPSTREAM_PORT. Its listening
# socket gets a 4 MiB receive buffer, as ours has by default (`--rcvbuf-bytes`):
# with the kernel's 208 KiB a burst of a load generator's queries overflows it.
bench_dnsdist_conf() {
  cat > "$1" <<DD
setLocal("127.0.0.1:$2")
setSecurityPollSuffix("")
newServer({address="127.0.0.1:$3"})
getPool(""):setCache(newPacketCache(200000))
setUDPSocketBufferSizes(4194304, 0)
DD
}

# bench_unbound_conf FILE PORT UPSTREAM_PORT DIR: one-thread unbound on
# 127.0.0.1@PORT forwarding everything to 127.0.0.1@UPSTREAM_PORT, run from DIR,
# with a 4 MiB receive buffer like ours and dnsdist's.
bench_unbound_conf() {
  cat > "$1" <<UB
server:
    interface: 127.0.0.1
    port: $2
    so-rcvbuf: 4m
    num-threads: 1
    do-daemonize: no
    do-ip6: no
    username: ""
    chroot: ""
    directory: "$4"
    pidfile: ""
    use-syslog: no
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "iterator"
    msg-cache-size: 128m
    rrset-cache-size: 256m
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@$3
UB
}

# bench_install PACKAGE:COMMAND...: installs each Debian PACKAGE whose COMMAND is
# missing (sbin included); a failed install is reported, not fatal (a missing peer is
# left out of the run). Leaves /usr/sbin on PATH.
bench_install() {
  local pkg
  export PATH=$PATH:/usr/sbin
  for pkg in "$@"; do
    command -v "${pkg#*:}" >/dev/null ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkg%%:*}" >/dev/null ||
      echo "could not install ${pkg%%:*}" >&2
  done
}

# bench_idle_poll: when IDLE_POLL=1, holds /dev/cpu_dma_latency at 0 until the calling
# script exits (the kernel drops the request when the file closes), so idle cores poll
# instead of halting. A diagnosis of what halting costs, never a comparison setting.
bench_idle_poll() {
  [ "${IDLE_POLL:-0}" = 1 ] || return 0
  exec {bench_idle_poll_fd}>/dev/cpu_dma_latency
  printf '\x00\x00\x00\x00' >&"$bench_idle_poll_fd"
}
