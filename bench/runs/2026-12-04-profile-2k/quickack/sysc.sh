#!/bin/bash
# syscalls of the server during 6 s of a 2k point; $1 = label, $2 = binary as OURS_BASE
cd /work/main
(OUT=/tmp/sysc-$1 OURS_BASE=$2 SECS=20 ROUNDS=1 RATES="2000" CHURN_RATES= DUAL_RATES= CLOSED=0 SERVERS="nodelocaldns-base" timeout 600 bench/node.sh > /tmp/sysc-$1.log 2>&1 &)
sleep 14
P=$(pgrep -f "Corefile.base" | head -1)
timeout 6 strace -c -f -p $P -o /tmp/sysc-$1.txt > /dev/null 2>&1
sleep 15
