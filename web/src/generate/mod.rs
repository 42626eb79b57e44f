//! `opora generate --scale tiny|pilot|national --seed N [--today YYYY-MM-DD]`: a
//! deterministic synthetic history written through the event store, with historical
//! recording instants, so that dashboards can show any figure as of an effective date and as
//! known on a recording date.
//!
//! - **pilot**: the 14 «Вызов» regions from 01.01.2024 to `--today` (at least 02.10.2025),
//!   holding seed 004's figures exactly: 21,152 children in institutions on 01.07.2024,
//!   16,446 on 01.10.2025, 22,981 exits from 01.01.2025 to 01.10.2025 (14,825 back to the
//!   birth family), about 9,000 placements prevented in 2025, and per region the «Дети в
//!   семье» table (services, their specialists, families on accompaniment on 01.10.2025);
//!   with consilium reviews, action items, personal control, visits and NGO aid.
//! - **national**: every region of `seed/regions.csv` (the pilot's 14 exactly as in the
//!   pilot), about 10 million events: ~400,000 cases, ~2,300 municipalities (the seed's and
//!   synthetic ones, registered through the `Municipality` aggregate) filing «Заступник»
//!   weekly reports every Friday for two years, connected users growing to about a million,
//!   ~450,000 signals with their whole response, aid.
//! - **tiny**: the pilot divided by 100, plus eight weeks of one region's weekly reports and
//!   60 signals: a few seconds, for tests.
//!
//! Deterministic: every entity (a case, a report, a signal) has its own generator seeded
//! from `--seed`, its kind and its number, and ids are UUIDv5 of the seed and counters; no
//! clock is read except for `--today`'s default. The same seed and `--today` give the same
//! events, payloads, recording instants and hashes.
//!
//! Events are made as the aggregates would have made them (the unit tests replay every
//! case through `CaseState::replay`), with `actor = system:generate` and no command id,
//! and appended with [`opora_store::BulkAppender`] day by day in recording order: an entity
//! is rendered again each day it has events (rendering is cheap and deterministic), so
//! memory holds one day's events and a wake-up list, never the history.
//!
//! Not generated: persons and families. Their personal data is sealed with a random key per
//! person and a random nonce (that is what makes erasure possible), so it cannot be
//! deterministic, and fake sealed data would be unreadable; cases carry region,
//! municipality and a family id of their own, which is what the dashboards count. Nor
//! consilium sittings, users or logins.

pub mod clock;
pub mod plan;
pub mod vyzov;
pub mod zastupnik;

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use cqrs_es::DomainEvent;
use indicatif::{ProgressBar, ProgressStyle};
use opora_domain::aid::AidEvent;
use opora_domain::case::CaseEvent;
use opora_domain::organisation::OrganisationEvent;
use opora_domain::reference::{Municipality, MunicipalityCommand, PlaceName, RegionCode};
use opora_domain::signal::{ClientEvent, SignalEvent};
use opora_domain::weekly::WeeklyEvent;
use opora_store::{BulkAppender, CommandBus, CommandMeta, EventLog};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

pub use plan::World;

/// Namespace of every id the generator makes (with the seed in the name).
pub const NAMESPACE: Uuid = Uuid::from_u128(0x6f70_6f72_612d_4745_4e45_5241_5445_0001);
/// The actor of generated events.
pub const ACTOR: &str = "system:generate";

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Tiny,
    Pilot,
    National,
}

#[derive(clap::Args, Debug, Clone)]
pub struct GenerateArgs {
    /// How much history: `tiny` (tests), `pilot` (the 14 «Вызов» regions, seed 004's
    /// figures) or `national` (every region, about 10 million events).
    #[arg(long, value_enum)]
    pub scale: Scale,
    /// The same seed gives the same events.
    #[arg(long)]
    pub seed: u64,
    /// The last day of the history is the day before this one (YYYY-MM-DD; default: today
    /// in Moscow). Must be after 01.10.2025.
    #[arg(long, value_parser = parse_today)]
    pub today: Option<Date>,
    /// Count the events only; write nothing (no database needed).
    #[arg(long, hide = true)]
    pub dry_run: bool,
}

fn parse_today(raw: &str) -> Result<Date, String> {
    opora_domain::parse_date(raw).ok_or_else(|| format!("«{raw}»: ожидается дата ГГГГ-ММ-ДД"))
}

/// An event of any of the generated aggregates.
#[derive(Debug, Clone)]
pub enum AnyEvent {
    Case(CaseEvent),
    Aid(AidEvent),
    Organisation(OrganisationEvent),
    Weekly(WeeklyEvent),
    Signal(SignalEvent),
    Client(ClientEvent),
}

impl AnyEvent {
    pub fn event_type(&self) -> String {
        match self {
            Self::Case(e) => e.event_type(),
            Self::Aid(e) => e.event_type(),
            Self::Organisation(e) => e.event_type(),
            Self::Weekly(e) => e.event_type(),
            Self::Signal(e) => e.event_type(),
            Self::Client(e) => e.event_type(),
        }
    }
}

/// One event to append: its stream, when it happened (the effective date, where the
/// aggregate's command has one) and when it is recorded.
#[derive(Debug, Clone)]
pub struct Planned {
    pub aggregate_type: &'static str,
    pub stream: Uuid,
    pub event: AnyEvent,
    pub effective: Option<Date>,
    pub at: OffsetDateTime,
    /// The last event of its stream: the appender may forget the stream after it.
    pub last: bool,
}

/// Something that has events: rendered from the world and its number alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Directory(u16),
    Client,
    Case(u32),
    Report(u32),
    Signal(u32),
}

impl World {
    /// Everything that has events, in a fixed order.
    pub fn entities(&self) -> impl Iterator<Item = Entity> + '_ {
        let directories = (0..self.regions.len()).map(|r| Entity::Directory(r as u16));
        let client = self.zastupnik.iter().map(|_| Entity::Client);
        let cases = (0..self.cases.len()).map(|i| Entity::Case(i as u32));
        let (reports, signals) = self
            .zastupnik
            .as_ref()
            .map_or((0, 0), |z| (z.reports(), z.signals as usize));
        directories
            .chain(client)
            .chain(cases)
            .chain((0..reports).map(|i| Entity::Report(i as u32)))
            .chain((0..signals).map(|i| Entity::Signal(i as u32)))
    }

    /// The events of one entity, in recording order.
    pub fn render(&self, entity: Entity) -> Vec<Planned> {
        match entity {
            Entity::Directory(r) => {
                let mut events = vyzov::organisation_events(self, &self.regions[usize::from(r)]);
                events.sort_by_key(|p| p.at);
                events
            }
            Entity::Client => self
                .zastupnik
                .as_ref()
                .map(|z| zastupnik::client_events(self, z))
                .unwrap_or_default(),
            Entity::Case(i) => vyzov::case_events(self, i as usize),
            Entity::Report(i) => self
                .zastupnik
                .as_ref()
                .map(|z| zastupnik::weekly_events(self, z, i as usize))
                .unwrap_or_default(),
            Entity::Signal(i) => self
                .zastupnik
                .as_ref()
                .map(|z| zastupnik::signal_events(self, z, i as usize))
                .unwrap_or_default(),
        }
    }
}

/// What a run wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub events: u64,
    pub streams: u64,
    pub seconds: f64,
    /// Of `seconds`: waiting for the database, and the database's time in `COPY`.
    pub waited_seconds: f64,
    pub copy_seconds: f64,
    /// Events by aggregate type.
    pub by_type: BTreeMap<&'static str, u64>,
    /// The hash of the last event written (equal for equal seeds and `--today`).
    pub last_hash: [u8; 32],
}

impl Report {
    pub fn events_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Why a run writes nothing.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "Данные с seed {seed} уже есть в журнале: журнал не исправляется, повторная загрузка удвоила бы историю. Используйте другую базу или другой seed.\n\
         Generated data of seed {seed} is already in the log: the log is append-only and a second load would double the history. Use another database or another seed."
    )]
    AlreadyGenerated { seed: u64 },
    #[error(
        "В журнале уже есть еженедельные отчёты «Заступника» за эти недели (другой seed или демо-данные); отчёт муниципалитета за неделю может быть только один. Используйте пустую базу.\n\
         The log already holds «Заступник» weekly reports for these weeks (another seed or the demo); a municipality has one report per week. Use an empty database."
    )]
    WeeklyReportsExist,
    #[error(
        "--today {today}: история должна включать 01.10.2025 (последнюю дату сида 004); укажите дату не раньше 2025-10-02.\n\
         --today {today}: the history must include 01.10.2025 (seed 004's last date); give a date on or after 2025-10-02."
    )]
    TooEarly { today: String },
}

fn check_today(today: Date) -> Result<(), Refusal> {
    if today <= plan::MIDPOINT {
        return Err(Refusal::TooEarly {
            today: today.to_string(),
        });
    }
    Ok(())
}

/// Counts what a scale would write, without a database.
pub fn dry_run(seed: u64, scale: Scale, today: Date) -> Result<Report> {
    check_today(today)?;
    let started = std::time::Instant::now();
    let world = World::new(seed, scale, today)?;
    let mut by_type: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut streams = 0;
    for entity in world.entities() {
        for event in world.render(entity) {
            *by_type.entry(event.aggregate_type).or_default() += 1;
            streams += u64::from(event.last);
        }
    }
    Ok(Report {
        events: by_type.values().sum(),
        streams,
        seconds: started.elapsed().as_secs_f64(),
        waited_seconds: 0.0,
        copy_seconds: 0.0,
        by_type,
        last_hash: [0; 32],
    })
}

/// Writes the synthetic history of `seed` into the log (after loading the reference data
/// and, for `national`, registering the synthetic municipalities). Refuses if the seed's
/// data is already there.
pub async fn generate(
    log: &EventLog,
    seed: u64,
    scale: Scale,
    today: Date,
    progress: bool,
) -> Result<Report> {
    check_today(today)?;
    crate::seed::load_reference(log)
        .await
        .context("loading reference data")?;
    if log
        .stream_length("Organisation", &vyzov::marker(seed).to_string())
        .await?
        > 0
    {
        return Err(Refusal::AlreadyGenerated { seed }.into());
    }
    let world = World::new(seed, scale, today)?;
    if let Some(z) = &world.zastupnik {
        let ids: Vec<String> = (0..z.reports())
            .map(|i| {
                let weeks = z.weeks.len();
                opora_domain::weekly::report_id(
                    z.places[i / weeks].municipality,
                    z.weeks[i % weeks],
                )
                .to_string()
            })
            .collect();
        let taken: Option<String> = sqlx::query_scalar(
            "SELECT aggregate_id FROM event WHERE aggregate_type = 'WeeklyReport' \
               AND sequence = 1 AND aggregate_id = ANY($1) LIMIT 1",
        )
        .bind(&ids)
        .fetch_optional(log.pool())
        .await?;
        if taken.is_some() {
            return Err(Refusal::WeeklyReportsExist.into());
        }
    }
    if scale == Scale::National {
        register_municipalities(log).await?;
    }

    // First pass: what each entity holds and when it starts.
    let bar = if progress && std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_message("план / planning");
    let mut wake: BTreeMap<Date, Vec<(Entity, u32)>> = BTreeMap::new();
    let mut total = 0_u64;
    for entity in world.entities() {
        let events = world.render(entity);
        if let Some(first) = events.first() {
            wake.entry(first.at.date()).or_default().push((entity, 0));
            total += events.len() as u64;
        }
        bar.tick();
    }
    bar.set_length(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} событий, {per_sec}, осталось {eta} · {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );

    let mut appender = BulkAppender::new(log, ACTOR);
    let written = appender.written();
    let mut by_type: BTreeMap<&'static str, u64> = BTreeMap::new();
    while let Some((day, entities)) = wake.pop_first() {
        let mut batch: Vec<Planned> = Vec::new();
        for (entity, cursor) in entities {
            for (k, event) in world
                .render(entity)
                .into_iter()
                .enumerate()
                .skip(cursor as usize)
            {
                if event.at.date() != day {
                    wake.entry(event.at.date())
                        .or_default()
                        .push((entity, k as u32));
                    break;
                }
                batch.push(event);
            }
        }
        // Stable: events of one stream keep their order.
        batch.sort_by_key(|p| p.at);
        for event in batch {
            *by_type.entry(event.aggregate_type).or_default() += 1;
            append(&mut appender, event).await?;
        }
        bar.set_position(written.load(Ordering::Relaxed));
        bar.set_message(day.to_string());
    }
    let done = appender.finish().await?;
    bar.finish_and_clear();
    Ok(Report {
        events: done.events,
        streams: done.streams,
        seconds: done.seconds,
        waited_seconds: done.waited_seconds,
        copy_seconds: done.copy_seconds,
        by_type,
        last_hash: done.last_hash,
    })
}

async fn append(appender: &mut BulkAppender, event: Planned) -> Result<()> {
    let id = event.stream.to_string();
    let (t, effective, at) = (event.aggregate_type, event.effective, event.at);
    match &event.event {
        AnyEvent::Case(e) => appender.push(t, &id, e, effective, at).await?,
        AnyEvent::Aid(e) => appender.push(t, &id, e, effective, at).await?,
        AnyEvent::Organisation(e) => appender.push(t, &id, e, effective, at).await?,
        AnyEvent::Weekly(e) => appender.push(t, &id, e, effective, at).await?,
        AnyEvent::Signal(e) => appender.push(t, &id, e, effective, at).await?,
        AnyEvent::Client(e) => appender.push(t, &id, e, effective, at).await?,
    };
    if event.last {
        appender.close(t, &id);
    }
    Ok(())
}

/// The synthetic municipalities of the national scale, through the `Municipality`
/// aggregate with fixed command ids and the seed's actor (they are reference data, the same
/// for every seed, recorded now): a second run appends nothing.
async fn register_municipalities(log: &EventLog) -> Result<u64> {
    let reference = plan::reference(false)?;
    let synthetic = plan::synthetic_municipalities(&reference.regions, &reference.municipalities)?;
    let bus = CommandBus::<Municipality>::new(log.clone(), ());
    let mut applied = 0;
    for (code, list) in synthetic {
        let region_code = RegionCode::parse(&code)?;
        for m in list {
            let meta = CommandMeta::new(crate::seed::SEED_ACTOR).with_command_id(Uuid::new_v5(
                &NAMESPACE,
                format!("municipality/{}", m.id).as_bytes(),
            ));
            let executed = bus
                .execute(
                    &m.id.to_string(),
                    MunicipalityCommand::RegisterMunicipality {
                        region_code: region_code.clone(),
                        name: PlaceName::parse(&m.name)?,
                        kind: m.kind,
                    },
                    &meta,
                )
                .await
                .map_err(|e| anyhow::anyhow!("synthetic municipality {}: {e}", m.name))?;
            applied += u64::from(executed == opora_store::Executed::Applied);
        }
    }
    Ok(applied)
}

/// The command line: runs, prints the summary, turns refusals into exit code 2.
pub async fn run_cli(log: Option<&EventLog>, args: GenerateArgs) -> Result<ExitCode> {
    let today = args
        .today
        .unwrap_or_else(|| crate::i18n::today_in("Europe/Moscow"));
    let result = match log {
        Some(log) if !args.dry_run => generate(log, args.seed, args.scale, today, true).await,
        _ => dry_run(args.seed, args.scale, today),
    };
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            if let Some(refusal) = error.downcast_ref::<Refusal>() {
                eprintln!("{refusal}");
                return Ok(ExitCode::from(2));
            }
            return Err(error);
        }
    };
    let types: Vec<String> = report
        .by_type
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    let verb = if args.dry_run {
        "Было бы записано / would write"
    } else {
        "Записано / written"
    };
    println!(
        "{verb}: событий / events {}, потоков / streams {}, {:.1} с, {:.0} соб./с (events/s).",
        report.events,
        report.streams,
        report.seconds,
        report.events_per_second()
    );
    println!("  {}", types.join(", "));
    if !args.dry_run {
        println!(
            "  COPY {:.1} с, ожидание базы / waiting for the database {:.1} с; последний хеш / last hash: {}",
            report.copy_seconds,
            report.waited_seconds,
            hex::encode(report.last_hash)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Counts of a world's figures, computed from its rendered case events (for tests).
pub fn figures(world: &World) -> HashMap<String, plan::Targets> {
    let mut out: HashMap<String, plan::Targets> = HashMap::new();
    for i in 0..world.cases.len() {
        let region = &world.regions[usize::from(world.cases[i].region)];
        let t = out.entry(region.code.as_str().to_owned()).or_default();
        let mut placed: Option<Date> = None;
        let mut stays: Vec<(Date, Option<Date>)> = Vec::new();
        let mut accompaniment: Option<(Date, Option<Date>, Uuid)> = None;
        for p in vyzov::case_events(world, i) {
            let AnyEvent::Case(event) = p.event else {
                continue;
            };
            match event {
                CaseEvent::ChildPlaced { on, .. } => placed = Some(on),
                CaseEvent::ChildLeftInstitution { on, exit } => {
                    if let Some(p) = placed.take() {
                        stays.push((p, Some(on)));
                    }
                    if (plan::YEAR_2025..=plan::MIDPOINT).contains(&on) {
                        t.exits += 1;
                        if exit == opora_domain::case::ExitKind::BirthFamily {
                            t.exits_home += 1;
                        }
                    }
                }
                CaseEvent::PlacementPrevented { on } if on.year() == 2025 => t.prevented += 1,
                CaseEvent::AccompanimentStarted { on, service } => {
                    accompaniment = Some((on, None, service))
                }
                CaseEvent::AccompanimentEnded { on } => {
                    if let Some(a) = accompaniment.as_mut() {
                        a.1 = Some(on);
                    }
                }
                _ => {}
            }
        }
        if let Some(p) = placed {
            stays.push((p, None));
        }
        let inside = |day: Date| {
            stays
                .iter()
                .filter(|(p, x)| *p <= day && x.is_none_or(|x| x > day))
                .count() as u64
        };
        t.baseline += inside(plan::BASELINE);
        t.midpoint += inside(plan::MIDPOINT);
        if let Some((start, end, service)) = accompaniment {
            // The service must be one of the region's own.
            let own = region.services.iter().any(|s| s.org.id == service);
            if own && start <= plan::MIDPOINT && end.is_none_or(|e| e > plan::MIDPOINT) {
                t.families += 1;
            }
        }
    }
    for r in 0..world.regions.len() {
        for p in world.render(Entity::Directory(r as u16)) {
            if let AnyEvent::Organisation(OrganisationEvent::OrganisationRegistered {
                kind: opora_domain::organisation::OrganisationKind::FamilyService,
                region,
                details,
                ..
            }) = p.event
            {
                let t = out.entry(region.as_str().to_owned()).or_default();
                t.services += 1;
                t.specialists += u64::from(details.specialists.unwrap_or(0));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
