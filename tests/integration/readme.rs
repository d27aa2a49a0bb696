//! The Corefile examples of a plugin README, made runnable here: each `~~~ corefile`
//! block, its server block keyed on the test's port and loopback address and its
//! placeholder upstream `10.0.0.10` replaced by knot. One door for every plugin's
//! "the README's examples run" tests.

use crate::harness::Knot;

/// The `~~~ corefile` blocks of a README, in order.
pub fn examples(readme: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = readme;
    while let Some(start) = rest.find("~~~ corefile\n") {
        let body = &rest[start + "~~~ corefile\n".len()..];
        let end = body.find("~~~").expect("example is closed");
        found.push(body[..end].to_string());
        rest = &body[end..];
    }
    found
}

/// An example made runnable here: its block keys on our port and loopback, its
/// upstream `10.0.0.10` replaced by knot.
pub fn runnable(example: &str, knot: &Knot) -> String {
    let mut lines: Vec<String> = example.lines().map(str::to_string).collect();
    let key = lines[0].trim_end_matches('{').trim().to_string();
    lines[0] = format!("{key}:$PORT {{\n    bind 127.0.0.1");
    lines
        .join("\n")
        .replace("10.0.0.10", &format!("127.0.0.1:{}", knot.port))
}
