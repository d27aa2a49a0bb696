//! Bounds-checked, zero-copy reading and writing of DNS messages. The only module
//! that indexes packet bytes; everything else goes through its types.

mod matching;

pub use matching::{
    answer_matches, encode_name, is_truncated, message_id, name_in_zone, question_bytes,
    set_message_id,
};
