//! Event queries: by user, actor, class, activity, status, source IP and
//! time range, newest or oldest first, in pages with an opaque cursor.
//!
//! A query walks the most selective secondary index it has a key for
//! (user, actor, source IP, time range, class; else every event) and
//! filters the rest by each candidate's facets. The indexes are kept by a
//! follower of the log (`query::index`); a query is answered once they
//! cover the checkpoint's size, and each candidate is checked against the
//! log's own facets row, so a query sees exactly the unredacted events
//! under that checkpoint. A query examines at most `MAX_EXAMINED`
//! candidates per page; past that, or once its events reach
//! `MAX_PAGE_BYTES`, it returns what it found with a cursor to go on from.

pub mod index;
pub mod uid_filter;

use base64::prelude::{Engine, BASE64_URL_SAFE_NO_PAD};

use crate::events::Facets;
use crate::query::index::{IndexError, IndexKey, View};
use crate::store::{EventRow, Snapshot, StoredEvent};

/// Candidates examined at most for one page.
pub const MAX_EXAMINED: usize = 100_000;
/// Events at most in one page.
pub const MAX_LIMIT: usize = 1000;
/// A page stops once its events' canonical bytes reach this, whatever
/// the limit: a response's memory is bounded by bytes, not by count (an
/// event may be up to `events::MAX_EVENT_BYTES`).
pub const MAX_PAGE_BYTES: usize = 2 << 20;
/// Events in a page when no limit is given.
pub const DEFAULT_LIMIT: usize = 100;

/// What to look for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Query {
    /// `user.uid` or `user.name`.
    pub user: Option<String>,
    /// `actor.user.uid` or `actor.user.name`.
    pub actor: Option<String>,
    /// `src_endpoint.ip`, compared as text.
    pub src_ip: Option<String>,
    /// The event class, e.g. 3002 (Authentication).
    pub class_uid: Option<u32>,
    /// `activity_id`: a filter on the candidates, never an index walked.
    pub activity_id: Option<i64>,
    /// `status_id`: a filter on the candidates, never an index walked.
    pub status_id: Option<i64>,
    /// Event time range, epoch ms, inclusive.
    pub since: Option<u64>,
    /// The range's end, epoch ms, inclusive.
    pub until: Option<u64>,
    /// Newest first: by event time when a time range drives the walk,
    /// else by leaf index (the order of appends).
    pub newest_first: bool,
    /// Events at most in the page, clamped to 1..=`MAX_LIMIT`; a page may
    /// stop short of it and still have a next one.
    pub limit: usize,
    /// Where the previous page ended.
    pub cursor: Option<Cursor>,
}

/// Where a page ended: the last (time, index) or (0, index) walked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cursor {
    newest_first: bool,
    key: (u64, u64),
}

/// A cursor that is not one this server made for this query's order.
#[derive(Debug, thiserror::Error)]
#[error("not a cursor from this query")]
pub struct BadCursor;

impl Cursor {
    /// The cursor as the `cursor=` parameter carries it: base64url of a
    /// versioned text, opaque to clients.
    pub fn encode(&self) -> String {
        let order = if self.newest_first { 'n' } else { 'o' };
        BASE64_URL_SAFE_NO_PAD.encode(format!("v1:{order}:{}:{}", self.key.0, self.key.1))
    }

    /// Reads a cursor made by `encode` for a walk in the order
    /// `newest_first`; one made for the other order is refused, since it
    /// marks where a walk the other way ended.
    pub fn decode(s: &str, newest_first: bool) -> Result<Cursor, BadCursor> {
        let raw = BASE64_URL_SAFE_NO_PAD.decode(s).map_err(|_| BadCursor)?;
        let text = String::from_utf8(raw).map_err(|_| BadCursor)?;
        let mut parts = text.split(':');
        let (Some("v1"), Some(order), Some(a), Some(b), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(BadCursor);
        };
        if order != if newest_first { "n" } else { "o" } {
            return Err(BadCursor);
        }
        Ok(Cursor {
            newest_first,
            key: (
                a.parse().map_err(|_| BadCursor)?,
                b.parse().map_err(|_| BadCursor)?,
            ),
        })
    }
}

/// One page of results.
#[derive(Debug)]
pub struct Page {
    /// The matching unredacted events with their leaf indexes, in the
    /// query's order.
    pub events: Vec<(u64, StoredEvent)>,
    /// Set when there may be more.
    pub next: Option<Cursor>,
}

impl Query {
    /// The index to walk: the most selective key the query has.
    fn driver(&self) -> IndexKey {
        if let Some(u) = &self.user {
            IndexKey::User(u.clone())
        } else if let Some(a) = &self.actor {
            IndexKey::Actor(a.clone())
        } else if let Some(ip) = &self.src_ip {
            IndexKey::Ip(ip.clone())
        } else if self.since.is_some() || self.until.is_some() {
            IndexKey::Time {
                from: self.since.unwrap_or(0),
                to: self.until.unwrap_or(u64::MAX),
            }
        } else if let Some(c) = self.class_uid {
            IndexKey::Class(c)
        } else {
            IndexKey::All
        }
    }

    /// Whether an event with facets `f` matches.
    pub fn matches(&self, f: &Facets) -> bool {
        let has =
            |list: &[String], want: &Option<String>| want.as_ref().is_none_or(|w| list.contains(w));
        has(&f.users, &self.user)
            && has(&f.actors, &self.actor)
            && self
                .src_ip
                .as_ref()
                .is_none_or(|ip| f.src_ip.as_ref() == Some(ip))
            && self.class_uid.is_none_or(|c| f.class_uid == c)
            && self.activity_id.is_none_or(|a| f.activity_id == a)
            && self.status_id.is_none_or(|s| f.status_id == Some(s))
            && self.since.is_none_or(|t| f.time >= t)
            && self.until.is_none_or(|t| f.time <= t)
    }

    /// Runs the query over the leaves below `size`.
    pub fn run(&self, index: &View, snap: &dyn Snapshot, size: u64) -> Result<Page, IndexError> {
        let limit = self.limit.clamp(1, MAX_LIMIT);
        let mut events = Vec::new();
        let mut examined = 0;
        let mut bytes = 0;
        let candidates = index.scan(
            &self.driver(),
            self.newest_first,
            self.cursor.map(|c| c.key),
        )?;
        for c in candidates {
            let key = c?;
            examined += 1;
            let index = key.1;
            if index < size && snap.facets(index)?.is_some_and(|f| self.matches(&f)) {
                if let EventRow::Present(e) = snap.event(index)? {
                    bytes += e.jcs.len();
                    events.push((index, e));
                }
            }
            if events.len() == limit || examined == MAX_EXAMINED || bytes >= MAX_PAGE_BYTES {
                return Ok(Page {
                    events,
                    next: Some(Cursor {
                        newest_first: self.newest_first,
                        key,
                    }),
                });
            }
        }
        Ok(Page { events, next: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_the_other_order() {
        let c = Cursor {
            newest_first: true,
            key: (17, 42),
        };
        assert_eq!(Cursor::decode(&c.encode(), true).unwrap(), c);
        assert!(Cursor::decode(&c.encode(), false).is_err());
        for bad in [
            "",
            "!!",
            "djE6bjox",
            &BASE64_URL_SAFE_NO_PAD.encode("v1:n:1:2:3"),
        ] {
            assert!(Cursor::decode(bad, true).is_err(), "{bad}");
        }
    }
}
