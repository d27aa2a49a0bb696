//! Reliability under faults and bad input, against the real binary: scripted faulty
//! upstreams, floods, idle TCP clients, the `acl` directive, restarts with zero lost
//! queries and bounded shutdown. Each test is bounded in time and uses loopback only.

mod faults;
mod floods;
mod harness;
mod restart;
mod upstream;
