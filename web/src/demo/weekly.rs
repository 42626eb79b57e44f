//! Demo «Заступник» weekly connection reports: the 52 weeks ending with the current one
//! for every municipality of Татарстан and Алтайский край, so that the regions' tables,
//! charts and reminders show a plausible year. The two regions differ on purpose:
//!
//! | figure                     | Татарстан (16)                 | Алтайский край (22)      |
//! |----------------------------|--------------------------------|--------------------------|
//! | municipalities             | 45                             | 69                       |
//! | deadline, lock             | Friday 18:00, 7 days later     | Friday 23:59, 7 days later (the default) |
//! | pupils, big municipalities | Казань ≈160 000, Челны ≈75 000, Нижнекамский ≈31 000, Альметьевский ≈29 000 | Барнаул ≈80 000, Бийск ≈25 000 |
//! | pupils, the others         | 2 000–9 000                    | 1 000–5 000              |
//! | schools                    | Казань 180, Челны 90, others pupils / 450 (8–40) | pupils / 450 (8–40) |
//! | returned, of them corrected| 2, 1 (recent weeks)            | 2, 1                     |
//!
//! In both, a past week has ~93 % of its reports on time (Friday, 09:00 to the deadline or
//! 20:00), ~4 % late (Saturday to Tuesday) and ~3 % missing; the current week ~60 % (none
//! dated after `now`). Children connected grow smoothly from 1–4 % of pupils to 15–35 %,
//! adults are 35–60 % of children, schools taking part grow to the school count and
//! 80–100 % of them name a responsible person; most reports older than two weeks are
//! accepted. Every week stays within the domain's bounds (no drop over 20 %, no jump over
//! 3×) against the last filed figures but one: the Арский district's jump 30 weeks ago,
//! «Подключили школы района по приказу управления».
//!
//! Figures come from generators seeded with a fixed seed and the municipality (and week),
//! and every command has a fixed id, so a second run appends nothing; a run weeks later
//! adds the new weeks (the growth curve follows the window, so a long gap shows a seam).

use anyhow::{anyhow, Context, Result};
use opora_domain::access::Text;
use opora_domain::reference::RegionCode;
use opora_domain::weekly::{
    report_id, Department, Figures, Filing, FilingContext, Period, ReportingSetup, Schedule,
    SetupCommand, Week, WeeklyCommand, WeeklyError, WeeklyReport,
};
use opora_store::{CommandBus, CommandError, CommandMeta, EventLog};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::Row;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

const NAMESPACE: Uuid = Uuid::from_u128(0x6f70_6f72_612d_5745_454b_4445_4d4f_0001);
const ACTOR: &str = "system:demo";
const SEED: u64 = 20_250_905;
const WEEKS: u16 = 52;
/// The regions: code, the capital's telephone code, rural districts' pupils.
const REGIONS: [(&str, &str, u32, u32); 2] =
    [("16", "843", 2_000, 9_000), ("22", "3852", 1_000, 5_000)];
/// Pupils of the big municipalities (others: the region's rural range).
const KNOWN_PUPILS: &[(&str, u32)] = &[
    ("Казань", 160_000),
    ("Набережные Челны", 75_000),
    ("Нижнекамский муниципальный район", 31_000),
    ("Альметьевский муниципальный район", 29_000),
    ("Барнаул", 80_000),
    ("Бийск", 25_000),
];
const JUMP_MUNICIPALITY: &str = "Арский муниципальный район";
const JUMP_WEEKS_AGO: usize = 30;
const JUMP_COMMENT: &str = "Подключили школы района по приказу управления";
const RETURN_COMMENT: &str = "Число взрослых не совпадает с данными школ; уточните.";

fn meta(key: &str) -> CommandMeta {
    CommandMeta::new(ACTOR).with_command_id(Uuid::new_v5(&NAMESPACE, key.as_bytes()))
}

/// A generator of its own for `key`, so a week's figures do not depend on the others.
fn rng_for(key: &str) -> StdRng {
    let (high, _) = Uuid::new_v5(&NAMESPACE, key.as_bytes()).as_u64_pair();
    StdRng::seed_from_u64(SEED ^ high)
}

struct Region {
    code: RegionCode,
    schedule: Schedule,
    municipalities: Vec<Municipality>,
}

struct Municipality {
    id: Uuid,
    name: String,
    pupils: u32,
    schools: u32,
    department: Department,
}

/// One command on one report stream.
struct Step {
    stream: Uuid,
    week: Week,
    key: String,
    command: WeeklyCommand,
}

/// Loads the weekly reports' demo as of `now` (the reference projection must be caught
/// up: municipalities and time zones are read from it). Loading twice writes nothing new.
pub async fn load(log: &EventLog, now: OffsetDateTime) -> Result<()> {
    let mut regions = Vec::new();
    for (code, phone, low, high) in REGIONS {
        regions.push(read_region(log, code, phone, low..=high).await?);
    }
    // The first report stream is written last: when it is there, the whole demo is.
    let first = &regions[0];
    let oldest = first.schedule.week_at(now).last(WEEKS)[0];
    let guard = report_id(first.municipalities[0].id, oldest);
    let loaded = sqlx::query(
        "SELECT 1 FROM public.event WHERE aggregate_type = 'WeeklyReport' AND aggregate_id = $1 LIMIT 1",
    )
    .bind(guard.to_string())
    .fetch_optional(log.pool())
    .await
    .context("looking for the weekly reports' demo")?;
    if loaded.is_some() {
        return Ok(());
    }
    let setup = CommandBus::<ReportingSetup>::new(log.clone(), ());
    let reports = CommandBus::<WeeklyReport>::new(log.clone(), ());
    let mut deferred = Vec::new();
    for region in &regions {
        let code = region.code.as_str();
        let schedule = SetupCommand::SetSchedule {
            region: region.code.clone(),
            schedule: region.schedule.clone(),
        };
        let key = format!("weekly/schedule/{code}");
        let done = setup.execute(code, schedule, &meta(&key)).await;
        outcome(done, || format!("the schedule of region {code}"))?;
        // Two recent reports returned for correction; the older one is corrected.
        let current = region.schedule.week_at(now);
        let count = region.municipalities.len();
        let mut rng = rng_for(&format!("returns/{code}"));
        let corrected = rng.gen_range(0..count);
        let returned = (corrected + rng.gen_range(1..count)) % count;
        for (index, m) in region.municipalities.iter().enumerate() {
            let department = SetupCommand::SetDepartment {
                region: region.code.clone(),
                municipality: m.id,
                department: m.department.clone(),
            };
            let key = format!("weekly/department/{}", m.id);
            let done = setup.execute(code, department, &meta(&key)).await;
            outcome(done, || format!("the department of {}", m.name))?;
            let review = match index {
                i if i == corrected => Some((current.previous().previous(), true)),
                i if i == returned => Some((current.previous(), false)),
                _ => None,
            };
            for step in plan(region, m, review, now) {
                if step.stream == guard {
                    deferred.push((m.name.as_str(), step));
                } else {
                    run(&reports, &m.name, step).await?;
                }
            }
        }
    }
    for (name, step) in deferred {
        run(&reports, name, step).await?;
    }
    Ok(())
}

/// A region's municipalities with their departments, and its demo schedule.
async fn read_region(
    log: &EventLog,
    code: &str,
    phone: &str,
    rural: std::ops::RangeInclusive<u32>,
) -> Result<Region> {
    let zone: String = sqlx::query("SELECT time_zone FROM reference.region WHERE code = $1")
        .bind(code)
        .fetch_one(log.pool())
        .await
        .and_then(|row| row.try_get("time_zone"))
        .with_context(|| format!("the time zone of region {code}"))?;
    let rows = sqlx::query(
        "SELECT id, name FROM reference.municipality WHERE region_code = $1 ORDER BY name",
    )
    .bind(code)
    .fetch_all(log.pool())
    .await
    .with_context(|| format!("the municipalities of region {code}"))?;
    anyhow::ensure!(rows.len() >= 2, "region {code}: too few municipalities");
    let mut municipalities = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let (id, name): (Uuid, String) = (row.try_get("id")?, row.try_get("name")?);
        let mut rng = rng_for(&format!("department/{id}"));
        let pupils = match KNOWN_PUPILS.iter().find(|(known, _)| *known == name) {
            Some((_, pupils)) => pupils / 100 * rng.gen_range(97..=103),
            None => rng.gen_range(rural.clone()) / 10 * 10,
        };
        let schools = match name.as_str() {
            "Казань" => 180,
            "Набережные Челны" => 90,
            _ => (pupils / 450).clamp(8, 40),
        };
        // Six digits after a four-digit code, seven after a three-digit one.
        let first = rng.gen_range(if phone.len() == 4 { 20..70 } else { 200..300 });
        let (second, third) = (rng.gen_range(0..100), rng.gen_range(0..100));
        let contact = format!("Отдел образования, +7 ({phone}) {first}-{second:02}-{third:02}");
        let email = format!("uo-{code}-{:02}@obr.example", index + 1);
        let department = Department {
            pupils: Some(pupils),
            contact: Some(Text::parse(&contact).with_context(|| format!("contact {contact}"))?),
            email: Some(Text::parse(&email).with_context(|| format!("e-mail {email}"))?),
        };
        municipalities.push(Municipality {
            id,
            name,
            pupils,
            schools,
            department,
        });
    }
    let schedule = match code {
        "16" => Schedule {
            deadline_minute: 18 * 60,
            lock_days: 7,
            ..Schedule::default_in(&zone)
        },
        _ => Schedule::default_in(&zone),
    };
    Ok(Region {
        code: RegionCode::parse(code)?,
        schedule,
        municipalities,
    })
}

/// A municipality's year: its filings in order, each followed by its review (`review`:
/// the week returned for correction and whether a correction follows).
fn plan(
    region: &Region,
    m: &Municipality,
    review: Option<(Week, bool)>,
    now: OffsetDateTime,
) -> Vec<Step> {
    let schedule = &region.schedule;
    let weeks = schedule.week_at(now).last(WEEKS);
    let mut rng = rng_for(&m.id.to_string());
    let (start, end) = (rng.gen_range(0.01..0.04), rng.gen_range(0.15..0.35));
    let adults_share: f64 = rng.gen_range(0.35..0.60);
    let early_schools: f64 = rng.gen_range(0.10..0.30);
    let jump = (m.name == JUMP_MUNICIPALITY).then_some(weeks.len() - 1 - JUMP_WEEKS_AGO);
    let mut previous: Option<Figures> = None;
    let mut steps = Vec::new();
    for (t, &week) in weeks.iter().enumerate() {
        let mut rng = rng_for(&format!("{}/{}", m.id, week.friday()));
        let x = t as f64 / f64::from(WEEKS - 1);
        let early = jump.is_some_and(|j| t < j);
        let scale = if early { 0.2 } else { 1.0 };
        let share = (start + (end - start) * x * x * (3.0 - 2.0 * x)) * scale;
        let children = f64::from(m.pupils) * share * rng.gen_range(0.97..1.03);
        let adults = children * (adults_share + rng.gen_range(-0.015..0.015));
        let joined = 1.0 - (1.0 - x) * (1.0 - x);
        let schools = f64::from(m.schools) * (early_schools + (1.0 - early_schools) * joined);
        let schools = ((schools * scale.sqrt()).round() as u32).clamp(1, m.schools);
        let responsible = f64::from(schools) * (0.8 + 0.15 * x + rng.gen_range(0.0..0.05));
        let comment = (jump == Some(t))
            .then(|| Text::parse(JUMP_COMMENT))
            .flatten();
        let mut figures = Figures {
            children: (children.round() as u32).min(m.pupils),
            adults: adults.round() as u32,
            schools,
            schools_with_responsible: (responsible.round() as u32).min(schools),
        };
        if let (Some(before), None) = (previous, &comment) {
            figures.children = steady(before.children, figures.children).min(m.pupils);
            figures.adults = steady(before.adults, figures.adults);
        }
        // The oldest week, the jump and the returned reports are always filed.
        let forced = t == 0 || jump == Some(t) || review.is_some_and(|(w, _)| w == week);
        let roll: f64 = rng.gen();
        let filed_at = if now < schedule.deadline(week) {
            (forced || roll < 0.6).then(|| on_time(schedule, week, &mut rng))
        } else if forced || roll < 0.93 {
            Some(on_time(schedule, week, &mut rng))
        } else if roll < 0.97 {
            let day = rng.gen_range(1..=4);
            Some(local(schedule, week, day, rng.gen_range(9 * 60..19 * 60)))
        } else {
            None
        };
        let Some(filed_at) = filed_at.filter(|at| *at <= now && *at < schedule.locks_at(week))
        else {
            continue;
        };
        let period = Period {
            region: region.code.clone(),
            municipality: m.id,
            week,
        };
        let stream = report_id(m.id, week);
        let key = format!("weekly/{}/{}", m.id, week.friday());
        let file = |figures, comment, now| WeeklyCommand::File {
            period: period.clone(),
            filing: Filing {
                figures,
                schools: vec![],
                comment,
            },
            context: FilingContext {
                now,
                schedule: schedule.clone(),
                previous,
                pupils: Some(m.pupils),
            },
        };
        let mut step = |suffix: &str, command| {
            let key = format!("{key}/{suffix}");
            steps.push(Step {
                stream,
                week,
                key,
                command,
            });
        };
        step("file", file(figures, comment, filed_at));
        let mut last = figures;
        if let Some((_, corrected)) = review.filter(|(w, _)| *w == week) {
            let comment = Text::parse(RETURN_COMMENT);
            step("return", WeeklyCommand::Return { comment });
            let at = filed_at + Duration::days(1);
            if corrected && at <= now && at < schedule.locks_at(week) {
                let fewer = figures.adults.saturating_sub(figures.adults / 20 + 1);
                let fewer = previous.map_or(fewer, |p| steady(p.adults, fewer));
                last.adults = fewer + u32::from(fewer == figures.adults);
                step("correct", file(last, None, at));
            }
        } else if t + 3 < weeks.len() && rng.gen_bool(0.95) {
            step("accept", WeeklyCommand::Accept { comment: None });
        }
        previous = Some(last);
    }
    steps
}

/// `now` moved, where needed, into the bounds the domain takes without a comment: not
/// more than 20 % below `before`, not more than three times above it.
fn steady(before: u32, now: u32) -> u32 {
    if before == 0 {
        now
    } else {
        now.clamp((before * 4).div_ceil(5), before * 3)
    }
}

/// On time: Friday between 09:00 and the deadline (20:00 at the latest), local.
fn on_time(schedule: &Schedule, week: Week, rng: &mut StdRng) -> OffsetDateTime {
    let last = schedule.deadline_minute.clamp(9 * 60, 20 * 60);
    local(schedule, week, 0, rng.gen_range(9 * 60..=last))
}

/// `minute` past local midnight, `days` after the week's Friday. Counted back from the
/// deadline: the two regions keep no summer time, so the offset holds all week.
fn local(schedule: &Schedule, week: Week, days: i64, minute: u16) -> OffsetDateTime {
    let back = i64::from(schedule.deadline_minute) + 1 - i64::from(minute);
    schedule.deadline(week) + Duration::days(days - i64::from(schedule.deadline_day))
        - Duration::minutes(back)
}

async fn run(reports: &CommandBus<WeeklyReport>, name: &str, step: Step) -> Result<()> {
    let stream = step.stream.to_string();
    let done = reports
        .execute(&stream, step.command, &meta(&step.key))
        .await;
    outcome(done, || {
        format!("{name}, week {} ({})", step.week, step.key)
    })
}

/// A refusal is a bug in this generator: it says which command and why.
fn outcome<T>(
    result: Result<T, CommandError<WeeklyError>>,
    what: impl Fn() -> String,
) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(CommandError::Rejected(e)) => Err(anyhow!(
            "the weekly demo made a command the domain refuses, {}: {e}",
            what()
        )),
        Err(e) => Err(anyhow!("weekly demo, {}: {e}", what())),
    }
}
