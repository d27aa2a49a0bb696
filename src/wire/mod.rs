//! Bounds-checked, zero-copy reading and writing of DNS messages. The only module
//! that indexes packet bytes; everything else goes through its types.
//!
//! - [`cursor`]: [`Reader`] and [`Writer`], which return [`WireError`] instead of panicking.
//! - [`header`]: the header, flag bits, rcodes, OPT, record skipping.
//! - [`name`]: case folding, hashing and zone membership of wire-form names.
//! - [`query`]: client query checks ([`parse_query`]), error replies, upstream queries.
//! - [`records`]: one checked pass over an upstream answer's records ([`walk_answer`]).

pub mod cursor;
pub mod header;
pub mod name;
pub mod query;
pub mod records;

pub use cursor::{Reader, WireError, Writer};
pub use header::{
    flags, split_records, write_opt, Edns, Header, Rcode, Split, HEADER_BYTES, OPT_BYTES,
};
pub use query::{
    parse_query, write_error_reply, write_upstream_query, DropReason, Query, Rejection,
};
pub use records::{fitting_records, walk_answer, AnswerWalk};

#[cfg(test)]
mod tests;

mod matching;
mod whoami;

pub use whoami::write_whoami;

pub use matching::{
    answer_matches, is_truncated, message_id, name_to_string, question_bytes, set_message_id,
    simple_query, type_to_string,
};
