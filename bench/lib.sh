# Sourced by the bench scripts: the knotd upstream they share.

# bench_zone FILE [RECORD...]: zone bench. (SOA, NS, the 1,000 hit names w0..w999)
# plus RECORDs (zone-file lines), written to FILE.
bench_zone() {
  local file=$1; shift
  {
    echo '$ORIGIN bench.'; echo '$TTL 3600'
    echo '@ SOA ns.bench. admin.bench. 1 3600 600 86400 3600'
    echo '@ NS ns.bench.'; echo 'ns A 192.0.2.53'
    for record in "$@"; do echo "$record"; done
    for i in $(seq 0 999); do echo "w$i A 192.0.2.$((i % 250 + 1))"; done
  } > "$file"
}

# bench_knot_conf WORK PORT: WORK/knot.conf serving WORK/bench.zone on 127.0.0.1@PORT.
bench_knot_conf() {
  cat > "$1/knot.conf" <<KNOT
server:
    rundir: "$1"
    listen: 127.0.0.1@$2
database:
    storage: "$1"
zone:
  - domain: bench.
    file: "$1/bench.zone"
KNOT
}
