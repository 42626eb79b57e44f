//! The regions', municipalities' and aid's figures from memory: the projection's
//! `region_day` (every region's running totals, day by day, as known now), its late facts
//! (grain 5: effective day, recording day), the municipalities' months and days
//! ([`MunicipalityDays`]) and aid's days and late facts, held as one snapshot of the
//! projection at one `vyzov.written`.
//!
//! A day D as known now is its row (the horizon's row for a later day). As known on K
//! (D ≤ K), it is that row less the late facts effective on D or before and recorded after
//! K; [`RegionLate`] finds them in a few hundred cells. So a page for any date, as of it or
//! as known on any K, reads nothing from the database for the regions' figures.
//!
//! The snapshot is used only by a page that saw the same `vyzov.written`; another page
//! reads the projection's tables (through the figure cache) as before. It is loaded in the
//! background once the projection has not written for [`QUIET`]: under a steady stream of
//! writes the tables answer, and nothing is loaded again and again. At national scale it
//! holds about 370,000 days, 470,000 late cells, 230,000 municipality months and two
//! million municipality day changes (some 105 MB by its vectors).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::TryStreamExt;
use sqlx::{PgPool, Row};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::{AidCounters, Counters, AID_METRICS, FIRST_KNOWN_MONTH, METRICS, N};

/// How long the projection must have rested before a snapshot is loaded.
pub const QUIET: time::Duration = time::Duration::seconds(2);

/// One cell of grain 5: the late facts of a region effective on `eff`, recorded on `rec`.
struct Late {
    rec: Date,
    eff: Date,
    amounts: [i32; N],
}

/// A month as a number (year × 12 + month − 1), to index months.
fn month_number(day: Date) -> i32 {
    day.year() * 12 + day.month() as i32 - 1
}

/// One region's late facts.
///
/// The facts recorded after K and effective on D or before are, with K's month mK and D's
/// month mD: (a) those recorded in mK after K; (b) those recorded after mK and effective in
/// mD up to D; (c) those recorded after mK and effective before mD — one cell of `coarse`.
/// (a) and (b) are a few hundred cells of one month: `by_rec` and `groups` keep them in
/// reach.
struct RegionLate {
    /// The month numbers of the first recording and effective months.
    rec0: i32,
    eff0: i32,
    recs: usize,
    effs: usize,
    /// `(recs + 1) × effs`: row r, column e = the cells recorded in month `rec0 + r` or
    /// later and effective in month `eff0 + e` or earlier (row `recs`: nothing).
    coarse: Vec<[i64; N]>,
    /// The cells by effective month, and within a month latest recording first.
    cells: Vec<Late>,
    /// Where each effective month's cells start in `cells` (and, last, the end).
    starts: Vec<u32>,
    /// Every cell's place in `cells`, latest recording first.
    by_rec: Vec<u32>,
}

impl RegionLate {
    fn new(mut cells: Vec<Late>) -> Self {
        let rec0 = cells.iter().map(|c| month_number(c.rec)).min().unwrap_or(0);
        let rec1 = cells.iter().map(|c| month_number(c.rec)).max().unwrap_or(0);
        let eff0 = cells.iter().map(|c| month_number(c.eff)).min().unwrap_or(0);
        let eff1 = cells.iter().map(|c| month_number(c.eff)).max().unwrap_or(0);
        let recs = (rec1 - rec0 + 1).max(0) as usize;
        let effs = (eff1 - eff0 + 1).max(0) as usize;
        let mut coarse = vec![[0_i64; N]; (recs + 1) * effs];
        for cell in &cells {
            let r = (month_number(cell.rec) - rec0) as usize;
            let e = (month_number(cell.eff) - eff0) as usize;
            for (s, a) in coarse[r * effs + e].iter_mut().zip(&cell.amounts) {
                *s += i64::from(*a);
            }
        }
        // Recorded in row r's month or later; effective in column e's month or earlier.
        for r in (0..recs).rev() {
            for e in 0..effs {
                let mut sum = coarse[r * effs + e];
                let later = coarse[(r + 1) * effs + e];
                let earlier = if e > 0 {
                    coarse[r * effs + e - 1]
                } else {
                    [0; N]
                };
                let both = if e > 0 {
                    coarse[(r + 1) * effs + e - 1]
                } else {
                    [0; N]
                };
                for m in 0..N {
                    sum[m] += later[m] + earlier[m] - both[m];
                }
                coarse[r * effs + e] = sum;
            }
        }
        // In place: by effective month, then latest recording first.
        cells.sort_unstable_by_key(|c| (month_number(c.eff), std::cmp::Reverse(c.rec)));
        cells.shrink_to_fit();
        let mut starts = Vec::with_capacity(effs + 1);
        let mut place = 0;
        for e in 0..effs as i32 {
            starts.push(place as u32);
            while place < cells.len() && month_number(cells[place].eff) - eff0 <= e {
                place += 1;
            }
        }
        starts.push(cells.len() as u32);
        let mut by_rec: Vec<u32> = (0..cells.len() as u32).collect();
        by_rec.sort_unstable_by_key(|i| std::cmp::Reverse(cells[*i as usize].rec));
        RegionLate {
            rec0,
            eff0,
            recs,
            effs,
            coarse,
            cells,
            starts,
            by_rec,
        }
    }

    /// The cells effective in month `e` (an index from `eff0`), latest recording first.
    fn month(&self, e: usize) -> &[Late] {
        let (from, to) = (self.starts[e] as usize, self.starts[e + 1] as usize);
        &self.cells[from..to]
    }

    /// Adds to `out[i]` the facts recorded after `known` and effective on `sorted[i]` or
    /// before (`sorted`: the asked days in order, each on or before `known`).
    fn recorded_after(&self, known: Date, sorted: &[Date], out: &mut [[i64; N]]) {
        let mk = month_number(known);
        let add = |slot: &mut [i64; N], amounts: &[i32; N]| {
            for (s, a) in slot.iter_mut().zip(amounts) {
                *s += i64::from(*a);
            }
        };
        // (a) Recorded in K's month after K: each counts for the days from its own on.
        let mut from: Vec<[i64; N]> = vec![[0; N]; sorted.len()];
        let after_k_month = self
            .by_rec
            .partition_point(|i| month_number(self.cells[*i as usize].rec) > mk);
        for &i in &self.by_rec[after_k_month..] {
            let cell = &self.cells[i as usize];
            if cell.rec <= known {
                break;
            }
            let first = sorted.partition_point(|d| *d < cell.eff);
            if let Some(slot) = from.get_mut(first) {
                add(slot, &cell.amounts);
            }
        }
        let mut running = [0_i64; N];
        for (slot, f) in out.iter_mut().zip(&from) {
            for m in 0..N {
                running[m] += f[m];
                slot[m] += running[m];
            }
        }
        // Recorded after K's month: row r of `coarse` and on.
        let r = (mk + 1 - self.rec0).max(0) as usize;
        if r >= self.recs {
            return;
        }
        let first_after = mk + 1;
        for (slot, &day) in out.iter_mut().zip(sorted) {
            let md = month_number(day) - self.eff0;
            // (c) effective in the months before D's.
            if md > 0 {
                let e = (md as usize - 1).min(self.effs - 1);
                for (s, c) in slot.iter_mut().zip(&self.coarse[r * self.effs + e]) {
                    *s += c;
                }
            }
            // (b) effective in D's month up to D.
            if md >= 0 && (md as usize) < self.effs {
                for cell in self.month(md as usize) {
                    if month_number(cell.rec) < first_after {
                        break;
                    }
                    if cell.eff <= day {
                        add(slot, &cell.amounts);
                    }
                }
            }
        }
    }
}

/// Every region's late facts at one moment of the projection.
pub struct Snapshot {
    written: Option<OffsetDateTime>,
    /// `vyzov.horizon.day`: the latest effective day seen (a later date reads its row).
    horizon: Option<Date>,
    /// Region → its days as known now.
    days: HashMap<String, RegionDays>,
    regions: HashMap<String, RegionLate>,
    cells: usize,
    /// Aid per region and form: its days (grain 1) as running totals, in order of day.
    aid: HashMap<(String, String), (Vec<Date>, Vec<AidCounters>)>,
    /// Aid's late cells (grain 5): region and form, effective day, recording day; latest
    /// recording first.
    aid_late: Vec<((String, String), Date, Date, AidCounters)>,
    /// Region → its municipalities' figures as known now.
    municipalities: HashMap<String, HashMap<Uuid, MunicipalityDays>>,
}

/// A day's change of one counter of a municipality: the day, the counter (or [`NONE`] for
/// a day whose row changes nothing), the amount.
type Change = (Date, u8, i32);

/// The "counter" of a day whose row changes none (it still makes the municipality shown).
const NONE: u8 = u8::MAX;

/// One municipality as `municipality_month` and `municipality_fact` (grain 1) hold it: its
/// running totals at the end of each month, and its days' changes, only the counters that
/// change (two of seventeen on a typical day; a million days nationally).
#[derive(Default)]
struct MunicipalityDays {
    /// Month numbers of its rows of `municipality_month`, in order, and their totals.
    months: Vec<i32>,
    totals: Vec<[i32; N]>,
    /// Its days' changes, in order of day.
    changes: Vec<Change>,
}

impl MunicipalityDays {
    /// As [`super::municipality_figures`] for one day: the running totals of the month
    /// before `day`'s (the horizon's month for a later day), plus the days of `day`'s month
    /// up to it; `None` if it has neither.
    fn on(&self, day: Date, horizon: Option<Date>) -> Option<Counters> {
        let before = month_number(day) - 1;
        let month = horizon.map_or(before, |h| before.min(month_number(h)));
        let row = self.months.binary_search(&month).ok();
        let first = self
            .changes
            .partition_point(|(d, _, _)| *d < super::month_start(day));
        let last = self.changes.partition_point(|(d, _, _)| *d <= day);
        if row.is_none() && first == last {
            return None;
        }
        let mut out = row.map_or([0; N], |i| self.totals[i].map(i64::from));
        for (_, metric, amount) in &self.changes[first..last] {
            if let Some(slot) = out.get_mut(usize::from(*metric)) {
                *slot += i64::from(*amount);
            }
        }
        Some(out)
    }
}

/// One region's rows of `region_day`, in order of day.
#[derive(Default)]
struct RegionDays {
    days: Vec<Date>,
    counters: Vec<[i32; N]>,
}

impl RegionDays {
    fn on(&self, day: Date) -> Option<Counters> {
        let i = self.days.binary_search(&day).ok()?;
        Some(self.counters[i].map(i64::from))
    }
}

/// A row's counters from column `first` on, as `i32` (a cell counts children).
fn amounts(row: &sqlx::postgres::PgRow, first: usize) -> Result<[i32; N], sqlx::Error> {
    let mut amounts = [0; N];
    for (m, a) in amounts.iter_mut().enumerate() {
        let v: i64 = row.try_get(first + m)?;
        *a = i32::try_from(v)
            .map_err(|_| sqlx::Error::Protocol(format!("vyzov cell {v} out of range")))?;
    }
    Ok(amounts)
}

/// Every municipality's months and days (see [`MunicipalityDays`]), read in `tx`.
async fn municipalities(
    tx: &mut sqlx::PgConnection,
) -> Result<HashMap<String, HashMap<Uuid, MunicipalityDays>>, sqlx::Error> {
    let mut out: HashMap<String, HashMap<Uuid, MunicipalityDays>> = HashMap::new();
    let columns = METRICS.join(", ");
    // Each municipality's vectors allocated once, to size: its months, and its changes
    // (a day changing nothing still takes one).
    let changed = METRICS
        .iter()
        .map(|m| format!("({m} <> 0)::int"))
        .collect::<Vec<_>>()
        .join(" + ");
    let sizes: Vec<(String, Uuid, i64, i64)> = sqlx::query_as(&format!(
        "SELECT region_code, municipality, sum(months)::bigint, sum(changes)::bigint FROM ( \
           SELECT region_code, municipality, count(*) AS months, 0 AS changes \
             FROM vyzov.municipality_month GROUP BY 1, 2 \
           UNION ALL \
           SELECT region_code, municipality, 0, sum(greatest(1, {changed})) \
             FROM vyzov.municipality_fact WHERE grain = 1 GROUP BY 1, 2) AS n GROUP BY 1, 2"
    ))
    .fetch_all(&mut *tx)
    .await?;
    for (region, id, months, changes) in sizes {
        let (months, changes) = (
            usize::try_from(months).unwrap_or(0),
            usize::try_from(changes).unwrap_or(0),
        );
        let m = municipality(&mut out, &region, id);
        m.months.reserve_exact(months);
        m.totals.reserve_exact(months);
        m.changes.reserve_exact(changes);
    }
    {
        let sql = format!(
            "SELECT region_code, municipality, month, {columns} FROM vyzov.municipality_month \
              ORDER BY region_code, municipality, month"
        );
        let mut rows = sqlx::query(&sql).fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            let region: &str = row.try_get(0)?;
            let id: Uuid = row.try_get(1)?;
            let month: Date = row.try_get(2)?;
            let m = municipality(&mut out, region, id);
            m.months.push(month_number(month));
            m.totals.push(amounts(&row, 3)?);
        }
    }
    let sql = format!(
        "SELECT region_code, municipality, eff, {columns} FROM vyzov.municipality_fact \
          WHERE grain = 1 ORDER BY region_code, municipality, eff"
    );
    let mut rows = sqlx::query(&sql).fetch(&mut *tx);
    while let Some(row) = rows.try_next().await? {
        let region: &str = row.try_get(0)?;
        let id: Uuid = row.try_get(1)?;
        let eff: Date = row.try_get(2)?;
        let amounts = amounts(&row, 3)?;
        let m = municipality(&mut out, region, id);
        let before = m.changes.len();
        for (metric, amount) in amounts.iter().enumerate() {
            if *amount != 0 {
                m.changes.push((eff, metric as u8, *amount));
            }
        }
        if m.changes.len() == before {
            m.changes.push((eff, NONE, 0));
        }
    }
    Ok(out)
}

/// `region`'s municipality `id` in `out`, added if new.
fn municipality<'a>(
    out: &'a mut HashMap<String, HashMap<Uuid, MunicipalityDays>>,
    region: &str,
    id: Uuid,
) -> &'a mut MunicipalityDays {
    out.entry(region.to_owned())
        .or_default()
        .entry(id)
        .or_default()
}

impl Snapshot {
    /// Reads the regions' days and late facts, the municipalities, aid and `vyzov.written`
    /// in one repeatable-read transaction, so the snapshot is exactly the projection at
    /// that `written`. Cells recorded on or before
    /// [`FIRST_KNOWN_MONTH`] are left out: nothing is asked as known before it.
    pub async fn load(pool: &PgPool) -> Result<Snapshot, sqlx::Error> {
        let mut tx = pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        // Every table at once, before the snapshot is taken: a rebuild's swap (which drops
        // the old schema) waits for the whole load, rather than locking a table this load
        // has yet to read and waiting on it in turn.
        sqlx::query(
            "LOCK TABLE vyzov.written, vyzov.horizon, vyzov.region_day, vyzov.region_known, \
                        vyzov.aid_now, vyzov.aid_known, vyzov.municipality_month, \
                        vyzov.municipality_fact IN ACCESS SHARE MODE",
        )
        .execute(&mut *tx)
        .await?;
        let written: Option<OffsetDateTime> = sqlx::query_scalar("SELECT at FROM vyzov.written")
            .fetch_optional(&mut *tx)
            .await?;
        let horizon: Option<Date> = sqlx::query_scalar("SELECT day FROM vyzov.horizon")
            .fetch_optional(&mut *tx)
            .await?
            .flatten();
        // Each region's rows counted first: its vectors are allocated once, to size.
        let sizes = |table: &str, filter: &str| {
            format!("SELECT region_code, count(*) FROM vyzov.{table} {filter} GROUP BY region_code")
        };
        let mut days: HashMap<String, RegionDays> = HashMap::new();
        let counted: Vec<(String, i64)> = sqlx::query_as(&sizes("region_day", ""))
            .fetch_all(&mut *tx)
            .await?;
        for (region, n) in counted {
            let n = usize::try_from(n).unwrap_or(0);
            let held = RegionDays {
                days: Vec::with_capacity(n),
                counters: Vec::with_capacity(n),
            };
            days.insert(region, held);
        }
        {
            let sql = format!(
                "SELECT region_code, day, {} FROM vyzov.region_day ORDER BY region_code, day",
                METRICS.join(", ")
            );
            let mut rows = sqlx::query(&sql).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                let region: &str = row.try_get(0)?;
                if !days.contains_key(region) {
                    days.insert(region.to_owned(), RegionDays::default());
                }
                let held = days.get_mut(region).ok_or(sqlx::Error::RowNotFound)?;
                held.days.push(row.try_get(1)?);
                held.counters.push(amounts(&row, 2)?);
            }
        }
        let sql = format!(
            "SELECT region_code, rec, eff, {} FROM vyzov.region_known \
              WHERE grain = 5 AND rec > $1",
            METRICS.join(", ")
        );
        let mut cells: HashMap<String, Vec<Late>> = HashMap::new();
        let counted: Vec<(String, i64)> =
            sqlx::query_as(&sizes("region_known", "WHERE grain = 5 AND rec > $1"))
                .bind(FIRST_KNOWN_MONTH)
                .fetch_all(&mut *tx)
                .await?;
        for (region, n) in counted {
            cells.insert(region, Vec::with_capacity(usize::try_from(n).unwrap_or(0)));
        }
        let mut count = 0;
        {
            let mut rows = sqlx::query(&sql).bind(FIRST_KNOWN_MONTH).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                let region: &str = row.try_get(0)?;
                let late = Late {
                    rec: row.try_get(1)?,
                    eff: row.try_get(2)?,
                    amounts: amounts(&row, 3)?,
                };
                match cells.get_mut(region) {
                    Some(list) => list.push(late),
                    None => {
                        cells.insert(region.to_owned(), vec![late]);
                    }
                }
                count += 1;
            }
        }
        let aid_columns = AID_METRICS.join(", ");
        let mut aid: HashMap<(String, String), (Vec<Date>, Vec<AidCounters>)> = HashMap::new();
        let rows = sqlx::query(&format!(
            "SELECT region_code, form, eff, {aid_columns} FROM vyzov.aid_now \
              WHERE grain = 1 ORDER BY region_code, form, eff"
        ))
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            let (days, totals) = aid.entry((row.try_get(0)?, row.try_get(1)?)).or_default();
            let mut running = totals.last().copied().unwrap_or_default();
            for (m, r) in running.iter_mut().enumerate() {
                *r += row.try_get::<i64, _>(3 + m)?;
            }
            days.push(row.try_get(2)?);
            totals.push(running);
        }
        let mut aid_late = Vec::new();
        let rows = sqlx::query(&format!(
            "SELECT region_code, form, eff, rec, {aid_columns} FROM vyzov.aid_known \
              WHERE grain = 5 AND rec > $1"
        ))
        .bind(FIRST_KNOWN_MONTH)
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            let mut amounts: AidCounters = [0; 4];
            for (m, a) in amounts.iter_mut().enumerate() {
                *a = row.try_get(4 + m)?;
            }
            aid_late.push((
                (row.try_get(0)?, row.try_get(1)?),
                row.try_get(2)?,
                row.try_get(3)?,
                amounts,
            ));
        }
        let municipalities = municipalities(&mut tx).await?;
        tx.commit().await?;
        aid_late.sort_by_key(|(_, _, rec, _)| std::cmp::Reverse(*rec));
        // Sorting some 470,000 cells: off the workers that answer pages.
        let mut snapshot = tokio::task::spawn_blocking(move || Snapshot::of(written, cells, count))
            .await
            .map_err(|e| sqlx::Error::Protocol(format!("building the snapshot: {e}")))?;
        snapshot.horizon = horizon;
        snapshot.days = days;
        snapshot.aid = aid;
        snapshot.aid_late = aid_late;
        snapshot.municipalities = municipalities;
        Ok(snapshot)
    }

    fn of(
        written: Option<OffsetDateTime>,
        cells: HashMap<String, Vec<Late>>,
        count: usize,
    ) -> Snapshot {
        Snapshot {
            written,
            horizon: None,
            days: HashMap::new(),
            aid: HashMap::new(),
            aid_late: Vec::new(),
            municipalities: HashMap::new(),
            regions: cells
                .into_iter()
                .map(|(code, cells)| (code, RegionLate::new(cells)))
                .collect(),
            cells: count,
        }
    }

    /// How many cells the snapshot holds.
    pub fn cells(&self) -> usize {
        self.cells
    }

    /// About how many bytes its vectors take (what the server's memory grows by while it
    /// is held; maps and names are a few kilobytes more).
    pub fn bytes(&self) -> usize {
        /// What a vector's allocation takes.
        fn held<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        let days: usize = self
            .days
            .values()
            .map(|d| held(&d.days) + held(&d.counters))
            .sum();
        let late: usize = self
            .regions
            .values()
            .map(|r| held(&r.cells) + held(&r.coarse) + held(&r.starts) + held(&r.by_rec))
            .sum();
        let aid: usize = self
            .aid
            .values()
            .map(|(d, t)| held(d) + held(t))
            .sum::<usize>()
            + held(&self.aid_late);
        let municipalities: usize = self
            .municipalities
            .values()
            .flat_map(HashMap::values)
            .map(|m| held(&m.months) + held(&m.totals) + held(&m.changes))
            .sum();
        days + late + aid + municipalities
    }

    /// As [`super::region_figures_of`]: each of `days`' counters per region (of `region`
    /// only, if given), as known now (`known`: None) or as known on `known`. Every day must
    /// be on or before `known` (a later day is not known on `known` at all).
    pub fn region_figures(
        &self,
        days: &[Date],
        known: Option<Date>,
        region: Option<&str>,
    ) -> Vec<HashMap<String, Counters>> {
        let held: Vec<(&String, &RegionDays)> = match region {
            Some(r) => self.days.get_key_value(r).into_iter().collect(),
            None => self.days.iter().collect(),
        };
        let now = days
            .iter()
            .map(|day| {
                let day = self.horizon.map_or(*day, |h| h.min(*day));
                held.iter()
                    .filter_map(|(code, held)| Some(((*code).clone(), held.on(day)?)))
                    .collect()
            })
            .collect();
        match known {
            Some(known) => self.known_on(now, days, known, region),
            None => now,
        }
    }

    /// As [`super::aid_figures`]: aid per region and form, on each of `days` (cumulative),
    /// as known now or on `known` (every day on or before it).
    pub fn aid_figures(
        &self,
        days: &[Date],
        known: Option<Date>,
    ) -> Vec<HashMap<(String, String), AidCounters>> {
        let mut out: Vec<HashMap<(String, String), AidCounters>> = days
            .iter()
            .map(|day| {
                self.aid
                    .iter()
                    .filter_map(|(key, (effs, totals))| {
                        let i = effs.partition_point(|eff| eff <= day);
                        Some((key.clone(), *totals.get(i.checked_sub(1)?)?))
                    })
                    .collect()
            })
            .collect();
        if let Some(known) = known {
            // Latest recording first: those recorded after K lead.
            for (key, eff, rec, amounts) in &self.aid_late {
                if *rec <= known {
                    break;
                }
                for (slot, day) in out.iter_mut().zip(days) {
                    if eff <= day {
                        let counters = slot.entry(key.clone()).or_insert([0; 4]);
                        for (c, a) in counters.iter_mut().zip(amounts) {
                            *c -= a;
                        }
                    }
                }
            }
        }
        out
    }

    /// As [`super::municipality_figures`]: each of `days`' counters per municipality of
    /// `region`, as known now (municipalities absent on a day have no figures then).
    pub fn municipality_figures(
        &self,
        region: &str,
        days: &[Date],
    ) -> Vec<HashMap<Uuid, Counters>> {
        let held = self.municipalities.get(region);
        days.iter()
            .map(|day| {
                held.into_iter()
                    .flatten()
                    .filter_map(|(id, m)| Some((*id, m.on(*day, self.horizon)?)))
                    .collect()
            })
            .collect()
    }

    /// `now` (each of `days` as known now, per region) as known on `known`: the late facts
    /// effective on each day or before and recorded after `known` taken off.
    fn known_on(
        &self,
        mut out: Vec<HashMap<String, Counters>>,
        days: &[Date],
        known: Date,
        region: Option<&str>,
    ) -> Vec<HashMap<String, Counters>> {
        debug_assert!(days.iter().all(|d| *d <= known));
        let mut order: Vec<usize> = (0..days.len()).collect();
        order.sort_by_key(|i| days[*i]);
        let sorted: Vec<Date> = order.iter().map(|i| days[*i]).collect();
        let mut late = vec![[0_i64; N]; sorted.len()];
        let held: Vec<(&String, &RegionLate)> = match region {
            Some(r) => self.regions.get_key_value(r).into_iter().collect(),
            None => self.regions.iter().collect(),
        };
        for (code, facts) in held {
            late.iter_mut().for_each(|l| *l = [0; N]);
            facts.recorded_after(known, &sorted, &mut late);
            for (place, day) in order.iter().enumerate() {
                if late[place].iter().all(|v| *v == 0) {
                    continue;
                }
                let slot = out[*day].entry(code.clone()).or_insert([0; N]);
                for (s, l) in slot.iter_mut().zip(&late[place]) {
                    *s -= l;
                }
            }
        }
        out
    }
}

/// The snapshot a page may use, and its loading.
#[derive(Default)]
pub struct Held {
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    loading: Arc<AtomicBool>,
    /// When the next background load may start (after a load: ten times its duration, at
    /// least [`GAP`]), so a projection that writes every few seconds is not reloaded after
    /// each write, nor a failing load retried by every page.
    next: std::sync::Mutex<Option<std::time::Instant>>,
}

/// The least time between two background loads.
pub const GAP: std::time::Duration = std::time::Duration::from_secs(30);

/// Clears `loading` however the load ends.
struct Loading(Arc<AtomicBool>);

impl Drop for Loading {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Held {
    /// The snapshot, if it was taken at `written`.
    pub fn at(&self, written: &Option<OffsetDateTime>) -> Option<Arc<Snapshot>> {
        let held = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
        held.as_ref()
            .filter(|s| s.written == *written)
            .map(Arc::clone)
    }

    /// Loads a snapshot now (and keeps it), whatever the projection is doing.
    pub async fn load(&self, pool: &PgPool) -> Result<Arc<Snapshot>, sqlx::Error> {
        let snapshot = Arc::new(Snapshot::load(pool).await?);
        // The lock is released at the end of the statement; the old snapshot freed after.
        let old = (self.snapshot.write().unwrap_or_else(|e| e.into_inner()))
            .replace(Arc::clone(&snapshot));
        drop(old);
        Ok(snapshot)
    }

    /// Starts loading a snapshot in the background if a page saw `written`, the projection
    /// has rested since for [`QUIET`], no load is under way and the last one was not too
    /// recent (see `next`).
    pub fn refresh(self: &Arc<Self>, pool: &PgPool, written: Option<OffsetDateTime>) {
        let rested = written.is_none_or(|at| OffsetDateTime::now_utc() - at >= QUIET);
        let due = self
            .next
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none_or(|next| std::time::Instant::now() >= next);
        if !rested || !due || self.loading.swap(true, Ordering::AcqRel) {
            return;
        }
        let (this, pool) = (Arc::clone(self), pool.clone());
        let loading = Loading(Arc::clone(&self.loading));
        tokio::spawn(async move {
            let _loading = loading;
            let started = std::time::Instant::now();
            let loaded = this.load(&pool).await;
            let took = started.elapsed();
            *this.next.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(std::time::Instant::now() + GAP.max(took * 10));
            match loaded {
                Ok(s) => tracing::info!(
                    cells = s.cells(),
                    megabytes = s.bytes() / 1_000_000,
                    seconds = took.as_secs_f64(),
                    "vyzov: the regions' figures loaded into memory"
                ),
                Err(error) => {
                    tracing::warn!(%error, "vyzov: the regions' figures not loaded into memory")
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn cell(rec: Date, eff: Date, inst: i32) -> Late {
        let mut amounts = [0; N];
        amounts[super::super::INST] = inst;
        Late { rec, eff, amounts }
    }

    #[test]
    fn known_on_takes_off_what_was_recorded_later_and_effective_by_each_day() {
        let inst = super::super::INST;
        let mut regions = HashMap::new();
        regions.insert(
            "22".to_owned(),
            vec![
                cell(date!(2025 - 06 - 10), date!(2025 - 03 - 01), 5),
                cell(date!(2025 - 05 - 01), date!(2025 - 01 - 10), 7),
                cell(date!(2025 - 02 - 01), date!(2024 - 12 - 01), 11),
            ],
        );
        regions.insert(
            "16".to_owned(),
            vec![cell(date!(2025 - 06 - 02), date!(2025 - 06 - 01), -2)],
        );
        let snapshot = Snapshot::of(None, regions, 4);
        let now_of = |v22: i64, v16: i64| {
            let mut m = HashMap::new();
            let mut a = [0; N];
            a[inst] = v22;
            m.insert("22".to_owned(), a);
            a[inst] = v16;
            m.insert("16".to_owned(), a);
            m
        };
        // Days out of order, one repeated.
        let days = [
            date!(2025 - 03 - 05),
            date!(2024 - 12 - 31),
            date!(2025 - 01 - 10),
            date!(2025 - 03 - 05),
        ];
        let now = vec![now_of(100, 50); 4];
        let known = date!(2025 - 04 - 30);
        let got = snapshot.known_on(now.clone(), &days, known, None);
        let at = |i: usize, r: &str| got[i][r][inst];
        // Recorded after 30.04: the cells of 01.05 (from 10.01) and 10.06 (from 01.03).
        assert_eq!(at(0, "22"), 100 - 7 - 5);
        assert_eq!(at(1, "22"), 100);
        assert_eq!(at(2, "22"), 100 - 7);
        assert_eq!(at(3, "22"), 100 - 7 - 5);
        // 16's only cell is effective after every day asked.
        assert!((0..4).all(|i| at(i, "16") == 50));
        // Known on 01.05: the cell recorded that day is known.
        let got = snapshot.known_on(now.clone(), &days, date!(2025 - 05 - 01), None);
        assert_eq!(got[0]["22"][inst], 100 - 5);
        // One region only: the other is left as it was.
        let days = [date!(2025 - 06 - 01)];
        let got = snapshot.known_on(now[..1].to_vec(), &days, date!(2025 - 06 - 01), Some("16"));
        assert_eq!(got[0]["16"][inst], 52);
        assert_eq!(got[0]["22"][inst], 100);
    }

    #[test]
    fn known_on_equals_a_plain_sum_over_the_cells() {
        // A deterministic scramble of cells over three years, and questions over them.
        let mut seed = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let start = date!(2024 - 01 - 01);
        let mut all: Vec<(String, Date, Date, [i32; N])> = Vec::new();
        for _ in 0..3_000 {
            let region = ["16", "22", "24"][next(3) as usize].to_owned();
            let eff = start + time::Duration::days(next(1_000) as i64);
            let rec = eff + time::Duration::days(1 + next(120) as i64);
            let amounts: [i32; N] = std::array::from_fn(|_| next(7) as i32 - 3);
            all.push((region, eff, rec, amounts));
        }
        let mut regions: HashMap<String, Vec<Late>> = HashMap::new();
        for (region, eff, rec, amounts) in &all {
            regions.entry(region.clone()).or_default().push(Late {
                rec: *rec,
                eff: *eff,
                amounts: *amounts,
            });
        }
        let snapshot = Snapshot::of(None, regions, all.len());
        let now = vec![HashMap::new(); 6];
        for _ in 0..200 {
            let known =
                start - time::Duration::days(200) + time::Duration::days(next(1_350) as i64);
            let days: Vec<Date> = (0..6)
                .map(|_| known - time::Duration::days(next(1_300) as i64))
                .collect();
            let region = ["16", "22", "24", "77"].get(next(6) as usize).copied();
            let got = snapshot.known_on(now.clone(), &days, known, region);
            for (i, day) in days.iter().enumerate() {
                let mut expected: HashMap<String, Counters> = HashMap::new();
                for (r, eff, rec, amounts) in &all {
                    if *rec > known && eff <= day && region.is_none_or(|x| x == r) {
                        let slot = expected.entry(r.clone()).or_insert([0; N]);
                        for (s, a) in slot.iter_mut().zip(amounts) {
                            *s -= i64::from(*a);
                        }
                    }
                }
                expected.retain(|_, c| c.iter().any(|v| *v != 0));
                assert_eq!(got[i], expected, "{day} known on {known}, {region:?}");
            }
        }
    }
}
