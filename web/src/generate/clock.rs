//! Random generators per entity, dates and recording instants.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::{Date, Duration, OffsetDateTime, Time, Weekday};

/// A generator of its own for one entity: the same seed, kind and index give the same
/// numbers, whatever else is generated and in whatever order.
pub fn rng_for(seed: u64, kind: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(splitmix(splitmix(seed ^ kind.rotate_left(17)) ^ index))
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A day between `from` and `to`, both included (`from` when the range is empty).
pub fn between(rng: &mut impl Rng, from: Date, to: Date) -> Date {
    let days = (to - from).whole_days();
    if days <= 0 {
        return from;
    }
    from + Duration::days(rng.gen_range(0..=days))
}

/// Days drawn from an exponential distribution with the given mean, capped.
pub fn exp_days(rng: &mut impl Rng, mean: f64, cap: i64) -> i64 {
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    ((-u.ln() * mean) as i64).min(cap)
}

/// Moscow time (UTC+3, no daylight saving since 2014): `date` at `seconds` after midnight.
pub fn moscow(date: Date, seconds: i64) -> OffsetDateTime {
    OffsetDateTime::new_utc(date, Time::MIDNIGHT) - Duration::hours(3) + Duration::seconds(seconds)
}

/// A moment of office hours (09:00–18:00 Moscow) on `date`, or on the Monday after a
/// weekend day.
pub fn office_hours(rng: &mut impl Rng, date: Date) -> OffsetDateTime {
    let date = match date.weekday() {
        Weekday::Saturday => date + Duration::days(2),
        Weekday::Sunday => date + Duration::days(1),
        _ => date,
    };
    moscow(date, rng.gen_range(9 * 3600..18 * 3600))
        + Duration::microseconds(rng.gen_range(0..1_000_000))
}

/// When a fact of `on` was entered, before the order of its stream is imposed: 93 %
/// within a week, 5 % in 8–30 days, 2 % later. A case's later facts cannot be entered
/// before its earlier ones, so a late entry delays some that follow it: the history ends up
/// with about 90 % of the facts entered within a week, 6 % within a month and 4–5 % later
/// (the late entries the dashboards count). Never at or after `horizon`.
pub fn recorded(rng: &mut impl Rng, on: Date, horizon: OffsetDateTime) -> OffsetDateTime {
    let u: f64 = rng.gen();
    let lag = if u < 0.93 {
        // Mostly the same or the next days (a weekend adds up to two).
        let r: f64 = rng.gen();
        (r * r * r * 6.0) as i64
    } else if u < 0.98 {
        rng.gen_range(8..=30)
    } else {
        31 + exp_days(rng, 60.0, 330)
    };
    let at = office_hours(rng, on + Duration::days(lag));
    before(rng, at, horizon)
}

/// `at`, or a moment in the hour before `horizon` if `at` is not before it.
pub fn before(rng: &mut impl Rng, at: OffsetDateTime, horizon: OffsetDateTime) -> OffsetDateTime {
    if at < horizon {
        at
    } else {
        horizon - Duration::seconds(rng.gen_range(60..3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn recording_lags_before_stream_order() {
        let horizon = datetime!(2030-01-01 00:00 UTC);
        let mut rng = rng_for(1, 2, 3);
        let (mut week, mut month, mut late) = (0, 0, 0);
        let n = 20_000;
        for _ in 0..n {
            let on = date!(2025 - 03 - 12);
            let at = recorded(&mut rng, on, horizon);
            assert!(at >= moscow(on, 0));
            let days = (at.to_offset(time::macros::offset!(+3)).date() - on).whole_days();
            match days {
                0..=7 => week += 1,
                8..=30 => month += 1,
                _ => late += 1,
            }
        }
        // Weekends push a few entries of the first week into the second.
        assert!(week * 100 > n * 85, "{week}");
        assert!(month * 100 > n * 4 && month * 100 < n * 10, "{month}");
        assert!(late * 1000 > n * 15 && late * 1000 < n * 25, "{late}");
    }

    #[test]
    fn nothing_is_recorded_at_or_after_the_horizon() {
        let horizon = moscow(date!(2025 - 10 - 15), 0);
        let mut rng = rng_for(7, 0, 0);
        for _ in 0..5_000 {
            assert!(recorded(&mut rng, date!(2025 - 10 - 14), horizon) < horizon);
        }
    }
}
