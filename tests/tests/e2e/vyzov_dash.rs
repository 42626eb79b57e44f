//! «Вызов» dashboard: the page, its exports and its scope over the demo data, and a late
//! entry made through the curator's form moving the figures as of its day, only as known
//! from the day it was recorded.

use axum::http::StatusCode;
use opora_projections::vyzov::{self, Counters};
use opora_web::pages::vyzov_dash::PILOT;
use time::Duration;

use crate::cases::{ago, record};
use crate::client::{Client, TestApp};

/// The demo with its pilot cases (as `opora serve --demo` loads them).
async fn with_pilot() -> TestApp {
    let test = TestApp::with_demo().await;
    let today = opora_web::i18n::today_in("Europe/Moscow");
    opora_web::demo::pilot::load(&test.db.log, &test.vault, today)
        .await
        .unwrap();
    test.project().await;
    test
}

async fn signed_in(test: &TestApp, login: &str) -> Client {
    let mut client = test.client();
    client.login(login).await;
    client
}

fn sum(figures: &std::collections::HashMap<String, Counters>, codes: &[&str], m: usize) -> i64 {
    codes
        .iter()
        .filter_map(|c| figures.get(*c))
        .map(|f| f[m])
        .sum()
}

/// The numbers of a CSV export (`;`, UTF-8 with a byte-order mark), row by row.
fn csv_rows(bytes: &[u8]) -> Vec<Vec<String>> {
    assert_eq!(
        &bytes[..3],
        b"\xEF\xBB\xBF",
        "Excel needs the byte-order mark"
    );
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b';')
        .has_headers(true)
        .from_reader(&bytes[3..]);
    reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

#[tokio::test]
async fn the_dashboard_shows_the_projection_exports_it_and_keeps_to_scope() {
    let test = with_pilot().await;
    let pool = &test.db.pool;
    let baseline = time::macros::date!(2024 - 07 - 01);
    let midway = time::macros::date!(2025 - 10 - 01);
    let figures = vyzov::region_figures(pool, &[baseline, midway], None)
        .await
        .unwrap();
    // The demo's pilot cases, at 1:100 of seed 004 (web/src/demo/pilot.rs).
    assert_eq!(sum(&figures[0], &PILOT, vyzov::INST), 212);
    assert_eq!(sum(&figures[1], &PILOT, vyzov::INST), 164);

    let mut analyst = signed_in(&test, "analyst").await;
    let page = analyst.get("/monitoring/vyzov?na=2025-10-01").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Итого: 14 регионов «Вызова»"));
    assert!(page.body.contains("<svg class=\"chart\""));
    assert!(page.body.contains("−22,6"), "212 → 164 is −22.6 %");

    // The CSV of the progress table round-trips to the projection's figures.
    let csv = analyst
        .get("/monitoring/vyzov/vygruzka?na=2025-10-01&tablica=progress&format=csv")
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    let rows = csv_rows(&csv.bytes);
    let total = rows
        .iter()
        .find(|r| r[0] == "Итого: 14 регионов «Вызова»")
        .expect("the pilot total");
    assert_eq!(total[2..4], ["212".to_owned(), "164".to_owned()]);
    assert_eq!(total[4], "-22.6");
    let altai = rows.iter().find(|r| r[0] == "Алтайский край").unwrap();
    assert_eq!(altai[1], "да");
    assert_eq!(
        altai[2].parse::<i64>().unwrap(),
        figures[0]["22"][vyzov::INST]
    );
    assert_eq!(
        altai[3].parse::<i64>().unwrap(),
        figures[1]["22"][vyzov::INST]
    );
    // The XLSX file has the same numbers, as numbers.
    let xlsx = analyst
        .get("/monitoring/vyzov/vygruzka?na=2025-10-01&tablica=progress&format=xlsx")
        .await;
    assert_eq!(xlsx.status, StatusCode::OK);
    use calamine::{Data, Reader};
    let mut book: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(xlsx.bytes.clone())).unwrap();
    let sheet = book.worksheet_range_at(0).unwrap().unwrap();
    let found = sheet
        .rows()
        .find(|r| r[0] == Data::String("Итого: 14 регионов «Вызова»".into()))
        .expect("the pilot total in the workbook");
    assert_eq!(found[2], Data::Float(212.0));
    assert_eq!(found[3], Data::Float(164.0));
    // Every table exports; a wrong one is refused with a message.
    for table in ["vybytie", "rabota", "pomoshch", "dinamika"] {
        let r = analyst
            .get(&format!(
                "/monitoring/vyzov/vygruzka?s=2024-01-01&tablica={table}&format=csv"
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{table}");
        assert!(csv_rows(&r.bytes).len() > 1, "{table}");
    }
    let wrong = analyst
        .get("/monitoring/vyzov/vygruzka?tablica=nothing&format=csv")
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.body.contains("Такой таблицы нет"));

    // A date before anything happened shows zeros; a bad date says what is wrong.
    let early = vyzov::region_figures(pool, &[time::macros::date!(2000 - 01 - 01)], None)
        .await
        .unwrap();
    assert!(early[0].values().all(|c| c[vyzov::INST] == 0));
    let bad = analyst.get("/monitoring/vyzov?na=31.02.2025").await;
    assert_eq!(bad.status, StatusCode::OK);
    assert!(bad.body.contains("«31.02.2025» — не дата"), "{}", bad.body);
    let reversed = analyst
        .get("/monitoring/vyzov?s=2025-05-01&po=2025-04-01")
        .await;
    assert!(reversed.body.contains("Начало периода позже его конца"));
    // As known on a day, no later date can be asked (the dashboard did not show it then).
    for query in ["na=2025-10-02&izvestno=2025-10-01", "izvestno=2024-06-30"] {
        let later = analyst.get(&format!("/monitoring/vyzov?{query}")).await;
        assert_eq!(later.status, StatusCode::OK);
        assert!(
            later.body.contains("не может быть раньше базовой даты"),
            "{query}: {}",
            later.body
        );
    }
    let known = analyst.get("/monitoring/vyzov?izvestno=2025-10-01").await;
    assert!(
        known.body.contains("01.10.2025"),
        "the date defaults to the known-on day"
    );
    // The print layout.
    let print = analyst.get("/monitoring/vyzov?pechat=1").await;
    assert!(print.body.contains("Межведомственный мониторинг"));
    assert!(!print.body.contains("<form"));

    // A region's page, per municipality; scoped viewers see their region only.
    let region = analyst.get("/monitoring/vyzov/22").await;
    assert_eq!(region.status, StatusCode::OK);
    assert!(region.body.contains("Итого по региону"));
    // Today's page is kept rendered, per scope: the federal analyst's page first, then a
    // curator's, who sees only their region.
    let everything = analyst.get("/monitoring/vyzov").await;
    assert!(everything.body.contains("Красноярский край"));
    let mut curator = signed_in(&test, "curator22").await;
    let own = curator.get("/monitoring/vyzov").await;
    assert!(own.body.contains("Алтайский край"));
    assert!(!own.body.contains("Красноярский край"));
    assert!(
        !own.body.contains("Аналитик министерства (демо)"),
        "no other viewer's chrome"
    );
    assert_eq!(analyst.get("/monitoring/vyzov").await.body, everything.body);
    assert_eq!(
        curator.get("/monitoring/vyzov/24").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        curator
            .get("/monitoring/vyzov/24/vygruzka?tablica=progress&format=csv")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let mut minobr = signed_in(&test, "minobr16").await;
    assert_eq!(
        minobr.get("/monitoring/vyzov/22").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        minobr.get("/monitoring/vyzov/16").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_late_entry_counts_from_its_day_and_only_as_known_from_its_recording() {
    let test = with_pilot().await;
    let pool = &test.db.pool;
    let today = opora_web::i18n::today_in("Europe/Moscow");
    // The projection dates a recording by Moscow's date, today's for this entry (also
    // from 21:00 UTC, when the UTC date is still the day before).
    let recorded = vyzov::recording_day(time::OffsetDateTime::now_utc());
    assert_eq!(recorded, today);
    let (before_exit, exit_day) = (today - Duration::days(41), today - Duration::days(40));
    // An Altai child in an institution since before the exit day.
    let case: uuid::Uuid = sqlx::query_scalar(
        "SELECT id FROM cases.child_case WHERE region_code = '22' AND institution IS NOT NULL \
            AND placed_on < $1 ORDER BY case_number LIMIT 1",
    )
    .bind(today - Duration::days(60))
    .fetch_one(pool)
    .await
    .unwrap();
    let days = [before_exit, exit_day, today];
    let was = vyzov::region_figures(pool, &days, None).await.unwrap();
    // The dashboards' cache answers day by day as the projection does, whatever the order
    // and overlap of the days a page asks, and forgets everything once the projection writes.
    let cache = vyzov::FigureCache::default();
    let cached = |asked: Vec<usize>| {
        let cache = &cache;
        async move {
            let days: Vec<time::Date> = asked.iter().map(|i| days[*i]).collect();
            let kept = cache.at(pool).await.unwrap();
            let figures = kept.region_figures(&days, None, None).await.unwrap();
            let altai = kept.municipality_figures("22", &days).await.unwrap();
            let fresh = vyzov::municipality_figures(pool, "22", &days)
                .await
                .unwrap();
            assert!(altai.iter().map(|m| &**m).eq(fresh.iter()));
            let aid = kept.aid_figures(&days, None).await.unwrap();
            let fresh = vyzov::aid_figures(pool, &days, None).await.unwrap();
            assert!(aid.iter().map(|m| &**m).eq(fresh.iter()));
            asked
                .iter()
                .zip(figures)
                .map(|(i, f)| (*i, (*f).clone()))
                .collect::<Vec<_>>()
        }
    };
    for asked in [vec![1], vec![2, 0, 1, 2], vec![0, 1, 2]] {
        for (i, f) in cached(asked).await {
            assert_eq!(f, was[i], "the cache's day {i} before the entry");
        }
    }
    // A page that saw the projection before the entry and reads on after it.
    let stale_page = cache.at(pool).await.unwrap();

    let mut curator = signed_in(&test, "curator22").await;
    let today_before = curator.get("/monitoring/vyzov/22").await;
    assert_eq!(today_before.status, StatusCode::OK);
    let done = record(
        &mut curator,
        &format!("/vyzov/dela/{case}"),
        &[
            ("action", "exit"),
            ("on", &ago(40)),
            ("exit", "birth_family"),
        ],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    test.project().await;
    // Today's page, kept rendered, is not kept past the write.
    let today_after = curator.get("/monitoring/vyzov/22").await;
    assert_ne!(
        today_after.body, today_before.body,
        "today's page after the exit"
    );

    let now = vyzov::region_figures(pool, &days, None).await.unwrap();
    assert_ne!(now, was);
    // It has today kept from before the entry and reads yesterday now: it gets both as
    // they are after the entry (read again together), never a mix of the two moments.
    let pair = [today, today - Duration::days(1)];
    let fresh = vyzov::region_figures(pool, &pair, None).await.unwrap();
    assert_ne!(fresh[0], was[2], "the entry changed today's figures");
    let read = stale_page.region_figures(&pair, None, None).await.unwrap();
    assert_eq!(*read[0], fresh[0], "today, kept before the entry");
    assert_eq!(*read[1], fresh[1]);
    for (i, f) in cached(vec![2, 1, 0]).await {
        assert_eq!(f, now[i], "the cache's day {i} after the entry");
    }
    let altai = |f: &Vec<std::collections::HashMap<String, Counters>>, i: usize| f[i]["22"];
    // As of the day before the exit nothing changed; from the exit day one child fewer,
    // one more exit to the birth family, and one late entry (recorded 40 days after).
    assert_eq!(altai(&now, 0), altai(&was, 0));
    assert_eq!(altai(&now, 1)[vyzov::INST], altai(&was, 1)[vyzov::INST] - 1);
    assert_eq!(altai(&now, 2)[vyzov::EXIT], altai(&was, 2)[vyzov::EXIT] + 1);
    assert_eq!(altai(&now, 2)[vyzov::LATE], altai(&was, 2)[vyzov::LATE] + 1);
    // As known today: the same; as known yesterday: nothing of the demo (all recorded
    // today) and not the exit.
    let known_today = vyzov::region_figures(pool, &days, Some(recorded))
        .await
        .unwrap();
    assert_eq!(known_today, now);
    let known_yesterday =
        vyzov::region_figures(pool, &days[..2], Some(recorded - Duration::days(1)))
            .await
            .unwrap();
    assert!(known_yesterday
        .iter()
        .all(|m| m.values().all(|c| c.iter().all(|v| *v == 0))));
    // The snapshot in memory: loaded in the background by a page once the projection has
    // rested, then answering as the tables do; never used at another moment.
    let held = vyzov::FigureCache::default();
    tokio::time::sleep(vyzov::QUIET.unsigned_abs() + std::time::Duration::from_secs(1)).await;
    assert!(!held.at(pool).await.unwrap().in_memory());
    let mut waited = 0;
    loop {
        // Each page asks for it until it is there (the first one starts the load).
        let kept = held.at(pool).await.unwrap();
        if kept.in_memory() {
            break;
        }
        kept.region_figures(&days, None, None).await.unwrap();
        assert!(waited < 200, "the snapshot was not loaded within 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    let kept = held.at(pool).await.unwrap();
    let from_memory = kept
        .region_figures(&days, Some(recorded), None)
        .await
        .unwrap();
    for (m, t) in from_memory.iter().zip(&known_today) {
        assert_eq!(m["22"], t["22"]);
    }
    // As known yesterday: the demo and the exit, all recorded today, taken off.
    let yesterday = recorded - Duration::days(1);
    let from_memory = kept
        .region_figures(&days[..2], Some(yesterday), None)
        .await
        .unwrap();
    for (m, t) in from_memory.iter().zip(&known_yesterday) {
        assert_eq!(
            m.get("22").copied().unwrap_or_default(),
            t.get("22").copied().unwrap_or_default()
        );
    }
    let from_memory = kept.region_figures(&days, None, Some("22")).await.unwrap();
    assert_eq!(from_memory[2]["22"], now[2]["22"]);
    // Another child's exit: the projection writes, and the snapshot is of an older moment.
    let other: uuid::Uuid = sqlx::query_scalar(
        "SELECT id FROM cases.child_case WHERE region_code = '22' AND institution IS NOT NULL \
            AND id <> $1 ORDER BY case_number LIMIT 1",
    )
    .bind(case)
    .fetch_one(pool)
    .await
    .unwrap();
    let done = record(
        &mut curator,
        &format!("/vyzov/dela/{other}"),
        &[
            ("action", "exit"),
            ("on", &ago(2)),
            ("exit", "birth_family"),
        ],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    test.project().await;
    assert!(!held.at(pool).await.unwrap().in_memory());
    // The page says which knowledge it shows.
    let mut analyst = signed_in(&test, "analyst").await;
    let page = analyst
        .get(&format!(
            "/monitoring/vyzov/22?izvestno={}",
            today - Duration::days(1)
        ))
        .await;
    assert!(page.body.contains("Показано то, что было известно"));
    assert!(page.body.contains("по данным на сегодня"));
}

// ---------------------------------------------------------------------------------------
// The projection against an independent count over a generated history

mod independent {
    use std::collections::{BTreeMap, HashMap};

    use opora_domain::aid::AidEvent;
    use opora_domain::case::{CaseEvent, ExitKind};
    use opora_domain::organisation::{OrganisationEvent, OrganisationKind};
    use opora_projections::vyzov::{self, Counters};
    use sqlx::Row;
    use time::{Date, OffsetDateTime};

    /// One stream's events in sequence order: (sequence, recorded day, payload).
    pub struct Stream<E> {
        pub events: Vec<(i64, Date, E)>,
    }

    pub struct Log {
        pub cases: Vec<Stream<CaseEvent>>,
        pub aid: Vec<Stream<AidEvent>>,
        pub orgs: Vec<Stream<OrganisationEvent>>,
    }

    pub async fn read(pool: &sqlx::PgPool) -> Log {
        let rows = sqlx::query(
            "SELECT aggregate_type, aggregate_id, sequence, payload, recorded_at FROM event \
              WHERE aggregate_type IN ('ChildCase', 'AidRequest', 'Organisation') \
              ORDER BY aggregate_type, aggregate_id, sequence",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let mut log = Log {
            cases: vec![],
            aid: vec![],
            orgs: vec![],
        };
        let mut last = (String::new(), String::new());
        for row in rows {
            let kind: String = row.get("aggregate_type");
            let id: String = row.get("aggregate_id");
            let seq: i64 = row.get("sequence");
            // Moscow's date of the recording (UTC+3 all year since 2014).
            let rec = row
                .get::<OffsetDateTime, _>("recorded_at")
                .to_offset(time::macros::offset!(+3))
                .date();
            let payload: serde_json::Value = row.get("payload");
            let fresh = (kind.clone(), id) != last;
            last = (kind.clone(), row.get("aggregate_id"));
            macro_rules! push {
                ($list:expr) => {{
                    if fresh {
                        $list.push(Stream { events: vec![] });
                    }
                    let event = serde_json::from_value(payload).unwrap();
                    $list.last_mut().unwrap().events.push((seq, rec, event));
                }};
            }
            match kind.as_str() {
                "ChildCase" => push!(log.cases),
                "AidRequest" => push!(log.aid),
                _ => push!(log.orgs),
            }
        }
        log
    }

    /// `day` minus six calendar months, the day clamped to the month's length.
    fn six_months_before(day: Date) -> Date {
        let (mut year, mut month) = (day.year(), day.month() as i32 - 6);
        if month < 1 {
            month += 12;
            year -= 1;
        }
        let month = time::Month::try_from(month as u8).unwrap();
        Date::from_calendar_date(year, month, day.day().min(month.length(year))).unwrap()
    }

    fn latest_is<T: Copy>(list: &[(Date, i64, T)], day: Date, yes: impl Fn(T) -> bool) -> bool {
        list.iter()
            .filter(|(on, _, _)| *on <= day)
            .max_by_key(|(on, seq, _)| (*on, *seq))
            .is_some_and(|(_, _, v)| yes(*v))
    }

    /// Every counter per region: stocks on `day`, flows over `from..=to`, as known on
    /// `known` (None: now). Written from the definitions, not from the projection's code.
    pub fn count(
        log: &Log,
        day: Date,
        from: Date,
        to: Date,
        known: Option<Date>,
    ) -> (BTreeMap<String, Counters>, BTreeMap<String, [i64; 4]>) {
        let seen = |rec: Date| known.is_none_or(|k| rec <= k);
        let mut out: BTreeMap<String, Counters> = BTreeMap::new();
        let within = |on: Date| from <= on && on <= to;
        for stream in &log.cases {
            let events: Vec<&(i64, Date, CaseEvent)> = stream
                .events
                .iter()
                .filter(|(_, rec, _)| seen(*rec))
                .collect();
            let Some((_, _, CaseEvent::CaseOpened { region, .. })) = events.first() else {
                continue;
            };
            let c = out
                .entry(region.as_str().to_owned())
                .or_insert([0; vyzov::N]);
            let voided: Vec<i64> = events
                .iter()
                .filter_map(|(_, _, e)| match e {
                    CaseEvent::EntryVoided { sequence, .. } => Some(*sequence as i64),
                    _ => None,
                })
                .collect();
            for (_, rec, e) in &events {
                if (*rec - e.on()).whole_days() > 30 && e.on() <= day {
                    c[vyzov::LATE] += 1;
                }
            }
            let live: Vec<(i64, &CaseEvent)> = events
                .iter()
                .filter(|(seq, _, _)| !voided.contains(seq))
                .map(|(seq, _, e)| (*seq, e))
                .collect();
            let mut stays = vec![];
            let mut control = vec![];
            let mut acc = vec![];
            let mut reviews = vec![];
            let mut items = HashMap::new();
            let mut done = HashMap::new();
            for (seq, e) in &live {
                match e {
                    CaseEvent::ChildPlaced { on, .. } => {
                        stays.push((*on, *seq, true));
                        c[vyzov::PLACED] += i64::from(within(*on));
                    }
                    CaseEvent::ChildLeftInstitution { on, exit } => {
                        stays.push((*on, *seq, false));
                        let i = [
                            ExitKind::BirthFamily,
                            ExitKind::Guardianship,
                            ExitKind::Foster,
                            ExitKind::Adoption,
                            ExitKind::ComingOfAge,
                            ExitKind::OtherExit,
                        ]
                        .iter()
                        .position(|k| k == exit)
                        .unwrap();
                        c[vyzov::EXIT + i] += i64::from(within(*on));
                    }
                    CaseEvent::TakenUnderPersonalControl { on } => control.push((*on, *seq, true)),
                    CaseEvent::ReleasedFromPersonalControl { on } => {
                        control.push((*on, *seq, false))
                    }
                    CaseEvent::AccompanimentStarted { on, .. } => acc.push((*on, *seq, true)),
                    CaseEvent::AccompanimentEnded { on } => acc.push((*on, *seq, false)),
                    CaseEvent::ConsiliumReviewRecorded { on, .. } => {
                        reviews.push(*on);
                        c[vyzov::REVIEWS] += i64::from(within(*on));
                    }
                    CaseEvent::PlacementPrevented { on } => {
                        c[vyzov::PREVENTED] += i64::from(within(*on))
                    }
                    CaseEvent::ActionItemSet { on, item, due, .. } => {
                        items.insert(*item, (*on, *due));
                    }
                    CaseEvent::ActionItemDone { on, item } => {
                        done.insert(*item, *on);
                    }
                    _ => {}
                }
            }
            let inside = latest_is(&stays, day, |placed| placed);
            c[vyzov::INST] += i64::from(inside);
            c[vyzov::CONTROL] += i64::from(latest_is(&control, day, |on| on));
            c[vyzov::ACCOMPANIED] += i64::from(latest_is(&acc, day, |on| on));
            if inside {
                let placed = stays
                    .iter()
                    .filter(|(on, _, p)| *p && *on <= day)
                    .map(|(on, _, _)| *on)
                    .max()
                    .unwrap();
                let last_review = reviews.iter().filter(|r| **r <= day).max();
                let limit = six_months_before(day);
                if placed < limit && last_review.is_none_or(|r| *r < limit) {
                    c[vyzov::UNREVIEWED] += 1;
                }
            }
            for (item, (set, due)) in &items {
                let closed = done.get(item).is_some_and(|d| *d <= day);
                if *set <= day && *due < day && !closed {
                    c[vyzov::OVERDUE] += 1;
                }
            }
        }
        for stream in &log.orgs {
            let events: Vec<_> = stream
                .events
                .iter()
                .filter(|(_, rec, _)| seen(*rec) && *rec <= day)
                .collect();
            let Some((
                _,
                _,
                OrganisationEvent::OrganisationRegistered {
                    kind,
                    region,
                    details,
                    ..
                },
            )) = events.first()
            else {
                continue;
            };
            if *kind != OrganisationKind::FamilyService {
                continue;
            }
            let c = out
                .entry(region.as_str().to_owned())
                .or_insert([0; vyzov::N]);
            c[vyzov::SERVICES] += 1;
            let mut specialists = details.specialists.unwrap_or(0);
            for (_, _, e) in &events[1..] {
                if let OrganisationEvent::OrganisationDetailsChanged { details } = e {
                    specialists = details.specialists.unwrap_or(0);
                }
            }
            c[vyzov::SPECIALISTS] += i64::from(specialists);
        }
        let mut aid: BTreeMap<String, [i64; 4]> = BTreeMap::new();
        for stream in &log.aid {
            let events: Vec<_> = stream
                .events
                .iter()
                .filter(|(_, rec, _)| seen(*rec))
                .collect();
            let Some((_, _, AidEvent::AidRequested(facts))) = events.first() else {
                continue;
            };
            let mut deliveries: Vec<(uuid::Uuid, Date, i64)> = vec![];
            // Aid entries recorded over 30 days late count as late entries too.
            for (_, rec, e) in &events {
                let on = match e {
                    AidEvent::AidRequested(f) => f.on,
                    AidEvent::AidApproved { on, .. }
                    | AidEvent::AidRefused { on, .. }
                    | AidEvent::AidDeliveryWithdrawn { on, .. } => *on,
                    AidEvent::AidDelivered(d)
                    | AidEvent::AidDeliveryCorrected { delivery: d, .. } => d.on,
                };
                if (*rec - on).whole_days() > 30 && on <= day {
                    out.entry(facts.region.as_str().to_owned())
                        .or_insert([0; vyzov::N])[vyzov::LATE] += 1;
                }
            }
            for (_, _, e) in &events {
                match e {
                    AidEvent::AidDelivered(d)
                    | AidEvent::AidDeliveryCorrected { delivery: d, .. } => {
                        deliveries.retain(|(id, _, _)| *id != d.id);
                        deliveries.push((d.id, d.on, d.amount.kopecks()));
                    }
                    AidEvent::AidDeliveryWithdrawn { delivery, .. } => {
                        deliveries.retain(|(id, _, _)| id != delivery)
                    }
                    _ => {}
                }
            }
            let a = aid.entry(facts.region.as_str().to_owned()).or_default();
            for (_, on, kopecks) in &deliveries {
                if within(*on) {
                    a[0] += kopecks;
                    a[1] += 1;
                }
            }
            if deliveries
                .iter()
                .map(|(_, on, _)| *on)
                .min()
                .is_some_and(within)
            {
                a[2] += 1;
                a[3] += i64::from(facts.children);
            }
        }
        out.retain(|_, c| c.iter().any(|v| *v != 0));
        aid.retain(|_, a| a.iter().any(|v| *v != 0));
        (out, aid)
    }
}

/// What the projection says for the same question.
async fn projected(
    pool: &sqlx::PgPool,
    cache: &vyzov::FigureCache,
    day: time::Date,
    from: time::Date,
    to: time::Date,
    known: Option<time::Date>,
) -> (
    std::collections::BTreeMap<String, Counters>,
    std::collections::BTreeMap<String, [i64; 4]>,
) {
    let days = [day, vyzov::day_before(from), to];
    let f = vyzov::region_figures(pool, &days, known).await.unwrap();
    // The pages' way: the projection's days and late facts held in memory; the same as
    // the tables' answer, for the whole country and for each region.
    let kept = cache.at(pool).await.unwrap();
    assert!(kept.in_memory(), "the snapshot is of this moment");
    let nonzero = |m: &std::collections::HashMap<String, Counters>| {
        let mut m = m.clone();
        m.retain(|_, c| c.iter().any(|v| *v != 0));
        m
    };
    let memory = kept.region_figures(&days, known, None).await.unwrap();
    for (a, b) in memory.iter().zip(&f) {
        assert_eq!(nonzero(a), nonzero(b), "from memory, known on {known:?}");
    }
    let memory = kept.aid_figures(&days, known).await.unwrap();
    let tables = vyzov::aid_figures(pool, &days, known).await.unwrap();
    for (a, b) in memory.iter().zip(&tables) {
        let nonzero = |m: &std::collections::HashMap<(String, String), [i64; 4]>| {
            let mut m = m.clone();
            m.retain(|_, c| c.iter().any(|v| *v != 0));
            m
        };
        assert_eq!(
            nonzero(a),
            nonzero(b),
            "aid from memory, known on {known:?}"
        );
    }
    for region in ["22", "24", "77"] {
        let memory = kept
            .region_figures(&days, known, Some(region))
            .await
            .unwrap();
        let tables = vyzov::region_figures_of(pool, &days, known, Some(region))
            .await
            .unwrap();
        for (a, b) in memory.iter().zip(&tables) {
            assert_eq!(
                nonzero(a),
                nonzero(b),
                "{region} from memory, known on {known:?}"
            );
        }
    }
    // The municipalities (as known now) from memory too: the same as the tables', in every
    // region that has any.
    let with_municipalities: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT region_code FROM vyzov.municipality_month ORDER BY 1")
            .fetch_all(pool)
            .await
            .unwrap();
    assert!(
        !with_municipalities.is_empty(),
        "the history has municipalities"
    );
    for region in &with_municipalities {
        let memory: Vec<_> = (kept.municipality_figures(region, &days).await.unwrap())
            .iter()
            .map(|m| (**m).clone())
            .collect();
        let tables = vyzov::municipality_figures(pool, region, &days)
            .await
            .unwrap();
        assert_eq!(memory, tables, "{region}'s municipalities from memory");
    }
    let mut out = std::collections::BTreeMap::new();
    let regions: std::collections::BTreeSet<&String> = f.iter().flat_map(|m| m.keys()).collect();
    for region in regions {
        let get = |i: usize| f[i].get(region).copied().unwrap_or([0; vyzov::N]);
        let mut c = get(0);
        let (end, start) = (get(2), get(1));
        for (m, slot) in c.iter_mut().enumerate() {
            if !vyzov::STOCKS.contains(&m) && m != vyzov::LATE {
                *slot = end[m] - start[m];
            }
        }
        if c.iter().any(|v| *v != 0) {
            out.insert(region.clone(), c);
        }
    }
    let a = vyzov::aid_figures(pool, &days[1..], known).await.unwrap();
    let mut aid: std::collections::BTreeMap<String, [i64; 4]> = Default::default();
    for (sign, map) in [(-1, &a[0]), (1, &a[1])] {
        for ((region, _form), v) in map {
            let slot = aid.entry(region.clone()).or_default();
            for i in 0..4 {
                slot[i] += sign * v[i];
            }
        }
    }
    aid.retain(|_, v| v.iter().any(|x| *x != 0));
    (out, aid)
}

#[tokio::test]
async fn projection_equals_an_independent_count_as_of_and_as_known_on_several_dates() {
    use time::macros::date;
    let db = opora_tests::TestDb::new().await;
    let today = date!(2026 - 11 - 22);
    let report =
        opora_web::generate::generate(&db.log, 7, opora_web::generate::Scale::Tiny, today, false)
            .await
            .unwrap();
    assert!(report.events > 1_000, "{report:?}");
    // First event by event (one batch, then catching up: the live fold), then rebuilt
    // from the whole log (the rebuild's fold, which keeps tracks and cells in memory).
    let runner =
        opora_projections::Runner::new(db.log.clone(), opora_projections::RunnerConfig::default());
    let projection = opora_projections::vyzov::VyzovProjection::default();
    assert!(runner.step(&projection).await.unwrap() > 0);
    runner.catch_up(&projection).await.unwrap();
    let log = independent::read(&db.pool).await;
    compare_with_independent_count(&db, &log, today).await;
    opora_projections::rebuild(&db.pool, &projection, 500)
        .await
        .unwrap();
    compare_with_independent_count(&db, &log, today).await;
}

async fn compare_with_independent_count(
    db: &opora_tests::TestDb,
    log: &independent::Log,
    today: time::Date,
) {
    use time::macros::date;
    let late: usize = log
        .cases
        .iter()
        .flat_map(|s| &s.events)
        .filter(|(_, rec, e)| (*rec - e.on()).whole_days() > 30)
        .count();
    assert!(late > 0, "the generated history has late entries");
    let days = [
        date!(2023 - 06 - 01), // before any event
        date!(2024 - 07 - 01),
        date!(2025 - 01 - 15),
        date!(2025 - 03 - 28), // late in its month: read as the next month less its days
        date!(2025 - 10 - 01),
        today,
    ];
    // Recording dates from the baseline on (the page refuses earlier ones).
    let knowns = [
        None,
        Some(date!(2024 - 07 - 01)),
        Some(date!(2024 - 09 - 30)),
        Some(date!(2025 - 10 - 01)),
        Some(today),
    ];
    let cache = vyzov::FigureCache::default();
    let held = cache.held().load(&db.pool).await.unwrap();
    assert!(held.cells() > 0, "late facts recorded after the baseline");
    // A date past the projection's horizon reads the horizon's row, in memory as in the
    // tables.
    let far = [date!(2030 - 01 - 01), today];
    let kept = cache.at(&db.pool).await.unwrap();
    let memory = kept.region_figures(&far, None, None).await.unwrap();
    let tables = vyzov::region_figures(&db.pool, &far, None).await.unwrap();
    assert!(memory.iter().map(|m| &**m).eq(tables.iter()));
    assert!(!tables[0].is_empty());
    let mut nonzero = 0;
    for day in days {
        // As known on K, dates up to K (what the dashboard could show on K).
        for known in knowns.into_iter().filter(|k| k.is_none_or(|k| day <= k)) {
            let from = date!(2025 - 01 - 01).min(day);
            let expected = independent::count(log, day, from, day, known);
            let got = projected(&db.pool, &cache, day, from, day, known).await;
            assert_eq!(got.0, expected.0, "counters on {day}, known on {known:?}");
            assert_eq!(got.1, expected.1, "aid on {day}, known on {known:?}");
            nonzero += usize::from(!expected.0.is_empty());
        }
    }
    assert!(nonzero > 10, "the comparison saw figures, not only zeros");
    // One region's figures, and its municipalities' (their running totals by month and the
    // days of the asked month), add up to the same as the federal read.
    let days = [
        date!(2023 - 06 - 01),
        date!(2024 - 07 - 01),
        date!(2025 - 01 - 15),
        today,
        date!(2030 - 01 - 01),
    ];
    let all = vyzov::region_figures(&db.pool, &days, None).await.unwrap();
    let mut compared = 0;
    for region in all
        .iter()
        .flat_map(|m| m.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let one = vyzov::region_figures_of(&db.pool, &days, None, Some(region))
            .await
            .unwrap();
        let munis = vyzov::municipality_figures(&db.pool, region, &days)
            .await
            .unwrap();
        for (i, day) in days.iter().enumerate() {
            let whole = all[i].get(region).copied().unwrap_or([0; vyzov::N]);
            assert_eq!(one[i].get(region).copied().unwrap_or([0; vyzov::N]), whole);
            let mut sum = [0; vyzov::N];
            for counters in munis[i].values() {
                for (s, v) in sum.iter_mut().zip(counters) {
                    *s += v;
                }
            }
            assert_eq!(sum, whole, "municipalities of {region} on {day}");
            compared += usize::from(whole.iter().any(|v| *v != 0));
        }
    }
    assert!(compared > 10, "the municipalities' comparison saw figures");
    // Known on a day before the baseline differs from known today: late entries matter.
    let early = projected(
        &db.pool,
        &cache,
        date!(2024 - 07 - 01),
        date!(2024 - 01 - 01),
        date!(2024 - 07 - 01),
        Some(date!(2024 - 07 - 01)),
    )
    .await;
    let now = projected(
        &db.pool,
        &cache,
        date!(2024 - 07 - 01),
        date!(2024 - 01 - 01),
        date!(2024 - 07 - 01),
        None,
    )
    .await;
    assert_ne!(early.0, now.0);
}

/// Seed 004's «Дети в семье» table: region, services, specialists, families on accompaniment.
const SERVICES: [(&str, i64, i64, i64); 14] = [
    ("22", 30, 62, 430),
    ("29", 4, 89, 960),
    ("75", 2, 33, 689),
    ("38", 42, 553, 4577),
    ("42", 55, 372, 1267),
    ("24", 5, 30, 294),
    ("56", 5, 42, 376),
    ("59", 9, 130, 3530),
    ("25", 30, 135, 540),
    ("63", 6, 47, 1002),
    ("66", 77, 884, 3686),
    ("69", 27, 100, 1053),
    ("27", 19, 92, 381),
    ("74", 96, 347, 5923),
];

/// `opora generate --scale pilot`: the dashboard's figures, out of the projection over the
/// generated events, are seed 004's.
#[tokio::test]
async fn the_pilot_data_set_shows_the_seeds_figures() {
    use time::macros::date;
    let db = opora_tests::TestDb::new().await;
    opora_web::generate::generate(
        &db.log,
        1,
        opora_web::generate::Scale::Pilot,
        date!(2026 - 11 - 22),
        false,
    )
    .await
    .unwrap();
    let runner =
        opora_projections::Runner::new(db.log.clone(), opora_projections::RunnerConfig::default());
    runner
        .catch_up(&opora_projections::vyzov::VyzovProjection::default())
        .await
        .unwrap();
    let (baseline, midway, new_year) = (
        date!(2024 - 07 - 01),
        date!(2025 - 10 - 01),
        date!(2024 - 12 - 31),
    );
    let f = vyzov::region_figures(&db.pool, &[baseline, midway, new_year], None)
        .await
        .unwrap();
    let at = |i: usize, m: usize| sum(&f[i], &PILOT, m);
    assert_eq!(at(0, vyzov::INST), 21_152);
    assert_eq!(at(1, vyzov::INST), 16_446);
    let change = (16_446.0 - 21_152.0) / 21_152.0 * 100.0;
    assert_eq!(format!("{change:.1}"), "-22.2");
    assert!(f[0]["24"][vyzov::INST] > 4_500, "Красноярский край");
    let exits: i64 = (0..6)
        .map(|i| at(1, vyzov::EXIT + i) - at(2, vyzov::EXIT + i))
        .sum();
    assert_eq!(exits, 22_981, "exits 01.01–01.10.2025");
    assert_eq!(
        at(1, vyzov::EXIT) - at(2, vyzov::EXIT),
        14_825,
        "back to the birth family"
    );
    for (region, services, specialists, families) in SERVICES {
        let c = f[1][region];
        assert_eq!(
            (
                c[vyzov::SERVICES],
                c[vyzov::SPECIALISTS],
                c[vyzov::ACCOMPANIED]
            ),
            (services, specialists, families),
            "region {region}"
        );
    }
    // The dashboard page says −22,2 % for the 14 regions.
    let test = TestApp {
        app: opora_web::Application::build(
            db.log.clone(),
            crate::client::test_vault(&db).await,
            opora_web::AppConfig::default(),
        ),
        vault: crate::client::test_vault(&db).await,
        db,
    };
    let vault = test.vault.clone();
    opora_web::demo::load(&test.db.log, &vault).await.unwrap();
    // Only what the page reads (the register's projections over the pilot's 90 000 cases
    // are not needed here).
    for name in ["reference", "accounts", "vyzov"] {
        let projection = opora_projections::by_name(name).unwrap();
        runner.catch_up(projection.as_ref()).await.unwrap();
    }
    let mut analyst = signed_in(&test, "analyst").await;
    let page = analyst.get("/monitoring/vyzov?na=2025-10-01").await;
    assert!(page.body.contains("21\u{a0}152"));
    assert!(page.body.contains("16\u{a0}446"));
    assert!(page.body.contains("−22,2"));
}
