//! C2SP tlog-tiles: tile and entry-bundle paths, which tiles a tree of a
//! given size has, and the entry-bundle encoding. Tile height is 8.

use std::fmt;

/// Tile height: a tile holds up to 2^8 hashes.
pub const HEIGHT: u8 = 8;
/// Hashes in a full tile.
pub const FULL_WIDTH: u32 = 1 << HEIGHT;
/// Longest tile path we parse: "entries/" + x018/x446/x744/x073/x709/x551/615 + ".p/255".
const MAX_PATH_LEN: usize = 64;

/// What a `tile/...` path names: a hash tile or an entry bundle, at an
/// index and a width (256 for full tiles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileRef {
    /// `None` for an entry bundle, else the tile level (0..=63).
    pub level: Option<u8>,
    /// The tile's index within its level.
    pub index: u64,
    /// How many hashes (or entries) it holds: 1..=256.
    pub width: u32,
}

/// A tile path that is not the one canonical encoding of a tile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a canonical tile path: {0}")]
pub struct BadTilePath(pub String);

impl TileRef {
    /// Parses the part of a tile URL after `tile/`: `<L>/<N>[.p/<W>]` or
    /// `entries/<N>[.p/<W>]`. Only the canonical encoding is accepted: no
    /// leading zeros, every index element three digits, `x` on all but the
    /// last, and `.p/W` only with 1 <= W <= 255.
    pub fn parse(path: &str) -> Result<Self, BadTilePath> {
        let bad = || BadTilePath(path.chars().take(MAX_PATH_LEN).collect());
        if path.len() > MAX_PATH_LEN || !path.is_ascii() {
            return Err(bad());
        }
        let (head, rest) = path.split_once('/').ok_or_else(bad)?;
        let level = match head {
            "entries" => None,
            l => Some(decimal(l).filter(|&l| l <= 63).ok_or_else(bad)? as u8),
        };
        let (n, width) = match rest.split_once(".p/") {
            Some((n, w)) => (
                n,
                decimal(w)
                    .filter(|w| (1..FULL_WIDTH as u64).contains(w))
                    .ok_or_else(bad)? as u32,
            ),
            None => (rest, FULL_WIDTH),
        };
        let mut index: u64 = 0;
        let elems: Vec<&str> = n.split('/').collect();
        for (i, e) in elems.iter().enumerate() {
            let last = i + 1 == elems.len();
            let digits = if last { Some(*e) } else { e.strip_prefix('x') };
            let d = digits
                .filter(|d| d.len() == 3 && d.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(bad)?;
            index = index
                .checked_mul(1000)
                .and_then(|x| x.checked_add(d.parse::<u64>().ok()?))
                .ok_or_else(bad)?;
        }
        let t = TileRef {
            level,
            index,
            width,
        };
        // Leading "x000/" elements decode fine but are not canonical.
        if t.to_string() != format!("tile/{path}") {
            return Err(bad());
        }
        Ok(t)
    }

    /// The number of hashes (or entries) this tile has in a tree of
    /// `size` leaves: 0 when it does not exist yet.
    pub fn available(&self, size: u64) -> u32 {
        let shift = u32::from(HEIGHT) * u32::from(self.level.unwrap_or(0));
        let at_level = size.checked_shr(shift).unwrap_or(0);
        let start = self.index.saturating_mul(FULL_WIDTH as u64);
        at_level.saturating_sub(start).min(FULL_WIDTH as u64) as u32
    }

    /// Whether a tree of `size` leaves has this tile: a full tile once it is
    /// complete, a partial one of width W while at least W hashes exist. A
    /// partial tile is the prefix of the wider tile, so narrower widths for
    /// past tree sizes stay servable after the tile grows.
    pub fn exists_in(&self, size: u64) -> bool {
        self.available(size) >= self.width
    }

    /// The first leaf index an entry bundle covers.
    pub fn first_entry(&self) -> u64 {
        self.index * FULL_WIDTH as u64
    }
}

impl fmt::Display for TileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.level {
            Some(l) => write!(f, "tile/{l}/")?,
            None => write!(f, "tile/entries/")?,
        }
        let mut groups = vec![self.index % 1000];
        let mut n = self.index / 1000;
        while n > 0 {
            groups.push(n % 1000);
            n /= 1000;
        }
        for (i, g) in groups.iter().enumerate().rev() {
            if i == 0 {
                write!(f, "{g:03}")?;
            } else {
                write!(f, "x{g:03}/")?;
            }
        }
        if self.width != FULL_WIDTH {
            write!(f, ".p/{}", self.width)?;
        }
        Ok(())
    }
}

/// A decimal with no sign and no leading zeros, at most 3 digits.
fn decimal(s: &str) -> Option<u64> {
    let ok = !s.is_empty()
        && s.len() <= 3
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.parse().ok()).flatten()
}

/// Encodes entries as an entry bundle: each entry as a big-endian uint16
/// length followed by its bytes (tlog-tiles §Log entries).
pub fn entry_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let len = u16::try_from(e.len()).expect("entries are at most 65535 bytes");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn tile(level: Option<u8>, index: u64, width: u32) -> TileRef {
        TileRef {
            level,
            index,
            width,
        }
    }

    #[test]
    fn spec_example_index_encoding() {
        let t = tile(Some(0), 1234067, 256);
        assert_eq!(t.to_string(), "tile/0/x001/x234/067");
        assert_eq!(TileRef::parse("0/x001/x234/067").unwrap(), t);
        assert_eq!(
            TileRef::parse("entries/x001/x234/067.p/5").unwrap(),
            tile(None, 1234067, 5)
        );
        assert_eq!(TileRef::parse("2/000").unwrap(), tile(Some(2), 0, 256));
        assert_eq!(
            TileRef::parse("63/x018/x446/x744/x073/x709/x551/615").unwrap(),
            tile(Some(63), u64::MAX, 256)
        );
    }

    #[test]
    fn non_canonical_paths_are_refused() {
        for p in [
            "0/1",
            "0/0001",
            "0/x000/001",
            "00/000",
            "01/000",
            "64/000",
            "0/001.p/0",
            "0/001.p/256",
            "0/001.p/05",
            "0/001.p/",
            "0/001.p",
            "0/x001",
            "0/001/002",
            "0/x01/002",
            "-1/000",
            "0/-01",
            "data/000",
            "entries/000.p/1000",
            "0/x018/x446/x744/x073/x709/x551/616",
            "0/../../etc/passwd",
            "0/%30%30%30",
            "",
            "0/",
            "0/00é",
        ] {
            assert!(TileRef::parse(p).is_err(), "{p}");
        }
    }

    #[test]
    fn every_encoded_tile_parses_back() {
        for index in [0, 1, 999, 1000, 1001, 999_999, 1_000_000, 1 << 40] {
            for width in [1, 17, 255, 256] {
                for level in [None, Some(0), Some(5)] {
                    let t = tile(level, index, width);
                    let s = t.to_string();
                    assert_eq!(TileRef::parse(&s["tile/".len()..]).unwrap(), t);
                }
            }
        }
    }

    #[test]
    fn spec_example_tree_of_70000() {
        // tlog-tiles §Partial Tiles: 273 full level-0 tiles, a partial one
        // of width 112, one full level-1 tile, a partial one of width 17,
        // and a partial level-2 tile of width 1.
        let size = 70_000;
        assert_eq!(tile(Some(0), 272, 256).available(size), 256);
        assert_eq!(tile(Some(0), 273, 256).available(size), 112);
        assert_eq!(tile(Some(1), 0, 256).available(size), 256);
        assert_eq!(tile(Some(1), 1, 256).available(size), 17);
        assert_eq!(tile(Some(2), 0, 256).available(size), 1);
        assert_eq!(tile(Some(3), 0, 256).available(size), 0);
        assert!(tile(Some(0), 273, 112).exists_in(size));
        assert!(tile(Some(0), 273, 100).exists_in(size));
        assert!(!tile(Some(0), 273, 113).exists_in(size));
        assert!(!tile(Some(0), 273, 256).exists_in(size));
        assert!(!tile(Some(7), u64::MAX, 1).exists_in(u64::MAX));
        assert!(!tile(Some(63), 0, 1).exists_in(u64::MAX));
    }

    #[test]
    fn entry_bundles_are_length_prefixed() {
        assert_eq!(
            entry_bundle([&b"ab"[..], &b""[..], &[7u8; 3][..]]),
            [0, 2, b'a', b'b', 0, 0, 0, 3, 7, 7, 7]
        );
    }
}
