//! Bounds-checked, zero-copy reading and writing of DNS messages. The only module
//! that indexes packet bytes; everything else goes through its types.
