//! The DNS codec: the workspace crate `dnswire` (one parser and writer for the
//! server and dnsload), re-exported here so `crate::wire::…` paths stay put; plus
//! the messages only the server writes: the `whoami` answer and answers from
//! local data (`hosts`); and the in-place record shuffle of `loadbalance`.

pub use dnswire::*;

mod local;
mod shuffle;
mod whoami;

pub use local::write_local_answer;
pub use shuffle::shuffle_answer;
pub use whoami::write_whoami;
