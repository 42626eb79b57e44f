//! «Заступник»: the weekly connection report every municipal education department files on
//! Friday — children connected to the child app, adults to the adult app, schools taking
//! part and schools with a named responsible person.
//!
//! A reporting week runs Saturday to Friday **in the region's own time zone**; it is named
//! by its Friday. A report is due by the region's deadline (default Friday 23:59 local); it
//! is on time before the deadline's minute ends, late until the period locks (a number of
//! days after the deadline), and after that the period takes no filing unless the region
//! unlocks it for that municipality.
//!
//! One stream per municipality and week (`WeeklyReport`): filings (a later one supersedes
//! the earlier; both stay in the log), imports of historical figures, the region's review
//! (accepted / returned for correction) and unlocks. The region's schedule and the
//! municipalities' pupil counts are a second aggregate (`ReportingSetup`, one per region).
//!
//! The aggregates are told the time (`now`) and the context the web layer reads (schedule,
//! last week's figures, pupil count), so every rule here is testable without a clock.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime, Weekday};
use uuid::Uuid;

use crate::access::Text;
use crate::reference::RegionCode;
use crate::{format_date, DatedCommand};

/// Namespace of report stream ids: one per municipality and Friday.
const REPORT_NAMESPACE: Uuid = Uuid::from_u128(0x6f70_6f72_612d_5745_454b_4c59_0000_0001);
/// The largest figure accepted (a whole region's population is below it).
pub const MAX_FIGURE: u32 = 10_000_000;
/// The most schools one report may list.
pub const MAX_SCHOOLS: usize = 2_000;
/// The default deadline: Friday (0 days after), 23:59 local.
pub const DEFAULT_DEADLINE_MINUTE: u16 = 23 * 60 + 59;
/// The default number of days after the deadline at which a week locks.
pub const DEFAULT_LOCK_DAYS: u16 = 7;
/// The longest a region may leave weeks open.
pub const MAX_LOCK_DAYS: u16 = 90;

/// The stream of one municipality's report for one week.
pub fn report_id(municipality: Uuid, week: Week) -> Uuid {
    Uuid::new_v5(
        &REPORT_NAMESPACE,
        format!("{municipality}/{}", week.friday()).as_bytes(),
    )
}

// ---------------------------------------------------------------------------------------
// Weeks and the schedule

/// A reporting week, named by its Friday: Saturday to Friday, local to the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Date", into = "Date")]
pub struct Week(Date);

impl Week {
    /// The week ending on `friday`; `None` for any other day.
    pub fn ending(friday: Date) -> Option<Self> {
        (friday.weekday() == Weekday::Friday).then_some(Self(friday))
    }
    /// The week a local date falls in (ending on the Friday on or after it).
    pub fn containing(date: Date) -> Self {
        let ahead = (Weekday::Friday.number_days_from_monday() + 7
            - date.weekday().number_days_from_monday())
            % 7;
        Self(date + Duration::days(i64::from(ahead)))
    }
    pub fn friday(self) -> Date {
        self.0
    }
    /// The week's first day (Saturday).
    pub fn first_day(self) -> Date {
        self.0 - Duration::days(6)
    }
    pub fn previous(self) -> Self {
        Self(self.0 - Duration::days(7))
    }
    pub fn next(self) -> Self {
        Self(self.0 + Duration::days(7))
    }
    /// `count` weeks ending with this one, oldest first.
    pub fn last(self, count: u16) -> Vec<Week> {
        (0..i64::from(count))
            .rev()
            .map(|back| Self(self.0 - Duration::days(7 * back)))
            .collect()
    }
}

impl TryFrom<Date> for Week {
    type Error = String;
    fn try_from(date: Date) -> Result<Self, String> {
        Week::ending(date).ok_or_else(|| format!("{date} is not a Friday"))
    }
}

impl From<Week> for Date {
    fn from(week: Week) -> Date {
        week.0
    }
}

impl std::fmt::Display for Week {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_date(self.0))
    }
}

/// When a region's reports are due and when its weeks lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// The region's IANA time zone.
    pub time_zone: String,
    /// Days after Friday the deadline falls on (0 = Friday itself).
    pub deadline_day: u8,
    /// Local time of the deadline, minutes after midnight; the deadline's whole minute
    /// counts (23:59 means "before Saturday 00:00").
    pub deadline_minute: u16,
    /// Days after the deadline at which the week locks.
    pub lock_days: u16,
}

/// How a filing stands against the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Timeliness {
    OnTime,
    Late,
    /// Historical figures loaded in bulk: complete, but not counted for timeliness.
    Imported,
}

impl Timeliness {
    pub fn code(self) -> &'static str {
        match self {
            Self::OnTime => "on_time",
            Self::Late => "late",
            Self::Imported => "imported",
        }
    }
}

impl Schedule {
    /// The default schedule (Friday 23:59, locking after a week) in `time_zone`.
    pub fn default_in(time_zone: &str) -> Self {
        Self {
            time_zone: time_zone.to_owned(),
            deadline_day: 0,
            deadline_minute: DEFAULT_DEADLINE_MINUTE,
            lock_days: DEFAULT_LOCK_DAYS,
        }
    }

    fn zone(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.time_zone).unwrap_or(jiff::tz::TimeZone::UTC)
    }

    /// The local date of an instant in the region.
    pub fn local_date(&self, at: OffsetDateTime) -> Date {
        let local = jiff::Timestamp::from_second(at.unix_timestamp())
            .map(|ts| ts.to_zoned(self.zone()).datetime())
            .unwrap_or_default();
        Date::from_calendar_date(
            i32::from(local.year()),
            time::Month::try_from(local.month().unsigned_abs()).unwrap_or(time::Month::January),
            local.day().unsigned_abs(),
        )
        .unwrap_or(Date::MIN)
    }

    /// The week an instant falls in, in the region.
    pub fn week_at(&self, at: OffsetDateTime) -> Week {
        Week::containing(self.local_date(at))
    }

    /// The instant a local date and minute of the day happen in the region.
    fn instant(&self, date: Date, minute: u16) -> OffsetDateTime {
        let civil = jiff::civil::DateTime::new(
            i16::try_from(date.year()).unwrap_or(i16::MAX),
            date.month() as i8,
            date.day() as i8,
            i8::try_from(minute / 60).unwrap_or(23),
            i8::try_from(minute % 60).unwrap_or(59),
            0,
            0,
        );
        let seconds = civil
            .and_then(|c| c.to_zoned(self.zone()))
            .map_or(0, |z| z.timestamp().as_second());
        OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// The end of the deadline's minute: a filing before this instant is on time.
    pub fn deadline(&self, week: Week) -> OffsetDateTime {
        let day = week.friday() + Duration::days(i64::from(self.deadline_day));
        self.instant(day, self.deadline_minute) + Duration::minutes(1)
    }

    /// The moment the week locks: from then on it takes no filing unless unlocked.
    pub fn locks_at(&self, week: Week) -> OffsetDateTime {
        let day = week.friday()
            + Duration::days(i64::from(self.deadline_day) + i64::from(self.lock_days));
        self.instant(day, self.deadline_minute) + Duration::minutes(1)
    }

    /// Noon local on the week's Friday: who has not filed by then gets a reminder.
    pub fn reminder_time(&self, week: Week) -> OffsetDateTime {
        self.instant(week.friday(), 12 * 60)
    }

    pub fn is_locked(&self, week: Week, now: OffsetDateTime) -> bool {
        now >= self.locks_at(week)
    }

    /// On time or late, for a filing at `at` (the caller checks the lock).
    pub fn timeliness(&self, week: Week, at: OffsetDateTime) -> Timeliness {
        if at < self.deadline(week) {
            Timeliness::OnTime
        } else {
            Timeliness::Late
        }
    }

    /// The status of a week with no report at `now`: still due, or missing.
    pub fn unfiled_status(&self, week: Week, now: OffsetDateTime) -> Status {
        if now < self.deadline(week) {
            Status::Due
        } else {
            Status::Missing
        }
    }

    /// Checks the values a region sets.
    pub fn validate(&self) -> Result<(), WeeklyError> {
        if jiff::tz::TimeZone::get(&self.time_zone).is_err() {
            return Err(WeeklyError::BadSchedule {
                problem: format!("неизвестный часовой пояс {}", self.time_zone),
            });
        }
        if self.deadline_day > 6 {
            return Err(WeeklyError::BadSchedule {
                problem: "срок — не позже следующего четверга (0–6 дней после пятницы)".into(),
            });
        }
        if self.deadline_minute >= 24 * 60 {
            return Err(WeeklyError::BadSchedule {
                problem: "время срока — от 00:00 до 23:59".into(),
            });
        }
        if self.lock_days == 0 || self.lock_days > MAX_LOCK_DAYS {
            return Err(WeeklyError::BadSchedule {
                problem: format!("закрытие — через 1–{MAX_LOCK_DAYS} дней после срока"),
            });
        }
        Ok(())
    }

    /// `HH:MM` of the deadline.
    pub fn deadline_clock(&self) -> String {
        format!(
            "{:02}:{:02}",
            self.deadline_minute / 60,
            self.deadline_minute % 60
        )
    }
}

/// Parses `HH:MM` into minutes after midnight.
pub fn parse_clock(raw: &str) -> Option<u16> {
    let (hours, minutes) = raw.trim().split_once(':')?;
    let (hours, minutes): (u16, u16) = (hours.parse().ok()?, minutes.parse().ok()?);
    (hours < 24 && minutes < 60 && raw.trim().len() <= 5).then_some(hours * 60 + minutes)
}

/// Where a municipality's report for a week stands, as the region sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not filed, deadline not passed.
    Due,
    /// Not filed, deadline passed.
    Missing,
    OnTime,
    Late,
    Imported,
    /// Filed, returned by the region for correction, not yet corrected.
    Returned,
    /// Filed and accepted by the region.
    Accepted,
}

impl Status {
    pub fn code(self) -> &'static str {
        match self {
            Self::Due => "due",
            Self::Missing => "missing",
            Self::OnTime => "on_time",
            Self::Late => "late",
            Self::Imported => "imported",
            Self::Returned => "returned",
            Self::Accepted => "accepted",
        }
    }
    pub const ALL: &'static [Status] = &[
        Self::Due,
        Self::Missing,
        Self::OnTime,
        Self::Late,
        Self::Imported,
        Self::Returned,
        Self::Accepted,
    ];
}

// ---------------------------------------------------------------------------------------
// Figures

/// What a report says: stock figures, "how many now".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Figures {
    /// Children connected to the child app.
    pub children: u32,
    /// Adults connected to the adult app.
    pub adults: u32,
    /// Schools taking part.
    pub schools: u32,
    /// Schools that have named a responsible person.
    pub schools_with_responsible: u32,
}

/// One school's line, where the department reports per school.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchoolFigures {
    pub school: Text,
    pub children: u32,
    pub adults: u32,
    pub responsible_named: bool,
}

/// A filing: the figures, optionally per school, and a comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filing {
    pub figures: Figures,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schools: Vec<SchoolFigures>,
    pub comment: Option<Text>,
}

impl Filing {
    /// The rules every filing and every imported row obey.
    pub fn check(&self, pupils: Option<u32>) -> Result<(), WeeklyError> {
        let f = self.figures;
        for value in [f.children, f.adults, f.schools, f.schools_with_responsible] {
            if value > MAX_FIGURE {
                return Err(WeeklyError::TooLarge {
                    limit: MAX_FIGURE.to_string(),
                });
            }
        }
        if f.schools_with_responsible > f.schools {
            return Err(WeeklyError::ResponsibleAboveSchools {
                responsible: f.schools_with_responsible.to_string(),
                schools: f.schools.to_string(),
            });
        }
        if let Some(pupils) = pupils {
            if f.children > pupils {
                return Err(WeeklyError::AbovePupils {
                    children: f.children.to_string(),
                    pupils: pupils.to_string(),
                });
            }
        }
        if !self.schools.is_empty() {
            self.check_schools()?;
        }
        Ok(())
    }

    fn check_schools(&self) -> Result<(), WeeklyError> {
        if self.schools.len() > MAX_SCHOOLS {
            return Err(WeeklyError::TooManySchools {
                limit: MAX_SCHOOLS.to_string(),
            });
        }
        let mut names: Vec<String> = self
            .schools
            .iter()
            .map(|s| s.school.as_str().to_lowercase())
            .collect();
        names.sort();
        if let Some(pair) = names.windows(2).find(|p| p[0] == p[1]) {
            return Err(WeeklyError::SchoolTwice {
                school: pair[0].clone(),
            });
        }
        let sum = |pick: fn(&SchoolFigures) -> u64| self.schools.iter().map(pick).sum::<u64>();
        let f = self.figures;
        let totals = [
            ("schools", u64::from(f.schools), self.schools.len() as u64),
            (
                "schools_with_responsible",
                u64::from(f.schools_with_responsible),
                sum(|s| u64::from(s.responsible_named)),
            ),
            (
                "children",
                u64::from(f.children),
                sum(|s| u64::from(s.children)),
            ),
            ("adults", u64::from(f.adults), sum(|s| u64::from(s.adults))),
        ];
        for (what, total, by_school) in totals {
            if total != by_school {
                return Err(WeeklyError::SchoolsDisagree {
                    what: what.to_owned(),
                    total: total.to_string(),
                    by_school: by_school.to_string(),
                });
            }
        }
        Ok(())
    }

    /// A drop of more than 20 % or a jump of more than 3× from last week needs a comment.
    pub fn sharp_change(&self, previous: Option<Figures>) -> Option<WeeklyError> {
        let previous = previous?;
        [
            ("children", previous.children, self.figures.children),
            ("adults", previous.adults, self.figures.adults),
        ]
        .into_iter()
        .find(|(_, before, now)| is_sharp(*before, *now))
        .map(|(what, before, now)| WeeklyError::SharpChange {
            what: what.to_owned(),
            previous: before.to_string(),
            current: now.to_string(),
        })
    }
}

/// More than 20 % down or more than three times up (from a non-zero figure).
pub fn is_sharp(before: u32, now: u32) -> bool {
    let (before, now) = (u64::from(before), u64::from(now));
    before > 0 && (now * 5 < before * 4 || now > before * 3)
}

// ---------------------------------------------------------------------------------------
// The report aggregate

/// Where the report is, and the facts a filing is judged by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub region: RegionCode,
    pub municipality: Uuid,
    pub week: Week,
}

/// What the web layer reads for a filing: the region's schedule, last week's figures,
/// the municipality's pupil count where known, and the time.
#[derive(Debug, Clone, PartialEq)]
pub struct FilingContext {
    pub now: OffsetDateTime,
    pub schedule: Schedule,
    pub previous: Option<Figures>,
    pub pupils: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WeeklyCommand {
    /// The department files (or corrects) its report.
    File {
        period: Period,
        filing: Filing,
        context: FilingContext,
    },
    Accept {
        comment: Option<Text>,
    },
    Return {
        comment: Option<Text>,
    },
    /// The region opens a locked week for one municipality until `until`.
    Unlock {
        period: Period,
        reason: Option<Text>,
        now: OffsetDateTime,
        schedule: Schedule,
        days: u16,
    },
}

impl DatedCommand for WeeklyCommand {
    fn effective_date(&self) -> Option<Date> {
        match self {
            Self::File { period, .. } => Some(period.week.friday()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WeeklyEvent {
    ReportFiled {
        period: Period,
        filing: Filing,
        #[serde(with = "time::serde::rfc3339")]
        filed_at: OffsetDateTime,
        timeliness: Timeliness,
        /// The number of earlier filings this one supersedes (0 for the first).
        supersedes: u32,
    },
    ReportAccepted {
        comment: Option<Text>,
    },
    ReportReturned {
        comment: Text,
    },
    PeriodUnlocked {
        period: Period,
        reason: Text,
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
    },
}

impl DomainEvent for WeeklyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ReportFiled { .. } => "ReportFiled",
            Self::ReportAccepted { .. } => "ReportAccepted",
            Self::ReportReturned { .. } => "ReportReturned",
            Self::PeriodUnlocked { .. } => "PeriodUnlocked",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum WeeklyError {
    #[error("Число больше допустимого ({limit}); проверьте, не лишние ли цифры.")]
    TooLarge { limit: String },
    #[error(
        "Школ с ответственным ({responsible}) не может быть больше, чем школ-участниц ({schools})."
    )]
    ResponsibleAboveSchools {
        responsible: String,
        schools: String,
    },
    #[error("Подключённых детей ({children}) больше, чем школьников в муниципалитете ({pupils}); проверьте число.")]
    AbovePupils { children: String, pupils: String },
    #[error("В разбивке по школам больше {limit} строк.")]
    TooManySchools { limit: String },
    #[error("Школа «{school}» указана в разбивке дважды.")]
    SchoolTwice { school: String },
    #[error("Итог «{what}» ({total}) не равен сумме по школам ({by_school}).")]
    SchoolsDisagree {
        what: String,
        total: String,
        by_school: String,
    },
    #[error("Показатель «{what}» изменился резко (было {previous}, стало {current}); поясните в комментарии, и отчёт будет принят.")]
    SharpChange {
        what: String,
        previous: String,
        current: String,
    },
    #[error("Неделя по {week} ещё не началась.")]
    FutureWeek { week: String },
    #[error("Неделя по {week} закрыта для подачи; попросите министерство региона открыть её.")]
    Locked { week: String },
    #[error("Эти цифры уже поданы за эту неделю; изменений нет.")]
    Unchanged,
    #[error("Отчёт не подан; принимать или возвращать нечего.")]
    NotFiled,
    #[error("Отчёт уже принят.")]
    AlreadyAccepted,
    #[error("Отчёт уже возвращён на исправление.")]
    AlreadyReturned,
    #[error("Укажите, что исправить: комментарий обязателен.")]
    CommentRequired,
    #[error("За неделю по {week} уже есть отчёт; при загрузке архива он не заменяется.")]
    AlreadyReported { week: String },
    #[error("Неделя по {week} указана для муниципалитета дважды.")]
    RowTwice { week: String },
    #[error("В файле нет ни одной строки с данными.")]
    NothingToImport,
    #[error("В файле больше {limit} строк; разделите его.")]
    TooManyRows { limit: String },
    #[error("Неделя по {week} не закрыта; открывать нечего.")]
    NotLocked { week: String },
    #[error("Отчёт относится к другому муниципалитету или неделе.")]
    WrongPeriod,
    #[error("Неверные сроки: {problem}.")]
    BadSchedule { problem: String },
}

/// One municipality's report for one week.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WeeklyReport {
    pub period: Option<Period>,
    /// The figures in force (the latest filing or import).
    pub current: Option<Filing>,
    /// Filings and imports so far.
    pub filings: u32,
    /// The first filing's timeliness.
    pub timeliness: Option<Timeliness>,
    pub review: Review,
    pub unlocked_until: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Review {
    #[default]
    Waiting,
    Accepted,
    Returned,
}

impl WeeklyReport {
    fn same_period(&self, period: &Period) -> Result<(), WeeklyError> {
        match &self.period {
            Some(own) if own != period => Err(WeeklyError::WrongPeriod),
            _ => Ok(()),
        }
    }

    /// The status the region sees (`now` decides due or missing when nothing is filed).
    pub fn status(&self, schedule: &Schedule, week: Week, now: OffsetDateTime) -> Status {
        status(
            self.current.is_some(),
            self.review,
            self.timeliness,
            (schedule, week, now),
        )
    }
}

/// A report's status from its facts: filed or not, the review, the first filing's
/// timeliness; `(schedule, week, now)` decide due or missing when nothing is filed.
pub fn status(
    filed: bool,
    review: Review,
    timeliness: Option<Timeliness>,
    (schedule, week, now): (&Schedule, Week, OffsetDateTime),
) -> Status {
    match (filed, review, timeliness) {
        (false, _, _) => schedule.unfiled_status(week, now),
        (true, Review::Returned, _) => Status::Returned,
        (true, Review::Accepted, _) => Status::Accepted,
        (true, Review::Waiting, Some(Timeliness::Late)) => Status::Late,
        (true, Review::Waiting, Some(Timeliness::Imported)) => Status::Imported,
        (true, Review::Waiting, _) => Status::OnTime,
    }
}

impl Review {
    pub fn from_code(code: &str) -> Self {
        match code {
            "accepted" => Self::Accepted,
            "returned" => Self::Returned,
            _ => Self::Waiting,
        }
    }
}

impl Timeliness {
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "on_time" => Some(Self::OnTime),
            "late" => Some(Self::Late),
            "imported" => Some(Self::Imported),
            _ => None,
        }
    }
}

impl Aggregate for WeeklyReport {
    const TYPE: &'static str = "WeeklyReport";
    type Command = WeeklyCommand;
    type Event = WeeklyEvent;
    type Error = WeeklyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: WeeklyCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), WeeklyError> {
        let event = match command {
            WeeklyCommand::File {
                period,
                filing,
                context,
            } => self.file(period, filing, context)?,
            WeeklyCommand::Accept { comment } => match (&self.current, self.review) {
                (None, _) => return Err(WeeklyError::NotFiled),
                (_, Review::Accepted) => return Err(WeeklyError::AlreadyAccepted),
                _ => WeeklyEvent::ReportAccepted { comment },
            },
            WeeklyCommand::Return { comment } => match (&self.current, self.review, comment) {
                (None, _, _) => return Err(WeeklyError::NotFiled),
                (_, Review::Returned, _) => return Err(WeeklyError::AlreadyReturned),
                (_, _, None) => return Err(WeeklyError::CommentRequired),
                (_, _, Some(comment)) => WeeklyEvent::ReportReturned { comment },
            },
            WeeklyCommand::Unlock {
                period,
                reason,
                now,
                schedule,
                days,
            } => {
                self.same_period(&period)?;
                let open = self.unlocked_until.is_some_and(|until| now < until);
                if !schedule.is_locked(period.week, now) || open {
                    return Err(WeeklyError::NotLocked {
                        week: period.week.to_string(),
                    });
                }
                let Some(reason) = reason else {
                    return Err(WeeklyError::CommentRequired);
                };
                WeeklyEvent::PeriodUnlocked {
                    period,
                    reason,
                    until: now + Duration::days(i64::from(days.clamp(1, 30))),
                }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: WeeklyEvent) {
        match event {
            WeeklyEvent::ReportFiled {
                period,
                filing,
                timeliness,
                ..
            } => {
                self.period = Some(period);
                self.current = Some(filing);
                self.filings += 1;
                self.timeliness.get_or_insert(timeliness);
                self.review = Review::Waiting;
            }
            WeeklyEvent::ReportAccepted { .. } => self.review = Review::Accepted,
            WeeklyEvent::ReportReturned { .. } => self.review = Review::Returned,
            WeeklyEvent::PeriodUnlocked { period, until, .. } => {
                self.period = Some(period);
                self.unlocked_until = Some(until);
            }
        }
    }
}

impl WeeklyReport {
    fn file(
        &self,
        period: Period,
        filing: Filing,
        context: FilingContext,
    ) -> Result<WeeklyEvent, WeeklyError> {
        self.same_period(&period)?;
        let FilingContext {
            now,
            schedule,
            previous,
            pupils,
        } = context;
        let week = period.week;
        if week > schedule.week_at(now) {
            return Err(WeeklyError::FutureWeek {
                week: week.to_string(),
            });
        }
        let unlocked = self.unlocked_until.is_some_and(|until| now < until);
        if schedule.is_locked(week, now) && !unlocked {
            return Err(WeeklyError::Locked {
                week: week.to_string(),
            });
        }
        filing.check(pupils)?;
        if self.current.as_ref() == Some(&filing) && self.review != Review::Returned {
            return Err(WeeklyError::Unchanged);
        }
        if filing.comment.is_none() {
            if let Some(sharp) = filing.sharp_change(previous) {
                return Err(sharp);
            }
        }
        Ok(WeeklyEvent::ReportFiled {
            period,
            filing,
            filed_at: now,
            timeliness: schedule.timeliness(week, now),
            supersedes: self.filings,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Bulk import of historical figures

/// The most rows one import may carry (as many as an uploaded register).
pub const MAX_IMPORT_ROWS: usize = 10_000;

/// One imported week of one municipality.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedRow {
    pub period: Period,
    pub figures: Figures,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ImportCommand {
    /// Historical figures from a file, all at once: one event, so an import is written
    /// whole or not at all. `pupils` are the known pupil counts of the rows' municipalities.
    Import {
        source: Text,
        rows: Vec<ImportedRow>,
        pupils: std::collections::BTreeMap<Uuid, u32>,
    },
}

impl DatedCommand for ImportCommand {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportEvent {
    FiguresImported {
        source: Text,
        rows: Vec<ImportedRow>,
    },
}

impl DomainEvent for ImportEvent {
    fn event_type(&self) -> String {
        "FiguresImported".to_owned()
    }
    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

/// One bulk import (stream id: derived from the upload's command id).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WeeklyImport {
    pub rows: usize,
}

/// The rule of one imported row (the same as a filing's, without last week's comparison:
/// history may hold real drops).
pub fn check_row(row: &ImportedRow, pupils: Option<u32>) -> Result<(), WeeklyError> {
    Filing {
        figures: row.figures,
        schools: vec![],
        comment: None,
    }
    .check(pupils)
}

impl Aggregate for WeeklyImport {
    const TYPE: &'static str = "WeeklyImport";
    type Command = ImportCommand;
    type Event = ImportEvent;
    type Error = WeeklyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ImportCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), WeeklyError> {
        let ImportCommand::Import {
            source,
            rows,
            pupils,
        } = command;
        if self.rows > 0 {
            return Ok(());
        }
        if rows.is_empty() {
            return Err(WeeklyError::NothingToImport);
        }
        if rows.len() > MAX_IMPORT_ROWS {
            return Err(WeeklyError::TooManyRows {
                limit: MAX_IMPORT_ROWS.to_string(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for row in &rows {
            check_row(row, pupils.get(&row.period.municipality).copied())?;
            if !seen.insert((row.period.municipality, row.period.week)) {
                return Err(WeeklyError::RowTwice {
                    week: row.period.week.to_string(),
                });
            }
        }
        sink.write(ImportEvent::FiguresImported { source, rows }, self)
            .await;
        Ok(())
    }

    fn apply(&mut self, event: ImportEvent) {
        let ImportEvent::FiguresImported { rows, .. } = event;
        self.rows = rows.len();
    }
}

// ---------------------------------------------------------------------------------------
// The region's setup: schedule and pupil counts

#[derive(Debug, Clone, PartialEq)]
pub enum SetupCommand {
    SetSchedule {
        region: RegionCode,
        schedule: Schedule,
    },
    /// A municipality's education department: its pupils (where known; a filing of more
    /// connected children is refused) and how the region reaches it (reminders).
    SetDepartment {
        region: RegionCode,
        municipality: Uuid,
        department: Department,
    },
}

impl DatedCommand for SetupCommand {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetupEvent {
    ScheduleSet {
        region: RegionCode,
        schedule: Schedule,
    },
    DepartmentSet {
        region: RegionCode,
        municipality: Uuid,
        department: Department,
    },
}

/// What the region keeps about a municipality's education department.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    pub pupils: Option<u32>,
    /// Who to call: a name, a phone.
    pub contact: Option<Text>,
    /// Where reminders are e-mailed (checked by the web layer).
    pub email: Option<Text>,
}

impl DomainEvent for SetupEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ScheduleSet { .. } => "ScheduleSet",
            Self::DepartmentSet { .. } => "DepartmentSet",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

/// A region's reporting setup (stream id: the region code).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportingSetup {
    pub schedule: Option<Schedule>,
    pub departments: std::collections::BTreeMap<Uuid, Department>,
}

impl Aggregate for ReportingSetup {
    const TYPE: &'static str = "ReportingSetup";
    type Command = SetupCommand;
    type Event = SetupEvent;
    type Error = WeeklyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: SetupCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), WeeklyError> {
        let event = match command {
            SetupCommand::SetSchedule { region, schedule } => {
                schedule.validate()?;
                if self.schedule.as_ref() == Some(&schedule) {
                    return Ok(());
                }
                SetupEvent::ScheduleSet { region, schedule }
            }
            SetupCommand::SetDepartment {
                region,
                municipality,
                department,
            } => {
                if department.pupils.is_some_and(|p| p > MAX_FIGURE) {
                    return Err(WeeklyError::TooLarge {
                        limit: MAX_FIGURE.to_string(),
                    });
                }
                let known = self
                    .departments
                    .get(&municipality)
                    .cloned()
                    .unwrap_or_default();
                if known == department {
                    return Ok(());
                }
                SetupEvent::DepartmentSet {
                    region,
                    municipality,
                    department,
                }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: SetupEvent) {
        match event {
            SetupEvent::ScheduleSet { schedule, .. } => self.schedule = Some(schedule),
            SetupEvent::DepartmentSet {
                municipality,
                department,
                ..
            } => {
                self.departments.insert(municipality, department);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
