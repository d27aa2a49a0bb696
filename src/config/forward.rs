//! `forward FROM TO... { ... }` with CoreDNS's options and defaults. TO is an address
//! (`dns://` or none: plain DNS; `tls://ADDR[%NAME]`: DNS over TLS, port 853) or a
//! resolv.conf-format file (a relative path is taken from the Corefile's directory)
//! whose `nameserver` lines expand in place. The `tls` files are read and checked
//! here, so a bad certificate is an error at its line, not a failure at the first query.
//! `next` and `next_on_nodata` are checked and kept; CoreDNS applies them only when the
//! next plugin is another `forward`, and a block holds one `forward` here.

use std::net::SocketAddr;
use std::path::Path;

use super::context::{Ctx, Once};
use super::error::ConfigError;
use super::lexer::Token;
use super::parser::LineSyntax;
use super::resolv::{read_bounded, read_nameservers};
use super::template::rcode;
use super::types::{ConnectAttempts, ForwardConfig, Policy, TlsUpstream};
use super::value::{parse_addr_with_port, parse_upstream_addr};

/// CoreDNS's limit of upstreams per forward.
pub const UPSTREAMS_MAX: usize = 15;

const OPTIONS: &str = "except, force_tcp, prefer_udp, expire, max_age, max_idle_conns, \
                       read_timeout, max_fails, max_connect_attempts, policy, health_check, \
                       max_concurrent, next, next_on_nodata, failover, \
                       failfast_all_unhealthy_upstreams, source_address, tls, tls_servername";

pub(crate) fn parse(ctx: &Ctx<'_>, line: &LineSyntax) -> Result<ForwardConfig, ConfigError> {
    ctx.arg_count(
        line,
        "forward",
        2..=usize::MAX,
        "forward FROM TO... { OPTIONS }",
    )?;
    let Some((from, to_args)) = line.args.split_first() else {
        return Err(ctx.invalid(&line.name, "forward", "missing FROM"));
    };
    let from = ctx.zone(from, "forward FROM")?;
    let (mut to, mut tls_upstreams) = (Vec::new(), Vec::new());
    for token in to_args {
        for (addr, tls) in upstreams(ctx, token)? {
            to.push(addr);
            tls_upstreams.extend(tls);
        }
    }
    if to.len() > UPSTREAMS_MAX {
        return Err(ConfigError::Conflict {
            at: ctx.at(line.name.line),
            context: "forward".into(),
            reason: format!("{} upstreams, at most {UPSTREAMS_MAX}", to.len()),
        });
    }
    let mut forward = ForwardConfig::new(from, to);
    forward.tls_upstreams = tls_upstreams;
    let mut once = Once::default();
    for option in line.block.iter().flatten() {
        // CoreDNS appends repeated `except`, `next` and `failover` lines.
        if !matches!(option.name.text.as_str(), "except" | "next" | "failover") {
            once.check(ctx, &option.name.text, option.name.line)?;
        }
        forward_option(ctx, option, &mut forward)?;
        if forward.force_tcp && forward.prefer_udp {
            return Err(ConfigError::Conflict {
                at: ctx.at(option.name.line),
                context: "forward".into(),
                reason: "force_tcp and prefer_udp cannot be used together".into(),
            });
        }
    }
    if let Some(max_age) = forward.max_age.filter(|age| *age < forward.expire) {
        return Err(ConfigError::Conflict {
            at: ctx.at(line.name.line),
            context: "forward".into(),
            reason: format!(
                "max_age ({max_age:?}) must not be less than expire ({:?})",
                forward.expire
            ),
        });
    }
    let per_upstream = forward
        .tls_upstreams
        .iter()
        .any(|u| u.server_name.is_some());
    if per_upstream && forward.tls.server_name.is_some() {
        return Err(ConfigError::Conflict {
            at: ctx.at(line.name.line),
            context: "forward".into(),
            reason: "tls_servername and a tls://ADDR%NAME server name cannot both be set".into(),
        });
    }
    Ok(forward)
}

/// One TO argument: an address (`dns://` allowed), a `tls://` address, or a
/// resolv.conf file; each upstream with its `tls://` entry when it is one.
fn upstreams(
    ctx: &Ctx<'_>,
    token: &Token,
) -> Result<Vec<(SocketAddr, Option<TlsUpstream>)>, ConfigError> {
    let text = match token.text.split_once("://") {
        None => token.text.as_str(),
        Some(("dns", rest)) => rest,
        Some(("tls", rest)) => {
            let upstream = tls_upstream(rest)
                .ok_or_else(|| ctx.invalid(token, "forward", "expected tls://IP[%NAME][:PORT]"))?;
            return Ok(vec![(upstream.addr, Some(upstream))]);
        }
        Some((scheme @ ("https" | "grpc" | "quic"), _)) => {
            return Err(ConfigError::Unsupported {
                at: ctx.at(token.line),
                context: "forward".into(),
                token: token.text.clone(),
                reason: format!(
                    "{scheme}:// upstreams are not implemented, only dns:// and tls://"
                ),
            })
        }
        Some((scheme, _)) => {
            return Err(ctx.invalid(token, "forward", format!("unknown scheme \"{scheme}://\"")))
        }
    };
    if let Some(addr) = parse_upstream_addr(text) {
        return Ok(vec![(addr, None)]);
    }
    let path = ctx.file.parent().unwrap_or(Path::new("")).join(text);
    match read_nameservers(&path) {
        Ok(servers) if servers.is_empty() => {
            Err(ctx.invalid(token, "forward", "no usable nameserver line in the file"))
        }
        Ok(servers) => Ok(servers.into_iter().map(|addr| (addr, None)).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ctx.invalid(
            token,
            "forward",
            "not an IP address, IP:PORT, [IPv6]:PORT or an existing resolv.conf file",
        )),
        Err(e) => Err(ctx.invalid(
            token,
            "forward",
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

fn forward_option(
    ctx: &Ctx<'_>,
    option: &LineSyntax,
    forward: &mut ForwardConfig,
) -> Result<(), ConfigError> {
    let args = option.args.as_slice();
    let name = option.name.text.as_str();
    let context = format!("forward {name}");
    match name {
        "except" => {
            ctx.arg_count(option, &context, 1..=usize::MAX, "except NAMES...")?;
            for token in args {
                forward.except.push(ctx.zone(token, &context)?);
            }
        }
        "force_tcp" => {
            ctx.arg_count(option, &context, 0..=0, "force_tcp")?;
            forward.force_tcp = true;
        }
        "prefer_udp" => {
            ctx.arg_count(option, &context, 0..=0, "prefer_udp")?;
            forward.prefer_udp = true;
        }
        "expire" => {
            ctx.arg_count(option, &context, 1..=1, "expire DURATION")?;
            if let Some(token) = args.first() {
                forward.expire = ctx.duration(token, &context)?;
            }
        }
        "max_fails" => {
            ctx.arg_count(option, &context, 1..=1, "max_fails INTEGER")?;
            if let Some(token) = args.first() {
                forward.max_fails = ctx.int(token, &context, 0, u32::MAX)?;
            }
        }
        "policy" => {
            ctx.arg_count(
                option,
                &context,
                1..=1,
                "policy random|round_robin|sequential",
            )?;
            if let Some(token) = args.first() {
                forward.policy = match token.text.as_str() {
                    "random" => Policy::Random,
                    "round_robin" => Policy::RoundRobin,
                    "sequential" => Policy::Sequential,
                    _ => {
                        return Err(ctx.invalid(
                            token,
                            &context,
                            "expected random, round_robin or sequential",
                        ))
                    }
                };
            }
        }
        "health_check" => health_check(ctx, option, forward)?,
        "max_concurrent" => {
            ctx.arg_count(option, &context, 1..=1, "max_concurrent INTEGER")?;
            if let Some(token) = args.first() {
                // 0 means no limit, as in CoreDNS.
                let n: usize = ctx.int(token, &context, 0, u32::MAX as usize)?;
                forward.max_concurrent = (n > 0).then_some(n);
            }
        }
        "failfast_all_unhealthy_upstreams" => {
            ctx.arg_count(option, &context, 0..=0, "failfast_all_unhealthy_upstreams")?;
            forward.failfast_all_unhealthy = true;
        }
        "max_age" => {
            ctx.arg_count(option, &context, 1..=1, "max_age DURATION")?;
            if let Some(token) = args.first() {
                let age = ctx.duration(token, &context)?;
                forward.max_age = (!age.is_zero()).then_some(age);
            }
        }
        "max_idle_conns" => {
            ctx.arg_count(option, &context, 1..=1, "max_idle_conns INTEGER")?;
            if let Some(token) = args.first() {
                let n: usize = ctx.int(token, &context, 0, i32::MAX as usize)?;
                forward.max_idle_conns = (n > 0).then_some(n);
            }
        }
        "read_timeout" => {
            ctx.arg_count(option, &context, 1..=1, "read_timeout DURATION")?;
            if let Some(token) = args.first() {
                let timeout = ctx.duration(token, &context)?;
                if timeout.is_zero() {
                    return Err(ctx.invalid(token, &context, "must be positive"));
                }
                forward.read_timeout = timeout;
            }
        }
        "max_connect_attempts" => {
            ctx.arg_count(option, &context, 1..=1, "max_connect_attempts INTEGER")?;
            if let Some(token) = args.first() {
                forward.max_connect_attempts = match ctx.int(token, &context, 0, u32::MAX)? {
                    0 => ConnectAttempts::Unbounded,
                    n => ConnectAttempts::Max(n),
                };
            }
        }
        "next" => {
            ctx.arg_count(option, &context, 1..=usize::MAX, "next RCODE...")?;
            for token in args {
                forward.next.push(rcode(ctx, token, &context)?);
            }
        }
        "next_on_nodata" => {
            ctx.arg_count(option, &context, 0..=0, "next_on_nodata")?;
            forward.next_on_nodata = true;
        }
        "failover" => {
            ctx.arg_count(option, &context, 1..=usize::MAX, "failover RCODE...")?;
            for token in args {
                let code = rcode(ctx, token, &context)?;
                if code == 0 {
                    return Err(ctx.invalid(token, &context, "NOERROR cannot be used"));
                }
                forward.failover.push(code);
            }
        }
        "source_address" => {
            ctx.arg_count(option, &context, 1..=1, "source_address IP")?;
            if let Some(token) = args.first() {
                let ip = token
                    .text
                    .parse()
                    .map_err(|_| ctx.invalid(token, &context, "not an IP address"))?;
                forward.source_address = Some(ip);
            }
        }
        "tls" => tls(ctx, option, forward)?,
        "tls_servername" => {
            ctx.arg_count(option, &context, 1..=1, "tls_servername NAME")?;
            if let Some(token) = args.first() {
                check_server_name(ctx, token, &context)?;
                forward.tls.server_name = Some(token.text.clone());
            }
        }
        other => {
            return Err(ConfigError::UnknownOption {
                at: ctx.at(option.name.line),
                directive: "forward",
                option: other.to_string(),
                supported: OPTIONS,
            })
        }
    }
    Ok(())
}

/// `tls://ADDR[%NAME][:PORT]` after the scheme (CoreDNS puts the name before the
/// port: `tls://9.9.9.9%dns.quad9.net:10853`).
fn tls_upstream(text: &str) -> Option<TlsUpstream> {
    const PORT: u16 = 853;
    let Some((host, rest)) = text.split_once('%') else {
        return Some(TlsUpstream {
            addr: parse_addr_with_port(text, PORT)?,
            server_name: None,
        });
    };
    let (name, port) = match rest.rsplit_once(':') {
        Some((name, port)) => (name, port.parse().ok()?),
        None => (rest, PORT),
    };
    let addr = parse_addr_with_port(host, PORT)?;
    if name.is_empty() || rustls::pki_types::ServerName::try_from(name).is_err() {
        return None;
    }
    Some(TlsUpstream {
        addr: SocketAddr::new(addr.ip(), port),
        server_name: Some(name.to_string()),
    })
}

fn check_server_name(ctx: &Ctx<'_>, token: &Token, context: &str) -> Result<(), ConfigError> {
    match rustls::pki_types::ServerName::try_from(token.text.as_str()) {
        Ok(_) => Ok(()),
        Err(_) => Err(ctx.invalid(token, context, "not a DNS name or IP address")),
    }
}

/// `tls [CERT KEY] [CA]`: no argument (system CAs), CA, CERT KEY, or CERT KEY CA. The
/// files are read and parsed here; a relative path is taken from the Corefile's
/// directory.
fn tls(ctx: &Ctx<'_>, option: &LineSyntax, forward: &mut ForwardConfig) -> Result<(), ConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let context = "forward tls";
    ctx.arg_count(option, context, 0..=3, "tls [CERT KEY] [CA]")?;
    let read = |token: &Token| {
        let path = ctx.file.parent().unwrap_or(Path::new("")).join(&token.text);
        let limit = crate::limits::TLS_PEM_FILE_BYTES_MAX;
        read_bounded(&path, limit)
            .map(String::into_bytes)
            .map_err(|e| {
                ctx.invalid(
                    token,
                    context,
                    format!("cannot read {}: {e}", path.display()),
                )
            })
    };
    let certs = |token: &Token| {
        let pem = read(token)?;
        let parsed: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
        match parsed {
            Ok(list) if !list.is_empty() => Ok(pem),
            _ => Err(ctx.invalid(token, context, "no PEM certificate in the file")),
        }
    };
    let args = option.args.as_slice();
    let (identity, ca) = match args {
        [] => (None, None),
        [ca] => (None, Some(ca)),
        [cert, key] => (Some((cert, key)), None),
        [cert, key, ca] => (Some((cert, key)), Some(ca)),
        _ => return Err(ctx.invalid(&option.name, context, "at most CERT KEY CA")),
    };
    if let Some((cert, key)) = identity {
        let chain = certs(cert)?;
        let key_pem = read(key)?;
        if PrivateKeyDer::from_pem_slice(&key_pem).is_err() {
            return Err(ctx.invalid(key, context, "no PEM private key in the file"));
        }
        forward.tls.identity = Some((chain, key_pem));
    }
    if let Some(ca) = ca {
        forward.tls.ca = Some(certs(ca)?);
    }
    Ok(())
}

/// `health_check DURATION [no_rec] [domain FQDN]`.
fn health_check(
    ctx: &Ctx<'_>,
    option: &LineSyntax,
    forward: &mut ForwardConfig,
) -> Result<(), ConfigError> {
    let context = "forward health_check";
    ctx.arg_count(
        option,
        context,
        1..=4,
        "health_check DURATION [no_rec] [domain FQDN]",
    )?;
    let mut args = option.args.iter();
    if let Some(token) = args.next() {
        forward.health_check = ctx.duration(token, context)?;
    }
    while let Some(token) = args.next() {
        match token.text.as_str() {
            "no_rec" => forward.health_check_no_rec = true,
            "domain" => {
                let Some(domain) = args.next() else {
                    return Err(ctx.invalid(token, context, "domain needs a name after it"));
                };
                forward.health_check_domain = ctx.zone(domain, context)?;
            }
            _ => return Err(ctx.invalid(token, context, "expected no_rec or domain FQDN")),
        }
    }
    Ok(())
}
