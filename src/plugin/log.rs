//! `log`: one line per answered query, for the names and answer classes of the
//! block's `log` rules and in their formats (`telemetry::querylog`). The first rule
//! whose names hold the query's name decides, as in CoreDNS; a query no rule names
//! gets no line. The line's fields are taken on the way down and written on the
//! way back.

use std::rc::Rc;

use super::flow::{Flow, Request, Trail};
use crate::config::{LogRule, ServerBlock};
use crate::telemetry::QueryLog;
use crate::wire;

pub struct Log {
    /// Each rule with its names in wire form (lower case).
    rules: Vec<(Vec<u8>, Rc<LogRule>)>,
}

impl Log {
    pub fn new(block: &ServerBlock) -> Option<Log> {
        if !block.log {
            return None;
        }
        let rules = block
            .log_rules
            .iter()
            .filter_map(|rule| {
                let scope = wire::name::zone_to_wire(&rule.scope)?;
                Some((scope, Rc::new(rule.clone())))
            })
            .collect();
        Some(Log { rules })
    }

    pub fn serve(&self, req: &Request<'_>, trail: &mut Trail) -> Flow {
        let qname = req.query.qname;
        let rule = self
            .rules
            .iter()
            .find(|(scope, _)| wire::name::in_zone(qname, scope));
        if let Some((_, rule)) = rule {
            let local = req.stats.endpoint_ip(req.endpoint);
            trail.log = Some(QueryLog::new(
                rule.clone(),
                (req.client, local),
                req.query,
                req.proto(),
                req.now,
            ));
        }
        Flow::Next
    }
}

/// Writes the query's line for `answer` (nothing when none was sent).
pub fn back(trail: &Trail, answer: &[u8]) {
    if let Some(log) = &trail.log {
        log.answered(answer);
    }
}
