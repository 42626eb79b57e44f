//! «Заступник» ministry dashboard: weekly filings (on time, late, out of order, corrected,
//! imported) and signals (drills, the trusted circle, operators, a responder on the spot
//! reported late, steps recorded after the raise was projected) go through the real
//! commands; every figure of the CSV files is checked against a computation here over the
//! events in the log, the XLSX files against the CSV, the page against the CSV. Then: as
//! known on a recording date, a date before any event, bad parameters, and the scope.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;

use axum::http::StatusCode;
use opora_domain::access::Text;
use opora_domain::reference::RegionCode;
use opora_domain::signal::{
    Channel, Recipient, ResponderKind, Signal, SignalCommand, SignalEvent, SignalKind,
    SignalOutcome,
};
use opora_domain::weekly::{
    report_id, Figures, Filing, FilingContext, ImportCommand, ImportEvent, ImportedRow, Period,
    Schedule, Timeliness, Week, WeeklyCommand, WeeklyEvent, WeeklyImport, WeeklyReport,
};
use opora_projections::zastupnik::{help_bucket, help_bucket_bounds};
use opora_store::{CommandBus, CommandMeta};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::Row;
use time::macros::time;
use time::{Date, Duration, OffsetDateTime, PrimitiveDateTime, UtcOffset};
use uuid::Uuid;

use crate::client::{Client, TestApp};

/// The regions' clocks (Moscow time; Altai Krai UTC+7).
fn clock(region: &str) -> UtcOffset {
    UtcOffset::from_hms(if region == "16" { 3 } else { 7 }, 0, 0).unwrap()
}

fn zone(region: &str) -> &'static str {
    if region == "16" {
        "Europe/Moscow"
    } else {
        "Asia/Barnaul"
    }
}

fn at_local(region: &str, day: Date, hour: u8) -> OffsetDateTime {
    PrimitiveDateTime::new(day, time!(00:00))
        .assume_offset(clock(region))
        .saturating_add(Duration::hours(i64::from(hour)))
}

fn friday_on_or_before(day: Date) -> Date {
    let back = (day.weekday().number_days_from_monday() + 3) % 7;
    day - Duration::days(i64::from(back))
}

fn today() -> Date {
    opora_web::i18n::today_in("Europe/Moscow")
}

async fn signed_in(test: &TestApp, login: &str) -> Client {
    let mut client = test.client();
    client.login(login).await;
    client
}

async fn municipalities(test: &TestApp, region: &str, n: usize) -> Vec<(Uuid, String)> {
    let rows = sqlx::query(
        "SELECT id, name FROM reference.municipality WHERE region_code = $1 ORDER BY name LIMIT $2",
    )
    .bind(region)
    .bind(n as i64)
    .fetch_all(&test.db.pool)
    .await
    .unwrap();
    rows.iter().map(|r| (r.get("id"), r.get("name"))).collect()
}

async fn expected_count(test: &TestApp, region: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM reference.municipality WHERE region_code = $1")
        .bind(region)
        .fetch_one(&test.db.pool)
        .await
        .unwrap()
}

/// Files a municipality's week as the department would at `now` (the domain decides on time
/// or late from the region's default schedule).
async fn file(
    test: &TestApp,
    region: &str,
    m: Uuid,
    friday: Date,
    figures: (u32, u32),
    now: OffsetDateTime,
) {
    let week = Week::ending(friday).unwrap();
    let command = WeeklyCommand::File {
        period: Period {
            region: RegionCode::parse(region).unwrap(),
            municipality: m,
            week,
        },
        filing: Filing {
            figures: Figures {
                children: figures.0,
                adults: figures.1,
                schools: 10,
                schools_with_responsible: 8,
            },
            schools: vec![],
            comment: Some(Text::parse("проверка").unwrap()),
        },
        context: FilingContext {
            now,
            schedule: Schedule::default_in(zone(region)),
            previous: None,
            pupils: None,
        },
    };
    CommandBus::<WeeklyReport>::new(test.db.log.clone(), ())
        .execute(
            &report_id(m, week).to_string(),
            command.clone(),
            &CommandMeta::new("test"),
        )
        .await
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
}

// ---------------------------------------------------------------------------------------
// The computation from the log

/// The weekly figures of one region on a Friday, computed from the filings in the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct WeekCount {
    children: i64,
    adults: i64,
    filed: i64,
    on_time: i64,
    late: i64,
}

/// A filing as the log holds it: municipality, region, Friday, figures, timeliness, the
/// Moscow date it was recorded, whether it is an import.
type Filed = (Uuid, String, Date, i64, i64, Timeliness, Date, bool);

async fn filings_in_log(test: &TestApp) -> Vec<Filed> {
    let rows = sqlx::query(
        "SELECT aggregate_type, payload, recorded_at FROM event \
          WHERE aggregate_type IN ('WeeklyReport', 'WeeklyImport') ORDER BY tx_id, position",
    )
    .fetch_all(&test.db.pool)
    .await
    .unwrap();
    let mut out = Vec::new();
    for row in rows {
        let payload: serde_json::Value = row.get("payload");
        let recorded: OffsetDateTime = row.get("recorded_at");
        let known = recorded.to_offset(clock("16")).date();
        if row.get::<String, _>("aggregate_type") == "WeeklyReport" {
            if let Ok(WeeklyEvent::ReportFiled {
                period,
                filing,
                timeliness,
                ..
            }) = serde_json::from_value(payload)
            {
                out.push((
                    period.municipality,
                    period.region.as_str().to_owned(),
                    period.week.friday(),
                    i64::from(filing.figures.children),
                    i64::from(filing.figures.adults),
                    timeliness,
                    known,
                    false,
                ));
            }
        } else {
            let ImportEvent::FiguresImported { rows, .. } =
                serde_json::from_value(payload).unwrap();
            for r in rows {
                out.push((
                    r.period.municipality,
                    r.period.region.as_str().to_owned(),
                    r.period.week.friday(),
                    i64::from(r.figures.children),
                    i64::from(r.figures.adults),
                    Timeliness::Imported,
                    known,
                    true,
                ));
            }
        }
    }
    out
}

/// Per municipality and Friday: the figures in force (the latest filing) and the first
/// filing's timeliness; an import only fills a week nobody filed. As known on `known`.
fn weeks_of(
    log: &[Filed],
    known: Option<Date>,
) -> HashMap<(Uuid, Date), (String, i64, i64, Timeliness)> {
    let mut out: HashMap<(Uuid, Date), (String, i64, i64, Timeliness)> = HashMap::new();
    for (m, region, friday, children, adults, timeliness, recorded, import) in log {
        if known.is_some_and(|k| *recorded > k) {
            continue;
        }
        match out.get_mut(&(*m, *friday)) {
            Some(_) if *import => {}
            Some(entry) => {
                entry.1 = *children;
                entry.2 = *adults;
            }
            None => {
                out.insert(
                    (*m, *friday),
                    (region.clone(), *children, *adults, *timeliness),
                );
            }
        }
    }
    out
}

/// A region's week on `friday`: each municipality's latest filing at or before it, summed.
fn region_week(log: &[Filed], region: &str, friday: Date, known: Option<Date>) -> WeekCount {
    let weeks = weeks_of(log, known);
    let mut latest: HashMap<Uuid, (Date, i64, i64)> = HashMap::new();
    let mut count = WeekCount::default();
    for ((m, f), (r, children, adults, timeliness)) in &weeks {
        if r != region || *f > friday {
            continue;
        }
        if latest.get(m).is_none_or(|(d, _, _)| d < f) {
            latest.insert(*m, (*f, *children, *adults));
        }
        if *f == friday {
            count.filed += 1;
            match timeliness {
                Timeliness::OnTime => count.on_time += 1,
                Timeliness::Late => count.late += 1,
                Timeliness::Imported => {}
            }
        }
    }
    for (_, children, adults) in latest.values() {
        count.children += children;
        count.adults += adults;
    }
    count
}

/// One signal as the log tells it.
#[derive(Debug, Clone)]
struct Pressed {
    region: String,
    kind: SignalKind,
    day: Date,
    drill: bool,
    help: Option<f64>,
    outcome: Option<SignalOutcome>,
}

async fn signals_in_log(test: &TestApp) -> Vec<Pressed> {
    let rows = sqlx::query(
        "SELECT aggregate_id, payload FROM event WHERE aggregate_type = 'Signal' \
          ORDER BY tx_id, position",
    )
    .fetch_all(&test.db.pool)
    .await
    .unwrap();
    let mut order = Vec::new();
    let mut signals: HashMap<String, (Pressed, OffsetDateTime)> = HashMap::new();
    for row in rows {
        let id: String = row.get("aggregate_id");
        let event: SignalEvent = serde_json::from_value(row.get("payload")).unwrap();
        match event {
            SignalEvent::SignalRaised {
                region,
                kind,
                pressed_at,
                drill,
                ..
            } => {
                let region = region.as_str().to_owned();
                let day = pressed_at.to_offset(clock(&region)).date();
                order.push(id.clone());
                signals.insert(
                    id,
                    (
                        Pressed {
                            region,
                            kind,
                            day,
                            drill,
                            help: None,
                            outcome: None,
                        },
                        pressed_at,
                    ),
                );
            }
            SignalEvent::ResponderOnScene { at, .. } => {
                let (s, pressed) = signals.get_mut(&id).unwrap();
                let seconds = (at - *pressed).as_seconds_f64();
                s.help = Some(s.help.map_or(seconds, |h| h.min(seconds)));
            }
            SignalEvent::SignalResolved { outcome, .. } => {
                signals.get_mut(&id).unwrap().0.outcome = Some(outcome);
            }
            _ => {}
        }
    }
    order.iter().map(|id| signals[id].0.clone()).collect()
}

/// The figures of some signals: count, resolved, by the circle, helped, times to help.
#[derive(Debug, Default)]
struct SignalCount {
    signals: i64,
    resolved: i64,
    circle: i64,
    times: Vec<f64>,
    by_kind: BTreeMap<&'static str, i64>,
}

fn count_signals<'a>(signals: impl Iterator<Item = &'a Pressed>) -> SignalCount {
    let mut c = SignalCount::default();
    for s in signals.filter(|s| !s.drill) {
        c.signals += 1;
        *c.by_kind.entry(s.kind.code()).or_default() += 1;
        if let Some(outcome) = s.outcome {
            c.resolved += 1;
            c.circle += i64::from(outcome == SignalOutcome::TrustedCircle);
        }
        if let Some(h) = s.help {
            c.times.push(h);
        }
    }
    c.times.sort_by(f64::total_cmp);
    c
}

/// The nearest-rank percentile: the ⌈p·n⌉-th smallest time.
fn nearest_rank(times: &[f64], p: f64) -> Option<f64> {
    let n = times.len();
    (n > 0).then(|| times[((p * n as f64).ceil() as usize).clamp(1, n) - 1])
}

fn share(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 * 1000.0 / whole as f64).round() / 10.0)
}

// ---------------------------------------------------------------------------------------
// Reading the files

/// The rows of a CSV export (`;`, UTF-8 with a byte-order mark), header first.
fn csv_rows(bytes: &[u8]) -> Vec<Vec<String>> {
    assert_eq!(
        &bytes[..3],
        b"\xEF\xBB\xBF",
        "Excel needs the byte-order mark"
    );
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b';')
        .has_headers(false)
        .from_reader(&bytes[3..]);
    reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// The same cells: equal text, or equal numbers (`50` and `50.0`).
fn same_rows(xlsx: &[Vec<String>], csv: &[Vec<String>]) -> bool {
    xlsx.len() == csv.len()
        && xlsx.iter().zip(csv).all(|(a, b)| {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| {
                    x == y
                        || matches!((x.parse::<f64>(), y.parse::<f64>()),
                            (Ok(p), Ok(q)) if (p - q).abs() < 1e-9)
                })
        })
}

/// The first sheet of an XLSX file, numbers written plainly.
fn xlsx_rows(bytes: &[u8]) -> Vec<Vec<String>> {
    use calamine::{Data, Reader, Xlsx};
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes.to_vec())).unwrap();
    let range = book.worksheet_range_at(0).unwrap().unwrap();
    range
        .rows()
        .map(|row| {
            row.iter()
                .map(|cell| match cell {
                    Data::Float(v) if v.fract() == 0.0 => format!("{v:.0}"),
                    Data::Float(v) => format!("{v:.1}"),
                    Data::Int(v) => v.to_string(),
                    Data::String(s) => s.clone(),
                    Data::Empty => String::new(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect()
}

async fn export(client: &mut Client, path: &str, query: &str, table: &str) -> Vec<Vec<String>> {
    let csv = client
        .get(&format!(
            "{path}/vygruzka?{query}&tablica={table}&format=csv"
        ))
        .await;
    assert_eq!(csv.status, StatusCode::OK, "{path} {table}: {}", csv.body);
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let rows = csv_rows(&csv.bytes);
    let xlsx = client
        .get(&format!(
            "{path}/vygruzka?{query}&tablica={table}&format=xlsx"
        ))
        .await;
    assert_eq!(xlsx.status, StatusCode::OK);
    let sheet = xlsx_rows(&xlsx.bytes);
    assert!(
        same_rows(&sheet, &rows),
        "{path} {table}: XLSX and CSV differ:\n{sheet:?}\n{rows:?}"
    );
    rows
}

fn row<'a>(rows: &'a [Vec<String>], head: &str) -> &'a [String] {
    rows.iter()
        .find(|r| r[0] == head)
        .unwrap_or_else(|| panic!("no row «{head}» in {rows:?}"))
}

fn int(cell: &str) -> i64 {
    cell.parse()
        .unwrap_or_else(|_| panic!("«{cell}» is not a whole number"))
}

fn decimal(cell: &str) -> Option<f64> {
    (!cell.is_empty()).then(|| cell.parse().unwrap())
}

/// The connections table's numbers of a row: children, adults, filed, expected, on time,
/// late (the shares checked against them).
fn check_connections(cells: &[String], want: WeekCount, expected: i64, what: &str) {
    let got = (
        int(&cells[1]),
        int(&cells[2]),
        int(&cells[3]),
        int(&cells[4]),
        int(&cells[6]),
        int(&cells[7]),
    );
    assert_eq!(
        got,
        (
            want.children,
            want.adults,
            want.filed,
            expected,
            want.on_time,
            want.late
        ),
        "{what}"
    );
    assert_eq!(
        decimal(&cells[5]),
        share(want.filed, expected),
        "{what}: completeness"
    );
    assert_eq!(
        decimal(&cells[8]),
        share(want.on_time, expected),
        "{what}: on time"
    );
}

/// The signal table's numbers of a row against a count.
fn check_signals(cells: &[String], want: &SignalCount, what: &str) {
    assert_eq!(int(&cells[1]), want.signals, "{what}: signals");
    assert_eq!(int(&cells[2]), want.resolved, "{what}: resolved");
    assert_eq!(int(&cells[3]), want.circle, "{what}: by the circle");
    assert_eq!(
        decimal(&cells[4]),
        share(want.circle, want.resolved),
        "{what}: circle share"
    );
    let helped = want.times.len() as i64;
    assert_eq!(int(&cells[5]), helped, "{what}: helped");
    for (cell, p) in [(&cells[6], 0.5), (&cells[7], 0.9)] {
        match nearest_rank(&want.times, p) {
            None => assert_eq!(cell, "", "{what}: p{p}"),
            Some(exact) => {
                // Within the bucket of the nearest-rank time (and whole seconds).
                let (lower, upper) = help_bucket_bounds(help_bucket(exact));
                let got = int(cell) as f64;
                assert!(
                    got >= lower.floor() - 0.5 && got <= upper.unwrap_or(86_400.0) + 0.5,
                    "{what}: p{p} {got} outside ({lower}, {upper:?}] of {exact}"
                );
            }
        }
    }
    let within = want.times.iter().filter(|t| **t <= 180.0).count() as i64;
    assert_eq!(
        decimal(&cells[8]),
        share(within, helped),
        "{what}: within 3 minutes"
    );
}

// ---------------------------------------------------------------------------------------
// The scenario

/// Raises `n` signals in Tatarstan and Altai 3–80 days ago and takes them through a
/// response, in three rounds with the projection caught up between them (so that steps
/// find signals raised in an earlier batch). Drills take four times as long.
async fn raise_signals(test: &TestApp, rng: &mut StdRng, n: usize) {
    let bus = CommandBus::<Signal>::new(test.db.log.clone(), ());
    let bus = &bus;
    let run = |id: String, command: SignalCommand| async move {
        bus.execute(&id, command.clone(), &CommandMeta::new("test"))
            .await
            .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    };
    let client = Uuid::from_u128(0x007a_6173_7475_706e_696b);
    let now = OffsetDateTime::now_utc();
    let mut raised = Vec::new();
    for i in 0..n {
        let id = Uuid::now_v7().to_string();
        let region = if rng.gen_bool(0.6) { "16" } else { "22" };
        let kind = [
            SignalKind::Panic,
            SignalKind::Lost,
            SignalKind::Threat,
            SignalKind::Health,
        ][rng.gen_range(0..4)];
        let drill = rng.gen_bool(0.15);
        let pressed = now - Duration::seconds(rng.gen_range(3 * 86_400..80 * 86_400));
        run(
            id.clone(),
            SignalCommand::Raise {
                child: format!("child-{i}"),
                client,
                region: RegionCode::parse(region).unwrap(),
                city: None,
                kind,
                pressed_at: pressed,
                received_at: pressed + Duration::seconds(1),
                location: None,
                drill,
                recipients: vec![Recipient {
                    adult: "mother".to_owned(),
                    channel: Channel::Push,
                }],
            },
        )
        .await;
        raised.push((id, pressed, if drill { 4 } else { 1 }));
    }
    test.project().await;
    for (round, (id, pressed, scale)) in raised.into_iter().enumerate() {
        let at = |s: i64| pressed + Duration::seconds(s * scale);
        match rng.gen_range(0..10) {
            // The trusted circle, on the spot.
            0..=3 => {
                let scene = rng.gen_range(20..900);
                let resolve = SignalCommand::CircleResolve {
                    adult: "mother".to_owned(),
                    at: at(scene + 30),
                    on_scene_at: Some(at(scene)),
                };
                run(id, resolve).await;
            }
            // The operators: the police on the spot; sometimes the mother was there
            // earlier, reported later.
            4..=7 => {
                let police = rng.gen_range(120..1500);
                run(
                    id.clone(),
                    SignalCommand::Acknowledge {
                        operator: "op".to_owned(),
                        at: at(10),
                    },
                )
                .await;
                let dispatch = SignalCommand::Dispatch {
                    responder: ResponderKind::Police,
                    at: at(20),
                    note: None,
                };
                run(id.clone(), dispatch).await;
                let scene = SignalCommand::OnScene {
                    responder: ResponderKind::Police,
                    at: at(police),
                };
                run(id.clone(), scene).await;
                if rng.gen_bool(0.4) {
                    let mother = SignalCommand::OnScene {
                        responder: ResponderKind::TrustedAdult,
                        at: at(rng.gen_range(30..police)),
                    };
                    run(id.clone(), mother).await;
                }
                if rng.gen_bool(0.8) {
                    let resolve = SignalCommand::Resolve {
                        outcome: SignalOutcome::Operators,
                        at: at(police + 60),
                        note: None,
                    };
                    run(id, resolve).await;
                }
            }
            // A false alarm, or nothing yet.
            8 => {
                let resolve = SignalCommand::Resolve {
                    outcome: SignalOutcome::FalseAlarm,
                    at: at(40),
                    note: None,
                };
                run(id, resolve).await;
            }
            _ => {}
        }
        if round % 7 == 6 {
            test.project().await;
        }
    }
    test.project().await;
}

#[tokio::test]
async fn the_dashboard_equals_a_computation_from_the_log_in_every_table_and_file() {
    let test = TestApp::with_demo().await;
    let now_friday = friday_on_or_before(today());
    let (w1, w2, w3) = (
        now_friday - Duration::weeks(3),
        now_friday - Duration::weeks(2),
        now_friday - Duration::weeks(1),
    );
    let tat = municipalities(&test, "16", 4).await;
    let alt = municipalities(&test, "22", 3).await;
    let on_time = |region: &str, friday: Date| at_local(region, friday, 12);
    let late = |region: &str, friday: Date| at_local(region, friday + Duration::days(2), 12);
    // Week 1: two in Tatarstan (one late), one in Altai; an import fills a week nobody
    // filed and leaves a filed one alone.
    file(&test, "16", tat[0].0, w1, (100, 40), on_time("16", w1)).await;
    file(&test, "16", tat[1].0, w1, (200, 80), late("16", w1)).await;
    file(&test, "22", alt[0].0, w1, (50, 20), on_time("22", w1)).await;
    let import = ImportCommand::Import {
        source: Text::parse("архив.csv").unwrap(),
        rows: [(alt[2].0, 40, 15), (tat[0].0, 999, 999)]
            .iter()
            .map(|(m, c, a)| ImportedRow {
                period: Period {
                    region: RegionCode::parse(if *m == tat[0].0 { "16" } else { "22" }).unwrap(),
                    municipality: *m,
                    week: Week::ending(w1).unwrap(),
                },
                figures: Figures {
                    children: *c,
                    adults: *a,
                    schools: 5,
                    schools_with_responsible: 5,
                },
            })
            .collect(),
        pupils: BTreeMap::new(),
    };
    CommandBus::<WeeklyImport>::new(test.db.log.clone(), ())
        .execute(
            &Uuid::now_v7().to_string(),
            import,
            &CommandMeta::new("test"),
        )
        .await
        .unwrap();
    test.project().await;
    // Weeks 2 and 3, and the figures of week 2 before a correction.
    file(&test, "16", tat[0].0, w2, (110, 45), on_time("16", w2)).await;
    file(&test, "16", tat[2].0, w2, (300, 100), on_time("16", w2)).await;
    file(&test, "22", alt[0].0, w2, (55, 22), late("22", w2)).await;
    file(&test, "22", alt[1].0, w2, (70, 30), on_time("22", w2)).await;
    file(&test, "16", tat[0].0, w3, (120, 50), on_time("16", w3)).await;
    file(&test, "16", tat[1].0, w3, (210, 90), on_time("16", w3)).await;
    file(&test, "22", alt[1].0, w3, (75, 31), late("22", w3)).await;
    test.project().await;
    let mut analyst = signed_in(&test, "analyst").await;
    let federal = "/monitoring/zastupnik";
    let before = export(&mut analyst, federal, &format!("na={w2}"), "podklyucheniya").await;
    // A correction of week 2 (after its deadline: the first filing stays on time), and
    // week 2 of a municipality that had already filed week 3 (late, out of order).
    file(&test, "16", tat[2].0, w2, (310, 105), late("16", w2)).await;
    file(
        &test,
        "16",
        tat[1].0,
        w2,
        (205, 85),
        late("16", w2) + Duration::days(1),
    )
    .await;
    test.project().await;
    let after = export(&mut analyst, federal, &format!("na={w2}"), "podklyucheniya").await;
    let tatarstan = "Республика Татарстан";
    assert_eq!(
        int(&row(&after, tatarstan)[1]) - int(&row(&before, tatarstan)[1]),
        10 + 5,
        "the correction (+10) and the late filing (205 instead of 200) change week 2"
    );

    let mut rng = StdRng::seed_from_u64(8_2026);
    raise_signals(&test, &mut rng, 70).await;

    let log = filings_in_log(&test).await;
    let signals = signals_in_log(&test).await;
    let expected = HashMap::from([
        ("16", expected_count(&test, "16").await),
        ("22", expected_count(&test, "22").await),
    ]);
    let names = [("16", tatarstan), ("22", "Алтайский край")];
    // Every Friday: before anything, each filed week, and today's (nobody filed yet).
    for friday in [w1 - Duration::weeks(1), w1, w2, w3, now_friday] {
        let query = format!("na={friday}");
        let rows = export(&mut analyst, federal, &query, "podklyucheniya").await;
        assert_eq!(rows[0][0], "Регион");
        let mut total = WeekCount::default();
        for (code, name) in names {
            let want = region_week(&log, code, friday, None);
            check_connections(
                row(&rows, name),
                want,
                expected[code],
                &format!("{name} on {friday}"),
            );
            total.children += want.children;
            total.adults += want.adults;
        }
        // Other regions have filed nothing: the total is the two regions'.
        let all = row(&rows, "Итого");
        assert_eq!((int(&all[1]), int(&all[2])), (total.children, total.adults));
        // The region's page per municipality.
        let per = export(
            &mut analyst,
            &format!("{federal}/16"),
            &query,
            "podklyucheniya",
        )
        .await;
        let weeks = weeks_of(&log, None);
        for (m, name) in &tat {
            let latest = weeks
                .iter()
                .filter(|((mm, f), _)| mm == m && *f <= friday)
                .max_by_key(|((_, f), _)| *f);
            let cells = row(&per, name);
            assert_eq!(
                int(&cells[1]),
                latest.map_or(0, |(_, v)| v.1),
                "{name} on {friday}"
            );
            assert_eq!(int(&cells[2]), latest.map_or(0, |(_, v)| v.2));
            let status = match weeks.get(&(*m, friday)).map(|v| v.3) {
                Some(Timeliness::OnTime) => "сдан в срок",
                Some(Timeliness::Late) => "сдан с опозданием",
                Some(Timeliness::Imported) => "загружен из архива",
                None => "не сдан",
            };
            assert_eq!(cells[4], status, "{name} on {friday}");
        }
    }
    // The trend: 26 Fridays, newest first.
    let trend = export(
        &mut analyst,
        federal,
        &format!("na={}", today()),
        "dinamika",
    )
    .await;
    assert_eq!(trend.len(), 27);
    for friday in [w1 - Duration::weeks(1), w1, w2, w3, now_friday] {
        let line = row(&trend, &opora_domain::format_date(friday));
        let a = region_week(&log, "16", friday, None);
        let b = region_week(&log, "22", friday, None);
        assert_eq!(int(&line[1]), a.children + b.children, "trend on {friday}");
        assert_eq!(int(&line[3]), a.filed + b.filed, "trend on {friday}");
        assert_eq!(
            int(&line[6]) + int(&line[7]),
            a.on_time + a.late + b.on_time + b.late
        );
    }

    // Signals: the default period (the 90 days to today), drills left out.
    assert!(signals.iter().any(|s| s.drill));
    let by_region = export(&mut analyst, federal, "", "signaly").await;
    for (code, name) in names {
        let want = count_signals(signals.iter().filter(|s| s.region == code));
        assert!(want.signals > 5, "{name} has signals");
        check_signals(row(&by_region, name), &want, name);
    }
    check_signals(
        row(&by_region, "Итого"),
        &count_signals(signals.iter()),
        "total",
    );
    let kinds = export(&mut analyst, federal, "", "vidy").await;
    for (code, name) in names {
        let want = count_signals(signals.iter().filter(|s| s.region == code));
        let cells = row(&kinds, name);
        for (i, (_, kind, _)) in SignalKind::ALL.iter().enumerate() {
            assert_eq!(
                int(&cells[i + 1]),
                want.by_kind.get(kind).copied().unwrap_or(0),
                "{name} {kind}"
            );
        }
        assert_eq!(int(&cells[SignalKind::ALL.len() + 1]), want.signals);
    }
    let per_kind = export(&mut analyst, &format!("{federal}/22"), "", "signaly").await;
    for (kind, _, _) in SignalKind::ALL {
        let want = count_signals(
            signals
                .iter()
                .filter(|s| s.region == "22" && s.kind == *kind),
        );
        let label =
            opora_web::i18n::Tr::new(opora_web::i18n::Lang::Ru).of("signal-kind", kind.code());
        let mut label_chars = label.chars();
        let head: String = label_chars
            .next()
            .unwrap()
            .to_uppercase()
            .chain(label_chars)
            .collect();
        check_signals(row(&per_kind, &head), &want, &head);
    }
    // A period that holds some of the signals: only those count.
    let (from, to) = (today() - Duration::days(40), today() - Duration::days(10));
    let part = export(
        &mut analyst,
        federal,
        &format!("s={from}&po={to}"),
        "signaly",
    )
    .await;
    let want = count_signals(
        signals
            .iter()
            .filter(|s| s.region == "16" && s.day >= from && s.day <= to),
    );
    check_signals(
        row(&part, tatarstan),
        &want,
        "Tatarstan, part of the period",
    );

    // The page shows what the files hold.
    let page = analyst.get(&format!("{federal}?na={w3}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let w3_rows = export(&mut analyst, federal, &format!("na={w3}"), "podklyucheniya").await;
    let children = int(&row(&w3_rows, "Итого")[1]);
    assert!(page
        .body
        .contains(&opora_web::pages::weekly::thousands(children)));
    assert!(page.body.contains("<caption>"));
    assert!(page.body.contains("<title id=\"zd-trend-title\">"));
    assert!(page.body.contains("/monitoring/zastupnik/vygruzka?"));
    let signals_page = analyst.get(federal).await;
    let total = count_signals(signals.iter());
    assert!(signals_page.body.contains(&format!(
        "<td>{}</td>",
        opora_web::pages::weekly::thousands(total.signals)
    )));
    // The print layout: no site navigation, no file links.
    let print = analyst.get(&format!("{federal}?na={w3}&pechat=1")).await;
    assert_eq!(print.status, StatusCode::OK);
    assert!(print.body.contains("zd-print"));
    assert!(!print.body.contains("vygruzka"));
    assert!(print
        .body
        .contains(&opora_web::pages::weekly::thousands(children)));
}

/// A `ReportFiled` written straight into the log with the recording instant `recorded_at`
/// (as a migrated history would be), so that "as known on" has past recording days.
async fn append_recorded(
    test: &TestApp,
    m: Uuid,
    friday: Date,
    sequence: i64,
    children: u32,
    timeliness: Timeliness,
    recorded_at: OffsetDateTime,
) {
    let week = Week::ending(friday).unwrap();
    let event = WeeklyEvent::ReportFiled {
        period: Period {
            region: RegionCode::parse("16").unwrap(),
            municipality: m,
            week,
        },
        filing: Filing {
            figures: Figures {
                children,
                adults: children / 2,
                schools: 10,
                schools_with_responsible: 8,
            },
            schools: vec![],
            comment: None,
        },
        filed_at: recorded_at,
        timeliness,
        supersedes: u32::try_from(sequence - 1).unwrap(),
    };
    sqlx::query(
        "INSERT INTO event (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                payload, metadata, recorded_at, prev_hash, hash) \
         VALUES ('WeeklyReport', $1, $2, 'ReportFiled', '1.0', $3, '{}', $4, '\\x00', '\\x00')",
    )
    .bind(report_id(m, week).to_string())
    .bind(sequence)
    .bind(serde_json::to_value(&event).unwrap())
    .bind(recorded_at)
    .execute(&test.db.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn as_known_on_a_day_shows_only_what_was_recorded_by_then_and_before_anything_zeros() {
    let test = TestApp::with_demo().await;
    let today = today();
    let friday = friday_on_or_before(today) - Duration::weeks(4);
    let tat = municipalities(&test, "16", 2).await;
    let noon = |day: Date| PrimitiveDateTime::new(day, time!(12:00)).assume_utc();
    // Filed the next day, corrected ten days later, another municipality's a week late.
    append_recorded(
        &test,
        tat[0].0,
        friday,
        1,
        500,
        Timeliness::OnTime,
        noon(friday + Duration::days(1)),
    )
    .await;
    append_recorded(
        &test,
        tat[1].0,
        friday,
        1,
        80,
        Timeliness::Late,
        noon(friday + Duration::days(7)),
    )
    .await;
    append_recorded(
        &test,
        tat[0].0,
        friday,
        2,
        520,
        Timeliness::Late,
        noon(friday + Duration::days(10)),
    )
    .await;
    test.project().await;
    let log = filings_in_log(&test).await;
    let mut minobr = signed_in(&test, "minobr16").await;
    let path = "/monitoring/zastupnik";
    let expected = expected_count(&test, "16").await;
    for known in [
        None,
        Some(friday),
        Some(friday + Duration::days(1)),
        Some(friday + Duration::days(8)),
        Some(friday + Duration::days(10)),
        Some(today),
    ] {
        let query = match known {
            Some(k) => format!("na={today}&izvestno={k}"),
            None => format!("na={today}"),
        };
        for on in [
            friday - Duration::weeks(1),
            friday,
            friday + Duration::weeks(2),
        ] {
            let query = query.replace(&format!("na={today}"), &format!("na={on}"));
            let rows = export(&mut minobr, path, &query, "podklyucheniya").await;
            let want = region_week(&log, "16", on, known);
            check_connections(row(&rows, "Республика Татарстан"), want, expected, &query);
            let per = export(&mut minobr, &format!("{path}/16"), &query, "podklyucheniya").await;
            let weeks = weeks_of(&log, known);
            let first = row(&per, &tat[0].1);
            let want = weeks
                .get(&(tat[0].0, friday))
                .filter(|_| on >= friday)
                .map_or(0, |v| v.1);
            assert_eq!(int(&first[1]), want, "{} {query}", tat[0].1);
        }
    }
    // Spelled out: as known on the day after the filing, the first figure; now, the correction.
    let at = |known: Option<Date>| {
        let known = known.map(|k| format!("&izvestno={k}")).unwrap_or_default();
        format!("na={friday}{known}")
    };
    let first = export(
        &mut minobr,
        path,
        &at(Some(friday + Duration::days(1))),
        "podklyucheniya",
    )
    .await;
    assert_eq!(int(&row(&first, "Республика Татарстан")[1]), 500);
    let now = export(&mut minobr, path, &at(None), "podklyucheniya").await;
    assert_eq!(int(&row(&now, "Республика Татарстан")[1]), 600);
    assert_eq!(
        int(&row(&now, "Республика Татарстан")[6]),
        1,
        "on time: the first filing's"
    );
    assert_eq!(int(&row(&now, "Республика Татарстан")[7]), 1);
    let page = minobr
        .get(&format!("{path}?{}", at(Some(friday + Duration::days(1)))))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("как было известно на конец"));
    // The trend as known: the week before shows nothing, the week shows the first figure.
    let trend = export(
        &mut minobr,
        path,
        &at(Some(friday + Duration::days(8))),
        "dinamika",
    )
    .await;
    let line = row(&trend, &opora_domain::format_date(friday));
    assert_eq!((int(&line[1]), int(&line[3])), (580, 2));
    let line = row(
        &trend,
        &opora_domain::format_date(friday - Duration::weeks(1)),
    );
    assert_eq!((int(&line[1]), int(&line[3])), (0, 0));

    // Before any event: zeros, and no signals.
    let long_ago = "na=2020-01-10";
    let zero = export(&mut minobr, path, long_ago, "podklyucheniya").await;
    check_connections(
        row(&zero, "Республика Татарстан"),
        WeekCount::default(),
        expected,
        "2020",
    );
    let none = export(&mut minobr, path, long_ago, "signaly").await;
    assert_eq!(int(&row(&none, "Республика Татарстан")[1]), 0);
}

#[tokio::test]
async fn scope_holds_and_bad_parameters_are_explained_never_a_500() {
    let test = TestApp::with_demo().await;
    let path = "/monitoring/zastupnik";
    // A region's ministry: its region only; another region's page and files are 404.
    let mut minobr = signed_in(&test, "minobr16").await;
    let page = minobr.get(path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Республика Татарстан"));
    assert!(!page.body.contains("Алтайский край"));
    assert_eq!(
        minobr.get(&format!("{path}/16")).await.status,
        StatusCode::OK
    );
    let other = minobr.get(&format!("{path}/22")).await;
    let missing = minobr.get(&format!("{path}/99")).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(other.body, missing.body, "out of scope looks like missing");
    let file = minobr
        .get(&format!(
            "{path}/22/vygruzka?tablica=podklyucheniya&format=csv"
        ))
        .await;
    assert_eq!(file.status, StatusCode::NOT_FOUND);
    let rows = export(&mut minobr, path, "", "podklyucheniya").await;
    assert_eq!(rows.len(), 3, "header, Tatarstan, total: {rows:?}");
    // Altai's curator: Altai.
    let mut curator = signed_in(&test, "curator22").await;
    assert_eq!(
        curator.get(&format!("{path}/22")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        curator.get(&format!("{path}/16")).await.status,
        StatusCode::NOT_FOUND
    );
    // The federal analyst: every region.
    let mut analyst = signed_in(&test, "analyst").await;
    let all = export(&mut analyst, path, "", "podklyucheniya").await;
    assert_eq!(all.len(), 89 + 2);
    // A signal operator does not read the dashboard.
    let mut operator = signed_in(&test, "signals").await;
    assert_eq!(operator.get(path).await.status, StatusCode::FORBIDDEN);

    // Bad parameters: a message in Russian, never a 500.
    for (query, message) in [
        ("na=вчера", "не распознана"),
        ("na=2026-02-30", "не распознана"),
        (
            "s=2026-03-01&po=2026-02-01",
            "Начало периода сигналов позже его конца",
        ),
        ("na=2026-02-01&po=2026-02-10", "позже даты «На дату»"),
        ("izvestno=31.13.2025", "не распознана"),
    ] {
        let page = analyst.get(&format!("{path}?{query}")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(page.body.contains(message), "{query}: {}", page.body);
        assert!(page.body.contains("role=\"alert\""));
        let file = analyst
            .get(&format!(
                "{path}/16/vygruzka?{query}&tablica=signaly&format=csv"
            ))
            .await;
        assert_eq!(file.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(file.body.contains(message));
    }
    let unknown = analyst
        .get(&format!("{path}/vygruzka?tablica=nichego"))
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    let format = analyst.get(&format!("{path}/vygruzka?format=pdf")).await;
    assert_eq!(format.status, StatusCode::BAD_REQUEST);
    let exports: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM access.access_log WHERE action = 'export' \
           AND record_type = 'zastupnik_dashboard'",
    )
    .fetch_one(&test.db.pool)
    .await
    .unwrap();
    assert_eq!(exports, 4, "each file served is logged (two CSV, two XLSX)");
}
