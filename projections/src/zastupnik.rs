//! The `zastupnik` projection: the figures of the «Заступник» ministry dashboard
//! (`/monitoring/zastupnik`), kept so that a page reads a few rows per region whatever the
//! size of the log — no request ever scans reports or signals.
//!
//! **Weekly connection reports** are stock: a municipality's figures on a Friday are its
//! latest filing at or before it. `filing` keeps each municipality's filings as they stand
//! (a correction overwrites the figures, the first filing's timeliness stays);
//! `region_week` keeps, per region (and `*`, every region) and Friday someone filed for,
//! the sum in force and who filed that week. A filing for week W changes the sum on every
//! Friday from W up to the municipality's next filed week, so a correction of an old week,
//! a late filing or an import rewrites exactly those rows. Both tables have a `…_version`
//! twin keyed by the recording day (Moscow time): "as known on K" reads the latest version
//! recorded on or before K.
//!
//! **Signals** are running totals (`signal_day`) per region, kind (`*`, every kind) and the
//! local date of the press on the region's clock: a period's figure is the row at its last
//! day minus the row before its first day, two index probes per region. Drills are counted
//! apart and left out of every other figure. The time to help (press → first responder or
//! trusted adult on the spot) is a histogram in fixed buckets, [`HELP_BOUNDS`]: 10 s wide up
//! to 10 minutes, 1 minute up to 1 hour, 5 minutes up to 2 hours, 30 minutes up to 6 hours,
//! 2 hours up to 24 hours, then one open bucket. Percentiles are read from it by linear
//! interpolation within the bucket holding rank `p·n` ([`help_percentile`]): the estimate
//! lies in the same bucket as the exact nearest-rank value (the ⌈p·n⌉-th smallest time), so
//! it is at most one bucket's width from it (10 s below 10 minutes); with many signals that
//! is also the distance to PostgreSQL's `percentile_cont`. The share within three minutes
//! is exact (180 s is a bucket bound). A signal's figures are counted on its press
//! day; `open_signal` remembers an unresolved signal until it is resolved (no later step
//! counts).
//!
//! **Applying a batch** folds it in memory: the rows a batch touches are read with one
//! query per table, changed in memory, and written back with one `unnest` statement per
//! table — a rebuild writes each row a few times at most, whatever the number of events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

use async_trait::async_trait;
use opora_domain::signal::{SignalEvent, SignalKind, SignalOutcome};
use opora_domain::weekly::{ImportEvent, Schedule, Timeliness, WeeklyEvent};
use opora_store::RecordedEvent;
use sqlx::{PgConnection, PgPool, Row};
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use crate::reference::uuid_of;
use crate::{Projection, ProjectionError};

/// The region code of the all-Russia rows of `region_week`, and the kind of the every-kind
/// rows of `signal_day`.
pub const EVERY: &str = "*";
/// The target: help within three minutes of the press.
pub const TARGET_SECONDS: u32 = 180;
/// Recording days ("as known on") are Moscow dates.
pub const RECORDING_ZONE: &str = "Europe/Moscow";

/// Upper bounds, in seconds and inclusive, of the buckets of the time to help: bucket `i`
/// holds times in `(HELP_BOUNDS[i-1], HELP_BOUNDS[i]]` (bucket 0 everything up to 10 s,
/// including the clock slack below zero); one more bucket holds everything over 24 hours.
pub const HELP_BOUNDS: [u32; 139] = help_bounds();
/// Buckets of a histogram: the bounded ones and the open one.
pub const HELP_BUCKETS: usize = HELP_BOUNDS.len() + 1;

const fn help_bounds() -> [u32; 139] {
    let mut out = [0_u32; 139];
    let (mut i, mut upper) = (0, 0_u32);
    while i < out.len() {
        upper += match upper {
            0..600 => 10,
            600..3600 => 60,
            3600..7200 => 300,
            7200..21600 => 1800,
            _ => 7200,
        };
        out[i] = upper;
        i += 1;
    }
    out
}

const _: () = assert!(HELP_BOUNDS[59] == 600 && HELP_BOUNDS[109] == 3600);
const _: () = assert!(HELP_BOUNDS[HELP_BOUNDS.len() - 1] == 86_400);

/// The bucket of a time to help.
pub fn help_bucket(seconds: f64) -> usize {
    HELP_BOUNDS.partition_point(|&upper| f64::from(upper) < seconds)
}

/// The bounds of bucket `i`: lower (exclusive; 0 for the first) and upper (inclusive;
/// `None` for the open bucket).
pub fn help_bucket_bounds(i: usize) -> (f64, Option<f64>) {
    let lower = i
        .checked_sub(1)
        .and_then(|j| HELP_BOUNDS.get(j))
        .map_or(0.0, |&b| f64::from(b));
    (lower, HELP_BOUNDS.get(i).map(|&b| f64::from(b)))
}

/// The `p`-quantile (0–1) of a histogram: the bucket where the running count reaches
/// `p·n`, linearly interpolated within it; the open bucket answers its lower bound (24 h).
/// `None` for an empty histogram.
pub fn help_percentile(help: &[i64], p: f64) -> Option<f64> {
    let n: i64 = help.iter().sum();
    if n <= 0 {
        return None;
    }
    let rank = p.clamp(0.0, 1.0) * n as f64;
    let mut below = 0_i64;
    for (i, &count) in help.iter().enumerate() {
        if count <= 0 {
            continue;
        }
        if (below + count) as f64 >= rank {
            let (lower, upper) = help_bucket_bounds(i);
            let Some(upper) = upper else {
                return Some(lower);
            };
            let fraction = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
            return Some(lower + (upper - lower) * fraction);
        }
        below += count;
    }
    None
}

/// How many times of the histogram are at most `seconds` (exact when `seconds` is one of
/// [`HELP_BOUNDS`], as [`TARGET_SECONDS`] is).
pub fn help_within(help: &[i64], seconds: u32) -> i64 {
    let buckets = HELP_BOUNDS.partition_point(|&upper| upper <= seconds);
    help.iter().take(buckets).sum()
}

pub struct ZastupnikProjection;

#[async_trait]
impl Projection for ZastupnikProjection {
    fn name(&self) -> &'static str {
        "zastupnik"
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["WeeklyReport", "WeeklyImport", "Signal"])
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut weekly = Vec::new();
        let mut signals = Vec::new();
        // Only the events that move a figure are decoded.
        for event in events {
            match (event.aggregate_type.as_str(), event.event_type.as_str()) {
                ("WeeklyReport", "ReportFiled") | ("WeeklyImport", "FiguresImported") => {
                    weekly.push(event)
                }
                ("Signal", "SignalRaised" | "ResponderOnScene" | "SignalResolved") => {
                    signals.push(event)
                }
                _ => {}
            }
        }
        if !weekly.is_empty() {
            apply_weekly(conn, &weekly).await?;
        }
        if !signals.is_empty() {
            apply_signals(conn, &signals).await?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Weekly reports

/// A municipality's filing for a week, as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Filed {
    children: i64,
    adults: i64,
    timeliness: Timeliness,
}

/// A region's (or every region's) week: the stock in force and who filed for that Friday.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegionWeek {
    pub children: i64,
    pub adults: i64,
    pub filed: i64,
    pub on_time: i64,
    pub late: i64,
}

impl RegionWeek {
    /// The stock alone (nobody filed).
    pub fn stock(self) -> Self {
        Self {
            children: self.children,
            adults: self.adults,
            ..Self::default()
        }
    }
    pub fn add(&mut self, other: Self) {
        self.children += other.children;
        self.adults += other.adults;
        self.filed += other.filed;
        self.on_time += other.on_time;
        self.late += other.late;
    }
}

/// A filing as the batch reads it.
struct Fact {
    municipality: Uuid,
    region: String,
    friday: Date,
    children: i64,
    adults: i64,
    timeliness: Timeliness,
    /// Imported history fills only weeks nobody filed (as the `weekly` projection does).
    import: bool,
    known_on: Date,
}

/// What one filing does to its region's weeks: the stock changes on every Friday from
/// `from` up to (not including) `until`, the municipality's next filed week; a first
/// filing also counts as filed (on time, late or imported) on `from`.
#[derive(Debug, Clone, Copy)]
struct Change {
    from: Date,
    until: Option<Date>,
    children: i64,
    adults: i64,
    first: Option<Timeliness>,
}

impl Change {
    /// Applies the change to a region's weeks (all rows from `from` on, and the one before,
    /// must be there); returns the rows it changed.
    fn apply(&self, weeks: &mut BTreeMap<Date, RegionWeek>) -> Vec<(Date, RegionWeek)> {
        if !weeks.contains_key(&self.from) {
            let carried = weeks
                .range(..self.from)
                .next_back()
                .map(|(_, w)| w.stock())
                .unwrap_or_default();
            weeks.insert(self.from, carried);
        }
        let upper = self.until.map_or(Bound::Unbounded, Bound::Excluded);
        let mut changed = Vec::new();
        for (friday, week) in weeks.range_mut((Bound::Included(self.from), upper)) {
            week.children += self.children;
            week.adults += self.adults;
            if *friday == self.from {
                if let Some(timeliness) = self.first {
                    week.filed += 1;
                    match timeliness {
                        Timeliness::OnTime => week.on_time += 1,
                        Timeliness::Late => week.late += 1,
                        Timeliness::Imported => {}
                    }
                }
            }
            changed.push((*friday, *week));
        }
        changed
    }
}

fn facts_of(events: &[&RecordedEvent]) -> Result<Vec<Fact>, ProjectionError> {
    let moscow = Schedule::default_in(RECORDING_ZONE);
    let mut facts = Vec::new();
    for event in events {
        let known_on = moscow.local_date(event.recorded_at);
        if event.aggregate_type == "WeeklyReport" {
            if let WeeklyEvent::ReportFiled {
                period,
                filing,
                timeliness,
                ..
            } = event.decode::<WeeklyEvent>(&[])?
            {
                facts.push(Fact {
                    municipality: period.municipality,
                    region: period.region.as_str().to_owned(),
                    friday: period.week.friday(),
                    children: i64::from(filing.figures.children),
                    adults: i64::from(filing.figures.adults),
                    timeliness,
                    import: false,
                    known_on,
                });
            }
        } else {
            let ImportEvent::FiguresImported { rows, .. } = event.decode::<ImportEvent>(&[])?;
            facts.extend(rows.into_iter().map(|row| Fact {
                municipality: row.period.municipality,
                region: row.period.region.as_str().to_owned(),
                friday: row.period.week.friday(),
                children: i64::from(row.figures.children),
                adults: i64::from(row.figures.adults),
                timeliness: Timeliness::Imported,
                import: true,
                known_on,
            }));
        }
    }
    Ok(facts)
}

fn earliest<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Date>, key: K, date: Date) {
    map.entry(key)
        .and_modify(|d| *d = (*d).min(date))
        .or_insert(date);
}

async fn apply_weekly(
    conn: &mut PgConnection,
    events: &[&RecordedEvent],
) -> Result<(), ProjectionError> {
    let facts = facts_of(events)?;
    if facts.is_empty() {
        return Ok(());
    }
    let mut municipality_since = HashMap::new();
    let mut region_since = HashMap::new();
    for fact in &facts {
        earliest(&mut municipality_since, fact.municipality, fact.friday);
        earliest(&mut region_since, fact.region.clone(), fact.friday);
        earliest(&mut region_since, EVERY.to_owned(), fact.friday);
    }
    let mut filings = load_filings(conn, &municipality_since).await?;
    let mut weeks = load_region_weeks(conn, &region_since).await?;

    let mut filing_now: HashMap<(Uuid, Date), (&str, Filed)> = HashMap::new();
    let mut filing_versions: HashMap<(Uuid, Date, Date), (&str, Filed)> = HashMap::new();
    let mut week_now: HashMap<(String, Date), RegionWeek> = HashMap::new();
    let mut week_versions: HashMap<(String, Date, Date), RegionWeek> = HashMap::new();
    for fact in &facts {
        let timeline = filings.entry(fact.municipality).or_default();
        let existing = timeline.get(&fact.friday).copied();
        if fact.import && existing.is_some() {
            continue;
        }
        let before = existing
            .or_else(|| timeline.range(..fact.friday).next_back().map(|(_, f)| *f))
            .map_or((0, 0), |f| (f.children, f.adults));
        let until = timeline
            .range((Bound::Excluded(fact.friday), Bound::Unbounded))
            .next()
            .map(|(friday, _)| *friday);
        let filed = Filed {
            children: fact.children,
            adults: fact.adults,
            timeliness: existing.map_or(fact.timeliness, |e| e.timeliness),
        };
        timeline.insert(fact.friday, filed);
        let key = (fact.municipality, fact.friday);
        filing_now.insert(key, (&fact.region, filed));
        filing_versions.insert((key.0, key.1, fact.known_on), (&fact.region, filed));
        let change = Change {
            from: fact.friday,
            until,
            children: filed.children - before.0,
            adults: filed.adults - before.1,
            first: existing.is_none().then_some(filed.timeliness),
        };
        for region in [fact.region.as_str(), EVERY] {
            let rows = weeks.entry(region.to_owned()).or_default();
            for (friday, week) in change.apply(rows) {
                week_now.insert((region.to_owned(), friday), week);
                week_versions.insert((region.to_owned(), friday, fact.known_on), week);
            }
        }
    }
    write_filings(
        conn,
        "filing",
        filing_now.into_iter().map(|((m, f), v)| (m, f, None, v)),
    )
    .await?;
    write_filings(
        conn,
        "filing_version",
        filing_versions
            .into_iter()
            .map(|((m, f, k), v)| (m, f, Some(k), v)),
    )
    .await?;
    write_weeks(
        conn,
        "region_week",
        week_now.into_iter().map(|((r, f), w)| (r, f, None, w)),
    )
    .await?;
    write_weeks(
        conn,
        "region_week_version",
        week_versions
            .into_iter()
            .map(|((r, f, k), w)| (r, f, Some(k), w)),
    )
    .await?;
    Ok(())
}

/// Each municipality's filings from `since` on, with the one before (its stock then).
async fn load_filings(
    conn: &mut PgConnection,
    since: &HashMap<Uuid, Date>,
) -> Result<HashMap<Uuid, BTreeMap<Date, Filed>>, ProjectionError> {
    let (ids, dates): (Vec<Uuid>, Vec<Date>) = since.iter().map(|(m, d)| (*m, *d)).unzip();
    let rows = sqlx::query(
        "SELECT f.municipality, f.friday, f.children, f.adults, f.timeliness \
           FROM unnest($1::uuid[], $2::date[]) AS k(municipality, since) \
           CROSS JOIN LATERAL ( \
             (SELECT municipality, friday, children, adults, timeliness FROM filing \
               WHERE municipality = k.municipality AND friday < k.since \
               ORDER BY friday DESC LIMIT 1) \
             UNION ALL \
             SELECT municipality, friday, children, adults, timeliness FROM filing \
              WHERE municipality = k.municipality AND friday >= k.since) AS f",
    )
    .bind(&ids)
    .bind(&dates)
    .fetch_all(&mut *conn)
    .await?;
    let mut out: HashMap<Uuid, BTreeMap<Date, Filed>> = HashMap::new();
    for row in rows {
        let timeliness: String = row.try_get("timeliness")?;
        out.entry(row.try_get("municipality")?).or_default().insert(
            row.try_get("friday")?,
            Filed {
                children: i64::from(row.try_get::<i32, _>("children")?),
                adults: i64::from(row.try_get::<i32, _>("adults")?),
                timeliness: Timeliness::from_code(&timeliness).unwrap_or(Timeliness::Imported),
            },
        );
    }
    Ok(out)
}

/// Each region's weeks from `since` on, with the one before (its stock then).
async fn load_region_weeks(
    conn: &mut PgConnection,
    since: &HashMap<String, Date>,
) -> Result<HashMap<String, BTreeMap<Date, RegionWeek>>, ProjectionError> {
    let (codes, dates): (Vec<String>, Vec<Date>) =
        since.iter().map(|(r, d)| (r.clone(), *d)).unzip();
    let rows = sqlx::query(
        "SELECT w.region_code, w.friday, w.children, w.adults, w.filed, w.on_time, w.late \
           FROM unnest($1::text[], $2::date[]) AS k(region_code, since) \
           CROSS JOIN LATERAL ( \
             (SELECT region_code, friday, children, adults, filed, on_time, late FROM region_week \
               WHERE region_code = k.region_code AND friday < k.since \
               ORDER BY friday DESC LIMIT 1) \
             UNION ALL \
             SELECT region_code, friday, children, adults, filed, on_time, late FROM region_week \
              WHERE region_code = k.region_code AND friday >= k.since) AS w",
    )
    .bind(&codes)
    .bind(&dates)
    .fetch_all(&mut *conn)
    .await?;
    let mut out: HashMap<String, BTreeMap<Date, RegionWeek>> = HashMap::new();
    for row in &rows {
        out.entry(row.try_get("region_code")?)
            .or_default()
            .insert(row.try_get("friday")?, region_week(row)?);
    }
    Ok(out)
}

fn region_week(row: &sqlx::postgres::PgRow) -> Result<RegionWeek, sqlx::Error> {
    Ok(RegionWeek {
        children: row.try_get("children")?,
        adults: row.try_get("adults")?,
        filed: i64::from(row.try_get::<i32, _>("filed")?),
        on_time: i64::from(row.try_get::<i32, _>("on_time")?),
        late: i64::from(row.try_get::<i32, _>("late")?),
    })
}

fn int(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(if value < 0 { i32::MIN } else { i32::MAX })
}

/// Upserts filings into `table` (`filing`, or `filing_version` when a recording day is
/// given).
async fn write_filings<'a>(
    conn: &mut PgConnection,
    table: &'static str,
    rows: impl Iterator<Item = (Uuid, Date, Option<Date>, (&'a str, Filed))>,
) -> Result<(), ProjectionError> {
    let mut ids = Vec::new();
    let mut fridays = Vec::new();
    let mut known = Vec::new();
    let mut regions = Vec::new();
    let mut children = Vec::new();
    let mut adults = Vec::new();
    let mut timeliness = Vec::new();
    for (id, friday, known_on, (region, filed)) in rows {
        ids.push(id);
        fridays.push(friday);
        known.push(known_on.unwrap_or(friday));
        regions.push(region.to_owned());
        children.push(int(filed.children));
        adults.push(int(filed.adults));
        timeliness.push(filed.timeliness.code());
    }
    if ids.is_empty() {
        return Ok(());
    }
    let sql = if table == "filing" {
        "INSERT INTO filing (municipality, friday, region_code, children, adults, timeliness) \
         SELECT r.m, r.f, r.region, r.c, r.a, r.t FROM unnest($1::uuid[], $2::date[], \
                $3::date[], $4::text[], $5::int[], $6::int[], $7::text[]) AS r(m, f, k, region, c, a, t) \
         ON CONFLICT (municipality, friday) DO UPDATE SET children = excluded.children, \
                adults = excluded.adults, timeliness = excluded.timeliness"
    } else {
        "INSERT INTO filing_version \
                (municipality, friday, known_on, region_code, children, adults, timeliness) \
         SELECT * FROM unnest($1::uuid[], $2::date[], $3::date[], $4::text[], $5::int[], \
                $6::int[], $7::text[]) \
         ON CONFLICT (municipality, friday, known_on) DO UPDATE SET \
                children = excluded.children, adults = excluded.adults, \
                timeliness = excluded.timeliness"
    };
    sqlx::query(sql)
        .bind(&ids)
        .bind(&fridays)
        .bind(&known)
        .bind(&regions)
        .bind(&children)
        .bind(&adults)
        .bind(&timeliness)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Upserts region weeks into `table` (`region_week`, or `region_week_version` when a
/// recording day is given).
async fn write_weeks(
    conn: &mut PgConnection,
    table: &'static str,
    rows: impl Iterator<Item = (String, Date, Option<Date>, RegionWeek)>,
) -> Result<(), ProjectionError> {
    let mut regions = Vec::new();
    let mut fridays = Vec::new();
    let mut known = Vec::new();
    let mut columns: [Vec<i64>; 2] = Default::default();
    let mut counts: [Vec<i32>; 3] = Default::default();
    for (region, friday, known_on, week) in rows {
        regions.push(region);
        fridays.push(friday);
        known.push(known_on.unwrap_or(friday));
        columns[0].push(week.children);
        columns[1].push(week.adults);
        counts[0].push(int(week.filed));
        counts[1].push(int(week.on_time));
        counts[2].push(int(week.late));
    }
    if regions.is_empty() {
        return Ok(());
    }
    let sql = if table == "region_week" {
        "INSERT INTO region_week (region_code, friday, children, adults, filed, on_time, late) \
         SELECT r.region, r.f, r.c, r.a, r.filed, r.on_time, r.late FROM unnest($1::text[], \
                $2::date[], $3::date[], $4::int8[], $5::int8[], $6::int[], $7::int[], $8::int[]) \
                AS r(region, f, k, c, a, filed, on_time, late) \
         ON CONFLICT (region_code, friday) DO UPDATE SET children = excluded.children, \
                adults = excluded.adults, filed = excluded.filed, on_time = excluded.on_time, \
                late = excluded.late"
    } else {
        "INSERT INTO region_week_version \
                (region_code, friday, known_on, children, adults, filed, on_time, late) \
         SELECT * FROM unnest($1::text[], $2::date[], $3::date[], $4::int8[], $5::int8[], \
                $6::int[], $7::int[], $8::int[]) \
         ON CONFLICT (region_code, friday, known_on) DO UPDATE SET \
                children = excluded.children, adults = excluded.adults, filed = excluded.filed, \
                on_time = excluded.on_time, late = excluded.late"
    };
    sqlx::query(sql)
        .bind(&regions)
        .bind(&fridays)
        .bind(&known)
        .bind(&columns[0])
        .bind(&columns[1])
        .bind(&counts[0])
        .bind(&counts[1])
        .bind(&counts[2])
        .execute(&mut *conn)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Signals

/// Signals of a region (and kind) pressed up to a day — or, as a difference, in a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalTotals {
    /// Signals, drills excluded.
    pub signals: i64,
    pub drills: i64,
    /// Resolved signals, and of them resolved by the trusted circle.
    pub resolved: i64,
    pub circle: i64,
    /// Signals per kind, in the order of `SignalKind::ALL`.
    pub by_kind: Vec<i64>,
    /// The time to help, per bucket of [`HELP_BOUNDS`] (the open bucket last).
    pub help: Vec<i64>,
}

impl Default for SignalTotals {
    fn default() -> Self {
        Self {
            signals: 0,
            drills: 0,
            resolved: 0,
            circle: 0,
            by_kind: vec![0; SignalKind::ALL.len()],
            help: vec![0; HELP_BUCKETS],
        }
    }
}

impl SignalTotals {
    pub fn add(&mut self, other: &Self) {
        self.combine(other, 1);
    }
    pub fn subtract(&mut self, other: &Self) {
        self.combine(other, -1);
    }
    fn combine(&mut self, other: &Self, sign: i64) {
        self.signals += sign * other.signals;
        self.drills += sign * other.drills;
        self.resolved += sign * other.resolved;
        self.circle += sign * other.circle;
        for (a, b) in self.by_kind.iter_mut().zip(&other.by_kind) {
            *a += sign * b;
        }
        for (a, b) in self.help.iter_mut().zip(&other.help) {
            *a += sign * b;
        }
    }
    /// Signals that got help on the spot.
    pub fn helped(&self) -> i64 {
        self.help.iter().sum()
    }
    pub fn help_median(&self) -> Option<f64> {
        help_percentile(&self.help, 0.5)
    }
    pub fn help_p90(&self) -> Option<f64> {
        help_percentile(&self.help, 0.9)
    }
    /// Signals helped within three minutes.
    pub fn help_within_target(&self) -> i64 {
        help_within(&self.help, TARGET_SECONDS)
    }
}

fn kind_index(kind: SignalKind) -> usize {
    SignalKind::ALL
        .iter()
        .position(|(k, _, _)| *k == kind)
        .unwrap_or(SignalKind::ALL.len() - 1)
}

/// An unresolved signal: where its figures are counted, and its time to help so far.
#[derive(Debug, Clone)]
struct Open {
    region: String,
    kind: SignalKind,
    day: Date,
    pressed_at: OffsetDateTime,
    help: Option<f64>,
    /// Has a row in `open_signal`.
    stored: bool,
    changed: bool,
}

/// Changes of a batch per (region, kind) and press day.
type Deltas = HashMap<(String, &'static str), BTreeMap<Date, SignalTotals>>;

/// Applies `f` to the batch's change of the signal's kind and of every kind, on its day.
fn bump(
    deltas: &mut Deltas,
    region: &str,
    kind: SignalKind,
    day: Date,
    f: impl Fn(&mut SignalTotals),
) {
    for kind in [kind.code(), EVERY] {
        f(deltas
            .entry((region.to_owned(), kind))
            .or_default()
            .entry(day)
            .or_default());
    }
}

async fn apply_signals(
    conn: &mut PgConnection,
    events: &[&RecordedEvent],
) -> Result<(), ProjectionError> {
    // The signals whose raise is in an earlier batch.
    let mut raised = HashSet::new();
    let mut earlier = HashSet::new();
    for event in events {
        let id = uuid_of(event)?;
        if event.event_type == "SignalRaised" {
            raised.insert(id);
        } else if !raised.contains(&id) {
            earlier.insert(id);
        }
    }
    let mut open = load_open(conn, &earlier.into_iter().collect::<Vec<_>>()).await?;
    let mut zones: HashMap<String, Schedule> = HashMap::new();
    if !raised.is_empty() {
        let rows = sqlx::query("SELECT code, time_zone FROM reference.region")
            .fetch_all(&mut *conn)
            .await?;
        for row in rows {
            let zone: String = row.try_get("time_zone")?;
            zones.insert(row.try_get("code")?, Schedule::default_in(&zone));
        }
    }
    let moscow = Schedule::default_in(RECORDING_ZONE);

    let mut deltas = Deltas::new();
    let mut closed = Vec::new();
    for event in events {
        let id = uuid_of(event)?;
        match event.decode::<SignalEvent>(&[])? {
            SignalEvent::SignalRaised {
                region,
                kind,
                pressed_at,
                drill,
                ..
            } => {
                let region = region.as_str();
                let day = zones.get(region).unwrap_or(&moscow).local_date(pressed_at);
                if drill {
                    bump(&mut deltas, region, kind, day, |t| t.drills += 1);
                    continue;
                }
                let k = kind_index(kind);
                bump(&mut deltas, region, kind, day, |t| {
                    t.signals += 1;
                    t.by_kind[k] += 1;
                });
                open.insert(
                    id,
                    Open {
                        region: region.to_owned(),
                        kind,
                        day,
                        pressed_at,
                        help: None,
                        stored: false,
                        changed: true,
                    },
                );
            }
            SignalEvent::ResponderOnScene { at, .. } => {
                // A drill (never remembered) or a signal already resolved: nothing counts.
                let Some(signal) = open.get_mut(&id) else {
                    continue;
                };
                let seconds = (at - signal.pressed_at).as_seconds_f64();
                if signal.help.is_some_and(|earlier| earlier <= seconds) {
                    continue;
                }
                let (new, old) = (help_bucket(seconds), signal.help.map(help_bucket));
                bump(&mut deltas, &signal.region, signal.kind, signal.day, |t| {
                    t.help[new] += 1;
                    if let Some(old) = old {
                        t.help[old] -= 1;
                    }
                });
                signal.help = Some(seconds);
                signal.changed = true;
            }
            SignalEvent::SignalResolved { outcome, .. } => {
                let Some(signal) = open.remove(&id) else {
                    continue;
                };
                let circle = i64::from(outcome == SignalOutcome::TrustedCircle);
                bump(&mut deltas, &signal.region, signal.kind, signal.day, |t| {
                    t.resolved += 1;
                    t.circle += circle;
                });
                if signal.stored {
                    closed.push(id);
                }
            }
            _ => {}
        }
    }
    write_open(conn, &open, &closed).await?;
    write_signal_days(conn, deltas).await
}

async fn load_open(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Open>, ProjectionError> {
    let mut out = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let rows = sqlx::query(
        "SELECT id, region_code, kind, day, pressed_at, help_seconds FROM open_signal \
          WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let kind: String = row.try_get("kind")?;
        out.insert(
            row.try_get("id")?,
            Open {
                region: row.try_get("region_code")?,
                kind: SignalKind::parse(&kind).unwrap_or(SignalKind::Other),
                day: row.try_get("day")?,
                pressed_at: row.try_get("pressed_at")?,
                help: row.try_get("help_seconds")?,
                stored: true,
                changed: false,
            },
        );
    }
    Ok(out)
}

async fn write_open(
    conn: &mut PgConnection,
    open: &HashMap<Uuid, Open>,
    closed: &[Uuid],
) -> Result<(), ProjectionError> {
    if !closed.is_empty() {
        sqlx::query("DELETE FROM open_signal WHERE id = ANY($1)")
            .bind(closed)
            .execute(&mut *conn)
            .await?;
    }
    let changed: Vec<(&Uuid, &Open)> = open.iter().filter(|(_, o)| o.changed).collect();
    if changed.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = changed.iter().map(|(id, _)| **id).collect();
    let regions: Vec<&str> = changed.iter().map(|(_, o)| o.region.as_str()).collect();
    let kinds: Vec<&str> = changed.iter().map(|(_, o)| o.kind.code()).collect();
    let days: Vec<Date> = changed.iter().map(|(_, o)| o.day).collect();
    let pressed: Vec<OffsetDateTime> = changed.iter().map(|(_, o)| o.pressed_at).collect();
    let help: Vec<Option<f64>> = changed.iter().map(|(_, o)| o.help).collect();
    sqlx::query(
        "INSERT INTO open_signal (id, region_code, kind, day, pressed_at, help_seconds) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::date[], \
                $5::timestamptz[], $6::float8[]) \
         ON CONFLICT (id) DO UPDATE SET help_seconds = excluded.help_seconds",
    )
    .bind(&ids)
    .bind(&regions)
    .bind(&kinds)
    .bind(&days)
    .bind(&pressed)
    .bind(&help)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Adds the batch's changes to the running totals: every row of a (region, kind) from its
/// earliest changed day on is rewritten (a day without a row gets one).
async fn write_signal_days(conn: &mut PgConnection, deltas: Deltas) -> Result<(), ProjectionError> {
    if deltas.is_empty() {
        return Ok(());
    }
    let keys: Vec<(&(String, &'static str), Date)> = deltas
        .iter()
        .filter_map(|(key, days)| days.keys().next().map(|first| (key, *first)))
        .collect();
    let regions: Vec<&str> = keys.iter().map(|((r, _), _)| r.as_str()).collect();
    let kinds: Vec<&str> = keys.iter().map(|((_, k), _)| *k).collect();
    let since: Vec<Date> = keys.iter().map(|(_, d)| *d).collect();
    let rows = sqlx::query(
        "SELECT s.region_code, s.kind, s.day, s.signals, s.drills, s.resolved, s.circle, \
                s.by_kind, s.help \
           FROM unnest($1::text[], $2::text[], $3::date[]) AS k(region_code, kind, since) \
           CROSS JOIN LATERAL ( \
             (SELECT region_code, kind, day, signals, drills, resolved, circle, by_kind, help \
                FROM signal_day WHERE region_code = k.region_code AND kind = k.kind \
                 AND day < k.since ORDER BY day DESC LIMIT 1) \
             UNION ALL \
             SELECT region_code, kind, day, signals, drills, resolved, circle, by_kind, help \
               FROM signal_day WHERE region_code = k.region_code AND kind = k.kind \
                AND day >= k.since) AS s",
    )
    .bind(&regions)
    .bind(&kinds)
    .bind(&since)
    .fetch_all(&mut *conn)
    .await?;
    let mut stored: HashMap<(String, String), BTreeMap<Date, SignalTotals>> = HashMap::new();
    for row in &rows {
        stored
            .entry((row.try_get("region_code")?, row.try_get("kind")?))
            .or_default()
            .insert(row.try_get("day")?, signal_totals(row, "")?);
    }

    let mut out = SignalDayRows::default();
    for ((region, kind), changes) in deltas {
        let old = stored
            .remove(&(region.clone(), kind.to_owned()))
            .unwrap_or_default();
        let Some(first) = changes.keys().next().copied() else {
            continue;
        };
        let days: std::collections::BTreeSet<Date> = changes
            .keys()
            .copied()
            .chain(old.range(first..).map(|(d, _)| *d))
            .collect();
        let mut added = SignalTotals::default();
        for day in days {
            if let Some(change) = changes.get(&day) {
                added.add(change);
            }
            let mut total = old
                .range(..=day)
                .next_back()
                .map(|(_, t)| t.clone())
                .unwrap_or_default();
            total.add(&added);
            out.push(&region, kind, day, &total);
        }
    }
    out.write(conn).await
}

/// Reads a `signal_day` row's figures (columns prefixed with `prefix`; absent: zero).
fn signal_totals(row: &sqlx::postgres::PgRow, prefix: &str) -> Result<SignalTotals, sqlx::Error> {
    let column = |name: &str| format!("{prefix}{name}");
    let Some(signals) = row.try_get::<Option<i64>, _>(column("signals").as_str())? else {
        return Ok(SignalTotals::default());
    };
    let mut totals = SignalTotals {
        signals,
        drills: row.try_get(column("drills").as_str())?,
        resolved: row.try_get(column("resolved").as_str())?,
        circle: row.try_get(column("circle").as_str())?,
        ..SignalTotals::default()
    };
    let by_kind: Vec<i64> = row.try_get(column("by_kind").as_str())?;
    for (a, b) in totals.by_kind.iter_mut().zip(by_kind) {
        *a = b;
    }
    let help: Vec<i32> = row.try_get(column("help").as_str())?;
    for (a, b) in totals.help.iter_mut().zip(help) {
        *a = i64::from(b);
    }
    Ok(totals)
}

/// Rows of `signal_day` to upsert, as columns (the arrays flattened, sliced in SQL).
#[derive(Default)]
struct SignalDayRows {
    regions: Vec<String>,
    kinds: Vec<&'static str>,
    days: Vec<Date>,
    signals: Vec<i64>,
    drills: Vec<i64>,
    resolved: Vec<i64>,
    circle: Vec<i64>,
    by_kind: Vec<i64>,
    help: Vec<i32>,
}

impl SignalDayRows {
    fn push(&mut self, region: &str, kind: &'static str, day: Date, totals: &SignalTotals) {
        self.regions.push(region.to_owned());
        self.kinds.push(kind);
        self.days.push(day);
        self.signals.push(totals.signals);
        self.drills.push(totals.drills);
        self.resolved.push(totals.resolved);
        self.circle.push(totals.circle);
        self.by_kind.extend(&totals.by_kind);
        self.help.extend(totals.help.iter().map(|&c| int(c)));
    }

    async fn write(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.regions.is_empty() {
            return Ok(());
        }
        let kinds = SignalKind::ALL.len();
        let sql = format!(
            "INSERT INTO signal_day (region_code, kind, day, signals, drills, resolved, circle, \
                    by_kind, help) \
             SELECT r.region, r.kind, r.day, r.signals, r.drills, r.resolved, r.circle, \
                    ($8::int8[])[(r.n - 1) * {kinds} + 1 : r.n * {kinds}], \
                    ($9::int4[])[(r.n - 1) * {HELP_BUCKETS} + 1 : r.n * {HELP_BUCKETS}] \
               FROM unnest($1::text[], $2::text[], $3::date[], $4::int8[], $5::int8[], \
                    $6::int8[], $7::int8[]) WITH ORDINALITY \
                    AS r(region, kind, day, signals, drills, resolved, circle, n) \
             ON CONFLICT (region_code, kind, day) DO UPDATE SET signals = excluded.signals, \
                    drills = excluded.drills, resolved = excluded.resolved, \
                    circle = excluded.circle, by_kind = excluded.by_kind, help = excluded.help"
        );
        sqlx::query(&sql)
            .bind(&self.regions)
            .bind(&self.kinds)
            .bind(&self.days)
            .bind(&self.signals)
            .bind(&self.drills)
            .bind(&self.resolved)
            .bind(&self.circle)
            .bind(&self.by_kind)
            .bind(&self.help)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Reading: the dashboard's queries (a few index probes per region)

/// Each region's week on `friday` (`*`: every region): the stock in force and who filed for
/// that Friday — as known now, or at the end of the recording day `known`. A region with
/// no filing at or before the Friday is absent (zero).
pub async fn region_weeks(
    pool: &PgPool,
    regions: &[String],
    friday: Date,
    known: Option<Date>,
) -> Result<HashMap<String, RegionWeek>, sqlx::Error> {
    let sql = match known {
        None => {
            "SELECT k.code, w.friday, w.children, w.adults, w.filed, w.on_time, w.late \
               FROM unnest($1::text[]) AS k(code) \
               JOIN LATERAL (SELECT friday, children, adults, filed, on_time, late \
                      FROM zastupnik.region_week WHERE region_code = k.code AND friday <= $2 \
                     ORDER BY friday DESC LIMIT 1) AS w ON true"
        }
        Some(_) => {
            "SELECT k.code, w.friday, w.children, w.adults, w.filed, w.on_time, w.late \
               FROM unnest($1::text[]) AS k(code) \
               JOIN LATERAL (SELECT friday, children, adults, filed, on_time, late \
                      FROM zastupnik.region_week_version WHERE region_code = k.code \
                       AND friday <= $2 AND known_on <= $3 \
                     ORDER BY friday DESC, known_on DESC LIMIT 1) AS w ON true"
        }
    };
    let rows = sqlx::query(sql)
        .bind(regions)
        .bind(friday)
        .bind(known)
        .fetch_all(pool)
        .await?;
    let mut out = HashMap::new();
    for row in &rows {
        let week = region_week(row)?;
        let on: Date = row.try_get("friday")?;
        out.insert(
            row.try_get("code")?,
            if on == friday { week } else { week.stock() },
        );
    }
    Ok(out)
}

/// The weeks from `first` to `last` (Fridays, oldest first) of the regions together: the
/// stock in force on each Friday and who filed for it.
pub async fn weekly_trend(
    pool: &PgPool,
    regions: &[String],
    first: Date,
    last: Date,
    known: Option<Date>,
) -> Result<Vec<(Date, RegionWeek)>, sqlx::Error> {
    let sql = match known {
        None => {
            "SELECT k.code, w.friday, w.children, w.adults, w.filed, w.on_time, w.late \
               FROM unnest($1::text[]) AS k(code) \
               CROSS JOIN LATERAL ( \
                 (SELECT friday, children, adults, filed, on_time, late FROM zastupnik.region_week \
                   WHERE region_code = k.code AND friday < $2 ORDER BY friday DESC LIMIT 1) \
                 UNION ALL \
                 SELECT friday, children, adults, filed, on_time, late FROM zastupnik.region_week \
                  WHERE region_code = k.code AND friday BETWEEN $2 AND $3) AS w"
        }
        Some(_) => {
            "SELECT k.code, w.friday, w.children, w.adults, w.filed, w.on_time, w.late \
               FROM unnest($1::text[]) AS k(code) \
               CROSS JOIN LATERAL ( \
                 (SELECT friday, children, adults, filed, on_time, late \
                    FROM zastupnik.region_week_version \
                   WHERE region_code = k.code AND friday < $2 AND known_on <= $4 \
                   ORDER BY friday DESC, known_on DESC LIMIT 1) \
                 UNION ALL \
                 (SELECT DISTINCT ON (friday) friday, children, adults, filed, on_time, late \
                    FROM zastupnik.region_week_version \
                   WHERE region_code = k.code AND friday BETWEEN $2 AND $3 AND known_on <= $4 \
                   ORDER BY friday, known_on DESC)) AS w"
        }
    };
    let rows = sqlx::query(sql)
        .bind(regions)
        .bind(first)
        .bind(last)
        .bind(known)
        .fetch_all(pool)
        .await?;
    let mut by_region: HashMap<String, BTreeMap<Date, RegionWeek>> = HashMap::new();
    for row in &rows {
        by_region
            .entry(row.try_get("code")?)
            .or_default()
            .insert(row.try_get("friday")?, region_week(row)?);
    }
    let mut out = Vec::new();
    let mut friday = first;
    while friday <= last {
        let mut total = RegionWeek::default();
        for weeks in by_region.values() {
            match weeks.range(..=friday).next_back() {
                Some((on, week)) if *on == friday => total.add(*week),
                Some((_, week)) => total.add(week.stock()),
                None => {}
            }
        }
        out.push((friday, total));
        friday += Duration::weeks(1);
    }
    Ok(out)
}

/// A municipality on a Friday: its figures in force (from its latest filing at or before
/// the Friday) and its filing for that very Friday.
#[derive(Debug, Clone)]
pub struct MunicipalityWeek {
    pub id: Uuid,
    pub name: String,
    pub children: i64,
    pub adults: i64,
    /// The Friday of the filing whose figures are in force; `None`: never filed.
    pub figures_of: Option<Date>,
    /// This Friday's filing: its (first) timeliness; `None`: not filed.
    pub filed: Option<Timeliness>,
}

/// Every municipality of `region` on `friday`, by name — as known now or on `known`.
pub async fn municipality_weeks(
    pool: &PgPool,
    region: &str,
    friday: Date,
    known: Option<Date>,
) -> Result<Vec<MunicipalityWeek>, sqlx::Error> {
    let sql = match known {
        None => {
            "SELECT m.id, m.name, f.friday, f.children, f.adults, f.timeliness \
               FROM reference.municipality m \
               LEFT JOIN LATERAL (SELECT friday, children, adults, timeliness \
                      FROM zastupnik.filing WHERE municipality = m.id AND friday <= $2 \
                     ORDER BY friday DESC LIMIT 1) AS f ON true \
              WHERE m.region_code = $1 ORDER BY m.name"
        }
        Some(_) => {
            "SELECT m.id, m.name, f.friday, f.children, f.adults, f.timeliness \
               FROM reference.municipality m \
               LEFT JOIN LATERAL (SELECT friday, children, adults, timeliness \
                      FROM zastupnik.filing_version WHERE municipality = m.id AND friday <= $2 \
                       AND known_on <= $3 ORDER BY friday DESC, known_on DESC LIMIT 1) AS f \
                    ON true \
              WHERE m.region_code = $1 ORDER BY m.name"
        }
    };
    let rows = sqlx::query(sql)
        .bind(region)
        .bind(friday)
        .bind(known)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            let figures_of: Option<Date> = row.try_get("friday")?;
            let timeliness: Option<String> = row.try_get("timeliness")?;
            Ok(MunicipalityWeek {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                children: i64::from(row.try_get::<Option<i32>, _>("children")?.unwrap_or(0)),
                adults: i64::from(row.try_get::<Option<i32>, _>("adults")?.unwrap_or(0)),
                figures_of,
                filed: timeliness
                    .filter(|_| figures_of == Some(friday))
                    .map(|t| Timeliness::from_code(&t).unwrap_or(Timeliness::Imported)),
            })
        })
        .collect()
}

/// The signals of each (region, kind) — kind [`EVERY`] for all — pressed from `first` to
/// `last` (local dates of the regions), in the order of `keys`.
pub async fn signals_between(
    pool: &PgPool,
    keys: &[(String, String)],
    first: Date,
    last: Date,
) -> Result<Vec<SignalTotals>, sqlx::Error> {
    let (regions, kinds): (Vec<&str>, Vec<&str>) =
        keys.iter().map(|(r, k)| (r.as_str(), k.as_str())).unzip();
    let probe = |alias: &str, condition: &str| {
        format!(
            "LEFT JOIN LATERAL (SELECT signals AS {alias}signals, drills AS {alias}drills, \
                    resolved AS {alias}resolved, circle AS {alias}circle, \
                    by_kind AS {alias}by_kind, help AS {alias}help FROM zastupnik.signal_day \
              WHERE region_code = k.region_code AND kind = k.kind AND {condition} \
              ORDER BY day DESC LIMIT 1) AS {alias} ON true"
        )
    };
    let sql = format!(
        "SELECT k.n, hi.*, lo.* FROM unnest($1::text[], $2::text[]) WITH ORDINALITY \
                AS k(region_code, kind, n) {} {} ORDER BY k.n",
        probe("hi", "day <= $4"),
        probe("lo", "day < $3"),
    );
    let rows = sqlx::query(&sql)
        .bind(&regions)
        .bind(&kinds)
        .bind(first)
        .bind(last)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            let mut totals = signal_totals(row, "hi")?;
            totals.subtract(&signal_totals(row, "lo")?);
            Ok(totals)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn buckets_are_ten_seconds_then_a_minute_then_coarser() {
        assert_eq!(help_bucket(-30.0), 0);
        assert_eq!(help_bucket(0.0), 0);
        assert_eq!(help_bucket(10.0), 0);
        assert_eq!(help_bucket(10.001), 1);
        assert_eq!(help_bucket(180.0), 17);
        assert_eq!(help_bucket(600.0), 59);
        assert_eq!(help_bucket(601.0), 60);
        assert_eq!(help_bucket(3600.0), 109);
        assert_eq!(help_bucket(86_400.0), HELP_BOUNDS.len() - 1);
        assert_eq!(help_bucket(90_000.0), HELP_BUCKETS - 1);
        assert_eq!(help_bucket_bounds(0), (0.0, Some(10.0)));
        assert_eq!(help_bucket_bounds(60), (600.0, Some(660.0)));
        assert_eq!(help_bucket_bounds(HELP_BUCKETS - 1), (86_400.0, None));
        for pair in HELP_BOUNDS.windows(2) {
            assert!(pair[0] < pair[1]);
        }
    }

    fn histogram(times: &[f64]) -> Vec<i64> {
        let mut help = vec![0; HELP_BUCKETS];
        for t in times {
            help[help_bucket(*t)] += 1;
        }
        help
    }

    #[test]
    fn percentiles_interpolate_within_a_bucket() {
        // Ten times in the bucket (120, 130]: the median is half way through it.
        let help = histogram(&[121.0; 10]);
        assert_eq!(help_percentile(&help, 0.5), Some(125.0));
        assert_eq!(help_percentile(&help, 0.9), Some(129.0));
        assert_eq!(help_percentile(&[0; HELP_BUCKETS], 0.5), None);
        // Within one bucket's width of the exact value.
        let times: Vec<f64> = (0..500).map(|i| 30.0 + f64::from(i) * 7.3).collect();
        let help = histogram(&times);
        let exact = |p: f64| {
            let pos = p * (times.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            times[lo] + (times[hi] - times[lo]) * (pos - lo as f64)
        };
        for p in [0.5, 0.9] {
            let estimate = help_percentile(&help, p).unwrap();
            let (lower, upper) = help_bucket_bounds(help_bucket(exact(p)));
            let width = upper.unwrap() - lower;
            assert!(
                (estimate - exact(p)).abs() <= width,
                "p{p}: {estimate} vs {}",
                exact(p)
            );
        }
        assert_eq!(
            help_within(&help, TARGET_SECONDS),
            times.iter().filter(|t| **t <= 180.0).count() as i64
        );
        assert_eq!(
            help_percentile(&histogram(&[100_000.0]), 0.5),
            Some(86_400.0)
        );
    }

    #[test]
    fn a_filing_changes_its_region_up_to_the_next_filed_week() {
        let (w1, w2, w3, w4) = (
            date!(2025 - 01 - 03),
            date!(2025 - 01 - 10),
            date!(2025 - 01 - 17),
            date!(2025 - 01 - 24),
        );
        let mut weeks = BTreeMap::new();
        // A files week 1 (100), B files week 3 (50).
        let first = |from, children| Change {
            from,
            until: None,
            children,
            adults: 0,
            first: Some(Timeliness::OnTime),
        };
        first(w1, 100).apply(&mut weeks);
        first(w3, 50).apply(&mut weeks);
        assert_eq!(weeks[&w3].children, 150);
        assert_eq!((weeks[&w3].filed, weeks[&w1].filed), (1, 1));
        // A files week 2 late (120): weeks 2 and 3 change, week 1 keeps 100.
        let changed = Change {
            from: w2,
            until: None,
            children: 20,
            adults: 0,
            first: Some(Timeliness::Late),
        }
        .apply(&mut weeks);
        assert_eq!(changed.len(), 2);
        assert_eq!(
            (
                weeks[&w1].children,
                weeks[&w2].children,
                weeks[&w3].children
            ),
            (100, 120, 170)
        );
        assert_eq!((weeks[&w2].filed, weeks[&w2].late), (1, 1));
        // A corrects week 1 to 90 (its next filed week is 2): only week 1 changes.
        Change {
            from: w1,
            until: Some(w2),
            children: -10,
            adults: 0,
            first: None,
        }
        .apply(&mut weeks);
        assert_eq!(
            (
                weeks[&w1].children,
                weeks[&w2].children,
                weeks[&w3].children
            ),
            (90, 120, 170)
        );
        assert_eq!(weeks[&w1].filed, 1);
        assert!(!weeks.contains_key(&w4));
    }
}
