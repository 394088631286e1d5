//! Request parsing shared by the routes: strict query parameters and
//! canonical indexes in paths.

use super::error::ApiError;

/// Query parameters, parsed strictly: each at most once.
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    /// The query string's pairs; 400 if malformed or a name repeats.
    pub(super) fn parse(q: Option<String>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad("query", e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for (k, _) in &pairs {
            if !seen.insert(k.as_str()) {
                return Err(ApiError::bad(k, "parameter given more than once"));
            }
        }
        Ok(Params(pairs))
    }

    /// The value of `name`, if given.
    pub(super) fn str(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name` as a non-negative integer, if given.
    pub(super) fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.str(name)
            .map(|v| {
                v.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| v.parse::<u64>().ok())
                    .flatten()
                    .ok_or_else(|| {
                        ApiError::bad(name, format!("{v:?} is not a non-negative integer"))
                    })
            })
            .transpose()
    }

    /// The value of `name` as a non-negative integer; 400 if absent.
    pub(super) fn required_u64(&self, name: &str) -> Result<u64, ApiError> {
        self.u64(name)?
            .ok_or_else(|| ApiError::bad(name, "required parameter is missing"))
    }

    /// 400 if a parameter outside `allowed` is given.
    pub(super) fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.0.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            Some((k, _)) => Err(ApiError::bad(
                k,
                format!("unknown parameter; expected {allowed:?}"),
            )),
            None => Ok(()),
        }
    }
}

/// `s` as a canonical decimal u64: digits only (no sign, no spaces), no
/// leading zero unless it is `0`, and in range; else None. One number has
/// exactly one spelling, so a cache or an audit trail never sees two names
/// for one index.
pub(super) fn canonical_u64(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse::<u64>().ok()).flatten()
}

/// A leaf index from a path segment.
pub(super) fn path_index(s: &str) -> Result<u64, ApiError> {
    canonical_u64(s).ok_or_else(|| {
        ApiError::bad(
            "index",
            format!("{s:?} is not a canonical decimal index (digits, no leading zero, below 2^64)"),
        )
    })
}
