//! «Вызов» over HTTP: a child's whole path from placement to return home, the register's
//! six-month rule, stale forms and scope.

use axum::http::StatusCode;
use sqlx::Row;
use uuid::Uuid;

use crate::client::{Client, TestApp};

/// The value of the first `<input … name="NAME" value="…">` in a page.
pub fn input(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no input {name}"))
        + marker.len();
    body[start..].split('"').next().unwrap().to_owned()
}

/// Posts a fact on the case page's terms (its `entries` and a fresh command id).
pub async fn record(
    client: &mut Client,
    case: &str,
    fields: &[(&str, &str)],
) -> crate::client::Response {
    let page = client.get(case).await;
    let entries = input(&page.body, "entries");
    let command = Uuid::now_v7().to_string();
    let mut all = fields.to_vec();
    all.push(("entries", &entries));
    all.push(("command_id", &command));
    client.post(&format!("{case}/zapis"), &all).await
}

/// `DD.MM.YYYY`, `days` before today (Moscow).
pub fn ago(days: i64) -> String {
    let today = opora_web::i18n::today_in("Europe/Moscow");
    opora_domain::format_date(today - time::Duration::days(days))
}

#[tokio::test]
async fn a_child_goes_from_placement_to_home_and_the_case_closes() {
    let test = TestApp::with_demo().await;
    let mut curator = test.client();
    curator.login("curator16").await;
    // A new child in Kazan.
    let form = curator.get("/lyudi/novyi").await;
    let command_id = input(&form.body, "command_id");
    let kazan = {
        let start = form.body.find(">Казань<").unwrap();
        let before = &form.body[..start];
        let value = before.rfind("value=\"").unwrap() + 7;
        before[value..].split('"').next().unwrap().to_owned()
    };
    let created = curator
        .post(
            "/lyudi",
            &[
                ("command_id", &command_id),
                ("kind", "child"),
                ("sex", "male"),
                ("region", "16"),
                ("municipality", &kazan),
                ("family_name", "Тестовый"),
                ("given_name", "Марат"),
                ("birth_date", "12.04.2013"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let person = created.location().trim_start_matches("/lyudi/").to_owned();
    test.project().await;
    // Open the case.
    let form = curator
        .get(&format!("/vyzov/dela/novoe?person={person}"))
        .await;
    assert!(form.body.contains("Тестовый Марат"));
    let command_id = input(&form.body, "command_id");
    let opened = curator
        .post(
            "/vyzov/dela",
            &[
                ("person", &person),
                ("command_id", &command_id),
                ("on", "01.02.2025"),
            ],
        )
        .await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER, "{}", opened.body);
    let case = opened.location().to_owned();
    // The same form sent twice opens one case.
    let twice = curator
        .post(
            "/vyzov/dela",
            &[
                ("person", &person),
                ("command_id", &command_id),
                ("on", "01.02.2025"),
            ],
        )
        .await;
    assert_eq!(twice.location(), case);
    test.project().await;
    let page = curator.get(&case).await;
    assert!(
        page.body.contains("16-2025-00001"),
        "the region's first case number"
    );

    // An exit before any placement is refused with the rule's message.
    let refused = record(
        &mut curator,
        &case,
        &[
            ("action", "exit"),
            ("on", "01.03.2025"),
            ("exit", "birth_family"),
        ],
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused
            .body
            .contains("Ребёнок сейчас не находится в учреждении"),
        "{}",
        refused.body
    );

    let institution = {
        let start = page.body.find("name=\"institution\"").unwrap();
        input(
            &page.body[start..].replacen("option value", "name=\"institution\" value", 1),
            "institution",
        )
    };
    let placed = record(
        &mut curator,
        &case,
        &[
            ("action", "place"),
            ("on", "10.03.2025"),
            ("institution", &institution),
            ("institution_type", "rehabilitation"),
            ("basis", "parents_application"),
            ("reasons", "poverty"),
            ("reasons", "conflict"),
            ("legal_status", "without_status"),
        ],
    )
    .await;
    assert_eq!(placed.status, StatusCode::SEE_OTHER, "{}", placed.body);
    test.project().await;
    // Placed more than six months ago and never reviewed: flagged in the register.
    let register = curator.get("/vyzov/reestr?needs_review=1&q=Марат").await;
    assert!(
        register.body.contains("Тестовый Марат"),
        "{}",
        register.body
    );

    // A stale form (made before the placement) is refused, not merged.
    let stale = curator
        .post(
            &format!("{case}/zapis"),
            &[
                ("action", "visit"),
                ("on", "01.04.2025"),
                ("entries", "1"),
                ("command_id", &Uuid::now_v7().to_string()),
            ],
        )
        .await;
    assert_eq!(stale.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(stale.body.contains("Дело изменилось"), "{}", stale.body);

    // «Решение не указано» is an import's: the form neither offers nor takes it.
    let page = curator.get(&case).await;
    assert!(page.body.contains("value=\"material_aid\""));
    assert!(!page.body.contains("value=\"not_recorded\""), "offered");
    let unrecorded = record(
        &mut curator,
        &case,
        &[
            ("action", "review"),
            ("on", &ago(30)),
            ("level", "regional"),
            ("aid", "not_recorded"),
        ],
    )
    .await;
    assert_eq!(
        unrecorded.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        unrecorded.body
    );
    assert!(unrecorded.body.contains("Выберите значение из списка"));
    // The consilium: stay not justified, material aid, return possible; an action item.
    let reviewed = record(
        &mut curator,
        &case,
        &[
            ("action", "review"),
            ("on", &ago(30)),
            ("level", "regional"),
            ("placement_justified", "yes"),
            ("stay_justified", "no"),
            ("parental_claim_justified", "no"),
            ("aid", "material_aid"),
            ("return_possible", "yes"),
            ("return_by", &ago(10)),
            ("next_review", &ago(-150)),
        ],
    )
    .await;
    assert_eq!(reviewed.status, StatusCode::SEE_OTHER, "{}", reviewed.body);
    let item = record(
        &mut curator,
        &case,
        &[
            ("action", "item"),
            ("on", &ago(30)),
            ("item_action", "Ремонт крыши дома семьи"),
            ("executor", "Администрация Казани"),
            ("due", &ago(20)),
        ],
    )
    .await;
    assert_eq!(item.status, StatusCode::SEE_OTHER, "{}", item.body);
    // The timeline says what, who and by when (no stray comma for a date it cannot read).
    let timeline = curator.get(&case).await;
    let said = format!(
        "Ремонт крыши дома семьи — Администрация Казани; срок: {}",
        ago(20)
    );
    assert!(timeline.body.contains(&said), "{}", timeline.body);
    let no_executor = record(
        &mut curator,
        &case,
        &[
            ("action", "item"),
            ("on", &ago(30)),
            ("item_action", "Что-то"),
            ("executor", " "),
            ("due", &ago(20)),
        ],
    )
    .await;
    assert!(no_executor
        .body
        .contains("Укажите ответственного исполнителя"));
    test.project().await;
    let register = curator.get("/vyzov/reestr?needs_review=1&q=Марат").await;
    assert!(
        !register.body.contains("Тестовый Марат"),
        "reviewed: no longer flagged"
    );
    let overdue = curator.get("/vyzov/reestr?overdue=1&q=Марат").await;
    assert!(
        overdue.body.contains("Тестовый Марат"),
        "the action item is overdue"
    );
    let item_id: Uuid = sqlx::query_scalar(
        "SELECT item FROM cases.action_item WHERE action = 'Ремонт крыши дома семьи'",
    )
    .fetch_one(&test.db.pool)
    .await
    .unwrap();
    let done = record(
        &mut curator,
        &case,
        &[
            ("action", "item_done"),
            ("on", &ago(15)),
            ("item", &item_id.to_string()),
        ],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);

    // Home, accompanied, then closed.
    let (exit_on, close_on) = (ago(10), ago(1));
    for fields in [
        vec![
            ("action", "exit"),
            ("on", &exit_on),
            ("exit", "birth_family"),
        ],
        vec![
            ("action", "accompaniment_start"),
            ("on", &exit_on),
            ("service", ""),
        ],
    ] {
        let mut fields = fields;
        let service;
        if fields[0].1 == "accompaniment_start" {
            let page = curator.get(&case).await;
            let start = page.body.find("name=\"service\"").unwrap();
            service = input(
                &page.body[start..].replacen("option value", "name=\"service\" value", 1),
                "service",
            );
            fields[2] = ("service", &service);
        }
        let answer = record(&mut curator, &case, &fields).await;
        assert_eq!(
            answer.status,
            StatusCode::SEE_OTHER,
            "{:?}: {}",
            fields,
            answer.body
        );
    }
    let still_open = record(
        &mut curator,
        &case,
        &[("action", "close"), ("on", &close_on), ("reason", " ")],
    )
    .await;
    assert!(
        still_open.body.contains("Укажите причину"),
        "a reason is needed"
    );
    let ended = record(
        &mut curator,
        &case,
        &[("action", "accompaniment_end"), ("on", &close_on)],
    )
    .await;
    assert_eq!(ended.status, StatusCode::SEE_OTHER);
    let closed = record(
        &mut curator,
        &case,
        &[
            ("action", "close"),
            ("on", &close_on),
            ("reason", "Ребёнок дома, сопровождение завершено"),
        ],
    )
    .await;
    assert_eq!(closed.status, StatusCode::SEE_OTHER, "{}", closed.body);
    let after = record(&mut curator, &case, &[("action", "visit"), ("on", &ago(0))]).await;
    assert!(
        after.body.contains("Дело закрыто"),
        "a closed case takes no new facts"
    );
    test.project().await;

    // Every figure traces to events: the read model and the log agree.
    let case_id = case.trim_start_matches("/vyzov/dela/");
    let row = sqlx::query("SELECT closed, placed_on, last_exit, last_review FROM cases.child_case WHERE id = $1::uuid")
        .bind(case_id)
        .fetch_one(&test.db.pool)
        .await
        .unwrap();
    assert!(row.get::<bool, _>("closed"));
    assert!(row.get::<Option<time::Date>, _>("placed_on").is_none());
    assert_eq!(
        row.get::<Option<String>, _>("last_exit").as_deref(),
        Some("birth_family")
    );
    let types: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM event WHERE aggregate_type = 'ChildCase' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(case_id)
    .fetch_all(&test.db.pool)
    .await
    .unwrap();
    assert_eq!(
        types,
        [
            "CaseOpened",
            "ChildPlaced",
            "ConsiliumReviewRecorded",
            "ActionItemSet",
            "ActionItemDone",
            "ChildLeftInstitution",
            "AccompanimentStarted",
            "AccompanimentEnded",
            "CaseClosed"
        ]
    );
    let effective: Option<time::Date> = sqlx::query_scalar(
        "SELECT effective_date FROM event WHERE aggregate_id = $1 AND event_type = 'ChildPlaced'",
    )
    .bind(case_id)
    .fetch_one(&test.db.pool)
    .await
    .unwrap();
    assert_eq!(
        effective,
        Some(time::macros::date!(2025 - 03 - 10)),
        "effective date kept apart from recording"
    );
    let page = curator.get(&case).await;
    assert!(page.body.contains("История дела") && page.body.contains("curator16"));

    // Another region's curator: the case does not exist for her.
    let mut altai = test.client();
    altai.login("curator22").await;
    assert_eq!(altai.get(&case).await.status, StatusCode::NOT_FOUND);
    let register = altai.get("/vyzov/reestr").await;
    assert!(!register.body.contains("Марат") && !register.body.contains("Алиса"));
    assert!(register.body.contains("Егор"));
}

#[tokio::test]
async fn the_six_month_rule_turns_on_the_day_after_six_months() {
    let test = TestApp::with_demo().await;
    let rule = |placed: &str, review: Option<&str>, today: &str| {
        let pool = test.db.pool.clone();
        let (placed, review, today) = (
            placed.to_owned(),
            review.map(str::to_owned),
            today.to_owned(),
        );
        async move {
            sqlx::query_scalar::<_, bool>("SELECT cases.needs_review($1::date, $2::date, $3::date)")
                .bind(placed)
                .bind(review)
                .bind(today)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert!(
        !rule("2025-05-20", None, "2025-11-20").await,
        "exactly six months: not yet"
    );
    assert!(
        rule("2025-05-20", None, "2025-11-21").await,
        "one day more: due"
    );
    assert!(
        !rule("2025-05-20", Some("2025-05-21"), "2025-11-21").await,
        "reviewed within six months"
    );
    assert!(
        rule("2025-01-10", Some("2025-05-20"), "2025-11-21").await,
        "last review too old"
    );
    // In the register (demo: Алиса placed 10.03.2025, never reviewed; Тимур reviewed 15.10.2025).
    let mut curator = test.client();
    curator.login("curator16").await;
    let flagged = curator.get("/vyzov/reestr?needs_review=1").await;
    assert!(
        flagged.body.contains("Алиса") && !flagged.body.contains("Тимур"),
        "{}",
        flagged.body
    );
    let export = curator.get("/vyzov/reestr.csv").await;
    assert!(export.body.starts_with('\u{feff}'));
    assert!(
        export.body.contains("16-2025-Д0001") && export.body.contains("Демонстрационная Алиса")
    );
    assert_eq!(
        export.body.lines().count(),
        3,
        "header and the two Tatarstan children"
    );
    let xlsx = curator.get("/vyzov/reestr.xlsx?needs_review=1").await;
    assert_eq!(xlsx.status, StatusCode::OK);
    assert!(xlsx.headers["content-type"]
        .to_str()
        .unwrap()
        .contains("spreadsheetml"));
    assert!(xlsx.body.starts_with("PK"), "an XLSX file is a zip archive");
    let logged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM access.access_log WHERE record_type = 'case' AND action = 'export'",
    )
    .fetch_one(&test.db.pool)
    .await
    .unwrap();
    assert_eq!(logged, 2, "both exports are in the access log");
}

#[tokio::test]
async fn the_curator_keeps_the_directory_and_sees_the_tasks() {
    let test = TestApp::with_demo().await;
    let mut curator = test.client();
    curator.login("curator16").await;
    let page = curator.get("/vyzov/spravochnik").await;
    assert!(page.body.contains("ГБУ «СРЦН „Ласточка“» (демо)"));
    assert!(
        !page.body.contains("Барнаульский"),
        "another region's directory is not shown"
    );
    let added = curator
        .post(
            "/vyzov/spravochnik",
            &[
                ("kind", "family_service"),
                ("name", "Служба «Дети в семье» Набережных Челнов"),
                ("region", "16"),
                ("specialists", "11"),
            ],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let foreign = curator
        .post(
            "/vyzov/spravochnik",
            &[("kind", "ngo"), ("name", "Чужая НКО"), ("region", "22")],
        )
        .await;
    assert_eq!(
        foreign.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not her region"
    );
    let wrong = curator
        .post(
            "/vyzov/spravochnik",
            &[
                ("kind", "family_service"),
                ("name", "Служба"),
                ("region", "16"),
                ("specialists", "много"),
            ],
        )
        .await;
    assert!(wrong.body.contains("целое число"), "{}", wrong.body);
    test.project().await;
    let page = curator.get("/vyzov/spravochnik").await;
    assert!(page.body.contains("Набережных Челнов") && page.body.contains("11"));
    // The demo's overdue item of Тимур is on the tasks page.
    let tasks = curator.get("/vyzov/zadachi?overdue=1").await;
    assert!(
        tasks.body.contains("Лечение зависимости матери") && tasks.body.contains("Тимур"),
        "{}",
        tasks.body
    );
    let mut altai = test.client();
    altai.login("curator22").await;
    assert!(!altai.get("/vyzov/zadachi").await.body.contains("Тимур"));
}

#[tokio::test]
async fn a_consilium_sitting_reviews_the_cases_due_and_its_protocol_shows_the_decisions() {
    let test = TestApp::with_demo().await;
    let mut curator = test.client();
    curator.login("curator16").await;
    let form = curator.get("/vyzov/konsiliumy/novoe").await;
    // Алиса is due (nine months, never reviewed): pre-selected on the agenda.
    let alisa_case = {
        let at = form.body.find("16-2025-Д0001").unwrap();
        let before = &form.body[..at];
        let value = before.rfind("value=\"").unwrap() + 7;
        before[value..].split('"').next().unwrap().to_owned()
    };
    assert!(form.body[..form.body.find("16-2025-Д0001").unwrap()]
        .ends_with(&format!("value=\"{alisa_case}\" checked> ")));
    let command_id = input(&form.body, "command_id");
    let held = curator
        .post(
            "/vyzov/konsiliumy",
            &[
                ("command_id", &command_id),
                ("on", &ago(1)),
                ("region", "16"),
                ("level", "regional"),
                ("chair", "Заместитель министра образования"),
                ("members", "Куратор\nПредставитель органа опеки"),
                ("agenda", &alisa_case),
            ],
        )
        .await;
    assert_eq!(held.status, StatusCode::SEE_OTHER, "{}", held.body);
    let session = held.location().to_owned();
    test.project().await;
    let page = curator.get(&session).await;
    assert!(
        page.body.contains("Протокол заседания")
            && page.body.contains("Представитель органа опеки")
    );
    let entries = input(&page.body, "entries");
    let decided = curator
        .post(
            &format!("{session}/rassmotrenie"),
            &[
                ("case", &alisa_case),
                ("entries", &entries),
                ("command_id", &Uuid::now_v7().to_string()),
                ("action", "review"),
                ("level", "regional"),
                ("stay_justified", "no"),
                ("aid", "material_aid"),
                ("return_possible", "yes"),
                ("next_review", &ago(-120)),
            ],
        )
        .await;
    assert_eq!(decided.status, StatusCode::SEE_OTHER, "{}", decided.body);
    test.project().await;
    let protocol = curator.get(&session).await;
    assert!(
        protocol
            .body
            .contains("материальная помощь через НКО-оператора"),
        "{}",
        protocol.body
    );
    let register = curator.get("/vyzov/reestr?needs_review=1").await;
    assert!(
        !register.body.contains("Алиса"),
        "reviewed at the sitting: no longer due"
    );
    let session_id: Option<Uuid> =
        sqlx::query_scalar("SELECT session FROM cases.review WHERE case_id = $1::uuid")
            .bind(&alisa_case)
            .fetch_one(&test.db.pool)
            .await
            .unwrap();
    assert_eq!(
        session_id.map(|s| s.to_string()),
        Some(session.trim_start_matches("/vyzov/konsiliumy/").to_owned())
    );
    let mut altai = test.client();
    altai.login("curator22").await;
    assert_eq!(altai.get(&session).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_import_with_bad_rows_writes_nothing_until_valid_rows_are_chosen() {
    let test = TestApp::with_demo().await;
    let mut curator = test.client();
    curator.login("curator16").await;
    let template = curator.get("/vyzov/import/shablon.csv").await;
    assert!(template.body.starts_with('\u{feff}'));
    let header = template
        .body
        .trim_start_matches('\u{feff}')
        .lines()
        .next()
        .unwrap()
        .to_owned();
    assert!(
        header.contains("Фамилия") && header.contains("В учреждении с"),
        "{header}"
    );
    let csv = format!(
        "{header}\n\
         Новикова;Вера;;01.02.2012;ж;Казань;ГБУ «СРЦН „Ласточка“» (демо);;{placed};заявление родителей;бедность;без статуса;;\n\
         Орлов;Пётр;;01.02.2013;м;Казань;Несуществующий дом;СРЦН;{placed};суд;бедность;без статуса;;\n\
         Демонстрационная;Алиса;;05.03.2014;ж;Казань;ГБУ «СРЦН „Ласточка“» (демо);;{placed};police;conflict;without_status;;\n",
        placed = ago(100)
    );
    curator.get("/vyzov/import").await;
    let uploaded = curator
        .post_file(
            "/vyzov/import",
            &[("region", "16")],
            ("reestr.csv", csv.as_bytes()),
        )
        .await;
    assert_eq!(uploaded.status, StatusCode::SEE_OTHER, "{}", uploaded.body);
    let batch = uploaded.location().to_owned();
    let events_before: i64 = sqlx::query_scalar("SELECT count(*) FROM event")
        .fetch_one(&test.db.pool)
        .await
        .unwrap();
    let preview = curator.get(&batch).await;
    assert!(
        preview.body.contains("нет такого учреждения"),
        "{}",
        preview.body
    );
    assert!(
        preview.body.contains("возможный дубль"),
        "Алиса is already registered"
    );
    assert!(
        preview.body.contains("2 строки без ошибок")
            && preview.body.contains("1 строка с ошибками"),
        "{}",
        preview.body
    );
    // All rows asked for, one is bad: nothing is written.
    let refused = curator.post(&batch, &[("mode", "all")]).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let events_after: i64 = sqlx::query_scalar("SELECT count(*) FROM event")
        .fetch_one(&test.db.pool)
        .await
        .unwrap();
    assert_eq!(events_before, events_after, "nothing written");
    // Explicitly the valid rows, duplicates left out: only Вера comes in.
    let done = curator
        .post(&batch, &[("mode", "valid"), ("skip_duplicates", "1")])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let again = curator
        .post(&batch, &[("mode", "valid"), ("skip_duplicates", "1")])
        .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    test.project().await;
    let register = curator.get("/vyzov/reestr?q=Новикова").await;
    assert!(register.body.contains("Новикова Вера"), "{}", register.body);
    let people: i64 = sqlx::query_scalar("SELECT count(*) FROM persons.person")
        .fetch_one(&test.db.pool)
        .await
        .unwrap();
    assert_eq!(people, 5, "four demo people and Вера, once");
    // Another region's curator cannot see or run the batch.
    let mut altai = test.client();
    altai.login("curator22").await;
    assert_eq!(altai.get(&batch).await.status, StatusCode::NOT_FOUND);
    // The rows waited sealed: the batch table holds no name in clear.
    let raw: Vec<u8> = sqlx::query_scalar("SELECT sealed FROM access.import_batch")
        .fetch_one(&test.db.pool)
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("Новикова"));
}

#[tokio::test]
async fn an_xlsx_register_is_read_like_the_template() {
    let test = TestApp::with_demo().await;
    let mut curator = test.client();
    curator.login("curator16").await;
    let headers: Vec<String> = (0..14).map(|i| format!("c{i}")).collect();
    let row: Vec<String> = [
        "Соколова",
        "Дарья",
        "",
        "07.07.2011",
        "женский",
        "Казань",
        "ГБУ «СРЦН „Ласточка“» (демо)",
        "СРЦН",
        &ago(50),
        "решение суда",
        "насилие",
        "со статусом",
        &ago(10),
        "региональный",
    ]
    .map(str::to_owned)
    .to_vec();
    let xlsx = opora_web::export::xlsx("Реестр", &headers, &[row]).unwrap();
    curator.get("/vyzov/import").await;
    let uploaded = curator
        .post_file("/vyzov/import", &[("region", "16")], ("reestr.xlsx", &xlsx))
        .await;
    assert_eq!(uploaded.status, StatusCode::SEE_OTHER, "{}", uploaded.body);
    let preview = curator.get(uploaded.location()).await;
    assert!(
        preview.body.contains("1 строка без ошибок"),
        "{}",
        preview.body
    );
    let done = curator.post(uploaded.location(), &[("mode", "all")]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    test.project().await;
    let register = curator.get("/vyzov/reestr?q=Соколова").await;
    assert!(register.body.contains("Соколова Дарья"));
    assert!(
        !register
            .body
            .contains("больше 6 месяцев без консилиума</strong>"),
        "imported last review counts"
    );
    // Garbage is refused with a message, not a 500.
    let junk = curator
        .post_file(
            "/vyzov/import",
            &[("region", "16")],
            ("reestr.xlsx", b"not a spreadsheet"),
        )
        .await;
    assert_eq!(junk.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(junk.body.contains("не удалось прочитать"), "{}", junk.body);
}

#[tokio::test]
async fn a_family_with_its_status_and_children_and_its_next_case() {
    let test = TestApp::with_demo().await;
    let mut curator = test.client();
    curator.login("curator16").await;
    let form = curator.get("/lyudi/semi/novaya").await;
    let command_id = input(&form.body, "command_id");
    let created = curator
        .post(
            "/lyudi/semi",
            &[
                ("command_id", &command_id),
                ("name", "семья Демонстрационных"),
                ("region", "16"),
                ("status", "tzhs"),
                ("large", "1"),
                ("address", "Казань, ул. Примерная, 1"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let family = created.location().to_owned();
    test.project().await;
    let page = curator.get(&family).await;
    assert!(
        page.body.contains("семья Демонстрационных")
            && page.body.contains("трудная жизненная ситуация")
    );
    // Link Тимур (offered among the region's children).
    let timur = {
        let at = page.body.find(">Демонстрационный Тимур<").unwrap();
        let before = &page.body[..at];
        let value = before.rfind("value=\"").unwrap() + 7;
        before[value..].split('"').next().unwrap().to_owned()
    };
    let linked = curator
        .post(
            &format!("{family}/zapis"),
            &[("action", "link"), ("child", &timur)],
        )
        .await;
    assert_eq!(linked.status, StatusCode::SEE_OTHER, "{}", linked.body);
    let foreign = curator
        .post(
            &format!("{family}/zapis"),
            &[("action", "link"), ("child", &Uuid::now_v7().to_string())],
        )
        .await;
    assert_eq!(
        foreign.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "only offered children can be linked"
    );
    let no_reason = curator
        .post(
            &format!("{family}/zapis"),
            &[("action", "status"), ("status", "sop")],
        )
        .await;
    assert_eq!(
        no_reason.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a status change needs a reason"
    );
    test.project().await;
    let page = curator.get(&family).await;
    assert!(
        page.body.contains("16-2025-Д0002"),
        "the child's case is shown with the family"
    );
    // A new case for Тимур carries the family.
    let form = curator
        .get(&format!("/vyzov/dela/novoe?person={timur}"))
        .await;
    let command_id = input(&form.body, "command_id");
    let opened = curator
        .post(
            "/vyzov/dela",
            &[
                ("person", &timur),
                ("command_id", &command_id),
                ("on", &ago(2)),
            ],
        )
        .await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER);
    test.project().await;
    let family_id: Option<Uuid> =
        sqlx::query_scalar("SELECT family FROM cases.child_case WHERE id = $1::uuid")
            .bind(opened.location().trim_start_matches("/vyzov/dela/"))
            .fetch_one(&test.db.pool)
            .await
            .unwrap();
    assert_eq!(
        family_id.map(|f| f.to_string()).as_deref(),
        Some(family.trim_start_matches("/lyudi/semi/"))
    );
    // The family's data is sealed in the log, and another region cannot see the family.
    let dump: String = sqlx::query_scalar(
        "SELECT string_agg(payload::text, ' ') FROM event WHERE aggregate_type = 'Family'",
    )
    .fetch_one(&test.db.pool)
    .await
    .unwrap();
    assert!(!dump.contains("Демонстрационных") && !dump.contains("Примерная"));
    let mut altai = test.client();
    altai.login("curator22").await;
    assert_eq!(altai.get(&family).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_pilot_demo_fills_the_fourteen_regions_at_one_hundredth_of_the_seed_figures() {
    use opora_web::demo::pilot;
    let test = TestApp::with_demo().await;
    let today = opora_web::i18n::today_in("Europe/Moscow");
    pilot::load(&test.db.log, &test.vault, today).await.unwrap();
    // A second run writes nothing.
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM event")
        .fetch_one(&test.db.pool)
        .await
        .unwrap();
    pilot::load(&test.db.log, &test.vault, today).await.unwrap();
    let again: i64 = sqlx::query_scalar("SELECT count(*) FROM event")
        .fetch_one(&test.db.pool)
        .await
        .unwrap();
    assert_eq!(events, again);
    test.project().await;
    let ids: Vec<String> = pilot::case_ids().iter().map(Uuid::to_string).collect();
    // Counted straight from the log, as the dashboards will.
    let row = sqlx::query(
        "WITH c AS (SELECT aggregate_id, \
                min(effective_date) FILTER (WHERE event_type = 'ChildPlaced') AS placed, \
                min(effective_date) FILTER (WHERE event_type = 'ChildLeftInstitution') AS left_on \
           FROM event WHERE aggregate_type = 'ChildCase' AND aggregate_id = ANY($1) \
          GROUP BY aggregate_id) \
         SELECT (SELECT count(*) FROM c WHERE placed <= $2 AND (left_on IS NULL OR left_on > $2)) AS baseline, \
                (SELECT count(*) FROM c WHERE placed <= $3 AND (left_on IS NULL OR left_on > $3)) AS midpoint, \
                (SELECT count(DISTINCT e.region) FROM (SELECT split_part(payload->'CaseOpened'->>'case_number', '-', 1) AS region \
                   FROM event WHERE event_type = 'CaseOpened' AND aggregate_id = ANY($1)) e) AS regions",
    )
    .bind(&ids)
    .bind(pilot::BASELINE)
    .bind(pilot::MIDPOINT)
    .fetch_one(&test.db.pool)
    .await
    .unwrap();
    assert_eq!(row.get::<i64, _>("baseline"), 212, "21 152 on 01.07.2024");
    assert_eq!(row.get::<i64, _>("midpoint"), 164, "16 446 on 01.10.2025");
    assert_eq!(row.get::<i64, _>("regions"), 14);
    let exits: Vec<(String, i64)> = sqlx::query_as(
        "SELECT payload->'ChildLeftInstitution'->>'exit', count(*) FROM event \
          WHERE event_type = 'ChildLeftInstitution' AND aggregate_id = ANY($1) \
            AND effective_date BETWEEN '2025-01-01' AND '2025-12-31' GROUP BY 1",
    )
    .bind(&ids)
    .fetch_all(&test.db.pool)
    .await
    .unwrap();
    let total: i64 = exits.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 230, "22 981 left in 2025: {exits:?}");
    let home = exits
        .iter()
        .find(|(k, _)| k == "birth_family")
        .map(|(_, n)| *n);
    assert_eq!(home, Some(148), "14 825 went home");
    let prevented: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM event WHERE event_type = 'PlacementPrevented' AND aggregate_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&test.db.pool)
    .await
    .unwrap();
    assert_eq!(prevented, 90);
    // The register of a pilot region shows its children, names opened for its curator.
    let mut curator = test.client();
    curator.login("curator22").await;
    let register = curator.get("/vyzov/reestr").await;
    assert_eq!(register.status, StatusCode::OK);
    assert!(register.body.contains("22-20"), "Altai's cases are listed");
    // The NGO operators' aid by Q3 2025 at full scale: «more than 600 families, 1,600
    // children, almost 60 million rubles» (seed 004) — hundreds of families, tens of
    // millions of rubles.
    test.project().await;
    let mut analyst = test.client();
    analyst.login("analyst").await;
    let report = analyst
        .api(
            axum::http::Method::GET,
            "/api/v1/aid/report?from=2025-01-01&to=2025-09-30",
            None,
        )
        .await;
    let report: serde_json::Value = serde_json::from_str(&report.body).unwrap();
    let rubles = report["total"]["kopecks"].as_i64().unwrap() / 100;
    let families = report["total"]["families"].as_i64().unwrap();
    let children = report["total"]["children"].as_i64().unwrap();
    assert!((20_000_000..=100_000_000).contains(&rubles), "{rubles} ₽");
    assert!((500..=700).contains(&families), "{families} families");
    assert!((1_200..=2_200).contains(&children), "{children} children");
    assert!(
        report["large_share_permille"].as_i64().unwrap() > 500,
        "mostly large families"
    );
    // Each NGO's desk has work on it.
    let mut ngo = test.client_with(&curator);
    ngo.login("ngo22").await;
    let desk = ngo.get("/vyzov/pomoshch").await;
    assert_eq!(desk.status, StatusCode::OK);
    assert!(
        desk.body.matches("<td><a href=\"/vyzov/pomoshch/").count() > 0,
        "requests of Altai's NGO are on its desk"
    );
    eprintln!("pilot aid: {rubles} ₽, {families} families, {children} children");
}
