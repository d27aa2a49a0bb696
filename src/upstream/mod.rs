//! Forwarding to upstream servers: pipelined TCP, UDP, health, selection policy.
