//! «Заступник»: the response-time KPIs of emergency signals. A few hundred signals with
//! random (seeded) delays between the steps go through the real commands and the
//! `signals` projection; every count, median, 90th percentile and share the API answers is
//! checked against a computation here, over the delays as generated. Drills are left out;
//! the scope holds; the page and the XLSX file are served.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use opora_domain::reference::RegionCode;
use opora_domain::signal::{
    Channel, Recipient, ResponderKind, Signal, SignalCommand, SignalKind, SignalOutcome,
};
use opora_store::{CommandBus, CommandMeta};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use time::{Date, Duration, OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::client::{Client, TestApp};

/// The KPI's steps, in the order of [`Generated::steps`].
const STEPS: [&str; 4] = ["notification", "acknowledgement", "en_route", "on_scene"];

/// One generated signal: where and when (on the region's clock), and the seconds from the
/// press to each step as the KPI defines them (`None`: the step was not reached).
#[derive(Debug)]
struct Generated {
    region: &'static str,
    kind: SignalKind,
    drill: bool,
    local_hour: u8,
    local_date: Date,
    steps: [Option<f64>; 4],
    outcome: Option<SignalOutcome>,
}

/// The regions' clocks: Tatarstan is on Moscow time (UTC+3 since 2014), Altai Krai on
/// UTC+7 (since 2016).
fn clock(region: &str) -> UtcOffset {
    let hours = if region == "16" { 3 } else { 7 };
    UtcOffset::from_hms(hours, 0, 0).unwrap()
}

async fn run(bus: &CommandBus<Signal>, id: &str, command: SignalCommand) {
    bus.execute(id, command.clone(), &CommandMeta::new("test"))
        .await
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
}

/// Raises `n` signals in Tatarstan and Altai over the last 300 days and takes each through
/// a random response: delivered notifications (the first counts; failures do not), the
/// trusted circle (with or without an adult on scene), the operators' response (dispatch,
/// en route, on scene, resolution), or nothing at all. Drills take four times as long, so
/// that counting them would move every figure.
async fn raise_signals(test: &TestApp, rng: &mut StdRng, n: usize) -> (Vec<Uuid>, Vec<Generated>) {
    let bus = CommandBus::<Signal>::new(test.db.log.clone(), ());
    let client = Uuid::from_u128(0x5167_6e61_6c73);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut ids = Vec::new();
    let mut generated = Vec::new();
    for i in 0..n {
        let uuid = Uuid::now_v7();
        let id = uuid.to_string();
        let region = if rng.gen_bool(0.6) { "16" } else { "22" };
        let kind = [SignalKind::Panic, SignalKind::Lost, SignalKind::Threat][rng.gen_range(0..3)];
        let drill = rng.gen_bool(0.12);
        let city = match (region, rng.gen_range(0..4)) {
            (_, 0) => None,
            ("16", 1) => Some("Набережные Челны"),
            ("16", _) => Some("Казань"),
            _ => Some("Барнаул"),
        };
        let scale = if drill { 4 } else { 1 };
        let d = |seconds: i64| seconds * scale;
        let pressed =
            OffsetDateTime::from_unix_timestamp(now - rng.gen_range(86_400..300 * 86_400)).unwrap();
        let at = |seconds: i64| pressed + Duration::seconds(seconds);
        let mother = Recipient {
            adult: "mother".to_owned(),
            channel: Channel::Push,
        };
        let father = Recipient {
            adult: "father".to_owned(),
            channel: Channel::Sms,
        };
        let with_father = rng.gen_bool(0.5);
        let mut recipients = vec![mother.clone()];
        if with_father {
            recipients.push(father.clone());
        }
        run(
            &bus,
            &id,
            SignalCommand::Raise {
                child: format!("child-{i}"),
                client,
                region: RegionCode::parse(region).unwrap(),
                city: city.map(str::to_owned),
                kind,
                pressed_at: pressed,
                received_at: at(rng.gen_range(0..3)),
                location: None,
                drill,
                recipients,
            },
        )
        .await;

        let mut delivered = Vec::new();
        if rng.gen_bool(0.9) {
            let s = d(rng.gen_range(1..60));
            let receipt = SignalCommand::RecordDelivery {
                recipient: mother,
                at: at(s),
                attempts: 1,
                failure: None,
            };
            run(&bus, &id, receipt).await;
            delivered.push(s);
        }
        if with_father {
            let s = d(rng.gen_range(1..120));
            let failure = (!rng.gen_bool(0.7)).then(|| "абонент недоступен".to_owned());
            if failure.is_none() {
                delivered.push(s);
            }
            let receipt = SignalCommand::RecordDelivery {
                recipient: father,
                at: at(s),
                attempts: if failure.is_some() { 3 } else { 1 },
                failure,
            };
            run(&bus, &id, receipt).await;
        }

        let (mut ack, mut en_route, mut on_scene, mut outcome) = (None, None, None, None);
        match rng.gen_range(0..10) {
            // The trusted circle settles it.
            0..=2 => {
                let mut last = 0;
                if rng.gen_bool(0.4) {
                    let a = d(rng.gen_range(5..240));
                    let acknowledge = SignalCommand::Acknowledge {
                        operator: "op1".to_owned(),
                        at: at(a),
                    };
                    run(&bus, &id, acknowledge).await;
                    ack = Some(a);
                    last = a;
                }
                let scene = rng.gen_bool(0.8).then(|| d(rng.gen_range(60..1200)));
                let resolved = last.max(scene.unwrap_or(0)) + d(rng.gen_range(10..120));
                let resolve = SignalCommand::CircleResolve {
                    adult: "mother".to_owned(),
                    at: at(resolved),
                    on_scene_at: scene.map(at),
                };
                run(&bus, &id, resolve).await;
                // An adult on scene was also on the way (the projection's rule).
                en_route = scene;
                on_scene = scene;
                outcome = Some(SignalOutcome::TrustedCircle);
            }
            // The operators respond.
            3..=8 => {
                let a = d(rng.gen_range(5..400));
                let acknowledge = SignalCommand::Acknowledge {
                    operator: "op1".to_owned(),
                    at: at(a),
                };
                run(&bus, &id, acknowledge).await;
                ack = Some(a);
                let responder = [
                    ResponderKind::Police,
                    ResponderKind::Volunteer,
                    ResponderKind::Medics,
                ][rng.gen_range(0..3)];
                let mut last = a + d(rng.gen_range(5..120));
                let dispatch = SignalCommand::Dispatch {
                    responder,
                    at: at(last),
                    note: None,
                };
                run(&bus, &id, dispatch).await;
                if rng.gen_bool(0.85) {
                    last += d(rng.gen_range(5..300));
                    let step = SignalCommand::EnRoute {
                        responder,
                        at: at(last),
                    };
                    run(&bus, &id, step).await;
                    en_route = Some(last);
                    if rng.gen_bool(0.8) {
                        last += d(rng.gen_range(30..1500));
                        let step = SignalCommand::OnScene {
                            responder,
                            at: at(last),
                        };
                        run(&bus, &id, step).await;
                        on_scene = Some(last);
                    }
                }
                if rng.gen_bool(0.85) {
                    let ended = [
                        SignalOutcome::Operators,
                        SignalOutcome::EmergencyServices,
                        SignalOutcome::FalseAlarm,
                    ][rng.gen_range(0..3)];
                    let resolve = SignalCommand::Resolve {
                        outcome: ended,
                        at: at(last + d(rng.gen_range(30..600))),
                        note: None,
                    };
                    run(&bus, &id, resolve).await;
                    outcome = Some(ended);
                }
            }
            // Nobody has answered yet.
            _ => {}
        }
        let local = pressed.to_offset(clock(region));
        let seconds = |s: Option<i64>| s.map(|s| s as f64);
        ids.push(uuid);
        generated.push(Generated {
            region,
            kind,
            drill,
            local_hour: local.hour(),
            local_date: local.date(),
            steps: [
                seconds(delivered.iter().min().copied()),
                seconds(ack),
                seconds(en_route),
                seconds(on_scene),
            ],
            outcome,
        });
    }
    (ids, generated)
}

/// The percentile with linear interpolation (PostgreSQL's `percentile_cont`): for sorted
/// values, rank = p·(n−1), between the values at its floor and its ceiling.
fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut xs = values.to_vec();
    xs.sort_by(f64::total_cmp);
    let rank = p * (xs.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(xs[lo] + (rank - lo as f64) * (xs[hi] - xs[lo]))
}

fn close(actual: &Value, expected: Option<f64>, what: &str) {
    match expected {
        None => assert!(actual.is_null(), "{what}: {actual}, expected null"),
        Some(expected) => {
            let actual = actual
                .as_f64()
                .unwrap_or_else(|| panic!("{what}: {actual}, expected {expected}"));
            assert!(
                (actual - expected).abs() < 1e-6,
                "{what}: {actual}, expected {expected}"
            );
        }
    }
}

/// Every step's count, median, 90th percentile and share within 3 minutes of a group.
fn assert_group(group: &Value, signals: &[&Generated], what: &str) {
    assert_eq!(
        group["signals"].as_i64(),
        Some(signals.len() as i64),
        "{what}: signals in {group}"
    );
    for (i, step) in STEPS.iter().enumerate() {
        let xs: Vec<f64> = signals.iter().filter_map(|s| s.steps[i]).collect();
        let figures = &group[step];
        let what = format!("{what}, {step}");
        assert_eq!(
            figures["count"].as_i64(),
            Some(xs.len() as i64),
            "{what}: count"
        );
        close(
            &figures["median_seconds"],
            percentile(&xs, 0.5),
            &format!("{what}: median"),
        );
        close(
            &figures["p90_seconds"],
            percentile(&xs, 0.9),
            &format!("{what}: p90"),
        );
        let within = xs.iter().filter(|x| **x <= 180.0).count();
        assert_eq!(
            figures["within_3_min"].as_i64(),
            Some(within as i64),
            "{what}: within 3 min"
        );
        close(
            &figures["share_within_3_min"],
            (!xs.is_empty()).then(|| within as f64 / xs.len() as f64),
            &format!("{what}: share within 3 min"),
        );
    }
}

fn row<'a>(list: &'a Value, key: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("no row «{key}» in {list}"))
}

async fn signed_in(test: &TestApp, login: &str) -> Client {
    let mut client = test.client();
    client.login(login).await;
    client
}

async fn kpi(client: &mut Client, query: &str) -> Value {
    let answer = client.get(&format!("/api/v1/signals/kpi{query}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.body);
    serde_json::from_str(&answer.body).unwrap()
}

/// `1 мин 05 с`, as the page shows a time.
fn duration_text(seconds: f64) -> String {
    let total = seconds.round() as i64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h} ч {m:02} мин {s:02} с")
    } else if m > 0 {
        format!("{m} мин {s:02} с")
    } else {
        format!("{s} с")
    }
}

#[tokio::test]
async fn response_times_match_an_independent_computation() {
    let test = TestApp::with_demo().await;
    let mut rng = StdRng::seed_from_u64(0x5a57_0007);
    let (ids, generated) = raise_signals(&test, &mut rng, 320).await;
    test.project().await;
    // Only these signals: whatever else the demo data may hold is not part of this sum.
    sqlx::query("DELETE FROM signals.signal WHERE NOT (id = ANY($1))")
        .bind(&ids)
        .execute(&test.db.pool)
        .await
        .unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM signals.signal")
        .fetch_one(&test.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, generated.len() as i64, "every signal is projected");

    let real: Vec<&Generated> = generated.iter().filter(|s| !s.drill).collect();
    let drills = generated.len() - real.len();
    assert!(
        drills > 10 && real.len() > 250,
        "{drills} drills of {}",
        generated.len()
    );

    let mut analyst = signed_in(&test, "analyst").await;
    let all = kpi(&mut analyst, "").await;

    // Overall, drills left out.
    assert_eq!(all["drills_excluded"].as_i64(), Some(drills as i64));
    assert_group(&all["total"], &real, "overall");
    // Counting the drills would have shown: they take four times as long.
    let with_drills: Vec<f64> = generated.iter().filter_map(|s| s.steps[3]).collect();
    let without: Vec<f64> = real.iter().filter_map(|s| s.steps[3]).collect();
    assert!(
        (percentile(&with_drills, 0.9).unwrap() - percentile(&without, 0.9).unwrap()).abs() > 1.0
    );

    // One region, one kind, one hour of the day (the busiest, on the region's clock).
    let altai: Vec<&Generated> = real.iter().copied().filter(|s| s.region == "22").collect();
    assert_group(row(&all["by_region"], "22"), &altai, "Altai");
    assert_eq!(row(&all["by_region"], "22")["label"], "Алтайский край");
    let lost: Vec<&Generated> = real
        .iter()
        .copied()
        .filter(|s| s.kind == SignalKind::Lost)
        .collect();
    assert_group(row(&all["by_kind"], "lost"), &lost, "lost");
    assert_eq!(
        row(&all["by_kind"], "lost")["label"],
        SignalKind::Lost.label_ru()
    );
    let mut per_hour: BTreeMap<u8, usize> = BTreeMap::new();
    for s in &real {
        *per_hour.entry(s.local_hour).or_default() += 1;
    }
    let (&busiest, _) = per_hour.iter().max_by_key(|(_, n)| **n).unwrap();
    let hour: Vec<&Generated> = real
        .iter()
        .copied()
        .filter(|s| s.local_hour == busiest)
        .collect();
    assert_group(
        row(&all["by_hour"], &busiest.to_string()),
        &hour,
        &format!("{busiest} h"),
    );
    assert_eq!(all["by_hour"].as_array().unwrap().len(), 24);

    // Outcomes: the trusted circle's share of the resolved signals.
    let resolved = real.iter().filter(|s| s.outcome.is_some()).count();
    let by_circle = real
        .iter()
        .filter(|s| s.outcome == Some(SignalOutcome::TrustedCircle))
        .count();
    assert_eq!(all["resolved"].as_i64(), Some(resolved as i64));
    assert_eq!(
        all["unresolved"].as_i64(),
        Some((real.len() - resolved) as i64)
    );
    assert_eq!(all["resolved_by_circle"].as_i64(), Some(by_circle as i64));
    close(
        &all["share_resolved_by_circle"],
        Some(by_circle as f64 / resolved as f64),
        "share resolved by the trusted circle",
    );
    for (outcome, code, _) in SignalOutcome::ALL {
        let count = real.iter().filter(|s| s.outcome == Some(*outcome)).count();
        let line = all["by_outcome"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["code"] == *code)
            .unwrap();
        assert_eq!(line["count"].as_i64(), Some(count as i64), "{code}");
    }

    // A period: local dates of the press in each signal's own region.
    let today = OffsetDateTime::now_utc().to_offset(clock("16")).date();
    let (from, to) = (today - Duration::days(150), today - Duration::days(90));
    let period = kpi(&mut analyst, &format!("?from={from}&to={to}")).await;
    let within: Vec<&Generated> = real
        .iter()
        .copied()
        .filter(|s| (from..=to).contains(&s.local_date))
        .collect();
    assert_group(&period["total"], &within, "the period");
    let period_drills = generated
        .iter()
        .filter(|s| s.drill && (from..=to).contains(&s.local_date))
        .count();
    assert_eq!(
        period["drills_excluded"].as_i64(),
        Some(period_drills as i64)
    );
    assert_eq!(period["from"], from.to_string());
    let bad = analyst.get("/api/v1/signals/kpi?from=31.02.2026").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert!(bad.body.contains("kpi-bad-date"), "{}", bad.body);

    // Scope: a region's ministry sees its region; a signal operator its regions; a region
    // outside the scope answers as one that does not exist.
    let tatarstan: Vec<&Generated> = real.iter().copied().filter(|s| s.region == "16").collect();
    let mut ministry = signed_in(&test, "minobr16").await;
    let own = kpi(&mut ministry, "").await;
    assert_group(&own["total"], &tatarstan, "minobr16");
    assert_eq!(own["by_region"].as_array().unwrap().len(), 1);
    let refused = ministry.get("/api/v1/signals/kpi?region=22").await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    let mut operator = signed_in(&test, "signals").await;
    let theirs = kpi(&mut operator, "?region=16").await;
    assert_group(&theirs["total"], &tatarstan, "the operator in Tatarstan");
    let both = kpi(&mut operator, "").await;
    assert_group(&both["total"], &real, "the operator's regions");
    // A region the operator does not work (its grants say which it does), and one that
    // does not exist.
    let me: Value = serde_json::from_str(&operator.get("/api/v1/me").await.body).unwrap();
    let works: Vec<&str> = me["grants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["scope"]["regions"].as_array())
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(works.contains(&"16") && works.contains(&"22"), "{me}");
    let outside = ["77", "78", "01", "02"]
        .into_iter()
        .find(|r| !works.contains(r))
        .unwrap();
    for region in [outside, "99"] {
        let answer = operator
            .get(&format!("/api/v1/signals/kpi?region={region}"))
            .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "region {region}");
    }
    let page = operator
        .get(&format!("/zastupnik/signaly/kpi?region={outside}"))
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let missing = analyst.get("/api/v1/signals/kpi?region=99").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // The page: tables, the two charts, times as people read them.
    let page = analyst.get("/zastupnik/signaly/kpi").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(page.body.matches("role=\"img\"").count(), 2);
    assert!(page.body.contains("<caption>"));
    assert!(page.body.contains("<th scope=\"row\">Алтайский край</th>"));
    let on_scene: Vec<f64> = real.iter().filter_map(|s| s.steps[3]).collect();
    let median = duration_text(percentile(&on_scene, 0.5).unwrap());
    assert!(
        page.body
            .contains(&format!("<td class=\"num\">{median}</td>")),
        "median time to help {median} not on the page"
    );

    // The file, logged as an export.
    let xlsx = analyst.get("/zastupnik/signaly/kpi.xlsx?region=16").await;
    assert_eq!(xlsx.status, StatusCode::OK);
    assert_eq!(
        xlsx.headers["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    assert!(xlsx.body.starts_with("PK"));
    let exports: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM access.access_log \
          WHERE action = 'export' AND record_type = 'signal_kpi' AND login = 'analyst'",
    )
    .fetch_one(&test.db.pool)
    .await
    .unwrap();
    assert_eq!(exports, 1);
}
