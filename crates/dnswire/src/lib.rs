//! One DNS codec for the server and dnsload: bounds-checked, zero-copy reading and
//! writing of DNS messages. The only code that indexes packet bytes; everything
//! else goes through its types, which return errors instead of panicking.
//!
//! - [`limits`]: the protocol's sizes (names, labels, UDP payloads, TCP messages).
//! - [`cursor`]: [`Reader`] and [`Writer`], which return [`WireError`] instead of panicking.
//! - [`header`]: the header, flag bits, rcodes, OPT, record skipping.
//! - [`name`]: case folding, hashing and zone membership of wire-form names.
//! - [`query`]: client query checks ([`parse_query`]), error replies, upstream queries.
//! - [`records`]: one checked pass over an upstream answer's records ([`walk_answer`]).
//! - [`matching`]: an answer against the query sent (ID, question), without a parse.
//! - [`compose`]: messages built from text: names, dnsload's queries, the probes.
//! - [`mnemonic`]: the one table of query type names and the one of rcode names.
//! - [`tcp`]: the 2-byte length framing of DNS over TCP.

#![forbid(unsafe_code)]

pub mod compose;
pub mod cursor;
pub mod header;
pub mod limits;
pub mod matching;
pub mod mnemonic;
pub mod name;
pub mod query;
pub mod records;
pub mod tcp;

pub use compose::{
    encode_name, encode_query, ns_query, root_ns_query, simple_query, NameError, QueryOptions,
};
pub use cursor::{Reader, WireError, Writer};
pub use header::{
    flags, split_records, write_opt, Edns, Header, Rcode, Split, HEADER_BYTES, OPT_BYTES,
};
pub use matching::{
    answer_matches, is_truncated, message_id, name_to_string, question_bytes, question_matches,
    set_message_id,
};
pub use mnemonic::{parse_qtype, rcode_name, type_name, type_to_string};
pub use query::{
    parse_query, write_error_reply, write_upstream_query, DropReason, Query, Rejection,
};
pub use records::{answers_question, fitting_records, walk_answer, AnswerWalk};

#[cfg(test)]
mod tests;
