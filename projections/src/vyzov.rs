//! The `vyzov` projection: the «Вызов» dashboards' counters, for any effective date and as
//! known on any recording date (migration 0013 explains the six grains).
//!
//! Each case, aid request and organisation keeps a compact *track* (the entries that matter
//! to the figures, with their sequence numbers so that a voided entry drops out). An event
//! updates its stream's track; the stream's facts — `(metric, effective day, amount)` — are
//! derived from the track before and after, and the difference is written, dated by the
//! event's recording day. So a late entry, a voided entry or a corrected delivery changes
//! the figures as of the days they concern, and only from the day Opora learned of it.
//!
//! Stocks become +1/−1 at the ends of their intervals, some of them in the future when they
//! are written: an action item becomes overdue the day after its due date, a child in an
//! institution needs a review six months after placement or after the last review.

use std::collections::HashMap;
use std::sync::Arc;

use crate::kept::Kept;

use async_trait::async_trait;
use opora_domain::aid::AidEvent;
use opora_domain::case::{CaseEvent, ExitKind};
use opora_domain::organisation::{OrganisationEvent, OrganisationKind};
use opora_store::RecordedEvent;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Row};
use time::macros::date;
use time::{Date, Duration, Month};
use uuid::Uuid;

use crate::{Projection, ProjectionError};

mod snapshot;
mod totals;
pub use snapshot::{Held, Snapshot, QUIET};
pub use totals::FIRST_KNOWN_MONTH;

/// The counters, in the order of their columns.
pub const METRICS: [&str; N] = [
    "inst",
    "control",
    "accompanied",
    "unreviewed",
    "overdue",
    "placed",
    "exit_birth_family",
    "exit_guardianship",
    "exit_foster",
    "exit_adoption",
    "exit_coming_of_age",
    "exit_other",
    "prevented",
    "reviews",
    "late",
    "services",
    "specialists",
];
pub const N: usize = 17;
pub type Counters = [i64; N];

pub const INST: usize = 0;
pub const CONTROL: usize = 1;
pub const ACCOMPANIED: usize = 2;
pub const UNREVIEWED: usize = 3;
pub const OVERDUE: usize = 4;
pub const PLACED: usize = 5;
/// The exits, in [`EXITS`] order, from this column on.
pub const EXIT: usize = 6;
pub const PREVENTED: usize = 12;
pub const REVIEWS: usize = 13;
pub const LATE: usize = 14;
pub const SERVICES: usize = 15;
pub const SPECIALISTS: usize = 16;

/// Stocks (a figure on a day); the others are flows (a figure over a period).
pub const STOCKS: [usize; 7] = [
    INST,
    CONTROL,
    ACCOMPANIED,
    UNREVIEWED,
    OVERDUE,
    SERVICES,
    SPECIALISTS,
];

pub const EXITS: [ExitKind; 6] = [
    ExitKind::BirthFamily,
    ExitKind::Guardianship,
    ExitKind::Foster,
    ExitKind::Adoption,
    ExitKind::ComingOfAge,
    ExitKind::OtherExit,
];

/// The aid counters.
pub const AID_METRICS: [&str; 4] = ["kopecks", "deliveries", "requests", "children"];
pub type AidCounters = [i64; 4];

/// An entry recorded this many days after the day it concerns is a late entry.
pub const LATE_AFTER_DAYS: i64 = 30;

/// The "as known now" recording date of grains 0 and 1.
pub const NOW: Date = date!(9999 - 12 - 31);

#[derive(Default)]
pub struct VyzovProjection {
    /// Set only in the instance a rebuild runs ([`Projection::bulk`]).
    bulk: Option<tokio::sync::Mutex<Bulk>>,
}

// ---------------------------------------------------------------------------------------
// Tracks and their facts

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Entry {
    Placed { on: Date },
    Left { on: Date, exit: u8 },
    Review { on: Date },
    Item { item: Uuid, on: Date, due: Date },
    Done { item: Uuid, on: Date },
    ControlOn { on: Date },
    ControlOff { on: Date },
    AccStart { on: Date },
    AccEnd { on: Date },
    Prevented { on: Date },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct CaseTrack {
    region: String,
    municipality: Option<Uuid>,
    entries: Vec<(u32, Entry)>,
    voided: Vec<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct AidTrack {
    region: String,
    children: i64,
    /// (delivery, day, kopecks, form)
    deliveries: Vec<(Uuid, Date, i64, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct OrgTrack {
    region: String,
    municipality: Option<Uuid>,
    service: bool,
    /// (from day, specialists)
    versions: Vec<(Date, i64)>,
}

/// Stored as MessagePack (`rmp_serde`, compact: no field names) in `track.track`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Track {
    Case(CaseTrack),
    Aid(AidTrack),
    Org(OrgTrack),
}

/// One fact: a counter's amount on a day.
type Fact = (usize, Date, i64);
/// One aid fact: form, day, counters.
type AidFact = (String, Date, AidCounters);

/// `day` moved by `months` calendar months, the day of the month clamped to the month's
/// length (as PostgreSQL's `date - interval '6 months'`).
pub fn add_months(day: Date, months: i32) -> Date {
    let index = day.year() * 12 + (day.month() as i32 - 1) + months;
    let (year, month0) = (index.div_euclid(12), index.rem_euclid(12));
    let month = Month::try_from(month0 as u8 + 1).unwrap_or(Month::January);
    let last = month.length(year);
    Date::from_calendar_date(year, month, day.day().min(last)).unwrap_or(day)
}

pub fn month_start(day: Date) -> Date {
    day.replace_day(1).unwrap_or(day)
}

/// The last day on which something dated `day` still counts as "within the last six
/// months" (the rule of `cases.needs_review`: it counts on D while day >= D − 6 months).
fn covered_until(day: Date) -> Date {
    let mut end = add_months(day, 6);
    while let Some(next) = end.next_day() {
        if add_months(next, -6) <= day {
            end = next;
        } else {
            break;
        }
    }
    end
}

/// +1 at the start and −1 at the (exclusive) end of each interval.
fn intervals(metric: usize, spans: &[(Date, Option<Date>)], facts: &mut Vec<Fact>) {
    for &(from, to) in spans {
        if let Some(to) = to {
            if to <= from {
                continue;
            }
            facts.push((metric, to, -1));
        }
        facts.push((metric, from, 1));
    }
}

/// Intervals opened by `open` entries and closed by the next `close` one.
fn pairs(days: impl Iterator<Item = (bool, Date)>) -> Vec<(Date, Option<Date>)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (opens, day) in days {
        match (opens, start) {
            (true, None) => start = Some(day),
            (false, Some(from)) => {
                spans.push((from, Some(day)));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(from) = start {
        spans.push((from, None));
    }
    spans
}

fn case_facts(track: &CaseTrack) -> Vec<Fact> {
    let entries: Vec<Entry> = track
        .entries
        .iter()
        .filter(|(seq, _)| !track.voided.contains(seq))
        .map(|(_, e)| *e)
        .collect();
    let mut facts = Vec::new();
    let stays = pairs(entries.iter().filter_map(|e| match *e {
        Entry::Placed { on } => Some((true, on)),
        Entry::Left { on, .. } => Some((false, on)),
        _ => None,
    }));
    intervals(INST, &stays, &mut facts);
    let reviews: Vec<Date> = entries
        .iter()
        .filter_map(|e| match *e {
            Entry::Review { on } => Some(on),
            _ => None,
        })
        .collect();
    for entry in &entries {
        match *entry {
            Entry::Placed { on } => facts.push((PLACED, on, 1)),
            Entry::Left { on, exit } => facts.push((EXIT + usize::from(exit).min(5), on, 1)),
            Entry::Review { on } => facts.push((REVIEWS, on, 1)),
            Entry::Prevented { on } => facts.push((PREVENTED, on, 1)),
            Entry::Item { item, on, due } => {
                let done = entries.iter().find_map(|e| match *e {
                    Entry::Done { item: i, on } if i == item => Some(on),
                    _ => None,
                });
                let from = on.max(due.next_day().unwrap_or(due));
                intervals(OVERDUE, &[(from, done)], &mut facts);
            }
            _ => {}
        }
    }
    intervals(
        CONTROL,
        &pairs(entries.iter().filter_map(|e| match *e {
            Entry::ControlOn { on } => Some((true, on)),
            Entry::ControlOff { on } => Some((false, on)),
            _ => None,
        })),
        &mut facts,
    );
    intervals(
        ACCOMPANIED,
        &pairs(entries.iter().filter_map(|e| match *e {
            Entry::AccStart { on } => Some((true, on)),
            Entry::AccEnd { on } => Some((false, on)),
            _ => None,
        })),
        &mut facts,
    );
    // Over six months in an institution without a review: within each stay, the days not
    // covered by the placement's first six months or by a review's six months.
    for &(placed, left) in &stays {
        let mut covered: Vec<(Date, Date)> = std::iter::once((placed, covered_until(placed)))
            .chain(reviews.iter().map(|&r| (r, covered_until(r))))
            .collect();
        covered.sort();
        let mut spans = Vec::new();
        let mut cursor = placed;
        for (from, until) in covered {
            if left.is_some_and(|left| cursor >= left) {
                break;
            }
            if from > cursor {
                spans.push((cursor, Some(left.map_or(from, |left| from.min(left)))));
            }
            if let Some(after) = until.next_day() {
                cursor = cursor.max(after);
            }
        }
        if left.is_none_or(|left| cursor < left) {
            spans.push((cursor, left));
        }
        intervals(UNREVIEWED, &spans, &mut facts);
    }
    facts
}

fn aid_facts(track: &AidTrack) -> Vec<AidFact> {
    let mut facts: Vec<AidFact> = track
        .deliveries
        .iter()
        .map(|(_, on, kopecks, form)| (form.clone(), *on, [*kopecks, 1, 0, 0]))
        .collect();
    if let Some((_, on, _, form)) = track.deliveries.iter().min_by_key(|(_, on, _, _)| *on) {
        facts.push((form.clone(), *on, [0, 0, 1, track.children]));
    }
    facts
}

fn org_facts(track: &OrgTrack) -> Vec<Fact> {
    let mut facts = Vec::new();
    if !track.service {
        return facts;
    }
    let mut previous = 0;
    for (i, &(from, specialists)) in track.versions.iter().enumerate() {
        if i == 0 {
            facts.push((SERVICES, from, 1));
        }
        facts.push((SPECIALISTS, from, specialists - previous));
        previous = specialists;
    }
    facts
}

impl Track {
    fn place(&self) -> (&str, Option<Uuid>) {
        match self {
            Track::Case(t) => (&t.region, t.municipality),
            Track::Aid(t) => (&t.region, None),
            Track::Org(t) => (&t.region, t.municipality),
        }
    }
    fn facts(&self) -> Vec<Fact> {
        match self {
            Track::Case(t) => case_facts(t),
            Track::Org(t) => org_facts(t),
            Track::Aid(_) => Vec::new(),
        }
    }
    fn aid_facts(&self) -> Vec<AidFact> {
        match self {
            Track::Aid(t) => aid_facts(t),
            _ => Vec::new(),
        }
    }
}

/// The day a fact was recorded ("as known on"): Moscow's date, as for «Заступник»
/// ([`crate::zastupnik::RECORDING_ZONE`]). What the dashboard knew on K is what was recorded
/// by the end of K in Moscow, where the ministries read it.
pub fn recording_day(at: time::OffsetDateTime) -> Date {
    static MOSCOW: std::sync::LazyLock<opora_domain::weekly::Schedule> =
        std::sync::LazyLock::new(|| {
            opora_domain::weekly::Schedule::default_in(crate::zastupnik::RECORDING_ZONE)
        });
    MOSCOW.local_date(at)
}

/// Folds one event into its stream's track (`None` before the stream's first event).
/// Returns the event's effective day, for the late-entry count.
fn fold(track: &mut Option<Track>, event: &RecordedEvent) -> Result<Option<Date>, ProjectionError> {
    let seq = u32::try_from(event.sequence).unwrap_or(u32::MAX);
    let recorded = recording_day(event.recorded_at);
    match event.aggregate_type.as_str() {
        "ChildCase" => {
            let case = event.decode::<CaseEvent>(&[])?;
            let on = case.on();
            let entry = match case {
                CaseEvent::CaseOpened {
                    region,
                    municipality,
                    ..
                } => {
                    *track = Some(Track::Case(CaseTrack {
                        region: region.as_str().to_owned(),
                        municipality,
                        ..CaseTrack::default()
                    }));
                    None
                }
                CaseEvent::ChildPlaced { on, .. } => Some(Entry::Placed { on }),
                CaseEvent::ChildLeftInstitution { on, exit } => Some(Entry::Left {
                    on,
                    exit: EXITS.iter().position(|e| *e == exit).unwrap_or(5) as u8,
                }),
                CaseEvent::ConsiliumReviewRecorded { on, .. } => Some(Entry::Review { on }),
                CaseEvent::ActionItemSet { on, item, due, .. } => {
                    Some(Entry::Item { item, on, due })
                }
                CaseEvent::ActionItemDone { on, item } => Some(Entry::Done { item, on }),
                CaseEvent::TakenUnderPersonalControl { on } => Some(Entry::ControlOn { on }),
                CaseEvent::ReleasedFromPersonalControl { on } => Some(Entry::ControlOff { on }),
                CaseEvent::AccompanimentStarted { on, .. } => Some(Entry::AccStart { on }),
                CaseEvent::AccompanimentEnded { on } => Some(Entry::AccEnd { on }),
                CaseEvent::PlacementPrevented { on } => Some(Entry::Prevented { on }),
                CaseEvent::EntryVoided { sequence, .. } => {
                    if let Some(Track::Case(t)) = track {
                        t.voided.push(u32::try_from(sequence).unwrap_or(u32::MAX));
                    }
                    None
                }
                _ => None,
            };
            if let (Some(entry), Some(Track::Case(t))) = (entry, track.as_mut()) {
                t.entries.push((seq, entry));
            }
            Ok(Some(on))
        }
        "AidRequest" => {
            let aid = event.decode::<AidEvent>(&[])?;
            let on = match &aid {
                AidEvent::AidRequested(facts) => Some(facts.on),
                AidEvent::AidApproved { on, .. }
                | AidEvent::AidRefused { on, .. }
                | AidEvent::AidDeliveryWithdrawn { on, .. } => Some(*on),
                AidEvent::AidDelivered(d) | AidEvent::AidDeliveryCorrected { delivery: d, .. } => {
                    Some(d.on)
                }
            };
            match aid {
                AidEvent::AidRequested(facts) => {
                    *track = Some(Track::Aid(AidTrack {
                        region: facts.region.as_str().to_owned(),
                        children: i64::from(facts.children),
                        deliveries: Vec::new(),
                    }));
                }
                AidEvent::AidDelivered(d) | AidEvent::AidDeliveryCorrected { delivery: d, .. } => {
                    if let Some(Track::Aid(t)) = track {
                        t.deliveries.retain(|(id, ..)| *id != d.id);
                        t.deliveries.push((
                            d.id,
                            d.on,
                            d.amount.kopecks(),
                            d.form.code().to_owned(),
                        ));
                    }
                }
                AidEvent::AidDeliveryWithdrawn { delivery, .. } => {
                    if let Some(Track::Aid(t)) = track {
                        t.deliveries.retain(|(id, ..)| *id != delivery);
                    }
                }
                AidEvent::AidApproved { .. } | AidEvent::AidRefused { .. } => {}
            }
            Ok(on)
        }
        "Organisation" => {
            match event.decode::<OrganisationEvent>(&[])? {
                OrganisationEvent::OrganisationRegistered {
                    kind,
                    region,
                    municipality,
                    details,
                    ..
                } => {
                    *track = Some(Track::Org(OrgTrack {
                        region: region.as_str().to_owned(),
                        municipality,
                        service: kind == OrganisationKind::FamilyService,
                        versions: vec![(recorded, i64::from(details.specialists.unwrap_or(0)))],
                    }));
                }
                OrganisationEvent::OrganisationDetailsChanged { details } => {
                    if let Some(Track::Org(t)) = track {
                        t.versions
                            .push((recorded, i64::from(details.specialists.unwrap_or(0))));
                    }
                }
            }
            Ok(None)
        }
        _ => Ok(None),
    }
}

fn track_kind(aggregate_type: &str) -> Option<&'static str> {
    match aggregate_type {
        "ChildCase" => Some("case"),
        "AidRequest" => Some("aid"),
        "Organisation" => Some("org"),
        _ => None,
    }
}

/// `after − before` as facts to add.
fn difference<K: Ord + Clone, V: Copy + Default + PartialEq>(
    before: Vec<(K, V)>,
    after: Vec<(K, V)>,
    sub: impl Fn(V, V) -> V,
    add: impl Fn(V, V) -> V,
) -> Vec<(K, V)> {
    let mut sums: std::collections::BTreeMap<K, V> = std::collections::BTreeMap::new();
    for (k, v) in after {
        let slot = sums.entry(k).or_default();
        *slot = add(*slot, v);
    }
    for (k, v) in before {
        let slot = sums.entry(k).or_default();
        *slot = sub(*slot, v);
    }
    sums.into_iter()
        .filter(|(_, v)| *v != V::default())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Cells: the six grains, in the tables of migration 0015

/// The grains' (eff, rec) keys of a fact effective on `eff`, recorded on `rec`: every fact
/// counts as known now (grains 0 and 1); a *late* fact — recorded after the day it concerns
/// — also in grains 6 and 7 (the late facts as known now, subtracted when a date is asked
/// as known on K) and in the bitemporal grains 2 to 5. A fact recorded on or before its day
/// is known on every K >= D whenever it counts on D, so it needs no more.
fn grains(eff: Date, rec: Date) -> Vec<(i16, Date, Date)> {
    let (em, rm) = (month_start(eff), month_start(rec));
    let mut keys = vec![(0, em, NOW), (1, eff, NOW)];
    if rec > eff {
        keys.extend([
            (6, em, NOW),
            (7, eff, NOW),
            (2, em, rm),
            (3, em, rec),
            (4, eff, rm),
            (5, eff, rec),
        ]);
    }
    keys
}

/// A cell's key: the columns of every table in one small `Copy` value (region and form are
/// indexes into [`Cells`]' names; a column a table lacks holds a filler), so that adding up
/// cells allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct CellKey {
    grain: i16,
    region: u16,
    form: u16,
    municipality: Uuid,
    eff: Date,
    rec: Date,
}

type Amounts = [i64; N];
type CellMap = HashMap<CellKey, Amounts, rustc_hash::FxBuildHasher>;

/// The cells of one table a batch adds to.
struct CellTable {
    name: &'static str,
    /// Key columns, among grain, region_code, form, municipality, eff and rec.
    keys: &'static [&'static str],
    values: &'static [&'static str],
    rows: CellMap,
}

impl CellTable {
    fn new(
        name: &'static str,
        keys: &'static [&'static str],
        values: &'static [&'static str],
    ) -> Self {
        CellTable {
            name,
            keys,
            values,
            rows: CellMap::default(),
        }
    }

    fn add(&mut self, key: CellKey, amounts: &[i64]) {
        add_to(&mut self.rows, key, amounts);
    }

    /// Adds every cell to its row (`ON CONFLICT … DO UPDATE SET v = v + EXCLUDED.v`), in
    /// one statement.
    async fn write(self, conn: &mut PgConnection, names: &Names) -> Result<(), ProjectionError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let n = self.rows.len();
        let (mut grains, mut regions, mut forms, mut municipalities, mut effs, mut recs) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut values: Vec<Vec<i64>> = vec![Vec::with_capacity(n); self.values.len()];
        for (key, amounts) in &self.rows {
            grains.push(key.grain);
            regions.push(names.region(key.region));
            forms.push(names.form(key.form));
            municipalities.push(key.municipality);
            effs.push(key.eff);
            recs.push(key.rec);
            for (column, v) in values.iter_mut().zip(amounts) {
                column.push(*v);
            }
        }
        let mut arrays = Vec::new();
        for (i, column) in self.keys.iter().enumerate() {
            let sql_type = match *column {
                "grain" => "smallint",
                "region_code" | "form" => "text",
                "municipality" => "uuid",
                _ => "date",
            };
            arrays.push(format!("${}::{sql_type}[]", i + 1));
        }
        for i in 0..self.values.len() {
            arrays.push(format!("${}::bigint[]", self.keys.len() + i + 1));
        }
        let updates = self
            .values
            .iter()
            .map(|v| format!("{v} = {t}.{v} + EXCLUDED.{v}", t = self.name))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO {t} ({k}, {v}) SELECT * FROM unnest({a}) \
             ON CONFLICT ({k}) DO UPDATE SET {updates}",
            t = self.name,
            k = self.keys.join(", "),
            v = self.values.join(", "),
            a = arrays.join(", "),
        );
        let mut query = sqlx::query(&sql);
        for column in self.keys {
            query = match *column {
                "grain" => query.bind(&grains),
                "region_code" => query.bind(&regions),
                "form" => query.bind(&forms),
                "municipality" => query.bind(&municipalities),
                "eff" => query.bind(&effs),
                _ => query.bind(&recs),
            };
        }
        for column in values {
            query = query.bind(column);
        }
        query.execute(&mut *conn).await?;
        Ok(())
    }
}

impl CellTable {
    /// [`CellTable::write_or_copy`] with `copy`, otherwise [`CellTable::write`].
    async fn put(
        self,
        conn: &mut PgConnection,
        names: &Names,
        copy: bool,
    ) -> Result<(), ProjectionError> {
        if copy {
            self.write_or_copy(conn, names).await
        } else {
            self.write(conn, names).await
        }
    }

    /// Into an empty table (a rebuild's last write): COPY, in primary-key order, so that the
    /// rows a page reads together lie together. Otherwise [`CellTable::write`].
    async fn write_or_copy(
        self,
        conn: &mut PgConnection,
        names: &Names,
    ) -> Result<(), ProjectionError> {
        let empty: bool =
            sqlx::query_scalar(&format!("SELECT NOT EXISTS (SELECT 1 FROM {})", self.name))
                .fetch_one(&mut *conn)
                .await?;
        if !empty {
            return self.write(conn, names).await;
        }
        let keys = self.keys;
        let field = |key: &CellKey, column: &str| -> String {
            match column {
                "grain" => key.grain.to_string(),
                "region_code" => names.region(key.region).to_owned(),
                "form" => names.form(key.form).to_owned(),
                "municipality" => key.municipality.to_string(),
                "eff" => key.eff.to_string(),
                _ => key.rec.to_string(),
            }
        };
        let order = |key: &CellKey| {
            keys.iter()
                .map(|c| match *c {
                    "grain" => Sortable::Number(i64::from(key.grain)),
                    "region_code" => Sortable::Text(names.region(key.region)),
                    "form" => Sortable::Text(names.form(key.form)),
                    "municipality" => Sortable::Id(key.municipality),
                    "eff" => Sortable::Day(key.eff),
                    _ => Sortable::Day(key.rec),
                })
                .collect::<Vec<_>>()
        };
        let mut rows: Vec<(CellKey, Amounts)> = self.rows.into_iter().collect();
        rows.sort_by_cached_key(|(key, _)| order(key));
        let mut copy = conn
            .copy_in_raw(&format!(
                "COPY {} ({}, {}) FROM STDIN",
                self.name,
                keys.join(", "),
                self.values.join(", ")
            ))
            .await?;
        let mut buf = String::with_capacity(1 << 20);
        for (key, amounts) in &rows {
            for column in keys {
                // Codes, ids, dates and numbers: nothing COPY would need escaped.
                buf.push_str(&field(key, column));
                buf.push('\t');
            }
            for (i, v) in amounts[..self.values.len()].iter().enumerate() {
                buf.push_str(&v.to_string());
                buf.push(if i + 1 == self.values.len() {
                    '\n'
                } else {
                    '\t'
                });
            }
            if buf.len() > 1 << 20 {
                copy.send(buf.as_bytes()).await?;
                buf.clear();
            }
        }
        copy.send(buf.as_bytes()).await?;
        copy.finish().await?;
        Ok(())
    }
}

/// A key column's value, for sorting rows into primary-key order.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Sortable<'a> {
    Number(i64),
    Text(&'a str),
    Id(Uuid),
    Day(Date),
}

/// The region codes and forms of aid the cells' keys point to.
#[derive(Default, Clone)]
struct Names {
    regions: Vec<String>,
    forms: Vec<String>,
}

impl Names {
    fn index(list: &mut Vec<String>, name: &str) -> u16 {
        match list.iter().position(|n| n == name) {
            Some(i) => i as u16,
            None => {
                list.push(name.to_owned());
                (list.len() - 1) as u16
            }
        }
    }
    fn region(&self, i: u16) -> &str {
        self.regions.get(usize::from(i)).map_or("", String::as_str)
    }
    fn form(&self, i: u16) -> &str {
        self.forms.get(usize::from(i)).map_or("", String::as_str)
    }
}

struct Cells {
    names: Names,
    /// The regions' facts by effective day (grain 1), as known now: the deltas of
    /// `region_day`.
    region_days: CellMap,
    region_known: CellTable,
    /// Grain 2 before it is made cumulative (`rec` is the recording month).
    region_month: CellMap,
    /// Days of the municipalities (grain 1).
    municipality: CellTable,
    /// Months of the municipalities (grain 0), for `municipality_month`.
    municipality_month: CellMap,
    aid_now: CellTable,
    aid_known: CellTable,
    aid_month: CellMap,
}

const AID_MONTH_KEYS: &[&str] = &["rec", "region_code", "form", "eff"];

impl Cells {
    fn new() -> Self {
        Cells {
            names: Names::default(),
            region_days: CellMap::default(),
            region_known: CellTable::new(
                "region_known",
                &["grain", "rec", "eff", "region_code"],
                &METRICS,
            ),
            region_month: CellMap::default(),
            municipality: CellTable::new(
                "municipality_fact",
                &["grain", "region_code", "municipality", "eff"],
                &METRICS,
            ),
            municipality_month: CellMap::default(),
            aid_now: CellTable::new(
                "aid_now",
                &["grain", "region_code", "form", "eff"],
                &AID_METRICS,
            ),
            aid_known: CellTable::new(
                "aid_known",
                &["grain", "region_code", "form", "eff", "rec"],
                &AID_METRICS,
            ),
            aid_month: CellMap::default(),
        }
    }

    fn add(&mut self, region: &str, municipality: Option<Uuid>, fact: Fact, rec: Date) {
        let (metric, eff, amount) = fact;
        let mut amounts = [0; N];
        amounts[metric] = amount;
        let region = Names::index(&mut self.names.regions, region);
        for (grain, e, r) in grains(eff, rec) {
            let key = CellKey {
                grain,
                region,
                form: 0,
                municipality: Uuid::nil(),
                eff: e,
                rec: r,
            };
            match grain {
                2 => add_to(&mut self.region_month, key, &amounts),
                3..=5 => self.region_known.add(key, &amounts),
                // The late facts as known now are not read for regions (`region_late`).
                6 | 7 => {}
                _ => {
                    if grain == 1 {
                        add_to(&mut self.region_days, key, &amounts);
                    }
                    if let Some(m) = municipality {
                        let key = CellKey {
                            municipality: m,
                            ..key
                        };
                        match grain {
                            0 => add_to(&mut self.municipality_month, key, &amounts),
                            _ => self.municipality.add(key, &amounts),
                        }
                    }
                }
            }
        }
    }

    fn add_aid(&mut self, region: &str, fact: AidFact, rec: Date) {
        let (form, eff, amounts) = fact;
        let region = Names::index(&mut self.names.regions, region);
        let form = Names::index(&mut self.names.forms, &form);
        for (grain, e, r) in grains(eff, rec) {
            let key = CellKey {
                grain,
                region,
                form,
                municipality: Uuid::nil(),
                eff: e,
                rec: r,
            };
            match grain {
                2 => add_to(&mut self.aid_month, key, &amounts),
                3..=5 => self.aid_known.add(key, &amounts),
                _ => self.aid_now.add(key, &amounts),
            }
        }
    }

    /// The cells of the big tables (per municipality, the bitemporal days), taken out to be
    /// written while a rebuild keeps the rest in memory.
    fn take_big(&mut self) -> Cells {
        let mut big = Cells::new();
        big.names = self.names.clone();
        std::mem::swap(&mut big.municipality, &mut self.municipality);
        std::mem::swap(&mut big.region_known, &mut self.region_known);
        std::mem::swap(&mut big.aid_known, &mut self.aid_known);
        big
    }

    /// How many cells the big tables hold (to bound the memory of a rebuild).
    fn big_len(&self) -> usize {
        self.region_known.rows.len() + self.municipality.rows.len() + self.aid_known.rows.len()
    }

    async fn write(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        self.write_with(conn, false).await
    }

    /// Writes every cell; with `copy`, a table still empty is filled by COPY (a rebuild).
    async fn write_with(self, conn: &mut PgConnection, copy: bool) -> Result<(), ProjectionError> {
        // Grain 2 of aid is cumulative over recording months up to the horizon: new months
        // are first carried forward from the horizon's, then a fact recorded in month R adds
        // to every month from R to the (new) horizon. The regions' grain 2 goes into the
        // running totals of `region_late` instead.
        let horizon = read_horizon(conn, "rec_month").await?;
        let latest = self
            .region_month
            .keys()
            .chain(self.aid_month.keys())
            .map(|k| k.rec)
            .max();
        let new_horizon = horizon.max(latest);
        if let (Some(from), Some(to)) = (horizon, new_horizon) {
            let mut month = add_months(from, 1);
            while month <= to {
                let values = AID_METRICS.join(", ");
                sqlx::query(&format!(
                    "INSERT INTO aid_known_month (rec, region_code, form, eff, {values}) \
                     SELECT $1, region_code, form, eff, {values} FROM aid_known_month \
                      WHERE rec = $2"
                ))
                .bind(month)
                .bind(from)
                .execute(&mut *conn)
                .await?;
                month = add_months(month, 1);
            }
        }
        if let Some(to) = new_horizon {
            let mut table = CellTable::new("aid_known_month", AID_MONTH_KEYS, &AID_METRICS);
            for (key, amounts) in &self.aid_month {
                let mut month = key.rec;
                while month <= to {
                    table.add(CellKey { rec: month, ..*key }, amounts);
                    month = add_months(month, 1);
                }
            }
            table.put(conn, &self.names, copy).await?;
            totals::late(conn, &self.names, &self.region_month, horizon, to, copy).await?;
            set_horizon(conn, "rec_month", to).await?;
        }
        // The running totals as known now, up to the latest effective day.
        let old_day = read_horizon(conn, "day").await?;
        if let Some(to) = old_day.max(self.region_days.keys().map(|k| k.eff).max()) {
            totals::REGION_DAY
                .add(conn, &self.names, &self.region_days, old_day, to, copy)
                .await?;
            totals::MUNICIPALITY_MONTH
                .add(
                    conn,
                    &self.names,
                    &self.municipality_month,
                    old_day,
                    to,
                    copy,
                )
                .await?;
            set_horizon(conn, "day", to).await?;
        }
        for table in [
            self.region_known,
            self.municipality,
            self.aid_now,
            self.aid_known,
        ] {
            table.put(conn, &self.names, copy).await?;
        }
        sqlx::query(
            "INSERT INTO written (at) VALUES (clock_timestamp()) \
             ON CONFLICT (one) DO UPDATE SET at = EXCLUDED.at",
        )
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// One of `vyzov.horizon`'s dates: `rec_month`, the latest recording month seen; `day`, the
/// latest effective day.
async fn read_horizon(conn: &mut PgConnection, column: &str) -> Result<Option<Date>, sqlx::Error> {
    Ok(sqlx::query_scalar(&format!("SELECT {column} FROM horizon"))
        .fetch_optional(&mut *conn)
        .await?
        .flatten())
}

async fn set_horizon(conn: &mut PgConnection, column: &str, to: Date) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO horizon ({column}) VALUES ($1) \
         ON CONFLICT (one) DO UPDATE SET {column} = EXCLUDED.{column}"
    ))
    .bind(to)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn add_to(map: &mut CellMap, key: CellKey, amounts: &[i64]) {
    let slot = map.entry(key).or_insert([0; N]);
    for (s, a) in slot.iter_mut().zip(amounts) {
        *s += a;
    }
}

/// What a rebuild keeps in memory between batches (see [`VyzovProjection::bulk`]): every
/// track, and cells not yet written.
struct Bulk {
    tracks: HashMap<(String, String), Track, rustc_hash::FxBuildHasher>,
    cells: Cells,
}

/// A rebuild writes the cells of its big tables whenever they hold this many (about 120 MB);
/// the others, and whatever is left, go in by COPY at the end.
const BULK_CELLS: usize = 600_000;

#[async_trait]
impl Projection for VyzovProjection {
    fn name(&self) -> &'static str {
        "vyzov"
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["ChildCase", "AidRequest", "Organisation"])
    }

    /// For a rebuild, a fold that keeps every track in memory instead of reading and
    /// rewriting it in each batch, and adds up cells across batches: the fresh tables are
    /// read by nobody until the swap, and a rebuild that stops half-way is started over.
    /// About 600 bytes per case at national scale (400,000 cases: under 300 MB).
    fn bulk(&self) -> Option<Box<dyn Projection>> {
        Some(Box::new(VyzovProjection {
            bulk: Some(tokio::sync::Mutex::new(Bulk {
                tracks: HashMap::default(),
                cells: Cells::new(),
            })),
        }))
    }

    async fn finish(&self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let Some(bulk) = &self.bulk else {
            return Ok(());
        };
        let mut bulk = bulk.lock().await;
        let cells = std::mem::replace(&mut bulk.cells, Cells::new());
        cells.write_with(conn, true).await?;
        // Most of region_known was written in batches, in no order: put it in its key's
        // (recording) order, in which a page as known on K reads it (migration 0016).
        sqlx::query("CLUSTER region_known USING region_known_pkey")
            .execute(&mut *conn)
            .await?;
        let tracks: Vec<_> = bulk.tracks.drain().collect();
        for chunk in tracks.chunks(20_000) {
            write_tracks(conn, chunk.iter().map(|(k, t)| (k, t))).await?;
        }
        Ok(())
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mine: Vec<&RecordedEvent> = events
            .iter()
            .filter(|e| track_kind(&e.aggregate_type).is_some())
            .collect();
        if mine.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<(String, String)> = mine
            .iter()
            .filter_map(|e| {
                Some((
                    track_kind(&e.aggregate_type)?.to_owned(),
                    e.aggregate_id.clone(),
                ))
            })
            .collect();
        keys.sort();
        keys.dedup();
        if let Some(bulk) = &self.bulk {
            let mut bulk = bulk.lock().await;
            let bulk = &mut *bulk;
            let mut tracks: HashMap<(String, String), Option<Track>> = keys
                .into_iter()
                .map(|k| {
                    let t = bulk.tracks.remove(&k);
                    (k, t)
                })
                .collect();
            fold_all(&mine, &mut tracks, &mut bulk.cells)?;
            bulk.tracks
                .extend(tracks.into_iter().filter_map(|(k, t)| Some((k, t?))));
            if bulk.cells.big_len() > BULK_CELLS {
                bulk.cells.take_big().write(conn).await?;
            }
            return Ok(());
        }
        // The tracks of the streams this batch touches, in one query.
        let (kinds, ids): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
        let rows = sqlx::query(
            "SELECT t.kind, t.id, t.track FROM track t \
               JOIN unnest($1::text[], $2::text[]) AS k(kind, id) USING (kind, id)",
        )
        .bind(&kinds)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        let mut tracks: HashMap<(String, String), Option<Track>> = HashMap::new();
        for row in rows {
            let bytes: Vec<u8> = row.try_get("track")?;
            let track: Track = rmp_serde::from_slice(&bytes)
                .map_err(|e| ProjectionError::Invariant(format!("unreadable track: {e}")))?;
            tracks.insert((row.try_get("kind")?, row.try_get("id")?), Some(track));
        }
        let mut cells = Cells::new();
        fold_all(&mine, &mut tracks, &mut cells)?;
        write_tracks(
            conn,
            tracks.iter().filter_map(|(k, t)| Some((k, t.as_ref()?))),
        )
        .await?;
        cells.write(conn).await?;
        Ok(())
    }
}

/// Writes tracks (insert or replace).
async fn write_tracks<'a>(
    conn: &mut PgConnection,
    tracks: impl Iterator<Item = (&'a (String, String), &'a Track)>,
) -> Result<(), ProjectionError> {
    let (mut kinds, mut ids, mut bodies) = (vec![], vec![], vec![]);
    for ((kind, id), track) in tracks {
        kinds.push(kind.as_str());
        ids.push(id.as_str());
        bodies.push(
            rmp_serde::to_vec(track)
                .map_err(|e| ProjectionError::Invariant(format!("track not serialisable: {e}")))?,
        );
    }
    if kinds.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO track (kind, id, track) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) \
         ON CONFLICT (kind, id) DO UPDATE SET track = EXCLUDED.track",
    )
    .bind(kinds)
    .bind(ids)
    .bind(bodies)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Folds each event into its stream's track and adds the difference of the stream's facts
/// to `cells`, dated by the event's recording day.
fn fold_all(
    mine: &[&RecordedEvent],
    tracks: &mut HashMap<(String, String), Option<Track>>,
    cells: &mut Cells,
) -> Result<(), ProjectionError> {
    for event in mine {
        let Some(kind) = track_kind(&event.aggregate_type) else {
            continue;
        };
        let slot = tracks
            .entry((kind.to_owned(), event.aggregate_id.clone()))
            .or_insert(None);
        let before = slot.as_ref().map(|t| (t.facts(), t.aid_facts()));
        let effective = fold(slot, event)?;
        let Some(track) = slot.as_ref() else {
            continue;
        };
        let rec = recording_day(event.recorded_at);
        let (region, municipality) = track.place();
        let (facts_before, aid_before) = before.unwrap_or_default();
        let facts = difference(
            facts_before
                .into_iter()
                .map(|(m, d, v)| ((m, d), v))
                .collect(),
            track
                .facts()
                .into_iter()
                .map(|(m, d, v)| ((m, d), v))
                .collect(),
            |a, b| a - b,
            |a, b| a + b,
        );
        for ((metric, day), amount) in facts {
            cells.add(region, municipality, (metric, day, amount), rec);
        }
        let aid = difference(
            aid_before
                .into_iter()
                .map(|(f, d, v)| ((f, d), v))
                .collect(),
            track
                .aid_facts()
                .into_iter()
                .map(|(f, d, v)| ((f, d), v))
                .collect(),
            |a: AidCounters, b| std::array::from_fn(|i| a[i] - b[i]),
            |a: AidCounters, b| std::array::from_fn(|i| a[i] + b[i]),
        );
        for ((form, day), amounts) in aid {
            cells.add_aid(region, (form, day, amounts), rec);
        }
        if let Some(on) = effective {
            if (rec - on).whole_days() > LATE_AFTER_DAYS {
                cells.add(region, municipality, (LATE, on, 1), rec);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Reading: the figures for any (effective day, known on day)

/// The tables of one set of counters: as known now (grains 0 and 1), grain 2 cumulative
/// over recording months, grains 3 to 5.
struct Tables {
    now: &'static str,
    month: &'static str,
    known: &'static str,
}

const AID: Tables = Tables {
    now: "aid_now",
    month: "aid_known_month",
    known: "aid_known",
};

/// The two pieces of a sum over (eff <= D, rec <= K), fetched for every date of a page in
/// one query and added up here: piece 0, whole months (eff is a month's first day) before
/// D's month; piece 1, days of D's month up to D. As known now, they are grains 0 and 1.
/// As known on K (for D <= K only: see [`grains`]), the late facts as known now (grains 6
/// and 7) are taken off and the late facts known on K added: piece 0 from grain 2 at the
/// last whole recording month before K's (one row per region and month: it is cumulative)
/// and grain 3 (recorded in the days of K's month up to K), piece 1 from grains 4 and 5
/// (days of D's month, recorded in the months before K's or in the days of K's month up to
/// K). `$1` is every day some piece 1 needs, `$2` K, `$3` a region (or NULL).
fn pieces_sql(tables: &Tables, key: &str, columns: &[&str], known: bool) -> String {
    let mk = "date_trunc('month', $2::date)::date";
    let part = |piece: u8, table: &str, grain: Option<u8>, rec: &str, sign: &str| {
        let days = if piece == 1 {
            " AND f.eff = ANY($1)"
        } else {
            ""
        };
        let grain = grain.map_or(String::new(), |g| format!(" AND f.grain = {g}"));
        // Rows as they are, summed in Rust: PostgreSQL's sum(bigint) adds in numeric.
        let values = columns
            .iter()
            .map(|m| format!("{sign}f.{m} AS {m}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT {piece}::smallint AS piece, {key}, f.eff, {values} FROM vyzov.{table} f \
              WHERE ($3::text IS NULL OR f.region_code = $3){grain}{days}{rec}"
        )
    };
    let mut parts = vec![
        part(0, tables.now, Some(0), "", ""),
        part(1, tables.now, Some(1), "", ""),
    ];
    if known {
        let month = format!(
            " AND f.rec = LEAST(({mk} - interval '1 month')::date, \
               (SELECT rec_month FROM vyzov.horizon))"
        );
        let days_of_k = format!(" AND f.rec >= {mk} AND f.rec <= $2");
        parts.extend([
            part(0, tables.now, Some(6), "", "-"),
            part(1, tables.now, Some(7), "", "-"),
            part(0, tables.month, None, &month, ""),
            part(0, tables.known, Some(3), &days_of_k, ""),
            part(1, tables.known, Some(4), &format!(" AND f.rec < {mk}"), ""),
            part(1, tables.known, Some(5), &days_of_k, ""),
        ]);
    }
    parts.join(" UNION ALL ")
}

/// Sums the pieces' rows for each of `days`.
async fn by_date<K: std::hash::Hash + Eq + Clone>(
    pool: &PgPool,
    sql: &str,
    days: &[Date],
    known: Option<Date>,
    region: Option<&str>,
    columns: &[&str],
    key: impl Fn(&sqlx::postgres::PgRow) -> Result<K, sqlx::Error>,
) -> Result<Vec<HashMap<K, Vec<i64>>>, sqlx::Error> {
    let rows = sqlx::query(sql)
        .bind(days_of_months(days))
        .bind(known)
        .bind(region)
        .fetch_all(pool)
        .await?;
    let mut out: Vec<HashMap<K, Vec<i64>>> = vec![HashMap::new(); days.len()];
    let months: Vec<Date> = days.iter().map(|d| month_start(*d)).collect();
    for row in rows {
        let piece: i16 = row.try_get("piece")?;
        let eff: Date = row.try_get("eff")?;
        let k = key(&row)?;
        // The counters are the last columns (read by position: a name is a search).
        let first = row.len() - columns.len();
        let mut values = Vec::with_capacity(columns.len());
        for i in first..row.len() {
            values.push(row.try_get::<i64, _>(i)?);
        }
        for (i, (&day, &m)) in days.iter().zip(&months).enumerate() {
            let counts = if piece == 0 {
                eff < m
            } else {
                eff >= m && eff <= day
            };
            if !counts {
                continue;
            }
            match out[i].get_mut(&k) {
                Some(slot) => {
                    for (s, v) in slot.iter_mut().zip(&values) {
                        *s += v;
                    }
                }
                None => {
                    out[i].insert(k.clone(), values.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Figures the dashboards have read, kept per day while the projection has not written
/// since (`vyzov.written`). A day's figures do not depend on the other days a page asks
/// (its quarters, its period), so a page reads only the days no page asked before: a new
/// date is one day's rows, not the fourteen the page shows. At most [`CACHED`] days per
/// kind of question (a quarter of it for aid; some tens of kilobytes each); full, a kind
/// starts again.
pub struct FigureCache {
    regions: Days<(Option<Date>, Option<String>), HashMap<String, Counters>>,
    aid: Days<Option<Date>, HashMap<(String, String), AidCounters>>,
    municipalities: Days<String, HashMap<Uuid, Counters>>,
    held: Arc<Held>,
}

impl Default for FigureCache {
    fn default() -> Self {
        FigureCache {
            regions: Days(Kept::new(CACHED)),
            // Every region and form on each day kept (some 60 kB); computed from the
            // snapshot in microseconds, so fewer are kept.
            aid: Days(Kept::new(CACHED / 4)),
            municipalities: Days(Kept::new(CACHED)),
            held: Arc::default(),
        }
    }
}

pub const CACHED: usize = 2_048;

/// One kind of question's answers, day by day.
struct Days<Q, V>(Kept<Option<time::OffsetDateTime>, (Q, Date), V>);

impl<Q: Clone + Eq + std::hash::Hash, V> Days<Q, V> {
    /// Each of `days`' answer to `question` as of `written`: kept, or read by `read` (the
    /// days asked, in order, once each). All the answers are of one moment of the
    /// projection: a day read is kept only if `vyzov.written` is still `written` after the
    /// read (nothing was written in between, so it is of the same moment as every day kept
    /// under `written`); if the projection wrote meanwhile, the page's days are read again
    /// together, in one statement, and nothing is kept.
    async fn days<F, Fut>(
        &self,
        page: &Figures<'_>,
        question: &Q,
        days: &[Date],
        read: F,
    ) -> Result<Vec<Arc<V>>, sqlx::Error>
    where
        F: Fn(Vec<Date>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<V>, sqlx::Error>>,
    {
        let read_days = |mut asked: Vec<Date>| {
            asked.sort();
            asked.dedup();
            let answers = read(asked.clone());
            async move {
                let answers = answers.await?;
                if answers.len() != asked.len() {
                    return Err(sqlx::Error::Protocol(
                        "figure cache: an answer per day expected".into(),
                    ));
                }
                Ok(asked.into_iter().zip(answers).collect::<Vec<_>>())
            }
        };
        let written = page.written;
        let (mut answers, missing) = self.kept(page, question, days);
        if !missing.is_empty() {
            let read_now = read_days(missing).await?;
            if written_at(page.pool).await? == written {
                for (day, answer) in read_now {
                    answers.insert(day, self.0.put(&written, (question.clone(), day), answer));
                }
            } else if answers.is_empty() {
                // Nothing kept is used: the days read are of one statement's moment.
                for (day, answer) in read_now {
                    answers.insert(day, Arc::new(answer));
                }
            } else {
                answers = read_days(days.to_vec())
                    .await?
                    .into_iter()
                    .map(|(day, answer)| (day, Arc::new(answer)))
                    .collect();
            }
        }
        Ok(days.iter().map(|d| Arc::clone(&answers[d])).collect())
    }

    /// As [`Days::days`], the days not kept computed by `compute` (together, in order)
    /// from the snapshot of the page's moment: nothing to read, nothing to check again.
    fn held(
        &self,
        page: &Figures<'_>,
        question: &Q,
        days: &[Date],
        compute: impl Fn(&[Date]) -> Vec<V>,
    ) -> Vec<Arc<V>> {
        let (mut answers, missing) = self.kept(page, question, days);
        if !missing.is_empty() {
            for (day, answer) in missing.iter().zip(compute(&missing)) {
                let answer = self.0.put(&page.written, (question.clone(), *day), answer);
                answers.insert(*day, answer);
            }
        }
        days.iter().map(|d| Arc::clone(&answers[d])).collect()
    }

    /// The answers kept under the page's version, and the days asked that are not (in
    /// order, once each).
    fn kept(
        &self,
        page: &Figures<'_>,
        question: &Q,
        days: &[Date],
    ) -> (HashMap<Date, Arc<V>>, Vec<Date>) {
        let mut answers: HashMap<Date, Arc<V>> = HashMap::new();
        let mut missing: Vec<Date> = Vec::new();
        for day in days {
            match self.0.get(&page.written, &(question.clone(), *day)) {
                Some(answer) => {
                    answers.insert(*day, answer);
                }
                None => missing.push(*day),
            }
        }
        missing.sort();
        missing.dedup();
        (answers, missing)
    }
}

/// Whether the snapshot answers this question: as known now, or as known on a K from
/// [`FIRST_KNOWN_MONTH`] on (it holds no earlier recordings; the tables refuse them) for
/// days up to K.
fn in_memory(days: &[Date], known: Option<Date>) -> bool {
    known.is_none_or(|k| k >= FIRST_KNOWN_MONTH && days.iter().all(|d| *d <= k))
}

/// When the projection last wrote (`vyzov.written`; `None` before its first write).
async fn written_at(pool: &PgPool) -> Result<Option<time::OffsetDateTime>, sqlx::Error> {
    sqlx::query_scalar("SELECT at FROM vyzov.written")
        .fetch_optional(pool)
        .await
}

pub type RegionFigures = Vec<Arc<HashMap<String, Counters>>>;
pub type AidFigures = Vec<Arc<HashMap<(String, String), AidCounters>>>;
pub type MunicipalityFigures = Vec<Arc<HashMap<Uuid, Counters>>>;

/// The figure cache as the projection stood at one `vyzov.written`, as a page reads it:
/// each reader's answers to the page are of one moment (see [`Days::days`]).
pub struct Figures<'a> {
    cache: &'a FigureCache,
    pool: &'a PgPool,
    written: Option<time::OffsetDateTime>,
}

impl FigureCache {
    /// The regions' figures held in memory (see [`Snapshot`]).
    pub fn held(&self) -> &Arc<Held> {
        &self.held
    }

    /// The cache as of the projection's last write (one primary-key read).
    pub async fn at<'a>(&'a self, pool: &'a PgPool) -> Result<Figures<'a>, sqlx::Error> {
        let written = written_at(pool).await?;
        Ok(self.as_of(pool, written))
    }

    /// The cache as of `written`, `vyzov.written` as the page read it (together with
    /// whatever else it needed in the same statement).
    pub fn as_of<'a>(
        &'a self,
        pool: &'a PgPool,
        written: Option<time::OffsetDateTime>,
    ) -> Figures<'a> {
        Figures {
            cache: self,
            pool,
            written,
        }
    }
}

impl Figures<'_> {
    /// Whether the page reads the regions' figures from memory (a snapshot of this
    /// page's moment is loaded).
    pub fn in_memory(&self) -> bool {
        self.cache.held.at(&self.written).is_some()
    }

    /// The snapshot of the page's moment, if it answers this question (see [`in_memory`]);
    /// with none of this moment, one is loaded in the background.
    fn snapshot(&self, days: &[Date], known: Option<Date>) -> Option<Arc<Snapshot>> {
        let held = self.cache.held.at(&self.written);
        if held.is_none() {
            self.cache.held.refresh(self.pool, self.written);
        }
        held.filter(|_| in_memory(days, known))
    }

    /// [`region_figures_of`]: from memory if the projection's snapshot is of the page's
    /// moment ([`Snapshot`]); else kept day by day, and a snapshot loaded meanwhile.
    pub async fn region_figures(
        &self,
        days: &[Date],
        known: Option<Date>,
        region: Option<&str>,
    ) -> Result<RegionFigures, sqlx::Error> {
        let (pool, question) = (self.pool, (known, region.map(str::to_owned)));
        if let Some(held) = self.snapshot(days, known) {
            let read = |missing: &[Date]| held.region_figures(missing, known, region);
            return Ok(self.cache.regions.held(self, &question, days, read));
        }
        let read = |missing: Vec<Date>| async move {
            region_figures_of(pool, &missing, known, region).await
        };
        self.cache.regions.days(self, &question, days, read).await
    }

    /// [`aid_figures`]: from memory if the snapshot is of the page's moment, else kept.
    pub async fn aid_figures(
        &self,
        days: &[Date],
        known: Option<Date>,
    ) -> Result<AidFigures, sqlx::Error> {
        if let Some(held) = self.snapshot(days, known) {
            let read = |missing: &[Date]| held.aid_figures(missing, known);
            return Ok(self.cache.aid.held(self, &known, days, read));
        }
        let pool = self.pool;
        let read = |missing: Vec<Date>| async move { aid_figures(pool, &missing, known).await };
        self.cache.aid.days(self, &known, days, read).await
    }

    /// [`municipality_figures`]: from memory if the snapshot is of the page's moment, else
    /// kept.
    pub async fn municipality_figures(
        &self,
        region: &str,
        days: &[Date],
    ) -> Result<MunicipalityFigures, sqlx::Error> {
        let question = region.to_owned();
        if let Some(held) = self.snapshot(days, None) {
            let read = |missing: &[Date]| held.municipality_figures(region, missing);
            return Ok(self.cache.municipalities.held(self, &question, days, read));
        }
        let pool = self.pool;
        let read =
            |missing: Vec<Date>| async move { municipality_figures(pool, region, &missing).await };
        self.cache
            .municipalities
            .days(self, &question, days, read)
            .await
    }
}

/// Sums of every counter per region, on each of `days`, as known on `known` (None: now).
/// Returns `days[i] → region → counters`; regions without any fact are absent.
pub async fn region_figures(
    pool: &PgPool,
    days: &[Date],
    known: Option<Date>,
) -> Result<Vec<HashMap<String, Counters>>, sqlx::Error> {
    region_figures_of(pool, days, known, None).await
}

/// As [`region_figures`], of one region only (`region`), or of all.
///
/// As known now, a day's figures are one row of `region_day` (the running totals up to it,
/// the horizon's for a later day). As known on K (for days D up to K only: see [`grains`]),
/// the late facts effective on D or before and recorded after K are taken off: whole months
/// before D's and recorded after K's from `region_late`; recorded in the days of K's month
/// after K from grain 3 (effective before D's month) and 5 (in D's month up to D); recorded
/// in the months after K's and effective in D's month up to D from grain 4 (for a day late in
/// its month: whole months up to the next, less the days after D). K must be on or
/// after [`FIRST_KNOWN_MONTH`] (the dashboard's baseline; `region_late` starts there).
pub async fn region_figures_of(
    pool: &PgPool,
    days: &[Date],
    known: Option<Date>,
    region: Option<&str>,
) -> Result<Vec<HashMap<String, Counters>>, sqlx::Error> {
    if known.is_some_and(|k| k < FIRST_KNOWN_MONTH) {
        return Err(sqlx::Error::Protocol(format!(
            "figures as known on a day before {FIRST_KNOWN_MONTH} are not kept"
        )));
    }
    let values = |sign: &str| {
        METRICS
            .iter()
            .map(|m| format!("{sign}f.{m}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let in_region = "($2::text IS NULL OR f.region_code = $2)";
    // piece 0: a row for the asked day a.i (its index); pieces 1 and 2: late rows, each
    // counted for the asked days whose window holds it (see `Window`).
    let mut sql = format!(
        "SELECT 0::smallint AS piece, a.i::int AS i, f.region_code, f.day AS eff, {v} \
           FROM unnest($1::date[]) WITH ORDINALITY AS a(day, i) \
           JOIN vyzov.region_day f \
             ON f.day = LEAST(a.day, (SELECT day FROM vyzov.horizon)) \
          WHERE {in_region}",
        v = values("")
    );
    // The late facts' part by whole effective months ends at D's month, or, for a day in
    // the second half of its month, at the next month less the days after D: fewer days
    // to read either way (a period that starts on the 1st asks the last day of a month).
    let windows: Vec<Window> = days
        .iter()
        .map(|&day| {
            let month = month_start(day);
            let next = add_months(month, 1);
            if known.is_some() && (day - month) > (next - day) {
                Window {
                    bound: next,
                    from: day + Duration::days(1),
                    to: next - Duration::days(1),
                    sign: -1,
                }
            } else {
                Window::to(day)
            }
        })
        .collect();
    if known.is_some() {
        let mk = "date_trunc('month', $3::date)::date";
        let next = format!("({mk} + interval '1 month')::date");
        sql.push_str(&format!(
            " UNION ALL \
             SELECT 0::smallint, a.i::int, f.region_code, f.em, {v} \
               FROM unnest($5::date[]) WITH ORDINALITY AS a(bound, i) \
               JOIN vyzov.region_late f ON f.rm = {mk} \
                AND f.em = LEAST(a.bound, \
                                 ((SELECT rec_month FROM vyzov.horizon) + interval '1 month')::date) \
              WHERE {in_region} \
             UNION ALL \
             SELECT 1::smallint, 0, f.region_code, f.eff, {sums} FROM vyzov.region_known f \
              WHERE f.grain = 3 AND f.rec > $3 AND f.rec < {next} AND {in_region} \
              GROUP BY f.region_code, f.eff \
             UNION ALL \
             SELECT 2::smallint, 0, f.region_code, f.eff, {sums} FROM vyzov.region_known f \
              WHERE f.eff = ANY($4) AND {in_region} \
                AND (f.grain = 5 AND f.rec > $3 AND f.rec < {next} \
                     OR f.grain = 4 AND f.rec >= {next}) \
              GROUP BY f.region_code, f.eff",
            v = values("-"),
            // Thousands of rows of a month's days, summed here into one per region and
            // day: fewer rows to send and decode. A cell counts children, far below 2³¹:
            // summed as integers, PostgreSQL adds in 64 bits rather than in numeric (a
            // third less time for the page).
            sums = METRICS
                .iter()
                .map(|m| format!("-sum(f.{m}::int)"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // The days the windows read one by one (pieces 2).
    let mut needed: Vec<Date> = Vec::new();
    if known.is_some() {
        for w in &windows {
            let mut d = w.from;
            while d <= w.to {
                needed.push(d);
                d += Duration::days(1);
            }
        }
        needed.sort();
        needed.dedup();
    }
    let bounds: Vec<Date> = windows.iter().map(|w| w.bound).collect();
    let rows = sqlx::query(&sql)
        .bind(days)
        .bind(region)
        .bind(known)
        .bind(&needed)
        .bind(&bounds)
        .fetch_all(pool)
        .await?;
    add_pieces(rows, &windows, |row| row.try_get(2))
}

/// How the rows of pieces 1 and 2 count for an asked day D: piece 1 (whole effective months)
/// for effective months before `bound`; piece 2 (effective days) from `from` to `to`, with
/// `sign` (−1: the days after D in D's month, taken off whole months up to the next).
struct Window {
    bound: Date,
    from: Date,
    to: Date,
    sign: i64,
}

impl Window {
    /// The months before D's and the days of D's month up to D.
    fn to(day: Date) -> Self {
        let month = month_start(day);
        Window {
            bound: month,
            from: month,
            to: day,
            sign: 1,
        }
    }
}

/// The days of the months of `days` up to each of them.
fn days_of_months(days: &[Date]) -> Vec<Date> {
    let mut needed: Vec<Date> = Vec::new();
    for &day in days {
        let mut d = month_start(day);
        while d <= day {
            needed.push(d);
            match d.next_day() {
                Some(next) => d = next,
                None => break,
            }
        }
    }
    needed.sort();
    needed.dedup();
    needed
}

/// Sums rows `(piece, i, key, eff, counters…)` for each asked day's window: piece 0 counts
/// for the day `i` (from 1); pieces 1 and 2 as [`Window`] says.
fn add_pieces<K: std::hash::Hash + Eq + Clone>(
    rows: Vec<sqlx::postgres::PgRow>,
    windows: &[Window],
    key: impl Fn(&sqlx::postgres::PgRow) -> Result<K, sqlx::Error>,
) -> Result<Vec<HashMap<K, Counters>>, sqlx::Error> {
    let mut out: Vec<HashMap<K, Counters>> = vec![HashMap::new(); windows.len()];
    let first = 4;
    for row in rows {
        let piece: i16 = row.try_get(0)?;
        let i: i32 = row.try_get(1)?;
        let k = key(&row)?;
        let eff: Date = row.try_get(3)?;
        let mut values = [0; N];
        for (m, v) in values.iter_mut().enumerate() {
            *v = row.try_get::<i64, _>(first + m)?;
        }
        for (n, w) in windows.iter().enumerate() {
            let sign = match piece {
                0 if i64::from(i) == n as i64 + 1 => 1,
                1 if eff < w.bound => 1,
                2 if eff >= w.from && eff <= w.to => w.sign,
                _ => continue,
            };
            let slot = out[n].entry(k.clone()).or_insert([0; N]);
            for (s, v) in slot.iter_mut().zip(&values) {
                *s += sign * v;
            }
        }
    }
    Ok(out)
}

/// As [`region_figures`], per municipality of one region, as known now: the running totals
/// of the month before each day's (`municipality_month`), and the days of its month up to
/// it (summed by PostgreSQL).
pub async fn municipality_figures(
    pool: &PgPool,
    region: &str,
    days: &[Date],
) -> Result<Vec<HashMap<Uuid, Counters>>, sqlx::Error> {
    let v = METRICS
        .iter()
        .map(|m| format!("f.{m}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT 0::smallint AS piece, a.i::int AS i, f.municipality, f.month AS eff, {v} \
           FROM unnest($1::date[]) WITH ORDINALITY AS a(day, i) \
           JOIN vyzov.municipality_month f ON f.region_code = $2 \
            AND f.month = LEAST((date_trunc('month', a.day) - interval '1 month')::date, \
                                date_trunc('month', (SELECT day FROM vyzov.horizon))::date) \
         UNION ALL \
         SELECT 0::smallint, a.i::int, f.municipality, a.day, {sums} \
           FROM unnest($1::date[]) WITH ORDINALITY AS a(day, i) \
           JOIN vyzov.municipality_fact f ON f.region_code = $2 AND f.grain = 1 \
            AND f.eff >= date_trunc('month', a.day)::date AND f.eff <= a.day \
          GROUP BY a.i, a.day, f.municipality",
        // The days of each asked month up to the day, summed per municipality here: a
        // row per municipality and day asked rather than one per day of the month.
        sums = METRICS
            .iter()
            .map(|m| format!("sum(f.{m}::int)::bigint"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rows = sqlx::query(&sql)
        .bind(days)
        .bind(region)
        .fetch_all(pool)
        .await?;
    let windows: Vec<Window> = days.iter().map(|d| Window::to(*d)).collect();
    add_pieces(rows, &windows, |row| row.try_get(2))
}

/// Aid per region and form of aid, on each of `days` (cumulative), as known on `known`.
pub async fn aid_figures(
    pool: &PgPool,
    days: &[Date],
    known: Option<Date>,
) -> Result<Vec<HashMap<(String, String), AidCounters>>, sqlx::Error> {
    let sql = pieces_sql(&AID, "f.region_code, f.form", &AID_METRICS, known.is_some());
    let maps = by_date(pool, &sql, days, known, None, &AID_METRICS, |row| {
        Ok((row.try_get("region_code")?, row.try_get("form")?))
    })
    .await?;
    Ok(maps
        .into_iter()
        .map(|m| {
            m.into_iter()
                .map(|(k, v)| (k, std::array::from_fn(|i| v.get(i).copied().unwrap_or(0))))
                .collect()
        })
        .collect())
}

/// The day before `day` (for a period's flow: sum(to) − sum(from − 1)).
pub fn day_before(day: Date) -> Date {
    day - Duration::days(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_clamp_like_postgres() {
        assert_eq!(add_months(date!(2025 - 08 - 31), 6), date!(2026 - 02 - 28));
        assert_eq!(add_months(date!(2025 - 03 - 31), -6), date!(2024 - 09 - 30));
        assert_eq!(add_months(date!(2024 - 12 - 15), 1), date!(2025 - 01 - 15));
        // Covered while day >= D − 6 months: Aug 30 is still within on Feb 28, not Mar 1.
        assert_eq!(covered_until(date!(2025 - 08 - 30)), date!(2026 - 02 - 28));
        assert_eq!(covered_until(date!(2025 - 01 - 10)), date!(2025 - 07 - 10));
    }

    fn track(entries: Vec<Entry>) -> CaseTrack {
        CaseTrack {
            region: "22".into(),
            municipality: None,
            entries: entries
                .into_iter()
                .enumerate()
                .map(|(i, e)| (i as u32 + 2, e))
                .collect(),
            voided: vec![],
        }
    }

    fn on(facts: &[Fact], metric: usize, day: Date) -> i64 {
        facts
            .iter()
            .filter(|(m, d, _)| *m == metric && *d <= day)
            .map(|(_, _, v)| v)
            .sum()
    }

    #[test]
    fn stays_reviews_and_items_become_intervals() {
        let item = Uuid::from_u128(7);
        let t = track(vec![
            Entry::Placed {
                on: date!(2024 - 01 - 10),
            },
            Entry::Review {
                on: date!(2024 - 09 - 01),
            },
            Entry::Item {
                item,
                on: date!(2024 - 09 - 01),
                due: date!(2024 - 10 - 01),
            },
            Entry::Done {
                item,
                on: date!(2024 - 10 - 20),
            },
            Entry::Left {
                on: date!(2025 - 06 - 01),
                exit: 0,
            },
        ]);
        let f = case_facts(&t);
        assert_eq!(on(&f, INST, date!(2024 - 01 - 09)), 0);
        assert_eq!(on(&f, INST, date!(2024 - 01 - 10)), 1);
        assert_eq!(on(&f, INST, date!(2025 - 06 - 01)), 0);
        assert_eq!(on(&f, EXIT, date!(2025 - 06 - 01)), 1);
        // Placed 10.01: covered through 10.07; unreviewed 11.07 – 31.08; the review covers
        // 01.09 – 01.03.2025; unreviewed again from 02.03 until the exit.
        assert_eq!(on(&f, UNREVIEWED, date!(2024 - 07 - 10)), 0);
        assert_eq!(on(&f, UNREVIEWED, date!(2024 - 07 - 11)), 1);
        assert_eq!(on(&f, UNREVIEWED, date!(2024 - 09 - 01)), 0);
        assert_eq!(on(&f, UNREVIEWED, date!(2025 - 03 - 01)), 0);
        assert_eq!(on(&f, UNREVIEWED, date!(2025 - 03 - 02)), 1);
        assert_eq!(on(&f, UNREVIEWED, date!(2025 - 06 - 01)), 0);
        // Due 01.10, done 20.10: overdue 02.10 – 19.10.
        assert_eq!(on(&f, OVERDUE, date!(2024 - 10 - 01)), 0);
        assert_eq!(on(&f, OVERDUE, date!(2024 - 10 - 02)), 1);
        assert_eq!(on(&f, OVERDUE, date!(2024 - 10 - 19)), 1);
        assert_eq!(on(&f, OVERDUE, date!(2024 - 10 - 20)), 0);
    }

    #[test]
    fn a_voided_entry_drops_out() {
        let mut t = track(vec![
            Entry::Placed {
                on: date!(2024 - 01 - 10),
            },
            Entry::Left {
                on: date!(2024 - 02 - 01),
                exit: 1,
            },
        ]);
        t.voided.push(3);
        let f = case_facts(&t);
        assert_eq!(on(&f, INST, date!(2025 - 01 - 01)), 1);
        assert_eq!(on(&f, EXIT + 1, date!(2025 - 01 - 01)), 0);
    }

    #[test]
    fn grains_cover_every_known_window() {
        // The pieces' sum equals the plain condition for assorted (eff, rec, d, k), k >= d;
        // grain 2 is read cumulatively, at the last recording month before k's.
        let days: Vec<Date> = (0..200)
            .map(|i| date!(2024 - 11 - 15) + Duration::days(i * 3))
            .collect();
        for &eff in days.iter().step_by(7) {
            for &rec in days.iter().step_by(5) {
                for &d in days.iter().step_by(11) {
                    for &k in days.iter().step_by(13).filter(|k| **k >= d) {
                        let (md, mk) = (month_start(d), month_start(k));
                        let hits: i32 = grains(eff, rec)
                            .iter()
                            .map(|&(g, e, r)| match g {
                                0 => i32::from(e < md),
                                1 => i32::from(e >= md && e <= d),
                                6 => -i32::from(e < md),
                                7 => -i32::from(e >= md && e <= d),
                                2 => i32::from(e < md && r < mk),
                                3 => i32::from(e < md && r >= mk && r <= k),
                                4 => i32::from(e >= md && e <= d && r < mk),
                                5 => i32::from(e >= md && e <= d && r >= mk && r <= k),
                                _ => 0,
                            })
                            .sum();
                        assert_eq!(hits, i32::from(eff <= d && rec <= k), "{eff} {rec} {d} {k}");
                        let now: i32 = grains(eff, rec)
                            .iter()
                            .map(|&(g, e, _)| match g {
                                0 => i32::from(e < md),
                                1 => i32::from(e >= md && e <= d),
                                _ => 0,
                            })
                            .sum();
                        assert_eq!(now, i32::from(eff <= d));
                    }
                }
            }
        }
    }
}
