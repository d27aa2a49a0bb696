//! Node setup: the interface, iptables rules, periodic sync and teardown.
