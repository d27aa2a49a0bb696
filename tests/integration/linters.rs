//! fmt and clippy as tests (after glommio's `tests/linters.rs`): unformatted code or
//! a clippy warning anywhere in the workspace fails `make test`, with the tool's own
//! output in the failure message.

use std::path::Path;
use std::process::Command;

/// Runs `cargo ARGS` at the workspace root; panics with its output on failure.
fn cargo(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(&cargo)
        .args(args)
        .current_dir(root)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {cargo}: {err}"));
    assert!(
        output.status.success(),
        "cargo {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

#[test]
fn code_is_formatted() {
    cargo(&["fmt", "--all", "--", "--check"]);
}

#[test]
fn clippy_has_no_warnings() {
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
}
