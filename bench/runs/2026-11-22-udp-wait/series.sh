#!/usr/bin/env bash
# series.sh "label:bin:env ..." ; runs each config once per round, rounds=${ROUNDS:-2}
cd "$(dirname "$0")"
echo "load $(cat /proc/loadavg)"
for r in $(seq 1 ${ROUNDS:-2}); do
  for spec in "$@"; do
    IFS=: read label bin envs <<<"$spec"
    for k in $(seq 1 ${QUIET_WAIT:-60}); do
      a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat)); t=0
      for i in 1 2 3 4 5 6 7 8; do t=$((t + b[i] - a[i])); done
      idle=$(( (b[4]-a[4]+b[5]-a[5]) * 100 / (t>0?t:1) )); [ $idle -ge 85 ] && break
    done
    echo -n "$label r$r (idle $idle%): "
    env $envs timeout 60 ./rate-run.sh $bin ${MODE:-cpu} ${RATE:-50000} 2>&1 | tail -1
  done
done
echo "load $(cat /proc/loadavg)"
