//! Command line: node-cache's Go-style flags (`-conf FILE`, `-conf=FILE`) and our own
//! double-dash options, normalised and parsed with clap into [`Cli`].

use std::path::PathBuf;

use clap::Parser;

/// The Corefile `make run` serves when no `-conf` is given.
pub const DEFAULT_COREFILE: &str = include_str!("../ci/default.Corefile");

#[derive(Debug, Parser)]
#[command(
    name = "nodelocaldns",
    version,
    about = "Node-local DNS cache (drop-in for k8s-dns-node-cache)"
)]
pub struct Cli {
    /// Corefile to serve (node-cache `-conf`); without it the embedded default runs.
    #[arg(long)]
    pub conf: Option<PathBuf>,
    /// Alias of `-conf` (node-cache `-corefile`); `-conf` wins when both are given.
    #[arg(long)]
    pub corefile: Option<PathBuf>,
    /// Number of shards (one pinned thread each); default: every usable core.
    #[arg(long)]
    pub shards: Option<usize>,
    /// SO_RCVBUF of each UDP listening socket, in bytes (the kernel caps it at net.core.rmem_max).
    #[arg(long)]
    pub rcvbuf_bytes: Option<usize>,
    /// io_uring memory per shard, in bytes (registered memory counts against RLIMIT_MEMLOCK without CAP_IPC_LOCK).
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    pub io_memory_bytes: usize,
    /// Log filter: error, warn, info, debug, trace, or tracing directives
    /// (`nodelocaldns::upstream=debug`); default: RUST_LOG, else info.
    #[arg(long)]
    pub log_level: Option<String>,
}

impl Cli {
    /// Parses `args` (program name first), accepting `-flag` for node-cache's flags.
    pub fn parse_from_args(args: impl IntoIterator<Item = String>) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(args.into_iter().map(|arg| normalise(&arg)))
    }

    /// The Corefile path chosen by the flags, if any.
    pub fn corefile_path(&self) -> Option<&PathBuf> {
        self.conf.as_ref().or(self.corefile.as_ref())
    }
}

/// Go style: `-conf` → `--conf`, `-conf=x` → `--conf=x`. Every single-dash word
/// longer than one letter is a long flag (we have no short flags), so an unknown
/// one is reported by its whole name.
fn normalise(arg: &str) -> String {
    match arg.strip_prefix('-') {
        Some(rest) if !rest.starts_with('-') && rest.len() > 1 => format!("-{arg}"),
        _ => arg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::parse_from_args(
            std::iter::once("nodelocaldns")
                .chain(args.iter().copied())
                .map(String::from),
        )
    }

    #[test]
    fn go_and_gnu_styles() {
        assert_eq!(
            parse(&["-conf", "a"]).unwrap().corefile_path().unwrap(),
            &PathBuf::from("a")
        );
        assert_eq!(
            parse(&["-conf=b"]).unwrap().corefile_path().unwrap(),
            &PathBuf::from("b")
        );
        assert_eq!(
            parse(&["--conf", "c"]).unwrap().corefile_path().unwrap(),
            &PathBuf::from("c")
        );
        let both = parse(&["-corefile", "x", "-conf", "y"]).unwrap();
        assert_eq!(both.corefile_path().unwrap(), &PathBuf::from("y"));
        assert_eq!(parse(&["--shards", "2"]).unwrap().shards, Some(2));
        let level = parse(&["-log-level", "debug"]).unwrap().log_level;
        assert_eq!(level.as_deref(), Some("debug"));
    }

    #[test]
    fn unknown_flag_is_an_error() {
        let err = parse(&["-bogus"]).unwrap_err().to_string();
        assert!(err.contains("--bogus"), "{err}");
        assert!(parse(&["--shards", "x"]).is_err());
    }
}
