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

use async_trait::async_trait;
use opora_domain::aid::AidEvent;
use opora_domain::case::{CaseEvent, ExitKind};
use opora_domain::organisation::{OrganisationEvent, OrganisationKind};
use opora_store::RecordedEvent;
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};
use time::macros::date;
use time::{Date, Duration, Month};
use uuid::Uuid;

use crate::{Projection, ProjectionError};

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

pub struct VyzovProjection;

// ---------------------------------------------------------------------------------------
// Tracks and their facts

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
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

/// Folds one event into its stream's track (`None` before the stream's first event).
/// Returns the event's effective day, for the late-entry count.
fn fold(track: &mut Option<Track>, event: &RecordedEvent) -> Result<Option<Date>, ProjectionError> {
    let seq = u32::try_from(event.sequence).unwrap_or(u32::MAX);
    let recorded = event.recorded_at.date();
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
// Cells: the six grains

/// The grains' (eff, rec) keys of a fact effective on `eff`, recorded on `rec`.
fn grains(eff: Date, rec: Date) -> [(i16, Date, Date); 6] {
    let (em, rm) = (month_start(eff), month_start(rec));
    [
        (0, em, NOW),
        (1, eff, NOW),
        (2, em, rm),
        (3, em, rec),
        (4, eff, rm),
        (5, eff, rec),
    ]
}

#[derive(Default)]
struct Cells {
    region: HashMap<(i16, String, Date, Date), Counters>,
    municipality: HashMap<(i16, String, Uuid, Date), Counters>,
    aid: HashMap<(i16, String, String, Date, Date), AidCounters>,
}

impl Cells {
    fn add(&mut self, region: &str, municipality: Option<Uuid>, fact: Fact, rec: Date) {
        let (metric, eff, amount) = fact;
        for (grain, e, r) in grains(eff, rec) {
            self.region
                .entry((grain, region.to_owned(), e, r))
                .or_insert([0; N])[metric] += amount;
            if let (Some(m), true) = (municipality, grain < 2) {
                self.municipality
                    .entry((grain, region.to_owned(), m, e))
                    .or_insert([0; N])[metric] += amount;
            }
        }
    }
    fn add_aid(&mut self, region: &str, fact: AidFact, rec: Date) {
        let (form, eff, amounts) = fact;
        for (grain, e, r) in grains(eff, rec) {
            let slot = self
                .aid
                .entry((grain, region.to_owned(), form.clone(), e, r))
                .or_insert([0; 4]);
            for (s, a) in slot.iter_mut().zip(amounts) {
                *s += a;
            }
        }
    }

    async fn write(self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let cols = METRICS.join(", ");
        let updates = METRICS
            .iter()
            .map(|m| format!("{m} = {{t}}.{m} + EXCLUDED.{m}"))
            .collect::<Vec<_>>()
            .join(", ");
        let arrays = |from: usize| {
            (0..N)
                .map(|i| format!("${}::bigint[]", from + i))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.region.is_empty() {
            let sql = format!(
                "INSERT INTO region_fact (grain, region_code, eff, rec, {cols}) \
                 SELECT * FROM unnest($1::smallint[], $2::text[], $3::date[], $4::date[], {}) \
                 ON CONFLICT (grain, region_code, eff, rec) DO UPDATE SET {}",
                arrays(5),
                updates.replace("{t}", "region_fact")
            );
            let (mut g, mut r, mut e, mut c) = (vec![], vec![], vec![], vec![]);
            let mut columns: Vec<Vec<i64>> = vec![Vec::new(); N];
            for ((grain, region, eff, rec), counters) in self.region {
                g.push(grain);
                r.push(region);
                e.push(eff);
                c.push(rec);
                for (col, v) in columns.iter_mut().zip(counters) {
                    col.push(v);
                }
            }
            let mut query = sqlx::query(&sql).bind(g).bind(r).bind(e).bind(c);
            for col in columns {
                query = query.bind(col);
            }
            query.execute(&mut *conn).await?;
        }
        if !self.municipality.is_empty() {
            let sql = format!(
                "INSERT INTO municipality_fact (grain, region_code, municipality, eff, {cols}) \
                 SELECT * FROM unnest($1::smallint[], $2::text[], $3::uuid[], $4::date[], {}) \
                 ON CONFLICT (grain, region_code, municipality, eff) DO UPDATE SET {}",
                arrays(5),
                updates.replace("{t}", "municipality_fact")
            );
            let (mut g, mut r, mut m, mut e) = (vec![], vec![], vec![], vec![]);
            let mut columns: Vec<Vec<i64>> = vec![Vec::new(); N];
            for ((grain, region, municipality, eff), counters) in self.municipality {
                g.push(grain);
                r.push(region);
                m.push(municipality);
                e.push(eff);
                for (col, v) in columns.iter_mut().zip(counters) {
                    col.push(v);
                }
            }
            let mut query = sqlx::query(&sql).bind(g).bind(r).bind(m).bind(e);
            for col in columns {
                query = query.bind(col);
            }
            query.execute(&mut *conn).await?;
        }
        if !self.aid.is_empty() {
            let (mut g, mut r, mut f, mut e, mut c) = (vec![], vec![], vec![], vec![], vec![]);
            let mut columns: Vec<Vec<i64>> = vec![Vec::new(); 4];
            for ((grain, region, form, eff, rec), counters) in self.aid {
                g.push(grain);
                r.push(region);
                f.push(form);
                e.push(eff);
                c.push(rec);
                for (col, v) in columns.iter_mut().zip(counters) {
                    col.push(v);
                }
            }
            let mut query = sqlx::query(
                "INSERT INTO aid_fact (grain, region_code, form, eff, rec, kopecks, deliveries, \
                                       requests, children) \
                 SELECT * FROM unnest($1::smallint[], $2::text[], $3::text[], $4::date[], \
                                      $5::date[], $6::bigint[], $7::bigint[], $8::bigint[], \
                                      $9::bigint[]) \
                 ON CONFLICT (grain, region_code, form, eff, rec) DO UPDATE SET \
                   kopecks = aid_fact.kopecks + EXCLUDED.kopecks, \
                   deliveries = aid_fact.deliveries + EXCLUDED.deliveries, \
                   requests = aid_fact.requests + EXCLUDED.requests, \
                   children = aid_fact.children + EXCLUDED.children",
            )
            .bind(g)
            .bind(r)
            .bind(f)
            .bind(e)
            .bind(c);
            for col in columns {
                query = query.bind(col);
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Projection for VyzovProjection {
    fn name(&self) -> &'static str {
        "vyzov"
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
        // The tracks of the streams this batch touches, in one query.
        let mut keys: Vec<(&'static str, String)> = mine
            .iter()
            .filter_map(|e| Some((track_kind(&e.aggregate_type)?, e.aggregate_id.clone())))
            .collect();
        keys.sort();
        keys.dedup();
        let (kinds, ids): (Vec<&str>, Vec<String>) = keys.iter().cloned().unzip();
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
            let Json(track): Json<Track> = row.try_get("track")?;
            tracks.insert((row.try_get("kind")?, row.try_get("id")?), Some(track));
        }
        let mut cells = Cells::default();
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
            let rec = event.recorded_at.date();
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
        // The tracks back, then the cells.
        let (mut kinds, mut ids, mut bodies) = (vec![], vec![], vec![]);
        for ((kind, id), track) in tracks {
            if let Some(track) = track {
                kinds.push(kind);
                ids.push(id);
                bodies.push(serde_json::to_value(&track).map_err(|e| {
                    ProjectionError::Invariant(format!("track not serialisable: {e}"))
                })?);
            }
        }
        sqlx::query(
            "INSERT INTO track (kind, id, track) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[]) \
             ON CONFLICT (kind, id) DO UPDATE SET track = EXCLUDED.track",
        )
        .bind(kinds)
        .bind(ids)
        .bind(bodies)
        .execute(&mut *conn)
        .await?;
        cells.write(conn).await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Reading: the figures for any (effective day, known on day)

/// The two pieces of a sum over (eff <= D, rec <= K), fetched for every date of a page in
/// one query and added up here: piece 0, whole months (eff is a month's first day) before
/// D's month; piece 1, days of D's month up to D. As known now, they are grains 0 and 1; as
/// known on K, grains 2 and 3 (months, recorded in the months before K's or the days of
/// K's month up to K) and grains 4 and 5 (days, likewise). `$1` is every day some piece 1
/// needs, `$2` K, `$3` a region (or NULL).
fn pieces_sql(table: &str, key: &str, sums: &str, known: bool) -> String {
    let mk = "date_trunc('month', $2::date)::date";
    let part = |piece: u8, grain: u8, rec: &str| {
        let days = if piece == 1 {
            " AND f.eff = ANY($1)"
        } else {
            ""
        };
        format!(
            "SELECT {piece}::smallint AS piece, {key}, f.eff, {sums} FROM vyzov.{table} f \
              WHERE ($3::text IS NULL OR f.region_code = $3) AND f.grain = {grain}{days}{rec} \
              GROUP BY {key}, f.eff"
        )
    };
    let parts = if known {
        vec![
            part(0, 2, &format!(" AND f.rec < {mk}")),
            part(0, 3, &format!(" AND f.rec >= {mk} AND f.rec <= $2")),
            part(1, 4, &format!(" AND f.rec < {mk}")),
            part(1, 5, &format!(" AND f.rec >= {mk} AND f.rec <= $2")),
        ]
    } else {
        vec![part(0, 0, ""), part(1, 1, "")]
    };
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
    let rows = sqlx::query(sql)
        .bind(&needed)
        .bind(known)
        .bind(region)
        .fetch_all(pool)
        .await?;
    let mut out: Vec<HashMap<K, Vec<i64>>> = vec![HashMap::new(); days.len()];
    for row in rows {
        let piece: i16 = row.try_get("piece")?;
        let eff: Date = row.try_get("eff")?;
        let k = key(&row)?;
        let mut values = Vec::with_capacity(columns.len());
        for c in columns {
            values.push(row.try_get::<i64, _>(*c)?);
        }
        for (i, &day) in days.iter().enumerate() {
            let m = month_start(day);
            let counts = if piece == 0 {
                eff < m
            } else {
                eff >= m && eff <= day
            };
            if counts {
                let slot = out[i]
                    .entry(k.clone())
                    .or_insert_with(|| vec![0; columns.len()]);
                for (s, v) in slot.iter_mut().zip(&values) {
                    *s += v;
                }
            }
        }
    }
    Ok(out)
}

fn sums_of(columns: &[&str]) -> String {
    columns
        .iter()
        .map(|m| format!("sum(f.{m})::bigint AS {m}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn to_counters<K>(maps: Vec<HashMap<K, Vec<i64>>>) -> Vec<HashMap<K, Counters>>
where
    K: std::hash::Hash + Eq,
{
    maps.into_iter()
        .map(|m| {
            m.into_iter()
                .map(|(k, v)| (k, std::array::from_fn(|i| v.get(i).copied().unwrap_or(0))))
                .collect()
        })
        .collect()
}

/// Sums of every counter per region, on each of `days`, as known on `known` (None: now).
/// Returns `days[i] → region → counters`; regions without any fact are absent.
pub async fn region_figures(
    pool: &PgPool,
    days: &[Date],
    known: Option<Date>,
) -> Result<Vec<HashMap<String, Counters>>, sqlx::Error> {
    let sql = pieces_sql(
        "region_fact",
        "f.region_code",
        &sums_of(&METRICS),
        known.is_some(),
    );
    let maps = by_date(pool, &sql, days, known, None, &METRICS, |row| {
        row.try_get("region_code")
    })
    .await?;
    Ok(to_counters(maps))
}

/// As [`region_figures`], per municipality of one region, as known now.
pub async fn municipality_figures(
    pool: &PgPool,
    region: &str,
    days: &[Date],
) -> Result<Vec<HashMap<Uuid, Counters>>, sqlx::Error> {
    let sql = pieces_sql(
        "municipality_fact",
        "f.municipality",
        &sums_of(&METRICS),
        false,
    );
    let maps = by_date(pool, &sql, days, None, Some(region), &METRICS, |row| {
        row.try_get("municipality")
    })
    .await?;
    Ok(to_counters(maps))
}

/// Aid per region and form of aid, on each of `days` (cumulative), as known on `known`.
pub async fn aid_figures(
    pool: &PgPool,
    days: &[Date],
    known: Option<Date>,
) -> Result<Vec<HashMap<(String, String), AidCounters>>, sqlx::Error> {
    let sql = pieces_sql(
        "aid_fact",
        "f.region_code, f.form",
        &sums_of(&AID_METRICS),
        known.is_some(),
    );
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
        // sum over the window equals the plain condition for assorted (eff, rec, d, k).
        let days: Vec<Date> = (0..200)
            .map(|i| date!(2024 - 11 - 15) + Duration::days(i * 3))
            .collect();
        for &eff in days.iter().step_by(7) {
            for &rec in days.iter().step_by(5).filter(|r| **r >= eff) {
                for &d in days.iter().step_by(11) {
                    for &k in days.iter().step_by(13) {
                        let expected = eff <= d && rec <= k;
                        let (md, mk) = (month_start(d), month_start(k));
                        let hits = grains(eff, rec)
                            .iter()
                            .filter(|(g, e, r)| match g {
                                2 => *e < md && *r < mk,
                                3 => *e < md && *r >= mk && *r <= k,
                                4 => *e >= md && *e <= d && *r < mk,
                                5 => *e >= md && *e <= d && *r >= mk && *r <= k,
                                _ => false,
                            })
                            .count();
                        assert_eq!(hits, usize::from(expected), "{eff} {rec} {d} {k}");
                        let now = grains(eff, rec)
                            .iter()
                            .filter(|(g, e, _)| match g {
                                0 => *e < md,
                                1 => *e >= md && *e <= d,
                                _ => false,
                            })
                            .count();
                        assert_eq!(now, usize::from(eff <= d));
                    }
                }
            }
        }
    }
}
