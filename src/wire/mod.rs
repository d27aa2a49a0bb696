//! The DNS codec: the workspace crate `dnswire` (one parser and writer for the
//! server and dnsload), re-exported here so `crate::wire::…` paths stay put; plus
//! the one message only the server writes, the `whoami` answer.

pub use dnswire::*;

mod whoami;

pub use whoami::write_whoami;
