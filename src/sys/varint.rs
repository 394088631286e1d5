//! Unsigned LEB128 integers, the variable-length form of the store's
//! facets rows and the index's posting blocks: seven bits a byte, low
//! bits first, the high bit set on every byte but the last.

/// Why bytes do not hold a varint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VarintError {
    /// The bytes end inside the number.
    #[error("cut short")]
    CutShort,
    /// The number does not fit 64 bits.
    #[error("more than 64 bits")]
    TooLong,
}

/// Appends `n` to `out`.
pub fn put(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// The number at the start of `bytes` and how many bytes it takes.
pub fn get(bytes: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut n = 0u64;
    for (i, &b) in bytes.iter().enumerate() {
        let shift = 7 * i as u32;
        // The tenth byte may carry only the 64th bit.
        if shift > 63 || (shift == 63 && b & 0x7f > 1) {
            return Err(VarintError::TooLong);
        }
        n |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok((n, i + 1));
        }
    }
    Err(VarintError::CutShort)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_every_length() {
        for n in [0, 1, 127, 128, 300, 1 << 35, u64::MAX - 1, u64::MAX] {
            let mut b = vec![9];
            put(&mut b, n);
            assert_eq!(get(&b[1..]), Ok((n, b.len() - 1)));
            assert_eq!(get(&b[1..b.len() - 1]), Err(VarintError::CutShort));
        }
        assert_eq!(
            get(&[0xff; 9].iter().chain(&[0x01]).copied().collect::<Vec<_>>()),
            Ok((u64::MAX, 10))
        );
    }

    #[test]
    fn more_than_64_bits_is_refused() {
        let mut b = vec![0xff; 9];
        b.push(0x02);
        assert_eq!(get(&b), Err(VarintError::TooLong));
        assert_eq!(get(&[0x80; 11]), Err(VarintError::TooLong));
    }
}
