//! `log`: one line per answered query of the configured classes, in CoreDNS's
//! common format (`telemetry::querylog`). The line's fields are taken on the way
//! down (only for blocks with `log`) and written on the way back.

use super::flow::{Flow, Request, Trail};
use crate::config::{ResponseClasses, ServerBlock};
use crate::telemetry::QueryLog;

pub struct Log {
    classes: ResponseClasses,
}

impl Log {
    pub fn new(block: &ServerBlock) -> Option<Log> {
        block.log.then_some(Log {
            classes: block.log_classes,
        })
    }

    pub fn serve(&self, req: &Request<'_>, trail: &mut Trail) -> Flow {
        trail.log = Some(QueryLog::new(
            req.client,
            req.query,
            req.proto(),
            req.query.packet.len(),
            req.now,
            self.classes,
        ));
        Flow::Next
    }
}

/// Writes the query's line for `answer` (nothing when none was sent).
pub fn back(trail: &Trail, answer: &[u8]) {
    if let Some(log) = &trail.log {
        log.answered(answer);
    }
}
