//! Demo «Заступник» signals: a year of presses for the four cities of the seeds, with their
//! users and signal counts (seed 000: Омск 45 882 users / 1 988 signals, Нижний Новгород
//! 31 133 / 876, Тюмень 17 252 / 598, Ульяновск 13 089 / 314), and a few signals open right
//! now so the console has a live queue.
//!
//! Lifecycles follow the seeds: the trusted adults are notified within seconds; 79 % of the
//! signals are settled by the trusted circle (an adult reaches the child in 1–4 minutes);
//! about 4 % are cancelled by the child and 3 % are false alarms; the rest go to the
//! operators, who acknowledge in 5–40 s (one in twenty waits past the escalation
//! threshold and is escalated), dispatch a volunteer (police for a threat, medics for
//! health or an accident) who is there in 2–5 minutes. 2 % are drills. Presses are more
//! frequent in the afternoon and evening, local time.
//!
//! Deterministic (fixed seed per city), with fixed command ids; a city whose last signal is
//! in the log is skipped, so a restart appends nothing.

use std::sync::Arc;

use anyhow::{Context, Result};
use opora_domain::reference::RegionCode;
use opora_domain::signal::{
    Channel, ClientCommand, IntegrationClient, Location, Recipient, ResponderKind, Signal,
    SignalCommand, SignalKind, SignalOutcome,
};
use opora_store::{CommandBus, CommandMeta, EventLog};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

const NAMESPACE: Uuid = Uuid::from_u128(0x6f70_6f72_612d_5349_474e_414c_4445_4d4f);
const ACTOR: &str = "system:demo";
/// The demo's ingestion key (public, like the demo password): for `opora simulate`.
pub const DEMO_INGEST_KEY: &str = "opk_demo_zastupnik_2026";
/// The demo ingestion client's id.
pub const DEMO_CLIENT: Uuid = Uuid::from_u128(0x6f70_6f72_612d_636c_6965_6e74_6465_6d6f);

/// Region, city, users of the app, signals in a year, latitude, longitude, local UTC offset.
pub const CITIES: [(&str, &str, u32, u32, f64, f64, i64); 4] = [
    ("55", "Омск", 45_882, 1_988, 54.9885, 73.3242, 6),
    ("52", "Нижний Новгород", 31_133, 876, 56.3269, 44.0059, 3),
    ("72", "Тюмень", 17_252, 598, 57.1522, 65.5272, 5),
    ("73", "Ульяновск", 13_089, 314, 54.3142, 48.4031, 4),
];

/// Signals still open when the demo loads (per city).
const OPEN_NOW: u32 = 1;

fn signal_id(city: &str, n: u32) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("signal:{city}:{n}").as_bytes())
}

fn meta(city: &str, n: u32, step: &str) -> CommandMeta {
    CommandMeta::new(ACTOR).with_command_id(Uuid::new_v5(
        &NAMESPACE,
        format!("cmd:{city}:{n}:{step}").as_bytes(),
    ))
}

fn weighted<T: Copy>(rng: &mut StdRng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut pick = rng.gen_range(0..total.max(1));
    for (item, weight) in items {
        if pick < *weight {
            return *item;
        }
        pick -= weight;
    }
    items[0].0
}

const KINDS: &[(SignalKind, u32)] = &[
    (SignalKind::Panic, 55),
    (SignalKind::Lost, 15),
    (SignalKind::Threat, 10),
    (SignalKind::Bullying, 8),
    (SignalKind::Health, 6),
    (SignalKind::Accident, 4),
    (SignalKind::Other, 2),
];

/// Relative frequency of presses by local hour.
const HOURS: [u32; 24] = [
    1, 1, 1, 1, 1, 1, 2, 4, 6, 5, 4, 4, 5, 7, 9, 10, 10, 9, 8, 7, 6, 4, 2, 1,
];

/// Loads the demo signals; appends nothing for a city already loaded.
pub async fn load(log: &EventLog, now: OffsetDateTime) -> Result<()> {
    register_demo_client(log).await?;
    let bus = Arc::new(CommandBus::<Signal>::new(log.clone(), ()));
    for (index, city) in CITIES.iter().enumerate() {
        let (region, name, _, count, ..) = *city;
        let last = signal_id(name, count + OPEN_NOW - 1);
        if log.stream_length("Signal", &last.to_string()).await? > 0 {
            continue;
        }
        let region = RegionCode::parse(region).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut tasks = tokio::task::JoinSet::new();
        let lanes = 6_u32;
        for lane in 0..lanes {
            let bus = Arc::clone(&bus);
            let region = region.clone();
            let city = *city;
            tasks.spawn(async move {
                let mut n = lane;
                while n < count + OPEN_NOW {
                    let mut rng = StdRng::seed_from_u64(
                        20_261_122 + (index as u64) * 1_000_000 + u64::from(n),
                    );
                    write_signal(&bus, &region, city, n, n >= count, now, &mut rng).await?;
                    n += lanes;
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.context("a demo task failed")??;
        }
        tracing::info!(city = name, signals = count, "demo signals loaded");
    }
    connected_users(log, now).await
}

/// Each city's users, as its education department's weekly report for last week: children
/// ≈ 62 % of the app's users, adults the rest (the KPI page shows signals per 1,000).
async fn connected_users(log: &EventLog, now: OffsetDateTime) -> Result<()> {
    use opora_domain::weekly::{
        report_id, Figures, Filing, FilingContext, Period, Schedule, Week, WeeklyCommand,
        WeeklyReport,
    };
    let reports = CommandBus::<WeeklyReport>::new(log.clone(), ());
    for (region, city, users, ..) in CITIES {
        let found: Option<(Uuid, String)> = sqlx::query_as(
            "SELECT m.id, r.time_zone FROM reference.municipality m \
               JOIN reference.region r ON r.code = m.region_code \
              WHERE m.region_code = $1 AND m.name = $2",
        )
        .bind(region)
        .bind(city)
        .fetch_optional(log.pool())
        .await?;
        let Some((municipality, zone)) = found else {
            continue;
        };
        let week = Week::containing(now.date()).previous();
        let stream = report_id(municipality, week);
        if log
            .stream_length("WeeklyReport", &stream.to_string())
            .await?
            > 0
        {
            continue;
        }
        let children = users * 62 / 100;
        let schools = (users / 380).max(10);
        let filed_at = week.friday().midnight().assume_utc() + Duration::hours(9);
        reports
            .execute(
                &stream.to_string(),
                WeeklyCommand::File {
                    period: Period {
                        region: RegionCode::parse(region).map_err(|e| anyhow::anyhow!("{e}"))?,
                        municipality,
                        week,
                    },
                    filing: Filing {
                        figures: Figures {
                            children,
                            adults: users - children,
                            schools,
                            schools_with_responsible: schools * 9 / 10,
                        },
                        schools: vec![],
                        comment: None,
                    },
                    context: FilingContext {
                        now: filed_at,
                        schedule: Schedule::default_in(&zone),
                        previous: None,
                        pupils: None,
                    },
                },
                &CommandMeta::new(ACTOR).with_command_id(Uuid::new_v5(
                    &NAMESPACE,
                    format!("users:{city}:{}", week.friday()).as_bytes(),
                )),
            )
            .await
            .map_err(|e| anyhow::anyhow!("demo weekly report of {city}: {e}"))?;
    }
    Ok(())
}

async fn register_demo_client(log: &EventLog) -> Result<()> {
    let bus = CommandBus::<IntegrationClient>::new(log.clone(), ());
    if log
        .stream_length("IntegrationClient", &DEMO_CLIENT.to_string())
        .await?
        > 0
    {
        return Ok(());
    }
    bus.execute(
        &DEMO_CLIENT.to_string(),
        ClientCommand::Register {
            name: "Заступник (демо)".to_owned(),
            key_hash: crate::ingest::key_hash(DEMO_INGEST_KEY),
            rate_per_second: 200,
        },
        &CommandMeta::new(ACTOR).with_command_id(Uuid::new_v5(&NAMESPACE, b"client")),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

type City = (&'static str, &'static str, u32, u32, f64, f64, i64);

#[allow(clippy::too_many_arguments)]
async fn write_signal(
    bus: &CommandBus<Signal>,
    region: &RegionCode,
    city: City,
    n: u32,
    open: bool,
    now: OffsetDateTime,
    rng: &mut StdRng,
) -> Result<()> {
    let (_, name, users, _, lat, lon, offset) = city;
    // When: a day of the past year, an hour by the local pattern; open ones just now.
    let pressed_at = if open {
        now - Duration::seconds(rng.gen_range(20..50))
    } else {
        let day = rng.gen_range(1..365_i64);
        let hour = weighted(
            rng,
            &HOURS
                .iter()
                .enumerate()
                .map(|(h, w)| (h as i64, *w))
                .collect::<Vec<_>>(),
        );
        let midnight_utc = (now - Duration::days(day)).replace_time(time::Time::MIDNIGHT);
        midnight_utc + Duration::hours(hour - offset) + Duration::seconds(rng.gen_range(0..3600))
    };
    let s = |seconds: f64| pressed_at + Duration::milliseconds((seconds * 1000.0) as i64);
    let id = signal_id(name, n).to_string();
    let kind = weighted(rng, KINDS);
    let child = format!("demo-{}-{}", region.as_str(), rng.gen_range(0..users));
    let adults = rng.gen_range(1..=3_u32);
    let mut recipients = Vec::new();
    for a in 0..adults {
        let adult = format!("{child}-a{a}");
        recipients.push(Recipient {
            adult: adult.clone(),
            channel: Channel::Push,
        });
        if a == 0 {
            recipients.push(Recipient {
                adult,
                channel: Channel::Sms,
            });
        }
    }
    let exec = |command: SignalCommand, step: &'static str| {
        let id = id.clone();
        async move {
            bus.execute(&id, command, &meta(name, n, step))
                .await
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("demo signal {name} {n} {step}: {e}"))
        }
    };
    exec(
        SignalCommand::Raise {
            child,
            client: DEMO_CLIENT,
            region: region.clone(),
            city: Some(name.to_owned()),
            kind,
            pressed_at,
            received_at: s(rng.gen_range(0.4..3.0)),
            location: Some(Location {
                latitude: lat + rng.gen_range(-0.08..0.08),
                longitude: lon + rng.gen_range(-0.12..0.12),
                accuracy_m: Some(rng.gen_range(5.0..60.0_f64).round()),
            }),
            drill: rng.gen_bool(0.02),
            recipients: recipients.clone(),
        },
        "raise",
    )
    .await?;
    for (i, recipient) in recipients.into_iter().enumerate() {
        let step = ["d0", "d1", "d2", "d3", "d4", "d5"][i.min(5)];
        exec(
            SignalCommand::RecordDelivery {
                recipient,
                at: s(rng.gen_range(1.0..4.0)),
                attempts: 1,
                failure: None,
            },
            step,
        )
        .await?;
    }
    if open {
        return Ok(());
    }
    let path = rng.gen_range(0..100);
    let adult = format!("demo-adult-{n}");
    if path < 79 {
        let on_scene = rng.gen_range(60.0..240.0);
        exec(
            SignalCommand::AdultAcknowledge {
                adult: adult.clone(),
                at: s(rng.gen_range(8.0..50.0)),
            },
            "adult-ack",
        )
        .await?;
        exec(
            SignalCommand::CircleResolve {
                adult,
                at: s(on_scene + rng.gen_range(60.0..900.0)),
                on_scene_at: Some(s(on_scene)),
            },
            "circle",
        )
        .await?;
        return Ok(());
    }
    if path < 83 {
        return exec(
            SignalCommand::Cancel {
                at: s(rng.gen_range(5.0..40.0)),
            },
            "cancel",
        )
        .await;
    }
    let escalated = rng.gen_bool(0.05);
    let ack = if escalated {
        exec(
            SignalCommand::Escalate {
                at: s(61.0),
                after_seconds: 60,
            },
            "escalate",
        )
        .await?;
        rng.gen_range(65.0..120.0)
    } else {
        rng.gen_range(5.0..40.0)
    };
    exec(
        SignalCommand::Acknowledge {
            operator: "signals".to_owned(),
            at: s(ack),
        },
        "ack",
    )
    .await?;
    if path < 86 {
        return exec(
            SignalCommand::Resolve {
                outcome: SignalOutcome::FalseAlarm,
                at: s(ack + rng.gen_range(30.0..300.0)),
                note: Some("Ребёнок нажал кнопку случайно".to_owned()),
            },
            "resolve",
        )
        .await;
    }
    let responder = match kind {
        SignalKind::Threat => ResponderKind::Police,
        SignalKind::Health | SignalKind::Accident => ResponderKind::Medics,
        SignalKind::Lost if rng.gen_bool(0.3) => ResponderKind::SearchTeam,
        _ => ResponderKind::Volunteer,
    };
    let dispatched = ack + rng.gen_range(5.0..30.0);
    let en_route = dispatched + rng.gen_range(10.0..40.0);
    let on_scene = (en_route + rng.gen_range(40.0..200.0)).max(90.0);
    exec(
        SignalCommand::Dispatch {
            responder,
            at: s(dispatched),
            note: None,
        },
        "dispatch",
    )
    .await?;
    exec(
        SignalCommand::EnRoute {
            responder,
            at: s(en_route),
        },
        "en-route",
    )
    .await?;
    exec(
        SignalCommand::OnScene {
            responder,
            at: s(on_scene),
        },
        "on-scene",
    )
    .await?;
    let outcome = if matches!(responder, ResponderKind::Police | ResponderKind::Medics) {
        SignalOutcome::EmergencyServices
    } else {
        SignalOutcome::Operators
    };
    exec(
        SignalCommand::Resolve {
            outcome,
            at: s(on_scene + rng.gen_range(300.0..1800.0)),
            note: None,
        },
        "resolve",
    )
    .await
}
