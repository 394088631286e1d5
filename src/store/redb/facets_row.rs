//! The stored form of an event's facets (the log's `facets` table).
//!
//! Binary, not JSON: the row is read for every query candidate and every
//! indexed event, and as JSON it was 160 bytes an event, ~13 % of the log.
//!
//! Layout (integers big-endian, lengths and counts LEB128):
//! `0x01` || class_uid (4) || activity_id (8) || status flag (1)
//! [|| status_id (8)] || time (8) || users || actors || ip flag (1) [|| ip],
//! where users and actors are a count and then each string, and a string is
//! its length and its UTF-8 bytes. Rows written before this layout are JSON
//! objects (their first byte is `{`) and are still read.

use crate::events::Facets;
use crate::store::StoreError;
use crate::sys::varint::{self, VarintError};

const VERSION: u8 = 1;

/// The row of `f`, in the current layout (the module comment).
pub fn encode(f: &Facets) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(VERSION);
    out.extend_from_slice(&f.class_uid.to_be_bytes());
    out.extend_from_slice(&f.activity_id.to_be_bytes());
    put_option(&mut out, f.status_id.map(|s| s.to_be_bytes()));
    out.extend_from_slice(&f.time.to_be_bytes());
    for list in [&f.users, &f.actors] {
        put_len(&mut out, list.len());
        for s in list {
            put_str(&mut out, s);
        }
    }
    out.push(f.src_ip.is_some() as u8);
    if let Some(ip) = &f.src_ip {
        put_str(&mut out, ip);
    }
    out
}

/// Leaf `i`'s facets from their row (`uid`, `logged_time` and `content`
/// are not in it and come back empty).
pub fn decode(i: u64, row: &[u8]) -> Result<Facets, StoreError> {
    let facets = match row.first() {
        Some(b'{') => serde_json::from_slice(row).map_err(|e| e.to_string()),
        Some(&VERSION) => decode_binary(&row[1..]),
        _ => Err("unknown layout".into()),
    };
    facets.map_err(|e| StoreError::Corrupt(format!("facets of {i}: {e}")))
}

fn decode_binary(row: &[u8]) -> Result<Facets, String> {
    let mut r = Reader(row);
    let mut f = Facets {
        class_uid: u32::from_be_bytes(r.take()?),
        activity_id: i64::from_be_bytes(r.take()?),
        ..Facets::default()
    };
    if r.flag()? {
        f.status_id = Some(i64::from_be_bytes(r.take()?));
    }
    f.time = u64::from_be_bytes(r.take()?);
    for list in [&mut f.users, &mut f.actors] {
        for _ in 0..r.len()? {
            list.push(r.string()?);
        }
    }
    if r.flag()? {
        f.src_ip = Some(r.string()?);
    }
    if !r.0.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(f)
}

fn put_option(out: &mut Vec<u8>, v: Option<[u8; 8]>) {
    out.push(v.is_some() as u8);
    if let Some(v) = v {
        out.extend_from_slice(&v);
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    varint::put(out, n as u64);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// The unread rest of a row.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("cut short".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.bytes(N)?.try_into().expect("N bytes"))
    }

    fn flag(&mut self) -> Result<bool, String> {
        match self.take::<1>()?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err("a flag not 0 or 1".into()),
        }
    }

    fn len(&mut self) -> Result<usize, String> {
        let (n, used) = varint::get(self.0).map_err(|e| match e {
            VarintError::CutShort => "cut short",
            VarintError::TooLong => "a length of more than 64 bits",
        })?;
        self.0 = &self.0[used..];
        let n = usize::try_from(n).map_err(|_| "a length past the row")?;
        // A count or length never exceeds the bytes left (each counted
        // item takes at least one): more is damage.
        if n <= self.0.len() {
            Ok(n)
        } else {
            Err("a length past the row".into())
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.len()?;
        let b = self.bytes(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| "a string not UTF-8".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn facets() -> impl Strategy<Value = Facets> {
        (
            any::<u32>(),
            any::<i64>(),
            any::<Option<i64>>(),
            any::<u64>(),
            proptest::collection::vec(".{0,200}", 0..3),
            proptest::collection::vec(".{0,20}", 0..3),
            proptest::option::of("[0-9a-f:.]{2,39}"),
        )
            .prop_map(|(c, a, s, t, users, actors, ip)| Facets {
                class_uid: c,
                activity_id: a,
                status_id: s,
                time: t,
                users,
                actors,
                src_ip: ip,
                ..Facets::default()
            })
    }

    proptest! {
        #[test]
        fn rows_round_trip_and_every_cut_is_refused(f in facets()) {
            let row = encode(&f);
            prop_assert_eq!(decode(1, &row).unwrap(), f);
            for cut in 0..row.len() {
                prop_assert!(decode(1, &row[..cut]).is_err());
            }
        }
    }

    #[test]
    fn json_rows_of_the_earlier_layout_are_read() {
        let f = Facets {
            class_uid: 3002,
            activity_id: 1,
            status_id: Some(2),
            time: 1_700_000_000_000,
            users: vec!["alice".into()],
            actors: vec![],
            src_ip: Some("10.1.2.3".into()),
            ..Facets::default()
        };
        let json = serde_json::to_vec(&f).unwrap();
        assert_eq!(decode(1, &json).unwrap(), f);
        assert!(encode(&f).len() < json.len() / 2);
        assert!(decode(1, b"\x02").is_err(), "unknown layout");
        let mut trailing = encode(&f);
        trailing.push(0);
        assert!(decode(1, &trailing).is_err());
    }
}
