//! Corefile lexer and parser, `{$ENV}` substitution and resolv.conf reading, turning
//! text into one typed, validated [`Config`]. Errors name file:line and the token.

mod types;

pub use types::*;
