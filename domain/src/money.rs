//! Money: whole kopecks in an `i64`, never a float.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An amount in rubles, held as whole kopecks.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Rubles(i64);

impl Rubles {
    pub const fn from_kopecks(kopecks: i64) -> Self {
        Self(kopecks)
    }
    pub const fn kopecks(self) -> i64 {
        self.0
    }
}

/// Russian notation: `1 234 567,89 ₽`, with non-breaking spaces between digit groups and
/// before the sign, so an amount never wraps across lines.
impl fmt::Display for Rubles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "−" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = (abs / 100).to_string();
        let mut grouped = String::new();
        for (i, digit) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i).is_multiple_of(3) {
                grouped.push('\u{a0}');
            }
            grouped.push(digit);
        }
        write!(f, "{sign}{grouped},{:02}\u{a0}₽", abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rubles_are_written_the_russian_way() {
        let nbsp = |s: &str| s.replace(' ', "\u{a0}");
        assert_eq!(
            Rubles::from_kopecks(123_456_789).to_string(),
            nbsp("1 234 567,89 ₽")
        );
        assert_eq!(Rubles::from_kopecks(5).to_string(), nbsp("0,05 ₽"));
        assert_eq!(
            Rubles::from_kopecks(100_000).to_string(),
            nbsp("1 000,00 ₽")
        );
        assert_eq!(Rubles::from_kopecks(-99_950).to_string(), nbsp("−999,50 ₽"));
    }
}
