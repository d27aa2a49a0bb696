//! `template`'s metric series on one shard, as CoreDNS labels them: matches by
//! listening address, zone, class and type; record failures also by section and
//! record template. Bounded (`limits::TEMPLATE_SERIES_MAX`): past the bound a new
//! series counts under class and type `other`.

use std::cell::RefCell;

use crate::limits;

/// Which record list a failed record template is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Answer,
    Additional,
    Authority,
}

impl Section {
    pub fn name(self) -> &'static str {
        match self {
            Section::Answer => "answer",
            Section::Additional => "additional",
            Section::Authority => "authority",
        }
    }
}

/// How a record failed: it did not render (a capture the matching pattern lacks:
/// CoreDNS's template failures) or did not parse as a record (its RR failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Render,
    Parse,
}

/// One series. Class and type 0 stand for `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub endpoint: usize,
    pub template: usize,
    pub zone: usize,
    pub class: u16,
    pub qtype: u16,
    /// None for a match; else what failed, where, and the record's index there.
    pub failure: Option<(Failure, Section, usize)>,
}

#[derive(Default)]
pub struct Series(RefCell<Vec<(Key, u64)>>);

impl Series {
    pub fn bump(&self, key: Key) {
        let mut series = self.0.borrow_mut();
        let key = if series.len() >= limits::TEMPLATE_SERIES_MAX
            && !series.iter().any(|(k, _)| *k == key)
        {
            Key {
                class: 0,
                qtype: 0,
                ..key
            }
        } else {
            key
        };
        match series.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => series.push((key, 1)),
        }
    }

    pub fn snapshot(&self) -> Vec<(Key, u64)> {
        self.0.borrow().clone()
    }
}
