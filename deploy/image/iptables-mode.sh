#!/bin/sh
# Entrypoint: point `iptables`/`ip6tables` at the backend (nft or legacy) that the
# node's kube-proxy uses, then run the command. Rules in the other backend would be
# invisible to it and taken in an unpredictable order (kubernetes/dns#365, #568).
# IPTABLES_MODE=nft|legacy forces the choice. Reading the legacy tables needs
# CAP_NET_RAW as well as CAP_NET_ADMIN; without it the choice is nft, and it says so.
set -eu
mode="${IPTABLES_MODE:-}"
if [ -z "$mode" ]; then
  if ! iptables-legacy-save >/dev/null 2>&1; then
    echo "iptables-mode.sh: cannot read the legacy iptables tables (CAP_NET_RAW missing?);" \
      "assuming nft, set IPTABLES_MODE to choose" >&2
  fi
  legacy=$( (iptables-legacy-save || true; ip6tables-legacy-save || true) 2>/dev/null | grep -c '^-' || true)
  nft=$( (iptables-nft-save || true; ip6tables-nft-save || true) 2>/dev/null | grep -c '^-' || true)
  if [ "${legacy:-0}" -gt "${nft:-0}" ]; then mode=legacy; else mode=nft; fi
fi
case "$mode" in
  nft|legacy)
    for cmd in iptables ip6tables; do
      update-alternatives --set "$cmd" "/usr/sbin/$cmd-$mode" >/dev/null 2>&1 || true
    done ;;
  *) echo "iptables-mode.sh: IPTABLES_MODE must be nft or legacy, not '$mode'" >&2; exit 2 ;;
esac
exec "$@"
