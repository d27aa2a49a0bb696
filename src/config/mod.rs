//! Corefile lexer and parser, `{$ENV}` substitution and resolv.conf reading, turning
//! text into one typed, validated [`Config`]. Errors name file:line and the token.
//!
//! The stages: `lexer` (text → tokens, env substituted) → `parser` (tokens →
//! server blocks and directive lines, braces checked) → `setup` (lines → typed values
//! with CoreDNS defaults, one module per large directive) → cross-block checks here.
//! Each supported directive is documented in this directory's README.md.

pub mod acl;
mod cache;
pub mod configmap;
mod context;
mod error;
mod forward;
mod hosts;
pub(crate) mod lexer;
mod logging;
pub use logging::{parse_format as parse_log_format, COMMON_LOG_FORMAT};
pub(crate) mod parser;
pub mod pillar;
mod plugins;
mod resolv;
mod rewrite;
mod setup;
mod template;
mod types;
mod value;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_forward;
#[cfg(test)]
mod tests_plugins;

use std::path::Path;

pub use cache::{DENIAL_TTL_DEFAULT, MIN_TTL_DEFAULT, SUCCESS_TTL_DEFAULT};
pub use configmap::{parse_kube_dns, read_configmap_dir, ConfigMapError, KubeDnsConfig};
pub use error::{ConfigError, SUPPORTED_DIRECTIVES};
pub use hosts::{in_zones, parse_hosts_text};
pub use pillar::{render_corefile, service_host_var, PillarError, PillarValues};
/// Reads a small text file, refusing one larger than the bound.
pub(crate) use resolv::read_bounded as read_text_bounded;
pub use rewrite::{AnswerRule, NameMatch, RewriteAction, RewriteRule};
pub use template::{Part as TemplatePart, RecordTemplate, TemplateConfig, ANY as TEMPLATE_ANY};
pub use types::*;
/// Go duration syntax (`500ms`, `1m30s`), shared with the command line.
pub(crate) use value::parse_duration as parse_go_duration;

/// Largest Corefile we read: a real one is a few KiB.
pub const COREFILE_BYTES_MAX: u64 = 1 << 20;

/// Reads and parses the Corefile at `path`, with `{$NAME}` taken from the process
/// environment. resolv.conf paths in `forward` are read now, relative to `path`'s
/// directory.
pub fn load_corefile(path: &Path) -> Result<Config, ConfigError> {
    let text =
        resolv::read_bounded(path, COREFILE_BYTES_MAX).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    parse_corefile(&text, path)
}

/// Parses Corefile `text`; `file` names it in errors and anchors relative paths.
pub fn parse_corefile(text: &str, file: &Path) -> Result<Config, ConfigError> {
    parse_corefile_with_env(text, file, &|name| std::env::var(name).ok())
}

/// [`parse_corefile`] with the environment lookup for `{$NAME}` injected.
pub fn parse_corefile_with_env(
    text: &str,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let tokens = lexer::tokenize(text, file, env)?;
    let blocks = parser::parse_blocks(&tokens, file)?;
    let ctx = context::Ctx { file };
    let mut servers: Vec<ServerBlock> = Vec::with_capacity(blocks.len());
    for block in &blocks {
        let server = setup::server_block(&ctx, block)?;
        check_overlap(&servers, &server)?;
        servers.push(server);
    }
    Ok(Config { servers })
}

/// Two blocks may not serve the same zone on the same port and address (CoreDNS:
/// "cannot serve ... - it is already defined"); an empty bind, or 0.0.0.0 / ::, is
/// every address.
fn check_overlap(servers: &[ServerBlock], new: &ServerBlock) -> Result<(), ConfigError> {
    let everywhere =
        |s: &ServerBlock| s.bind.is_empty() || s.bind.iter().any(|ip| ip.is_unspecified());
    let clash = |old: &ServerBlock| {
        old.port == new.port
            && (everywhere(old)
                || everywhere(new)
                || old.bind.iter().any(|ip| new.bind.contains(ip)))
    };
    for old in servers.iter().filter(|old| clash(old)) {
        if let Some(zone) = new.zones.iter().find(|z| old.zones.contains(z)) {
            return Err(ConfigError::Conflict {
                at: new.location.clone(),
                context: "server block keys".into(),
                reason: format!(
                    "zone {} on port {} is already served by the block at line {}",
                    zone.name, new.port, old.location.line
                ),
            });
        }
    }
    Ok(())
}
