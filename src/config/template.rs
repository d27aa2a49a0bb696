//! The `template` directive, after CoreDNS's `plugin/template/setup.go`:
//! `template CLASS TYPE [ZONE...] { match REGEX...; answer RR; additional RR;
//! authority RR; rcode CODE; ederror CODE [REASON]; fallthrough [ZONE...] }`.
//!
//! Record templates are Go templates in CoreDNS. We run the subset Corefiles use
//! (the fields `.Name`, `.Type`, `.Class`, `.Zone`, `.Remote`, `.Regex`,
//! `.Group.NAME`, and `index .Match N` / `index .Group "NAME"`, with `{{-`/`-}}`
//! trimming); anything else is refused here, naming file:line and the construct, so
//! a template never renders into a wrong answer at run time.

use super::context::Ctx;
use super::error::ConfigError;
use super::lexer::Token;
use super::parser::LineSyntax;
use super::types::{Location, Pattern, Zone};
use crate::limits;
use crate::wire;

/// Query class ANY (and type ANY): the template matches every class (type).
pub const ANY: u16 = 255;

/// One `template` directive.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateConfig {
    /// Query class matched (IN = 1, CH = 3, HS = 4, NONE = 254, ANY = 255).
    pub class: u16,
    /// Query type matched ([`ANY`] for all).
    pub qtype: u16,
    /// Zones the template answers for (default: the block's).
    pub zones: Vec<Zone>,
    /// `match`: patterns tried on the lower-cased query name, first match wins
    /// (default `.*`).
    pub patterns: Vec<Pattern>,
    pub answer: Vec<RecordTemplate>,
    pub additional: Vec<RecordTemplate>,
    pub authority: Vec<RecordTemplate>,
    /// `rcode`, default NOERROR (0).
    pub rcode: u16,
    /// `ederror CODE [REASON]`: an extended DNS error (RFC 8914) in the answer's OPT.
    pub ederror: Option<(u16, String)>,
    /// `fallthrough [ZONE...]`: None without it; an empty list is every name.
    pub fallthrough: Option<Vec<Zone>>,
    pub location: Location,
}

/// One `answer`, `additional` or `authority` record: its text and what it renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordTemplate {
    pub text: String,
    pub parts: Vec<Part>,
}

/// A piece of a record template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// `.Name`: the query name, lower-cased, fully qualified.
    Name,
    /// `.Type`, `.Class`: the query's (the template's when the query says ANY).
    Type,
    Class,
    /// `.Zone`: the template zone that matched.
    Zone,
    /// `.Remote`: the client's IP address.
    Remote,
    /// `.Regex`: the pattern that matched.
    Regex,
    /// `index .Match N`: the Nth capture (0 = the whole match).
    Match(usize),
    /// `.Group.NAME`, `index .Group "NAME"`: a capture by name (or by number).
    Group(String),
}

const SUPPORTED: &str =
    "answer, additional, authority, match, rcode, ederror, fallthrough, upstream";
const USAGE: &str = "template CLASS TYPE [ZONE...] { ... }";
const CONSTRUCTS: &str = ".Name, .Type, .Class, .Zone, .Remote, .Regex, .Group.NAME, \
                          index .Match N, index .Group \"NAME\"";

/// `template CLASS TYPE [ZONE...] { ... }`; `zones` are the block's.
pub(crate) fn parse(
    ctx: &Ctx<'_>,
    line: &LineSyntax,
    zones: &[Zone],
) -> Result<TemplateConfig, ConfigError> {
    ctx.arg_count(line, "template", 2..=usize::MAX, USAGE)?;
    let (Some(class), Some(qtype)) = (line.args.first(), line.args.get(1)) else {
        return Err(ctx.invalid(&line.name, "template", "CLASS and TYPE are required"));
    };
    let mut template = TemplateConfig {
        class: class_code(class.text.as_str()).ok_or_else(|| {
            ctx.invalid(
                class,
                "template",
                "invalid query class (IN, CH, HS, NONE or ANY)",
            )
        })?,
        qtype: match qtype.text.as_str() {
            "ANY" => Some(ANY),
            text if text.starts_with("TYPE") => None,
            text => {
                wire::parse_qtype(text).filter(|_| text.chars().all(|c| !c.is_ascii_lowercase()))
            }
        }
        .ok_or_else(|| {
            ctx.invalid(
                qtype,
                "template",
                "invalid query type (A, AAAA, PTR, ..., ANY)",
            )
        })?,
        zones: zone_list(
            ctx,
            line.args.get(2..).unwrap_or_default(),
            zones,
            "template",
        )?,
        patterns: Vec::new(),
        answer: Vec::new(),
        additional: Vec::new(),
        authority: Vec::new(),
        rcode: 0,
        ederror: None,
        fallthrough: None,
        location: ctx.at(line.name.line),
    };
    for option in line.block.iter().flatten() {
        option_line(ctx, option, &mut template)?;
    }
    if template.patterns.is_empty() {
        let any = Token {
            text: ".*".into(),
            ..line.name.clone()
        };
        template.patterns.push(ctx.regex(&any, "template match")?);
    }
    check_captures(ctx, line, &template)?;
    Ok(template)
}

fn option_line(
    ctx: &Ctx<'_>,
    option: &LineSyntax,
    template: &mut TemplateConfig,
) -> Result<(), ConfigError> {
    let name = option.name.text.as_str();
    match name {
        "match" => {
            ctx.arg_count(option, "template match", 1..=usize::MAX, "match REGEX...")?;
            for token in &option.args {
                template.patterns.push(ctx.regex(token, "template match")?);
            }
        }
        "answer" | "additional" | "authority" => {
            let context = format!("template {name}");
            ctx.arg_count(
                option,
                &context,
                1..=usize::MAX,
                "answer|additional|authority RR...",
            )?;
            let records = match name {
                "answer" => &mut template.answer,
                "additional" => &mut template.additional,
                _ => &mut template.authority,
            };
            for token in &option.args {
                records.push(record_template(ctx, token, &context)?);
            }
        }
        "rcode" => {
            ctx.arg_count(option, "template rcode", 1..=1, "rcode CODE")?;
            if let Some(token) = option.args.first() {
                template.rcode = rcode(ctx, token, "template rcode")?;
            }
        }
        "ederror" => {
            let usage = "ederror EXTENDED_ERROR_CODE [EXTRA_REASON]";
            ctx.arg_count(option, "template ederror", 1..=2, usage)?;
            if let Some(code) = option.args.first() {
                let code = ctx.int(code, "template ederror", 0u16, u16::MAX)?;
                let reason = option
                    .args
                    .get(1)
                    .map(|t| t.text.clone())
                    .unwrap_or_default();
                template.ederror = Some((code, reason));
            }
        }
        "fallthrough" => {
            let mut zones = Vec::with_capacity(option.args.len());
            for token in &option.args {
                zones.push(ctx.zone(token, "template fallthrough")?);
            }
            template.fallthrough = Some(zones);
        }
        // CoreDNS still accepts and ignores it ("remove soon").
        "upstream" => {}
        "var" | "expr" => {
            return Err(ConfigError::Unsupported {
                at: ctx.at(option.name.line),
                context: "template".into(),
                token: name.to_string(),
                reason:
                    "expressions (var, expr) are not implemented; match with regular expressions"
                        .into(),
            })
        }
        other => {
            return Err(ConfigError::UnknownOption {
                at: ctx.at(option.name.line),
                directive: "template",
                option: other.to_string(),
                supported: SUPPORTED,
            })
        }
    }
    let records = template.answer.len() + template.additional.len() + template.authority.len();
    if records > limits::TEMPLATE_RECORDS_MAX
        || template.patterns.len() > limits::TEMPLATE_RECORDS_MAX
    {
        return Err(ctx.invalid(
            &option.name,
            "template",
            format!(
                "more than {} records or patterns",
                limits::TEMPLATE_RECORDS_MAX
            ),
        ));
    }
    Ok(())
}

/// Class mnemonics as miekg/dns `StringToClass` spells them.
fn class_code(text: &str) -> Option<u16> {
    Some(match text {
        "IN" => 1,
        "CS" => 2,
        "CH" => 3,
        "HS" => 4,
        "NONE" => 254,
        "ANY" => ANY,
        _ => return None,
    })
}

/// A response code by name (miekg/dns spelling) or number; only the 4-bit header
/// codes, the others need an OPT record the client may not have sent.
pub(crate) fn rcode(ctx: &Ctx<'_>, token: &Token, context: &str) -> Result<u16, ConfigError> {
    let names = &wire::mnemonic::RCODE_NAMES;
    if let Some(code) = names
        .iter()
        .position(|n| *n == token.text.to_ascii_uppercase())
    {
        return u16::try_from(code).map_err(|_| ctx.invalid(token, context, "unknown rcode"));
    }
    match token.text.parse::<u16>() {
        Ok(code) if usize::from(code) < names.len() => Ok(code),
        _ => Err(ctx.invalid(
            token,
            context,
            format!("unknown rcode (one of {})", names.join(", ")),
        )),
    }
}

/// Zones given as arguments, else the block's.
pub(crate) fn zone_list(
    ctx: &Ctx<'_>,
    args: &[Token],
    block: &[Zone],
    context: &str,
) -> Result<Vec<Zone>, ConfigError> {
    if args.is_empty() {
        return Ok(block.to_vec());
    }
    args.iter().map(|token| ctx.zone(token, context)).collect()
}

/// Parses one record template.
fn record_template(
    ctx: &Ctx<'_>,
    token: &Token,
    context: &str,
) -> Result<RecordTemplate, ConfigError> {
    if token.text.len() > limits::TEMPLATE_TEXT_BYTES_MAX {
        let reason = format!("longer than {} bytes", limits::TEMPLATE_TEXT_BYTES_MAX);
        return Err(ctx.invalid(token, context, reason));
    }
    let parts = parse_text(&token.text).map_err(|reason| ConfigError::Unsupported {
        at: ctx.at(token.line),
        context: context.to_string(),
        token: reason.0,
        reason: reason.1,
    })?;
    Ok(RecordTemplate {
        text: token.text.clone(),
        parts,
    })
}

/// Why a template text was refused: the construct and the reason.
type Refusal = (String, String);

/// Splits a template text into literal text and actions.
pub(crate) fn parse_text(text: &str) -> Result<Vec<Part>, Refusal> {
    let mut parts = Vec::new();
    let mut rest = text;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut before = &rest[..open];
        if trim_next {
            before = before.trim_start();
        }
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err((
                format!("{{{{{after}"),
                "unclosed action: \"{{\" without \"}}\"".into(),
            ));
        };
        let mut body = &after[..close];
        if let Some(trimmed) = body.strip_prefix("- ") {
            before = before.trim_end();
            body = trimmed;
        }
        trim_next = false;
        if let Some(trimmed) = body.strip_suffix(" -") {
            trim_next = true;
            body = trimmed;
        }
        if !before.is_empty() {
            parts.push(Part::Text(before.to_string()));
        }
        parts.push(action(body.trim()).ok_or_else(|| {
            (
                format!("{{{{{body}}}}}"),
                format!("this template construct is not implemented (supported: {CONSTRUCTS})"),
            )
        })?);
        rest = &after[close + 2..];
    }
    let rest = if trim_next { rest.trim_start() } else { rest };
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Ok(parts)
}

/// One action's pipeline, if it is in the subset.
fn action(body: &str) -> Option<Part> {
    let words: Vec<&str> = body.split_whitespace().collect();
    match words.as_slice() {
        [".Name"] => Some(Part::Name),
        [".Type"] => Some(Part::Type),
        [".Class"] => Some(Part::Class),
        [".Zone"] => Some(Part::Zone),
        [".Remote"] => Some(Part::Remote),
        [".Regex"] => Some(Part::Regex),
        [field] => {
            let name = field.strip_prefix(".Group.")?;
            let ident = name
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
            (ident && !name.is_empty()).then(|| Part::Group(name.to_string()))
        }
        ["index", ".Match", n] => n.parse().ok().map(Part::Match),
        ["index", ".Group", key] => {
            let key = key.strip_prefix('"')?.strip_suffix('"')?;
            (!key.contains(['"', '\\'])).then(|| Part::Group(key.to_string()))
        }
        _ => None,
    }
}

/// `index .Match N` and `.Group.NAME` that no pattern of the template can fill would
/// fail on every query: refused now.
fn check_captures(
    ctx: &Ctx<'_>,
    line: &LineSyntax,
    template: &TemplateConfig,
) -> Result<(), ConfigError> {
    let records = template
        .answer
        .iter()
        .chain(&template.additional)
        .chain(&template.authority);
    for record in records {
        for part in &record.parts {
            let fillable = match part {
                Part::Match(n) => template.patterns.iter().any(|p| *n < p.0.captures_len()),
                Part::Group(key) => template.patterns.iter().any(|p| {
                    p.0.capture_names().any(|g| g == Some(key.as_str()))
                        || key.parse::<usize>().is_ok_and(|n| n < p.0.captures_len())
                }),
                _ => true,
            };
            if !fillable {
                return Err(ConfigError::Invalid {
                    at: ctx.at(line.name.line),
                    context: "template".into(),
                    token: record.text.clone(),
                    reason: format!("{part:?} names a capture group no match pattern has"),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts() {
        use Part::*;
        let t = |s: &str| Text(s.to_string());
        let cases: &[(&str, Vec<Part>)] = &[
            (
                "{{ .Name }} 60 IN A 10.0.0.1",
                vec![Name, t(" 60 IN A 10.0.0.1")],
            ),
            (
                "{{.Name}} {{ .Class }} {{ .Type }}",
                vec![Name, t(" "), Class, t(" "), Type],
            ),
            ("x {{- .Zone -}} y", vec![t("x"), Zone, t("y")]),
            ("{{ index .Match 3 }}", vec![Match(3)]),
            (
                "{{ .Group.ip_1 }}{{ index .Group \"b\" }}",
                vec![Group("ip_1".into()), Group("b".into())],
            ),
            ("{{ .Remote }} {{ .Regex }}", vec![Remote, t(" "), Regex]),
            ("no action", vec![t("no action")]),
            ("", vec![]),
        ];
        for (text, want) in cases {
            assert_eq!(parse_text(text).as_ref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn refused_texts() {
        for text in [
            "{{ .Message }}",
            "{{ .Question }}",
            "{{ .Var.x }}",
            "{{ parseInt .Name 10 64 }}",
            "{{ if .Name }}x{{ end }}",
            "{{ $x := 1 }}",
            "{{ .Name | printf \"%s\" }}",
            "{{ index .Match x }}",
            "{{ .Group. }}",
            "{{ .Name ",
            "{{/* c */}}",
        ] {
            assert!(parse_text(text).is_err(), "{text}");
        }
    }

    /// The templates of a one-block Corefile, or the error text.
    fn templates(text: &str) -> Result<Vec<TemplateConfig>, String> {
        let path = std::path::Path::new("Corefile");
        let config = crate::config::parse_corefile(text, path).map_err(|e| e.to_string())?;
        Ok(config
            .servers
            .into_iter()
            .next()
            .map(|b| b.templates)
            .unwrap_or_default())
    }

    /// After CoreDNS's template `setup_test.go`: Corefiles that parse, and what one
    /// of their values is.
    #[test]
    fn setup() {
        type Check = fn(&[TemplateConfig]) -> bool;
        let cases: &[(&str, Check)] = &[
            (". {\n template ANY AAAA {\n  rcode NOERROR\n }\n}", |t| {
                t[0].class == ANY && t[0].qtype == 28 && t[0].rcode == 0 && t[0].patterns[0].0.as_str() == ".*"
            }),
            ("example.org {\n template IN A\n}", |t| t[0].zones[0].name == "example.org." && t[0].class == 1),
            (". {\n template IN A example.org b.org\n}", |t| t[0].zones.len() == 2),
            (". {\n template CH TXT {\n  rcode 3\n }\n}", |t| t[0].class == 3 && t[0].rcode == 3),
            (". {\n template IN A {\n  rcode nxdomain\n }\n}", |t| t[0].rcode == 3),
            (
                ". {\n template IN A {\n  match ^(?P<a>[a-z]+)[.]x[.]$ y\n  answer \"{{ .Group.a }} 5 IN A 10.0.0.1\" \"{{ index .Match 1 }}. A 10.0.0.2\"\n  additional \"x. A 1.1.1.1\"\n  authority \"x. 60 SOA a. b. 1 2 3 4 5\"\n }\n}",
                |t| t[0].patterns.len() == 2 && t[0].answer.len() == 2 && t[0].additional.len() == 1 && t[0].authority.len() == 1,
            ),
            (". {\n template IN A {\n  fallthrough\n }\n}", |t| t[0].fallthrough == Some(vec![])),
            (". {\n template IN A {\n  fallthrough in-addr.arpa\n }\n}", |t| {
                t[0].fallthrough.as_ref().is_some_and(|z| z[0].name == "in-addr.arpa.")
            }),
            (". {\n template IN A {\n  ederror 21 \"Blocked\"\n }\n}", |t| t[0].ederror == Some((21, "Blocked".into()))),
            (". {\n template IN A {\n  upstream\n }\n}", |t| t.len() == 1),
            (". {\n template IN A\n template IN AAAA\n}", |t| t.len() == 2 && t[1].qtype == 28),
        ];
        for (text, check) in cases {
            match templates(text) {
                Ok(t) => assert!(check(&t), "{text}: {t:?}"),
                Err(e) => panic!("{text}: {e}"),
            }
        }
    }

    /// Each refused Corefile: the line and a fragment of the message (which names
    /// the token).
    #[test]
    fn fails() {
        let many = format!(
            ". {{\n{}}}",
            " template IN A\n".repeat(limits::TEMPLATES_PER_BLOCK_MAX + 1)
        );
        let cases: &[(&str, &str)] = &[
            (". {\n template\n}", "Corefile:2: template: wrong number of arguments (0)"),
            (". {\n template IN\n}", "Corefile:2: template: wrong number of arguments (1)"),
            (". {\n template XX A\n}", "Corefile:2: template: invalid \"XX\": invalid query class"),
            (". {\n template in A\n}", "Corefile:2: template: invalid \"in\""),
            (". {\n template IN BOGUS\n}", "Corefile:2: template: invalid \"BOGUS\": invalid query type"),
            (". {\n template IN A a..b\n}", "Corefile:2: template: invalid \"a..b\""),
            (". {\n template IN A {\n  match\n }\n}", "Corefile:3: template match: wrong number of arguments (0)"),
            (". {\n template IN A {\n  match (\n }\n}", "Corefile:3: template match: invalid \"(\": bad regex"),
            (". {\n template IN A {\n  answer\n }\n}", "Corefile:3: template answer: wrong number of arguments (0)"),
            (
                ". {\n template IN A {\n  answer \"{{ .Message }}\"\n }\n}",
                "Corefile:3: template answer: \"{{ .Message }}\" is not supported: this template construct",
            ),
            (". {\n template IN A {\n  authority \"{{ .Name \"\n }\n}", "Corefile:3: template authority: \"{{ .Name \" is not supported: unclosed"),
            (". {\n template IN A {\n  additional \"{{ parseInt .Name }}\"\n }\n}", "Corefile:3: template additional: \"{{ parseInt .Name }}\""),
            (
                ". {\n template IN A {\n  answer \"{{ index .Match 1 }} A 1.1.1.1\"\n }\n}",
                "Corefile:2: template: invalid \"{{ index .Match 1 }} A 1.1.1.1\": Match(1) names a capture group",
            ),
            (
                ". {\n template IN A {\n  match (?P<a>x)\n  answer \"{{ .Group.b }} A 1.1.1.1\"\n }\n}",
                "Corefile:2: template: invalid",
            ),
            (". {\n template IN A {\n  rcode\n }\n}", "Corefile:3: template rcode: wrong number of arguments (0)"),
            (". {\n template IN A {\n  rcode BADCOOKIE\n }\n}", "Corefile:3: template rcode: invalid \"BADCOOKIE\": unknown rcode"),
            (". {\n template IN A {\n  rcode 99\n }\n}", "Corefile:3: template rcode: invalid \"99\""),
            (". {\n template IN A {\n  ederror\n }\n}", "Corefile:3: template ederror: wrong number"),
            (". {\n template IN A {\n  ederror x\n }\n}", "Corefile:3: template ederror: invalid \"x\""),
            (". {\n template IN A {\n  fallthrough a..b\n }\n}", "Corefile:3: template fallthrough: invalid \"a..b\""),
            (". {\n template IN A {\n  var x 1\n }\n}", "Corefile:3: template: \"var\" is not supported"),
            (". {\n template IN A {\n  expr true\n }\n}", "Corefile:3: template: \"expr\" is not supported"),
            (". {\n template IN A {\n  answers x\n }\n}", "Corefile:3: template: unknown option \"answers\""),
            (&many, "more than 64 in one block"),
        ];
        let long = format!(
            ". {{\n template IN A {{\n  match {}\n }}\n}}",
            "a".repeat(limits::REGEX_PATTERN_BYTES_MAX + 1)
        );
        let huge = ". {\n template IN A {\n  match \\w{1000}\\w{1000}\\w{1000}\n }\n}".to_string();
        for (text, want) in cases
            .iter()
            .map(|(t, w)| (t.to_string(), *w))
            .chain([(long, "regex pattern too long"), (huge, "bad regex")])
        {
            match templates(&text) {
                Ok(t) => panic!("{text} parsed: {t:?}"),
                Err(e) => assert!(e.contains(want), "{text}: got {e}, want {want}"),
            }
        }
    }
}
