//! `template`: answers queries from record templates, as CoreDNS's template plugin
//! does. A query for a name in one of the templates' zones is tried against each
//! template in file order: class and type must match, then the first `match`
//! pattern that matches the lower-cased name renders the answer (AA set, the
//! template's rcode, the rendered answer, authority and additional records). A name
//! no pattern matches goes to the next template with `fallthrough`, else it is
//! answered SERVFAIL; a name outside every template's zones passes on.
//!
//! Rendering allocates (the text, then the record parsed by hickory-proto); only
//! queries that reach a template pay for it. A record that does not render or parse
//! is answered SERVFAIL and counted, as CoreDNS does.

use std::net::SocketAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query as Question, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinDecodable;
use hickory_proto::serialize::txt::{Parser, RDataParser};
use regex::Captures;

use super::flow::{Flow, Origin, Request};
use crate::config::{
    RecordTemplate, ServerBlock, TemplateConfig, TemplatePart, Zone, TEMPLATE_ANY,
};
use crate::limits;
use crate::wire::{self, Rcode};

mod series;

pub use series::{Failure, Section};

/// The block's templates.
pub struct Template {
    templates: Box<[Compiled]>,
    /// Matches and record failures, for `coredns_template_*`.
    series: series::Series,
}

/// One sample of the template metrics, labelled.
pub struct Sample<'t> {
    pub endpoint: usize,
    pub zone: &'t str,
    pub class: String,
    pub qtype: String,
    /// None for `coredns_template_matches_total`; else the failure, its section
    /// and the record template's text.
    pub failure: Option<(Failure, Section, &'t str)>,
    pub count: u64,
}

/// One template with its zones in wire form.
struct Compiled {
    config: TemplateConfig,
    zones: Vec<(Vec<u8>, String)>,
    fallthrough: Option<Vec<Vec<u8>>>,
}

/// What a record template is rendered from.
struct Data<'a> {
    name: &'a str,
    zone: &'a str,
    class: &'a str,
    qtype: &'a str,
    client: SocketAddr,
    pattern: &'a str,
    captures: &'a Captures<'a>,
    names: &'a regex::Regex,
}

/// Why a template could not answer: which record failed, how (None: the message
/// itself could not be written).
#[derive(Debug)]
struct RenderError(Option<(Failure, Section, usize)>);

impl Template {
    pub fn new(block: &ServerBlock) -> Option<Template> {
        if block.templates.is_empty() {
            return None;
        }
        let wire_zones = |zones: &[Zone]| -> Vec<Vec<u8>> {
            zones
                .iter()
                .filter_map(|z| wire::name::zone_to_wire(&z.name))
                .collect()
        };
        let templates = block
            .templates
            .iter()
            .map(|t| Compiled {
                zones: t
                    .zones
                    .iter()
                    .filter_map(|z| Some((wire::name::zone_to_wire(&z.name)?, z.name.clone())))
                    .collect(),
                fallthrough: t.fallthrough.as_deref().map(wire_zones),
                config: t.clone(),
            })
            .collect();
        Some(Template {
            templates,
            series: series::Series::default(),
        })
    }

    /// The metric samples of this shard.
    pub fn samples(&self) -> Vec<Sample<'_>> {
        let label = |code: u16, name: fn(u16) -> String| {
            if code == 0 {
                "other".to_string()
            } else {
                name(code)
            }
        };
        let mut samples = Vec::new();
        for (key, count) in self.series.snapshot() {
            let Some(template) = self.templates.get(key.template) else {
                continue;
            };
            let config = &template.config;
            let failure = key.failure.and_then(|(failure, section, index)| {
                let records = match section {
                    Section::Answer => &config.answer,
                    Section::Additional => &config.additional,
                    Section::Authority => &config.authority,
                };
                Some((failure, section, records.get(index)?.text.as_str()))
            });
            samples.push(Sample {
                endpoint: key.endpoint,
                zone: template.zones.get(key.zone).map_or("", |z| z.1.as_str()),
                class: label(key.class, class_name),
                qtype: label(key.qtype, |t| wire::type_to_string(t).into_owned()),
                failure,
                count,
            });
        }
        samples
    }

    // Out of line: a chain without templates must not grow by it (the hit path's
    // dispatch stays small enough to inline).
    #[inline(never)]
    pub fn serve(&self, req: &Request<'_>, out: &mut [u8]) -> Flow {
        let query = req.query;
        let mut name = None;
        for (template_index, template) in self.templates.iter().enumerate() {
            // The longest of the template's zones the name is in.
            let Some((zone_index, zone)) = template
                .zones
                .iter()
                .enumerate()
                .filter(|(_, (wire_zone, _))| wire::name::in_zone(query.qname, wire_zone))
                .max_by_key(|(_, (wire_zone, _))| wire_zone.len())
            else {
                continue;
            };
            let config = &template.config;
            let any =
                |want: u16, got: u16| want == TEMPLATE_ANY || got == TEMPLATE_ANY || want == got;
            if !any(config.class, query.qclass) || !any(config.qtype, query.qtype) {
                continue;
            }
            let Some(name) =
                name.get_or_insert_with(|| wire::name::to_presentation_lower(query.qname))
            else {
                return Flow::Next;
            };
            let found = config
                .patterns
                .iter()
                .find_map(|p| p.0.captures(name).map(|c| (p, c)));
            let Some((pattern, captures)) = found else {
                if template.falls_through(query.qname) {
                    continue;
                }
                return servfail(req, out);
            };
            let shown = |want: u16, got: u16| if got == TEMPLATE_ANY { want } else { got };
            let (class, qtype) = (
                shown(config.class, query.qclass),
                shown(config.qtype, query.qtype),
            );
            let key = series::Key {
                endpoint: req.endpoint,
                template: template_index,
                zone: zone_index,
                class,
                qtype,
                failure: None,
            };
            self.series.bump(key);
            if config.rcode == Rcode::ServFail.code() {
                return servfail(req, out);
            }
            let data = Data {
                name,
                zone: &zone.1,
                class: &class_name(class),
                qtype: &wire::type_to_string(qtype),
                client: req.client,
                pattern: pattern.0.as_str(),
                captures: &captures,
                names: &pattern.0,
            };
            return match answer(config, &data, req, out) {
                Ok(len) => Flow::Answer(len, Origin::Template),
                Err(RenderError(failure)) => {
                    if failure.is_some() {
                        self.series.bump(series::Key { failure, ..key });
                    }
                    servfail(req, out)
                }
            };
        }
        Flow::Next
    }
}

impl Compiled {
    /// `fallthrough` covers `qname`.
    fn falls_through(&self, qname: &[u8]) -> bool {
        self.fallthrough.as_ref().is_some_and(|zones| {
            zones.is_empty() || zones.iter().any(|z| wire::name::in_zone(qname, z))
        })
    }
}

fn servfail(req: &Request<'_>, out: &mut [u8]) -> Flow {
    let len = wire::write_error_reply(req.query.packet, Rcode::ServFail, out);
    Flow::Answer(len, Origin::Template)
}

/// miekg/dns `ClassToString`.
fn class_name(class: u16) -> String {
    match class {
        1 => "IN".into(),
        2 => "CS".into(),
        3 => "CH".into(),
        4 => "HS".into(),
        254 => "NONE".into(),
        255 => "ANY".into(),
        other => format!("CLASS{other}"),
    }
}

/// Writes the template's answer to `req` into `out`; its length.
fn answer(
    config: &TemplateConfig,
    data: &Data<'_>,
    req: &Request<'_>,
    out: &mut [u8],
) -> Result<usize, RenderError> {
    let query = req.query;
    let mut msg = Message::new();
    msg.set_id(query.id)
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_authoritative(true)
        .set_recursion_desired(query.rd())
        .set_checking_disabled(query.cd())
        .set_response_code(ResponseCode::from_low(config.rcode as u8));
    let qname = Name::from_bytes(query.qname).map_err(|_| RenderError(None))?;
    let mut question = Question::query(qname, RecordType::from(query.qtype));
    question.set_query_class(DNSClass::from(query.qclass));
    msg.add_query(question);
    for (index, template) in config.answer.iter().enumerate() {
        msg.add_answer(record(template, data, Section::Answer, index)?);
    }
    for (index, template) in config.authority.iter().enumerate() {
        msg.add_name_server(record(template, data, Section::Authority, index)?);
    }
    for (index, template) in config.additional.iter().enumerate() {
        msg.add_additional(record(template, data, Section::Additional, index)?);
    }
    if let Some(client) = query.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(limits::EDNS_UDP_PAYLOAD_BYTES_OURS)
            .set_dnssec_ok(client.dnssec_ok);
        if let Some((code, reason)) = &config.ederror {
            let mut value = code.to_be_bytes().to_vec();
            value.extend_from_slice(reason.as_bytes());
            edns.options_mut()
                .insert(EdnsOption::Unknown(EDE_OPTION, value));
        }
        msg.set_edns(edns);
    }
    let mut bytes = msg.to_vec().map_err(|_| RenderError(None))?;
    if bytes.len() > out.len() {
        // Too large for the client: TC set, no records, as CoreDNS's scrub does when
        // not even one record fits.
        msg.answers_mut().clear();
        msg.name_servers_mut().clear();
        msg.additionals_mut().clear();
        msg.set_truncated(true);
        bytes = msg.to_vec().map_err(|_| RenderError(None))?;
    }
    let dst = out.get_mut(..bytes.len()).ok_or(RenderError(None))?;
    dst.copy_from_slice(&bytes);
    Ok(bytes.len())
}

/// The EDNS option code of an extended DNS error (RFC 8914).
const EDE_OPTION: u16 = 15;

/// Renders one record template and parses the result as a zone-file record.
fn record(
    template: &RecordTemplate,
    data: &Data<'_>,
    section: Section,
    index: usize,
) -> Result<Record, RenderError> {
    let text =
        render(template, data).ok_or(RenderError(Some((Failure::Render, section, index))))?;
    parse_record(&text).ok_or(RenderError(Some((Failure::Parse, section, index))))
}

/// The record's text; None if a capture it names is missing or it grows too long.
fn render(template: &RecordTemplate, data: &Data<'_>) -> Option<String> {
    let mut text = String::with_capacity(template.text.len() + data.name.len());
    for part in &template.parts {
        let piece: std::borrow::Cow<'_, str> = match part {
            TemplatePart::Text(t) => t.as_str().into(),
            TemplatePart::Name => data.name.into(),
            TemplatePart::Type => data.qtype.into(),
            TemplatePart::Class => data.class.into(),
            TemplatePart::Zone => data.zone.into(),
            TemplatePart::Regex => data.pattern.into(),
            TemplatePart::Remote => data.client.ip().to_string().into(),
            // Go's `index` fails past the end: so does the answer.
            TemplatePart::Match(n) => match data.captures.get(*n) {
                Some(m) => m.as_str().into(),
                None if *n < data.captures.len() => "".into(),
                None => return None,
            },
            TemplatePart::Group(key) => group(data, key)?.into(),
        };
        text.push_str(&piece);
        if text.len() > limits::TEMPLATE_TEXT_BYTES_MAX {
            return None;
        }
    }
    Some(text)
}

/// A capture by name, or by number as CoreDNS's `.Group` map also holds them. A
/// name the matching pattern lacks would render Go's "<no value>": refused.
fn group<'d>(data: &'d Data<'_>, key: &str) -> Option<&'d str> {
    let index = match key.parse::<usize>() {
        Ok(n) => n,
        Err(_) => data.names.capture_names().position(|g| g == Some(key))?,
    };
    if index >= data.captures.len() {
        return None;
    }
    Some(data.captures.get(index).map_or("", |m| m.as_str()))
}

/// A zone-file record line, `OWNER [TTL] [CLASS] TYPE RDATA` (TTL and CLASS in
/// either order; TTL default 3600 and class IN, as miekg/dns `NewRR`). Relative
/// names are taken from the root.
pub(crate) fn parse_record(text: &str) -> Option<Record> {
    const TTL_DEFAULT: u32 = 3600;
    let mut words = text.split_whitespace();
    let owner = words.next()?;
    let owner = Name::from_bytes(&wire::name::from_presentation(owner)?).ok()?;
    let mut ttl = None;
    let mut class = None;
    let rtype = loop {
        let word = words.next()?;
        if ttl.is_none() && word.starts_with(|c: char| c.is_ascii_digit()) {
            ttl = Some(Parser::parse_time(word).ok()?);
        } else if class.is_none() && matches!(word, "IN" | "CH" | "HS" | "NONE" | "ANY") {
            class = Some(word.parse::<DNSClass>().ok()?);
        } else {
            break word.to_ascii_uppercase().parse::<RecordType>().ok()?;
        }
    };
    // The record data is the rest of the text after the type word.
    let rest: Vec<&str> = words.collect();
    let rdata = RData::try_from_str(rtype, &rest.join(" ")).ok()?;
    let mut record = Record::from_rdata(owner, ttl.unwrap_or(TTL_DEFAULT), rdata);
    record.set_dns_class(class.unwrap_or(DNSClass::IN));
    Some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_like_new_rr() {
        let ok = [
            ("a.example.org. 60 IN A 10.0.0.1", RecordType::A, 60),
            ("a.example.org 60 A 10.0.0.1", RecordType::A, 60),
            ("a.example.org. IN 5 AAAA ::1", RecordType::AAAA, 5),
            (
                "a.example.org. CNAME b.example.org.",
                RecordType::CNAME,
                3600,
            ),
            ("x. 1h IN TXT \"two words\" more", RecordType::TXT, 3600),
            (
                "invalid. 60 IN SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)",
                RecordType::SOA,
                60,
            ),
            (
                "1.0.0.10.in-addr.arpa. 60 IN PTR host.example.",
                RecordType::PTR,
                60,
            ),
        ];
        for (text, rtype, ttl) in ok {
            let record = parse_record(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!((record.record_type(), record.ttl()), (rtype, ttl), "{text}");
        }
        for bad in [
            "",
            "a.example.org.",
            "a.example.org. 60 IN A",
            "a.example.org. 60 IN A 10.0.0",
            "a.example.org. 60 IN BOGUS 1",
            "a..b. 60 IN A 10.0.0.1",
            "<no value> 60 IN A 10.0.0.1",
        ] {
            assert!(parse_record(bad).is_none(), "{bad}");
        }
    }

    proptest::proptest! {
        /// Rendered text comes partly from the client (the query name): parsing it
        /// never panics, whatever it is.
        #[test]
        fn any_text_parses_or_fails(text in "\\PC{0,80}") {
            let _ = parse_record(&text);
        }

        #[test]
        fn any_query_name_in_any_record_type(
            label in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..40),
            rtype in proptest::sample::select(vec![
                "A", "AAAA", "TXT", "CNAME", "MX", "SRV", "SOA", "PTR", "NS", "CAA",
                "HINFO", "NAPTR", "SSHFP", "TLSA", "SVCB", "HTTPS", "OPENPGPKEY", "CSYNC",
            ]),
        ) {
            let mut wire = vec![label.len() as u8];
            wire.extend(&label);
            wire.push(0);
            let name = wire::name::to_presentation_lower(&wire).expect("valid name");
            for text in [
                format!("{name} 60 IN {rtype} {name}"),
                format!("{name} 60 IN {rtype} 10 {name} {name} 1 2 3 4 5"),
                format!("{name} 60 IN {rtype} \"{name}\" ({name})"),
            ] {
                let _ = parse_record(&text);
            }
        }
    }
}
