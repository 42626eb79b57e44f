use cqrs_es::test::TestFramework;
use time::macros::{date, datetime};

use super::*;

type Report = TestFramework<WeeklyReport>;

fn kaliningrad() -> Schedule {
    Schedule::default_in("Europe/Kaliningrad")
}
fn kamchatka() -> Schedule {
    Schedule::default_in("Asia/Kamchatka")
}
fn kazan() -> Schedule {
    Schedule::default_in("Europe/Moscow")
}
/// The week ending Friday 20.11.2026.
fn week() -> Week {
    Week::ending(date!(2026 - 11 - 20)).unwrap()
}
fn period() -> Period {
    Period {
        region: RegionCode::parse("16").unwrap(),
        municipality: Uuid::from_u128(7),
        week: week(),
    }
}
fn figures(children: u32, adults: u32) -> Figures {
    Figures {
        children,
        adults,
        schools: 10,
        schools_with_responsible: 8,
    }
}
fn filing(children: u32, adults: u32) -> Filing {
    Filing {
        figures: figures(children, adults),
        schools: vec![],
        comment: None,
    }
}
fn context(now: OffsetDateTime) -> FilingContext {
    FilingContext {
        now,
        schedule: kazan(),
        previous: Some(figures(1000, 400)),
        pupils: Some(5000),
    }
}
fn file(children: u32, adults: u32, now: OffsetDateTime) -> WeeklyCommand {
    WeeklyCommand::File {
        period: period(),
        filing: filing(children, adults),
        context: context(now),
    }
}
fn filed(children: u32, adults: u32, at: OffsetDateTime, timeliness: Timeliness) -> WeeklyEvent {
    WeeklyEvent::ReportFiled {
        period: period(),
        filing: filing(children, adults),
        filed_at: at,
        timeliness,
        supersedes: 0,
    }
}

// -- periods --------------------------------------------------------------------------

#[test]
fn weeks_run_saturday_to_friday() {
    assert_eq!(
        Week::containing(date!(2026 - 11 - 14)),
        week().previous().next().previous().next()
    );
    assert_eq!(
        Week::containing(date!(2026 - 11 - 14)).friday(),
        date!(2026 - 11 - 20)
    );
    assert_eq!(
        Week::containing(date!(2026 - 11 - 20)).friday(),
        date!(2026 - 11 - 20)
    );
    assert_eq!(
        Week::containing(date!(2026 - 11 - 21)).friday(),
        date!(2026 - 11 - 27)
    );
    assert_eq!(week().first_day(), date!(2026 - 11 - 14));
    assert!(Week::ending(date!(2026 - 11 - 19)).is_none());
    assert_eq!(
        week()
            .last(3)
            .iter()
            .map(|w| w.friday())
            .collect::<Vec<_>>(),
        vec![
            date!(2026 - 11 - 06),
            date!(2026 - 11 - 13),
            date!(2026 - 11 - 20)
        ]
    );
}

#[test]
fn a_week_spans_the_new_year() {
    // Saturday 26.12.2026 to Friday 01.01.2027 is one week, named by its Friday.
    let week = Week::containing(date!(2026 - 12 - 28));
    assert_eq!(week.friday(), date!(2027 - 01 - 01));
    assert_eq!(week.first_day(), date!(2026 - 12 - 26));
    assert_eq!(week.previous().friday(), date!(2026 - 12 - 25));
    // 23:59 on 01.01.2027 in Kamchatka is on time; 00:01 on 02.01.2027 is late.
    let kamchatka = kamchatka();
    assert_eq!(
        kamchatka.timeliness(week, datetime!(2027-01-01 23:59:00 +12)),
        Timeliness::OnTime
    );
    assert_eq!(
        kamchatka.timeliness(week, datetime!(2027-01-02 00:01:00 +12)),
        Timeliness::Late
    );
    // 12:30 UTC on 01.01.2027 is already Saturday in Kamchatka, still Friday in Kaliningrad.
    assert_eq!(
        kamchatka.week_at(datetime!(2027-01-01 12:30:00 UTC)),
        Week::ending(date!(2027 - 01 - 08)).unwrap()
    );
    assert_eq!(
        kaliningrad().week_at(datetime!(2027-01-01 12:30:00 UTC)),
        week
    );
}

#[test]
fn the_deadline_is_friday_2359_in_the_regions_own_zone() {
    let kaliningrad = kaliningrad();
    let kamchatka = kamchatka();
    // Kaliningrad is UTC+2: its deadline minute ends at 22:00 UTC.
    assert_eq!(
        kaliningrad.deadline(week()),
        datetime!(2026-11-20 22:00:00 UTC)
    );
    // Kamchatka is UTC+12: twenty hours earlier.
    assert_eq!(
        kamchatka.deadline(week()),
        datetime!(2026-11-20 12:00:00 UTC)
    );
    // 23:59 local is on time, 00:01 local the next day is late, in both.
    assert_eq!(
        kaliningrad.timeliness(week(), datetime!(2026-11-20 23:59:00 +2)),
        Timeliness::OnTime
    );
    assert_eq!(
        kaliningrad.timeliness(week(), datetime!(2026-11-20 23:59:59 +2)),
        Timeliness::OnTime
    );
    assert_eq!(
        kaliningrad.timeliness(week(), datetime!(2026-11-21 00:01:00 +2)),
        Timeliness::Late
    );
    assert_eq!(
        kamchatka.timeliness(week(), datetime!(2026-11-20 23:59:00 +12)),
        Timeliness::OnTime
    );
    assert_eq!(
        kamchatka.timeliness(week(), datetime!(2026-11-21 00:01:00 +12)),
        Timeliness::Late
    );
    // One instant, two verdicts: 21:59 UTC is Friday 23:59 in Kaliningrad but Saturday
    // 09:59 in Kamchatka.
    let instant = datetime!(2026-11-20 21:59:00 UTC);
    assert_eq!(kaliningrad.timeliness(week(), instant), Timeliness::OnTime);
    assert_eq!(kamchatka.timeliness(week(), instant), Timeliness::Late);
    assert_eq!(kaliningrad.week_at(instant), week());
    assert_eq!(kamchatka.week_at(instant), week().next());
    // Noon reminders, local.
    assert_eq!(
        kamchatka.reminder_time(week()),
        datetime!(2026-11-20 00:00:00 UTC)
    );
    assert_eq!(
        kaliningrad.reminder_time(week()),
        datetime!(2026-11-20 10:00:00 UTC)
    );
}

#[test]
fn a_region_moves_its_deadline_and_lock() {
    let schedule = Schedule {
        time_zone: "Asia/Kamchatka".into(),
        deadline_day: 3, // Monday
        deadline_minute: 10 * 60,
        lock_days: 2,
    };
    schedule.validate().unwrap();
    assert_eq!(
        schedule.deadline(week()),
        datetime!(2026-11-23 10:01:00 +12)
    );
    assert_eq!(
        schedule.locks_at(week()),
        datetime!(2026-11-25 10:01:00 +12)
    );
    assert!(!schedule.is_locked(week(), datetime!(2026-11-25 10:00:59 +12)));
    assert!(schedule.is_locked(week(), datetime!(2026-11-25 10:01:00 +12)));
    assert_eq!(schedule.deadline_clock(), "10:00");
    assert!(Schedule {
        lock_days: 0,
        ..schedule.clone()
    }
    .validate()
    .is_err());
    assert!(Schedule {
        deadline_day: 7,
        ..schedule.clone()
    }
    .validate()
    .is_err());
    assert!(Schedule {
        time_zone: "Mars/Olympus".into(),
        ..schedule
    }
    .validate()
    .is_err());
    assert_eq!(parse_clock("23:59"), Some(1439));
    assert_eq!(parse_clock("24:00"), None);
    assert_eq!(parse_clock("полночь"), None);
}

#[test]
fn statuses_due_missing_on_time_late_locked() {
    let schedule = kazan();
    let empty = WeeklyReport::default();
    assert_eq!(
        empty.status(&schedule, week(), datetime!(2026-11-20 20:00:00 +3)),
        Status::Due
    );
    assert_eq!(
        empty.status(&schedule, week(), datetime!(2026-11-21 00:00:00 +3)),
        Status::Missing
    );
    assert!(!schedule.is_locked(week(), datetime!(2026-11-27 23:59:00 +3)));
    assert!(schedule.is_locked(week(), datetime!(2026-11-28 00:00:00 +3)));
    let mut report = WeeklyReport::default();
    report.apply(filed(
        1000,
        400,
        datetime!(2026-11-21 09:00:00 +3),
        Timeliness::Late,
    ));
    assert_eq!(
        report.status(&schedule, week(), datetime!(2026-11-22 00:00:00 +3)),
        Status::Late
    );
    report.apply(WeeklyEvent::ReportReturned {
        comment: Text::parse("Проверьте взрослых").unwrap(),
    });
    assert_eq!(
        report.status(&schedule, week(), datetime!(2026-11-22 00:00:00 +3)),
        Status::Returned
    );
    // The correction supersedes; timeliness stays the first filing's.
    report.apply(filed(
        1010,
        400,
        datetime!(2026-11-22 09:00:00 +3),
        Timeliness::Late,
    ));
    assert_eq!(
        report.status(&schedule, week(), datetime!(2026-11-22 10:00:00 +3)),
        Status::Late
    );
    report.apply(WeeklyEvent::ReportAccepted { comment: None });
    assert_eq!(
        report.status(&schedule, week(), datetime!(2026-11-22 10:00:00 +3)),
        Status::Accepted
    );
}

// -- filing ---------------------------------------------------------------------------

#[test]
fn a_filing_on_friday_evening_is_on_time() {
    let at = datetime!(2026-11-20 23:59:00 +3);
    Report::with(())
        .given_no_previous_events()
        .when(file(1100, 420, at))
        .then_expect_events(vec![filed(1100, 420, at, Timeliness::OnTime)]);
}

#[test]
fn a_filing_after_midnight_is_late_and_after_the_lock_refused() {
    let at = datetime!(2026-11-21 00:01:00 +3);
    Report::with(())
        .given_no_previous_events()
        .when(file(1100, 420, at))
        .then_expect_events(vec![filed(1100, 420, at, Timeliness::Late)]);
    Report::with(())
        .given_no_previous_events()
        .when(file(1100, 420, datetime!(2026-11-28 00:00:00 +3)))
        .then_expect_error(WeeklyError::Locked {
            week: "20.11.2026".into(),
        });
}

#[test]
fn an_unlock_opens_a_locked_week_for_a_while() {
    let now = datetime!(2026-12-01 10:00:00 +3);
    let unlocked = WeeklyEvent::PeriodUnlocked {
        period: period(),
        reason: Text::parse("Сбой связи").unwrap(),
        until: now + Duration::days(3),
    };
    Report::with(())
        .given_no_previous_events()
        .when(WeeklyCommand::Unlock {
            period: period(),
            reason: Text::parse("Сбой связи"),
            now,
            schedule: kazan(),
            days: 3,
        })
        .then_expect_events(vec![unlocked.clone()]);
    Report::with(())
        .given(vec![unlocked.clone()])
        .when(file(1100, 420, now + Duration::hours(1)))
        .then_expect_events(vec![filed(
            1100,
            420,
            now + Duration::hours(1),
            Timeliness::Late,
        )]);
    Report::with(())
        .given(vec![unlocked])
        .when(file(1100, 420, now + Duration::days(4)))
        .then_expect_error(WeeklyError::Locked {
            week: "20.11.2026".into(),
        });
    // An open week needs no unlock.
    Report::with(())
        .given_no_previous_events()
        .when(WeeklyCommand::Unlock {
            period: period(),
            reason: Text::parse("Просто так"),
            now: datetime!(2026-11-21 10:00:00 +3),
            schedule: kazan(),
            days: 3,
        })
        .then_expect_error(WeeklyError::NotLocked {
            week: "20.11.2026".into(),
        });
}

#[test]
fn a_future_week_cannot_be_filed() {
    Report::with(())
        .given_no_previous_events()
        .when(file(1100, 420, datetime!(2026-11-13 12:00:00 +3)))
        .then_expect_error(WeeklyError::FutureWeek {
            week: "20.11.2026".into(),
        });
}

#[test]
fn a_correction_supersedes_and_the_same_figures_twice_are_refused() {
    let first = datetime!(2026-11-20 15:00:00 +3);
    let second = datetime!(2026-11-20 16:00:00 +3);
    Report::with(())
        .given(vec![filed(1100, 420, first, Timeliness::OnTime)])
        .when(file(1150, 420, second))
        .then_expect_events(vec![WeeklyEvent::ReportFiled {
            period: period(),
            filing: filing(1150, 420),
            filed_at: second,
            timeliness: Timeliness::OnTime,
            supersedes: 1,
        }]);
    Report::with(())
        .given(vec![filed(1100, 420, first, Timeliness::OnTime)])
        .when(file(1100, 420, second))
        .then_expect_error(WeeklyError::Unchanged);
    let mut report = WeeklyReport::default();
    report.apply(filed(1100, 420, first, Timeliness::OnTime));
    report.apply(filed(1150, 420, second, Timeliness::OnTime));
    assert_eq!(report.current.unwrap().figures.children, 1150);
    assert_eq!(report.filings, 2);
}

#[test]
fn validation_refuses_with_reasons() {
    let at = datetime!(2026-11-20 15:00:00 +3);
    let bad = |figures: Figures| WeeklyCommand::File {
        period: period(),
        filing: Filing {
            figures,
            schools: vec![],
            comment: None,
        },
        context: context(at),
    };
    Report::with(())
        .given_no_previous_events()
        .when(bad(Figures {
            schools: 5,
            schools_with_responsible: 6,
            ..figures(1000, 400)
        }))
        .then_expect_error(WeeklyError::ResponsibleAboveSchools {
            responsible: "6".into(),
            schools: "5".into(),
        });
    Report::with(())
        .given_no_previous_events()
        .when(bad(figures(5001, 400)))
        .then_expect_error(WeeklyError::AbovePupils {
            children: "5001".into(),
            pupils: "5000".into(),
        });
    Report::with(())
        .given_no_previous_events()
        .when(bad(figures(MAX_FIGURE + 1, 400)))
        .then_expect_error(WeeklyError::TooLarge {
            limit: MAX_FIGURE.to_string(),
        });
}

#[test]
fn a_sharp_change_needs_a_comment() {
    let at = datetime!(2026-11-20 15:00:00 +3);
    // Last week: 1000 children, 400 adults. 799 is a drop of more than 20 %.
    Report::with(())
        .given_no_previous_events()
        .when(file(799, 400, at))
        .then_expect_error(WeeklyError::SharpChange {
            what: "children".into(),
            previous: "1000".into(),
            current: "799".into(),
        });
    // 800 is exactly 20 % down: accepted.
    Report::with(())
        .given_no_previous_events()
        .when(file(800, 400, at))
        .then_expect_events(vec![filed(800, 400, at, Timeliness::OnTime)]);
    Report::with(())
        .given_no_previous_events()
        .when(file(1000, 1201, at))
        .then_expect_error(WeeklyError::SharpChange {
            what: "adults".into(),
            previous: "400".into(),
            current: "1201".into(),
        });
    // With a comment it goes through.
    let explained = Filing {
        comment: Text::parse("Подключили три новые школы"),
        ..filing(1000, 1201)
    };
    Report::with(())
        .given_no_previous_events()
        .when(WeeklyCommand::File {
            period: period(),
            filing: explained.clone(),
            context: context(at),
        })
        .then_expect_events(vec![WeeklyEvent::ReportFiled {
            period: period(),
            filing: explained,
            filed_at: at,
            timeliness: Timeliness::OnTime,
            supersedes: 0,
        }]);
    assert!(!is_sharp(0, 500), "from nothing anything goes");
    assert!(is_sharp(100, 301));
    assert!(!is_sharp(100, 300));
}

#[test]
fn per_school_lines_must_add_up() {
    let school = |name: &str, children, adults, responsible_named| SchoolFigures {
        school: Text::parse(name).unwrap(),
        children,
        adults,
        responsible_named,
    };
    let mut filing = Filing {
        figures: Figures {
            children: 30,
            adults: 12,
            schools: 2,
            schools_with_responsible: 1,
        },
        schools: vec![
            school("Школа № 1", 20, 10, true),
            school("Школа № 2", 10, 2, false),
        ],
        comment: None,
    };
    filing.check(None).unwrap();
    filing.figures.children = 31;
    assert_eq!(
        filing.check(None),
        Err(WeeklyError::SchoolsDisagree {
            what: "children".into(),
            total: "31".into(),
            by_school: "30".into()
        })
    );
    filing.figures.children = 30;
    filing.schools[1].school = Text::parse("школа № 1").unwrap();
    assert!(matches!(
        filing.check(None),
        Err(WeeklyError::SchoolTwice { .. })
    ));
}

// -- review and import ----------------------------------------------------------------

#[test]
fn the_region_accepts_or_returns_with_a_comment() {
    let at = datetime!(2026-11-20 15:00:00 +3);
    Report::with(())
        .given_no_previous_events()
        .when(WeeklyCommand::Accept { comment: None })
        .then_expect_error(WeeklyError::NotFiled);
    Report::with(())
        .given(vec![filed(1000, 400, at, Timeliness::OnTime)])
        .when(WeeklyCommand::Return { comment: None })
        .then_expect_error(WeeklyError::CommentRequired);
    Report::with(())
        .given(vec![
            filed(1000, 400, at, Timeliness::OnTime),
            WeeklyEvent::ReportAccepted { comment: None },
        ])
        .when(WeeklyCommand::Accept { comment: None })
        .then_expect_error(WeeklyError::AlreadyAccepted);
    // A returned report may be filed again with the same figures (the region asked to
    // confirm them).
    Report::with(())
        .given(vec![
            filed(1000, 400, at, Timeliness::OnTime),
            WeeklyEvent::ReportReturned {
                comment: Text::parse("Подтвердите").unwrap(),
            },
        ])
        .when(file(1000, 400, at + Duration::hours(1)))
        .then_expect_events(vec![WeeklyEvent::ReportFiled {
            period: period(),
            filing: filing(1000, 400),
            filed_at: at + Duration::hours(1),
            timeliness: Timeliness::OnTime,
            supersedes: 1,
        }]);
}

#[test]
fn an_import_is_one_event_and_refuses_a_bad_row_whole() {
    let row = |week: Week, children| ImportedRow {
        period: Period { week, ..period() },
        figures: figures(children, 300),
    };
    let source = Text::parse("архив.xlsx").unwrap();
    let rows = vec![row(week().previous(), 900), row(week(), 950)];
    TestFramework::<WeeklyImport>::with(())
        .given_no_previous_events()
        .when(ImportCommand::Import {
            source: source.clone(),
            rows: rows.clone(),
            pupils: Default::default(),
        })
        .then_expect_events(vec![ImportEvent::FiguresImported {
            source: source.clone(),
            rows,
        }]);
    TestFramework::<WeeklyImport>::with(())
        .given_no_previous_events()
        .when(ImportCommand::Import {
            source: source.clone(),
            rows: vec![row(week().previous(), 900), row(week(), 6000)],
            pupils: [(Uuid::from_u128(7), 5000)].into_iter().collect(),
        })
        .then_expect_error(WeeklyError::AbovePupils {
            children: "6000".into(),
            pupils: "5000".into(),
        });
    TestFramework::<WeeklyImport>::with(())
        .given_no_previous_events()
        .when(ImportCommand::Import {
            source,
            rows: vec![row(week(), 900), row(week(), 901)],
            pupils: Default::default(),
        })
        .then_expect_error(WeeklyError::RowTwice {
            week: "20.11.2026".into(),
        });
}

#[test]
fn report_ids_are_one_per_municipality_and_week() {
    let m = Uuid::from_u128(7);
    assert_eq!(report_id(m, week()), report_id(m, week()));
    assert_ne!(report_id(m, week()), report_id(m, week().next()));
    assert_ne!(report_id(m, week()), report_id(Uuid::from_u128(8), week()));
}
