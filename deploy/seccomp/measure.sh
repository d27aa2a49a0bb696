#!/usr/bin/env bash
# Measures the syscalls the image's processes make and writes the allow-list of the
# Localhost seccomp profile (nodelocaldns.json) from them.
#
#   deploy/seccomp/measure.sh [OUT_DIR]      # root, podman, runc, strace; `make image` inputs
#   deploy/seccomp/measure.sh --write DIR    # the profile from the summaries already in DIR
#
# The workload is the image tests' (tests/simnode/image.rs, every `image_` test): the
# entrypoint choosing the iptables backend (nft and legacy nodes), rules and the
# interface, UDP hits and misses, TCP clients and the TCP upstream, metrics and
# health, a reload from the kube-dns ConfigMap, a miss storm under a memory limit,
# two hand-overs and the teardown. Each container runs without seccomp and with
# `strace -f -c` attached before its first instruction (the tests'
# NODELOCALDNS_TEST_STRACE_DIR); a test whose timing strace upsets may fail, the
# syscalls it made are counted all the same. The profile is the union of the
# summaries, plus what a run of the io_uring engine does not show: the io_uring
# syscalls themselves, the epoll engine's (used when io_uring cannot start), what the
# runtime's `runc init` calls after it loaded the filter and before it executes the
# entrypoint (strace attaches later; found by running under SCMP_ACT_KILL_PROCESS and
# reading the kernel's audit lines), and exit/exit_group, which `strace -c` does not
# count.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "${1:-}" = --write ]; then
  out=$(cd "$2" && pwd)
else
  out=${1:-target/seccomp}
  rm -rf "$out"
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  NODELOCALDNS_TEST_STRACE_DIR="$out" cargo nextest run --test simnode --no-fail-fast \
    -E 'test(image_)' >"$out/tests.log" 2>&1 ||
    echo "some image tests failed under strace (see $out/tests.log)" >&2
fi
ls "$out"/*.txt >/dev/null
python3 - "$out" deploy/seccomp/nodelocaldns.json <<'PY'
import glob, json, sys
out, profile = sys.argv[1], sys.argv[2]
measured = {}
for path in sorted(glob.glob(f"{out}/*.txt")):
    for line in open(path):
        fields = line.split()
        # "% time seconds usecs/call calls [errors] syscall" rows; not the total.
        if len(fields) >= 5 and fields[0].replace(".", "").isdigit() and fields[-1] != "total":
            measured[fields[-1]] = measured.get(fields[-1], 0) + int(fields[3])
engines = {
    "io_uring engine": ["io_uring_enter", "io_uring_register", "io_uring_setup"],
    "epoll engine (io_uring unavailable)": [
        "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait",
        "eventfd2", "timerfd_create", "timerfd_settime",
    ],
    "runc init after loading the filter": [
        "capget", "capset", "chdir", "faccessat2", "fstat", "setgid", "setgroups", "setuid",
    ],
    "process and thread exit (not counted by strace -c)": ["exit", "exit_group"],
}
doc = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "architectures": ["SCMP_ARCH_X86_64"],
    "syscalls": [
        {"names": sorted(measured), "action": "SCMP_ACT_ALLOW",
         "comment": "measured: strace -f -c over the image tests (deploy/seccomp/measure.sh)"},
    ] + [
        {"names": sorted(set(names) - set(measured)), "action": "SCMP_ACT_ALLOW", "comment": why}
        for why, names in engines.items() if set(names) - set(measured)
    ],
}
with open(profile, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
with open(f"{out}/counts.txt", "w") as f:
    for name, calls in sorted(measured.items(), key=lambda kv: -kv[1]):
        f.write(f"{calls:>12} {name}\n")
print(f"{len(measured)} syscalls measured in {len(glob.glob(out + '/*.txt'))} containers -> {profile}")
PY
