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

    /// The largest single amount of aid accepted (10 million rubles): anything above is a
    /// typing mistake, not a payment.
    pub const MAX_AID: Rubles = Rubles(1_000_000_000);

    /// An amount as people type it: `10 000,50`, `10000.50`, `10 000 ₽`, `1500` — digit
    /// groups separated by spaces, a comma or a dot before at most two kopeck digits.
    /// Negative, zero and absurd amounts (over [`Rubles::MAX_AID`]) are refused.
    pub fn parse_amount(raw: &str) -> Result<Self, AmountError> {
        let mut text: String = raw
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '\u{a0}' && *c != '\u{202f}')
            .collect();
        for suffix in ["₽", "руб.", "руб", "р.", "р"] {
            if let Some(stripped) = text.strip_suffix(suffix) {
                text = stripped.to_owned();
                break;
            }
        }
        if text.is_empty() {
            return Err(AmountError::Empty);
        }
        if text.starts_with(['-', '−', '–']) {
            return Err(AmountError::Negative);
        }
        let (whole, fraction) = match text.split_once([',', '.']) {
            Some((whole, fraction)) => (whole, fraction),
            None => (text.as_str(), ""),
        };
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) {
            return Err(AmountError::NotANumber(raw.trim().to_owned()));
        }
        if fraction.len() > 2 {
            return Err(AmountError::TooPrecise);
        }
        // More digits than any accepted amount has: absurd, and kept away from overflow.
        if whole.trim_start_matches('0').len() > 12 {
            return Err(AmountError::TooLarge);
        }
        let rubles: i64 = whole.parse().map_err(|_| AmountError::TooLarge)?;
        let kopecks: i64 = format!("{fraction:0<2}").parse().unwrap_or(0);
        let amount = Rubles(rubles * 100 + kopecks);
        if amount.0 == 0 {
            return Err(AmountError::Zero);
        }
        if amount > Self::MAX_AID {
            return Err(AmountError::TooLarge);
        }
        Ok(amount)
    }

    /// The average of `total` over `count`, rounded half up to the kopeck (no float).
    pub fn average(total: Rubles, count: i64) -> Rubles {
        if count <= 0 {
            return Rubles(0);
        }
        Rubles((2 * total.0 + count).div_euclid(2 * count))
    }

    /// Plain notation for machines and spreadsheets: `10000.50`.
    pub fn plain(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl std::iter::Sum for Rubles {
    fn sum<I: Iterator<Item = Rubles>>(iter: I) -> Self {
        Rubles(iter.map(|r| r.0).sum())
    }
}

/// Why a typed amount was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AmountError {
    #[error("Укажите сумму в рублях, например 10 000,50.")]
    Empty,
    #[error(
        "«{0}» — не сумма: укажите рубли и, если нужно, копейки через запятую, например 10 000,50."
    )]
    NotANumber(String),
    #[error("Сумма не может быть отрицательной.")]
    Negative,
    #[error("Сумма должна быть больше нуля.")]
    Zero,
    #[error("Копеек не может быть больше двух знаков после запятой.")]
    TooPrecise,
    #[error("Сумма больше 10 000 000 ₽ — проверьте, нет ли лишних цифр.")]
    TooLarge,
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

    #[test]
    fn amounts_are_read_as_people_type_them() {
        let k = |raw: &str| Rubles::parse_amount(raw).map(Rubles::kopecks);
        assert_eq!(k("10 000,50"), Ok(1_000_050));
        assert_eq!(k("10000.50"), Ok(1_000_050));
        assert_eq!(k("10\u{a0}000,5"), Ok(1_000_050));
        assert_eq!(k(" 1500 "), Ok(150_000));
        assert_eq!(k("1500 ₽"), Ok(150_000));
        assert_eq!(k("1500 руб."), Ok(150_000));
        assert_eq!(k("0,01"), Ok(1));
        assert_eq!(k("10 000 000,00"), Ok(1_000_000_000));
        assert_eq!(k("-100"), Err(AmountError::Negative));
        assert_eq!(k("−100"), Err(AmountError::Negative));
        assert_eq!(k("0,00"), Err(AmountError::Zero));
        assert_eq!(k(""), Err(AmountError::Empty));
        assert_eq!(k("10,505"), Err(AmountError::TooPrecise));
        assert_eq!(k("10 000 000,01"), Err(AmountError::TooLarge));
        assert_eq!(k("99999999999999999999999"), Err(AmountError::TooLarge));
        assert_eq!(k("1e5"), Err(AmountError::NotANumber("1e5".into())));
        assert_eq!(
            k("10,000.50"),
            Err(AmountError::NotANumber("10,000.50".into()))
        );
        assert_eq!(k("сто"), Err(AmountError::NotANumber("сто".into())));
    }

    #[test]
    fn averages_round_half_up_to_the_kopeck() {
        assert_eq!(Rubles::average(Rubles(100), 3), Rubles(33));
        assert_eq!(Rubles::average(Rubles(200), 3), Rubles(67));
        assert_eq!(Rubles::average(Rubles(1), 2), Rubles(1));
        assert_eq!(Rubles::average(Rubles(5), 0), Rubles(0));
        assert_eq!(Rubles(1_000_050).plain(), "10000.50");
    }
}
