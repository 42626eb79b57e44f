//! Running totals of the regions' counters (migration 0016), so that a page reads one row per
//! region and date:
//!
//! - `region_day (day, region)`: every fact effective on `day` or before, as known now;
//! - `municipality_month (month, region, municipality)`: the same per municipality, for
//!   `month` and the months before (a date's own month is added from its days);
//! - `region_late (rm, em, region)`: the late facts effective in a month before `em` and
//!   recorded in a month after `rm`.
//!
//! A batch's cells are deltas. Each region they touch has its totals read from the first row
//! they change, the deltas added up here, and the rows written back whole; a rebuild computes
//! them from nothing and COPYs them.

use std::collections::{BTreeMap, HashMap};

use sqlx::{PgConnection, Row};
use time::macros::date;
use time::Date;
use uuid::Uuid;

use super::{add_months, month_start, Amounts, CellMap, Names, METRICS, N};
use crate::ProjectionError;

/// The first month anything is asked "as known on" (the baseline's, 01.07.2024): the page
/// refuses earlier recording dates, so `region_late` starts here.
pub const FIRST_KNOWN_MONTH: Date = date!(2024 - 07 - 01);

/// Rows written in one statement.
const CHUNK: usize = 20_000;

/// Whole calendar months from `from` to `to` (both first days of months).
fn months_between(from: Date, to: Date) -> i64 {
    (i64::from(to.year()) - i64::from(from.year())) * 12 + i64::from(to.month() as u8)
        - i64::from(from.month() as u8)
}

/// One row of totals: its dates (`day`, `month`, or `rm` and `em`), region, municipality
/// (nil where the table has none), counters.
struct Total {
    dates: [Date; 2],
    region: u16,
    municipality: Uuid,
    values: Amounts,
}

/// Rows on their way to a table: upserted (`SET v = EXCLUDED.v`) in chunks, or COPYed into
/// a table that was empty.
struct Writer<'a> {
    table: &'static str,
    dates: &'static [&'static str],
    municipal: bool,
    names: &'a Names,
    copy: bool,
    rows: Vec<Total>,
}

impl Writer<'_> {
    async fn push(&mut self, conn: &mut PgConnection, row: Total) -> Result<(), ProjectionError> {
        self.rows.push(row);
        if self.rows.len() >= CHUNK {
            self.flush(conn).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        let keys = format!(
            "{}, region_code{}",
            self.dates.join(", "),
            if self.municipal { ", municipality" } else { "" }
        );
        let columns = format!("{keys}, {}", METRICS.join(", "));
        if self.copy {
            let mut copy = conn
                .copy_in_raw(&format!("COPY {} ({columns}) FROM STDIN", self.table))
                .await?;
            let mut buf = String::with_capacity(rows.len() * 64);
            for row in &rows {
                for day in &row.dates[..self.dates.len()] {
                    buf.push_str(&day.to_string());
                    buf.push('\t');
                }
                // Region codes are digits: nothing COPY would need escaped.
                buf.push_str(self.names.region(row.region));
                if self.municipal {
                    buf.push('\t');
                    buf.push_str(&row.municipality.to_string());
                }
                for v in &row.values {
                    buf.push('\t');
                    buf.push_str(&v.to_string());
                }
                buf.push('\n');
            }
            copy.send(buf.as_bytes()).await?;
            copy.finish().await?;
            return Ok(());
        }
        let k = self.dates.len();
        let mut arrays: Vec<String> = (1..=k).map(|i| format!("${i}::date[]")).collect();
        arrays.push(format!("${}::text[]", k + 1));
        if self.municipal {
            arrays.push(format!("${}::uuid[]", k + 2));
        }
        let first = arrays.len() + 1;
        arrays.extend((0..N).map(|i| format!("${}::bigint[]", first + i)));
        let sets = METRICS
            .iter()
            .map(|m| format!("{m} = EXCLUDED.{m}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO {t} ({columns}) SELECT * FROM unnest({a}) \
             ON CONFLICT ({keys}) DO UPDATE SET {sets}",
            t = self.table,
            a = arrays.join(", "),
        );
        let mut query = sqlx::query(&sql);
        for i in 0..k {
            query = query.bind(rows.iter().map(|r| r.dates[i]).collect::<Vec<_>>());
        }
        query = query.bind(
            rows.iter()
                .map(|r| self.names.region(r.region))
                .collect::<Vec<_>>(),
        );
        if self.municipal {
            query = query.bind(rows.iter().map(|r| r.municipality).collect::<Vec<_>>());
        }
        for m in 0..N {
            query = query.bind(rows.iter().map(|r| r.values[m]).collect::<Vec<_>>());
        }
        query.execute(&mut *conn).await?;
        Ok(())
    }
}

/// Rows of totals a write changes, keyed by (region, municipality or nil, first date, second
/// date): `sql` selects those four and the counters, for the keys `$1` (regions), `$2`
/// (municipalities), between the bounds `$3` and `$4`.
type Held = HashMap<(String, Uuid, Date, Date), Amounts>;

async fn held(
    conn: &mut PgConnection,
    sql: &str,
    codes: &[&str],
    municipalities: &[Uuid],
    lower: &[Date],
    upper: &[Date],
) -> Result<Held, ProjectionError> {
    let rows = sqlx::query(sql)
        .bind(codes)
        .bind(municipalities)
        .bind(lower)
        .bind(upper)
        .fetch_all(&mut *conn)
        .await?;
    let mut held = HashMap::with_capacity(rows.len());
    for row in rows {
        let mut values = [0; N];
        for (i, v) in values.iter_mut().enumerate() {
            *v = row.try_get::<i64, _>(4 + i)?;
        }
        held.insert(
            (
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            ),
            values,
        );
    }
    Ok(held)
}

fn add(to: &mut Amounts, from: &Amounts) {
    for (t, f) in to.iter_mut().zip(from) {
        *t += f;
    }
}

/// A table of running totals along one axis of dates: the value on a date is the sum of the
/// cells effective on it or before. Rows exist for every date from the key's first cell to the
/// horizon (the latest effective day seen, or its month).
pub(super) struct Running {
    table: &'static str,
    axis: &'static str,
    /// The axis holds months' first days (the cells are of grain 0), not days (grain 1).
    monthly: bool,
    /// Kept per municipality (as well as per region).
    municipal: bool,
}

pub(super) const REGION_DAY: Running = Running {
    table: "region_day",
    axis: "day",
    monthly: false,
    municipal: false,
};

pub(super) const MUNICIPALITY_MONTH: Running = Running {
    table: "municipality_month",
    axis: "month",
    monthly: true,
    municipal: true,
};

impl Running {
    fn next(&self, date: Date) -> Option<Date> {
        if self.monthly {
            Some(add_months(date, 1))
        } else {
            date.next_day()
        }
    }

    fn on_axis(&self, day: Date) -> Date {
        if self.monthly {
            month_start(day)
        } else {
            day
        }
    }

    /// Adds `cells` (keyed by their effective day or month: `eff`) to the totals; `old` is
    /// the effective horizon before this write, `horizon` after it.
    pub(super) async fn add(
        &self,
        conn: &mut PgConnection,
        names: &Names,
        cells: &CellMap,
        old: Option<Date>,
        horizon: Date,
        copy: bool,
    ) -> Result<(), ProjectionError> {
        let (t, axis) = (self.table, self.axis);
        let key = if self.municipal {
            "region_code, municipality"
        } else {
            "region_code"
        };
        let m = METRICS.join(", ");
        let end = self.on_axis(horizon);
        if let Some(old) = old.map(|o| self.on_axis(o)).filter(|o| *o < end) {
            // Every key's last row, carried forward to the new horizon.
            let step = if self.monthly { "1 month" } else { "1 day" };
            sqlx::query(&format!(
                "INSERT INTO {t} ({axis}, {key}, {m}) \
                 SELECT d::date, {key}, {m} FROM {t}, \
                        generate_series($1::date + interval '{step}', $2::date, \
                                        interval '{step}') d \
                  WHERE {axis} = $1"
            ))
            .bind(old)
            .bind(end)
            .execute(&mut *conn)
            .await?;
        }
        let mut deltas: BTreeMap<(u16, Uuid), BTreeMap<Date, Amounts>> = BTreeMap::new();
        for (k, amounts) in cells {
            add(
                deltas
                    .entry((k.region, k.municipality))
                    .or_default()
                    .entry(k.eff)
                    .or_insert([0; N]),
                amounts,
            );
        }
        let codes: Vec<&str> = deltas.keys().map(|(r, _)| names.region(*r)).collect();
        let municipalities: Vec<Uuid> = deltas.keys().map(|(_, m)| *m).collect();
        let lows: Vec<Date> = deltas
            .values()
            .map(|d| d.keys().next().copied().unwrap_or(end))
            .collect();
        let held = if copy {
            HashMap::new()
        } else {
            let (municipality, same) = if self.municipal {
                ("f.municipality", " AND f.municipality = r.m")
            } else {
                ("'00000000-0000-0000-0000-000000000000'::uuid", "")
            };
            held(
                conn,
                &format!(
                    "SELECT f.region_code, {municipality}, f.{axis}, f.{axis}, {m} FROM {t} f \
                       JOIN unnest($1::text[], $2::uuid[], $3::date[], $4::date[]) \
                            AS r(code, m, lo, hi) \
                         ON f.region_code = r.code{same} AND f.{axis} >= r.lo \
                        AND f.{axis} <= r.hi"
                ),
                &codes,
                &municipalities,
                &lows,
                &vec![end; codes.len()],
            )
            .await?
        };
        let mut writer = Writer {
            table: self.table,
            dates: if self.monthly { &["month"] } else { &["day"] },
            municipal: self.municipal,
            names,
            copy,
            rows: Vec::new(),
        };
        // Date by date, each key's rows from its first delta on: the primary key's order,
        // so that the rows of one date (what a page reads) lie together after a rebuild.
        let mut cursors: Vec<_> = deltas
            .iter()
            .zip(&codes)
            .zip(&lows)
            .map(|((((region, municipality), dates), code), lo)| {
                (
                    *region,
                    *municipality,
                    *code,
                    *lo,
                    dates.iter().peekable(),
                    [0; N],
                )
            })
            .collect();
        let Some(mut date) = lows.iter().min().copied() else {
            return Ok(());
        };
        while date <= end {
            for (region, municipality, code, lo, next, running) in &mut cursors {
                if date < *lo {
                    continue;
                }
                while let Some((_, amounts)) = next.next_if(|(d, _)| **d <= date) {
                    add(running, amounts);
                }
                let mut values = held
                    .get(&((*code).to_owned(), *municipality, date, date))
                    .copied()
                    .unwrap_or([0; N]);
                add(&mut values, running);
                writer
                    .push(
                        conn,
                        Total {
                            dates: [date, date],
                            region: *region,
                            municipality: *municipality,
                            values,
                        },
                    )
                    .await?;
            }
            match self.next(date) {
                Some(d) => date = d,
                None => break,
            }
        }
        writer.flush(conn).await
    }
}

/// `region_late` from the regions' cells of grain 2 (`eff` a late fact's effective month,
/// `rec` its recording month); `old` is the recording horizon before this write, `horizon`
/// after it.
pub(super) async fn late(
    conn: &mut PgConnection,
    names: &Names,
    cells: &CellMap,
    old: Option<Date>,
    horizon: Date,
    copy: bool,
) -> Result<(), ProjectionError> {
    let m = METRICS.join(", ");
    if let Some(old) = old.filter(|o| *o < horizon) {
        // New effective months: copies of the last (every late fact is effective before
        // the month after the horizon); new recording months: nothing recorded after them.
        sqlx::query(&format!(
            "INSERT INTO region_late (rm, em, region_code, {m}) \
             SELECT rm, e::date, region_code, {m} FROM region_late, \
                    generate_series($1::date + interval '2 months', \
                                    $2::date + interval '1 month', interval '1 month') e \
              WHERE em = ($1::date + interval '1 month')::date"
        ))
        .bind(old)
        .bind(horizon)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO region_late (rm, em, region_code) \
             SELECT r::date, g.em, g.region_code \
               FROM (SELECT DISTINCT em, region_code FROM region_late) g, \
                    generate_series(GREATEST($1::date, $3::date), \
                                    $2::date - interval '1 month', interval '1 month') r",
        )
        .bind(old)
        .bind(horizon)
        .bind(FIRST_KNOWN_MONTH)
        .execute(&mut *conn)
        .await?;
    }
    let last_em = add_months(horizon, 1);
    // Per region: each delta adds to every (rm, em) with em after its effective month and
    // rm before its recording month, within rm >= FIRST_KNOWN_MONTH.
    let mut deltas: BTreeMap<u16, Vec<(Date, Date, &Amounts)>> = BTreeMap::new();
    for (key, amounts) in cells {
        let (em, rm) = (add_months(key.eff, 1), add_months(key.rec, -1));
        if rm >= FIRST_KNOWN_MONTH && em <= last_em {
            deltas
                .entry(key.region)
                .or_default()
                .push((em, rm, amounts));
        }
    }
    if deltas.is_empty() {
        return Ok(());
    }
    let codes: Vec<&str> = deltas.keys().map(|r| names.region(*r)).collect();
    let em_low: Vec<Date> = deltas
        .values()
        .map(|d| d.iter().map(|x| x.0).min().unwrap_or(last_em))
        .collect();
    let rm_high: Vec<Date> = deltas
        .values()
        .map(|d| d.iter().map(|x| x.1).max().unwrap_or(FIRST_KNOWN_MONTH))
        .collect();
    let held = if copy {
        HashMap::new()
    } else {
        held(
            conn,
            &format!(
                "SELECT f.region_code, '00000000-0000-0000-0000-000000000000'::uuid, f.rm, \
                        f.em, {m} FROM region_late f \
                   JOIN unnest($1::text[], $2::uuid[], $3::date[], $4::date[]) \
                        AS r(code, m, lo, hi) \
                     ON f.region_code = r.code AND f.em >= r.lo AND f.rm <= r.hi"
            ),
            &codes,
            &vec![Uuid::nil(); codes.len()],
            &em_low,
            &rm_high,
        )
        .await?
    };
    let mut writer = Writer {
        table: "region_late",
        dates: &["rm", "em"],
        municipal: false,
        names,
        copy,
        rows: Vec::new(),
    };
    for (((region, list), code), (&e0, &r1)) in
        deltas.iter().zip(&codes).zip(em_low.iter().zip(&rm_high))
    {
        let ne = (months_between(e0, last_em) + 1).max(0) as usize;
        let nr = (months_between(FIRST_KNOWN_MONTH, r1) + 1).max(0) as usize;
        // Points, then their sums over (em' <= em, rm' >= rm).
        let mut grid = vec![[0_i64; N]; ne * nr];
        for (em, rm, amounts) in list {
            let i = months_between(e0, *em) as usize;
            let j = months_between(FIRST_KNOWN_MONTH, *rm) as usize;
            add(&mut grid[i * nr + j], amounts);
        }
        for i in 0..ne {
            for j in (0..nr).rev() {
                let mut cell = grid[i * nr + j];
                if i > 0 {
                    add(&mut cell, &grid[(i - 1) * nr + j]);
                }
                if j + 1 < nr {
                    add(&mut cell, &grid[i * nr + j + 1]);
                }
                if i > 0 && j + 1 < nr {
                    let corner = grid[(i - 1) * nr + j + 1];
                    for (c, v) in cell.iter_mut().zip(corner) {
                        *c -= v;
                    }
                }
                grid[i * nr + j] = cell;
            }
        }
        for i in 0..ne {
            let em = add_months(e0, i as i32);
            for j in 0..nr {
                let rm = add_months(FIRST_KNOWN_MONTH, j as i32);
                let mut values = held
                    .get(&((*code).to_owned(), Uuid::nil(), rm, em))
                    .copied()
                    .unwrap_or([0; N]);
                add(&mut values, &grid[i * nr + j]);
                writer
                    .push(
                        conn,
                        Total {
                            dates: [rm, em],
                            region: *region,
                            municipality: Uuid::nil(),
                            values,
                        },
                    )
                    .await?;
            }
        }
    }
    writer.flush(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_between_counts_calendar_months() {
        assert_eq!(
            months_between(date!(2024 - 07 - 01), date!(2024 - 07 - 01)),
            0
        );
        assert_eq!(
            months_between(date!(2024 - 07 - 01), date!(2025 - 02 - 01)),
            7
        );
        assert_eq!(
            months_between(date!(2025 - 02 - 01), date!(2024 - 07 - 01)),
            -7
        );
    }
}
