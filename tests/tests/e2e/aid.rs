//! «Вызов»: the NGO operator's aid — from a consilium decision to a delivery with a scanned
//! receipt, its correction, the report to the kopeck, and the NGO's scope.

use axum::http::{Method, StatusCode};
use opora_domain::access::Text;
use opora_domain::aid::{
    AidCommand, AidForm, AidPurpose, AidRequest, AidRequestFacts, AidRequester, Delivery,
};
use opora_domain::family::{Family, FamilyCommand, FamilyData, FamilyStatus};
use opora_domain::money::Rubles;
use opora_domain::reference::RegionCode;
use opora_store::{CommandBus, CommandMeta};
use std::collections::{BTreeMap, HashMap, HashSet};
use time::macros::date;
use time::Date;
use uuid::Uuid;

use crate::cases::{ago, input, record};
use crate::client::{Client, TestApp};

/// The part of `body` after `marker`, up to the next `"`.
fn after(body: &str, marker: &str) -> String {
    let start = body
        .find(marker)
        .unwrap_or_else(|| panic!("no «{marker}» in the page"))
        + marker.len();
    body[start..].split('"').next().unwrap().to_owned()
}

/// A family of Tatarstan with Тимур, a new case for him, and a consilium decision for
/// material aid on it: the NGO's inbox item. Returns (family page, case page).
async fn decision_for_aid(test: &TestApp, curator: &mut Client) -> (String, String) {
    let form = curator.get("/lyudi/semi/novaya").await;
    let command_id = input(&form.body, "command_id");
    let created = curator
        .post(
            "/lyudi/semi",
            &[
                ("command_id", &command_id),
                ("name", "семья Помогаевых"),
                ("region", "16"),
                ("status", "tzhs"),
                ("large", "1"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let family = created.location().to_owned();
    test.project().await;
    let page = curator.get(&family).await;
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
    assert_eq!(linked.status, StatusCode::SEE_OTHER);
    test.project().await;
    let form = curator
        .get(&format!("/vyzov/dela/novoe?person={timur}"))
        .await;
    let opened = curator
        .post(
            "/vyzov/dela",
            &[
                ("person", &timur),
                ("command_id", &input(&form.body, "command_id")),
                ("on", &ago(40)),
            ],
        )
        .await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER, "{}", opened.body);
    let case = opened.location().to_owned();
    test.project().await;
    let reviewed = record(
        curator,
        &case,
        &[
            ("action", "review"),
            ("on", &ago(30)),
            ("level", "municipal"),
            ("aid", "material_aid"),
            ("return_possible", "yes"),
        ],
    )
    .await;
    assert_eq!(reviewed.status, StatusCode::SEE_OTHER, "{}", reviewed.body);
    test.project().await;
    (family, case)
}

/// A tiny valid PDF, as a scanned receipt.
const RECEIPT: &[u8] = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n";

#[tokio::test]
async fn an_ngo_logs_aid_on_a_consilium_decision_and_only_its_own_families_are_seen() {
    let test = TestApp::with_demo().await;
    let mut curator = test.client();
    curator.login("curator16").await;
    let (family, case) = decision_for_aid(&test, &mut curator).await;

    let mut ngo = test.client_with(&curator);
    ngo.login("ngo16").await;
    // The decision is in the NGO's inbox, with the family's name.
    let desk = ngo.get("/vyzov/pomoshch").await;
    assert_eq!(desk.status, StatusCode::OK);
    assert!(desk.body.contains("семья Помогаевых"), "{}", desk.body);
    let review = after(&desk.body, "/vyzov/pomoshch/novyi?review=");
    // The NGO does not see the family before the request.
    assert_eq!(ngo.get(&family).await.status, StatusCode::NOT_FOUND);

    let form = ngo
        .get(&format!("/vyzov/pomoshch/novyi?review={review}"))
        .await;
    assert!(form.body.contains("По решению консилиума"));
    let command_id = input(&form.body, "command_id");
    let fields = [
        ("command_id", command_id.as_str()),
        ("review", review.as_str()),
        ("on", &ago(20)),
        ("purpose", "support_return"),
        ("form", "housing_repair"),
        ("description", "ремонт печи"),
        ("amount", "150 000"),
        ("children", "3"),
    ];
    let created = ngo.post("/vyzov/pomoshch", &fields).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let request = created.location().split('?').next().unwrap().to_owned();
    // Sent twice: one request.
    let again = ngo.post("/vyzov/pomoshch", &fields).await;
    assert_eq!(again.location(), created.location());
    test.project().await;
    let requests: i64 = sqlx::query_scalar("SELECT count(*) FROM aid.request")
        .fetch_one(&test.db.pool)
        .await
        .unwrap();
    assert_eq!(requests, 1);
    // The family is now the NGO's; the decision has left the inbox for "waiting".
    assert_eq!(ngo.get(&family).await.status, StatusCode::OK);
    let desk = ngo.get("/vyzov/pomoshch").await;
    assert!(!desk.body.contains("/vyzov/pomoshch/novyi?review="));
    assert!(desk.body.contains(&request));

    // Deliver before approval: refused; approve; deliver with a receipt.
    let id = Uuid::now_v7().to_string();
    let early = ngo
        .post(
            &format!("{request}/shag"),
            &[
                ("action", "deliver"),
                ("command_id", &id),
                ("on", &ago(5)),
                ("amount", "1000"),
                ("form", "housing_repair"),
            ],
        )
        .await;
    assert_eq!(early.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(early.body.contains("только по одобренному запросу"));
    let approved = ngo
        .post(
            &format!("{request}/shag"),
            &[
                ("action", "approve"),
                ("command_id", &Uuid::now_v7().to_string()),
                ("on", &ago(15)),
                ("amount", "150000.00"),
            ],
        )
        .await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
    for (amount, message) in [
        ("-5", "не может быть отрицательной"),
        ("10 000 000,01", "больше 10 000 000"),
        ("12,345", "двух знаков"),
        ("много", "не сумма"),
    ] {
        let bad = ngo
            .post_file(
                &format!("{request}/shag"),
                &[
                    ("action", "deliver"),
                    ("command_id", &Uuid::now_v7().to_string()),
                    ("on", &ago(10)),
                    ("amount", amount),
                    ("form", "housing_repair"),
                ],
                ("", b""),
            )
            .await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{amount}");
        assert!(bad.body.contains(message), "{amount}: {}", bad.body);
    }
    let not_pdf = ngo
        .post_file(
            &format!("{request}/shag"),
            &[
                ("action", "deliver"),
                ("command_id", &Uuid::now_v7().to_string()),
                ("on", &ago(10)),
                ("amount", "1 000"),
                ("form", "housing_repair"),
            ],
            ("virus.exe", b"MZ\x90\x00 not a receipt"),
        )
        .await;
    assert_eq!(not_pdf.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(not_pdf.body.contains("PDF, JPEG и PNG"));
    let delivered = ngo
        .post_file(
            &format!("{request}/shag"),
            &[
                ("action", "deliver"),
                ("command_id", &Uuid::now_v7().to_string()),
                ("on", &ago(10)),
                ("amount", "120 000,50"),
                ("form", "housing_repair"),
                ("supplier", "ООО «Стройбаза»"),
                ("receipt", "№ 4711"),
            ],
            ("чек.pdf", RECEIPT),
        )
        .await;
    assert_eq!(
        delivered.status,
        StatusCode::SEE_OTHER,
        "{}",
        delivered.body
    );
    test.project().await;
    let page = ngo.get(&request).await;
    assert!(
        page.body.contains("120\u{a0}000,50\u{a0}₽"),
        "{}",
        page.body
    );
    let delivery = after(&page.body, "name=\"delivery\" value=\"");
    // A correction with a reason replaces the figures; the history keeps both.
    let corrected = ngo
        .post_file(
            &format!("{request}/shag"),
            &[
                ("action", "correct"),
                ("command_id", &Uuid::now_v7().to_string()),
                ("delivery", &delivery),
                ("on", &ago(10)),
                ("amount", "12 000,50"),
                ("form", "housing_repair"),
                ("supplier", "ООО «Стройбаза»"),
                ("receipt", "№ 4711"),
                ("reason", "лишний ноль в сумме"),
            ],
            ("", b""),
        )
        .await;
    assert_eq!(
        corrected.status,
        StatusCode::SEE_OTHER,
        "{}",
        corrected.body
    );
    test.project().await;
    let page = ngo.get(&request).await;
    assert!(page.body.contains("12\u{a0}000,50\u{a0}₽"));
    assert!(page.body.contains("лишний ноль в сумме"));
    assert!(page.body.contains("Выдача исправлена"));
    // The receipt comes back as it went in, and is sealed at rest.
    let file = after(&page.body, &format!("{request}/fayl/"));
    let download = ngo.get(&format!("{request}/fayl/{file}")).await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.headers["content-type"], "application/pdf");
    assert_eq!(download.body.as_bytes(), RECEIPT);
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT sealed FROM access.aid_attachment WHERE id = $1::uuid")
            .bind(&file)
            .fetch_one(&test.db.pool)
            .await
            .unwrap();
    assert!(!stored.windows(5).any(|w| w == b"%PDF-"));

    // The case page shows the aid the family received; the curator's report counts it.
    let case_page = curator.get(&case).await;
    assert!(
        case_page.body.contains("12\u{a0}000,50\u{a0}₽"),
        "{}",
        case_page.body
    );
    let report = curator
        .api(
            Method::GET,
            &format!("/api/v1/aid/report?from={}", ago(60)),
            None,
        )
        .await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    let report: serde_json::Value = serde_json::from_str(&report.body).unwrap();
    assert_eq!(report["total"]["kopecks"], 1_200_050);
    assert_eq!(report["total"]["families"], 1);
    assert_eq!(report["total"]["children"], 3);
    assert_eq!(report["large_share_permille"], 1000);

    // Another NGO, another region's curator: not found, for pages and API alike.
    let mut other = test.client_with(&curator);
    other.login("ngo22").await;
    // Its new request is dated today in its own region (Altai), as approval and delivery are.
    let zone: String =
        sqlx::query_scalar("SELECT time_zone FROM reference.region WHERE code = '22'")
            .fetch_one(&test.db.pool)
            .await
            .unwrap();
    let blank = other.get("/vyzov/pomoshch/novyi").await;
    let altai_today = opora_domain::format_date(opora_web::i18n::today_in(&zone));
    assert!(
        blank
            .body
            .contains(&format!("name=\"on\" required value=\"{altai_today}\"")),
        "{}",
        blank.body
    );
    let mut altai = test.client_with(&curator);
    altai.login("curator22").await;
    for client in [&mut other, &mut altai] {
        assert_eq!(client.get(&request).await.status, StatusCode::NOT_FOUND);
        assert_eq!(
            client.get(&format!("{request}/fayl/{file}")).await.status,
            StatusCode::NOT_FOUND
        );
        let id = request.trim_start_matches("/vyzov/pomoshch/");
        let api = client
            .api(Method::GET, &format!("/api/v1/aid/requests/{id}"), None)
            .await;
        assert_eq!(api.status, StatusCode::NOT_FOUND);
        let list = client.api(Method::GET, "/api/v1/aid/requests", None).await;
        assert_eq!(list.body, "[]");
    }
    assert_eq!(other.get(&family).await.status, StatusCode::NOT_FOUND);
    let foreign_step = other
        .api(
            Method::POST,
            &format!(
                "/api/v1/aid/requests/{}/steps",
                request.trim_start_matches("/vyzov/pomoshch/")
            ),
            Some(&serde_json::json!({"action": "withdraw", "delivery": delivery, "reason": "x"})),
        )
        .await;
    assert_eq!(foreign_step.status, StatusCode::NOT_FOUND);
    let foreign_report = other
        .api(
            Method::GET,
            &format!("/api/v1/aid/report?from={}", ago(60)),
            None,
        )
        .await;
    let foreign_report: serde_json::Value = serde_json::from_str(&foreign_report.body).unwrap();
    assert_eq!(foreign_report["total"]["kopecks"], 0);
    // The ministry's analyst reads the totals but not the families.
    let mut analyst = test.client_with(&curator);
    analyst.login("analyst").await;
    let traced = analyst
        .api(
            Method::GET,
            &format!("/api/v1/aid/deliveries?from={}", ago(60)),
            None,
        )
        .await;
    let traced: serde_json::Value = serde_json::from_str(&traced.body).unwrap();
    assert_eq!(traced["kopecks"], 1_200_050);
    assert!(traced["deliveries"][0]["family_name"].is_null());
    assert_eq!(analyst.get(&request).await.status, StatusCode::FORBIDDEN);
}

/// A tiny deterministic generator (xorshift), so the generated set is the same every run.
struct Dice(u64);

impl Dice {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[derive(Default, Debug, PartialEq, Eq, Clone, Copy)]
struct Line {
    kopecks: i64,
    families: i64,
    children: i64,
}

#[tokio::test]
async fn the_aid_report_matches_an_independent_sum_to_the_kopeck() {
    let test = TestApp::with_demo().await;
    let ngo16: Uuid = sqlx::query_scalar(
        "SELECT id FROM reference.organisation WHERE kind = 'ngo' AND region_code = '16'",
    )
    .fetch_one(&test.db.pool)
    .await
    .unwrap();
    let ngo22: Uuid = sqlx::query_scalar(
        "SELECT id FROM reference.organisation WHERE kind = 'ngo' AND region_code = '22'",
    )
    .fetch_one(&test.db.pool)
    .await
    .unwrap();
    let municipalities: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM reference.municipality WHERE region_code = '16' ORDER BY name LIMIT 4",
    )
    .fetch_all(&test.db.pool)
    .await
    .unwrap();
    let families = CommandBus::<Family>::new(test.db.log.clone(), ());
    let aid = CommandBus::<AidRequest>::new(test.db.log.clone(), ());
    // A fresh command id for each command (the bus answers a repeated id with its first
    // outcome).
    let meta = || CommandMeta::new("test");
    let today = date!(2026 - 06 - 30);
    let (from, to) = (date!(2025 - 01 - 01), date!(2025 - 12 - 31));
    let mut dice = Dice(0x0123_4567_89ab_cdef);
    // Expected figures for the curator of region 16 over 2025: the total and by form, each
    // with its families' children (the largest number a family's requests name).
    let mut total = 0i64;
    let mut by_form: BTreeMap<&str, i64> = BTreeMap::new();
    let mut family_children: HashMap<Uuid, i64> = HashMap::new();
    let mut form_families: BTreeMap<&str, HashSet<Uuid>> = BTreeMap::new();
    let mut large_families = HashSet::new();
    for f in 0..24 {
        let family = Uuid::now_v7();
        let region = if f % 6 == 5 { "22" } else { "16" };
        let large = dice.next(3) > 0;
        let personal = test
            .vault
            .seal(
                family,
                &FamilyData {
                    name: format!("семья № {f}"),
                    address: None,
                    phone: None,
                },
            )
            .await
            .unwrap();
        families
            .execute(
                &family.to_string(),
                FamilyCommand::Register {
                    on: date!(2024 - 12 - 01),
                    region: RegionCode::parse(region).unwrap(),
                    municipality: (region == "16")
                        .then(|| municipalities[f % municipalities.len()]),
                    status: FamilyStatus::DifficultSituation,
                    large,
                    personal,
                    ngo: None,
                },
                &meta(),
            )
            .await
            .unwrap();
        for _ in 0..=dice.next(3) {
            let id = Uuid::now_v7();
            let children = 1 + dice.next(5) as u16;
            let form = AidForm::ALL[dice.next(AidForm::ALL.len() as u64 - 1) as usize].0;
            let requested = date!(2024 - 12 - 15) + time::Duration::days(dice.next(400) as i64);
            let facts = AidRequestFacts {
                on: requested,
                family,
                region: RegionCode::parse(region).unwrap(),
                municipality: None,
                ngo: if region == "16" { ngo16 } else { ngo22 },
                requester: AidRequester::Municipality,
                requested_by: None,
                review: None,
                purpose: AidPurpose::PreventPlacement,
                form,
                form_other: None,
                description: None,
                amount: None,
                children,
            };
            aid.execute(
                &id.to_string(),
                AidCommand::Request { today, facts },
                &meta(),
            )
            .await
            .unwrap();
            if dice.next(8) == 0 {
                continue; // still waiting
            }
            aid.execute(
                &id.to_string(),
                AidCommand::Approve {
                    on: requested,
                    today,
                    amount: None,
                    note: None,
                },
                &meta(),
            )
            .await
            .unwrap();
            for part in 0..=dice.next(2) {
                let on: Date = requested + time::Duration::days(part as i64 * 31);
                let delivery = Delivery {
                    id: Uuid::now_v7(),
                    on,
                    // Awkward kopecks on purpose: 1 kopeck to 250 000,99 ₽.
                    amount: Rubles::from_kopecks(1 + dice.next(25_000_099) as i64),
                    form,
                    form_other: None,
                    supplier: Text::parse("поставщик"),
                    receipt: None,
                    attachment: None,
                };
                aid.execute(
                    &id.to_string(),
                    AidCommand::Deliver {
                        today,
                        delivery: delivery.clone(),
                    },
                    &meta(),
                )
                .await
                .unwrap();
                let mut counted = Some(delivery.amount.kopecks());
                match dice.next(6) {
                    0 => {
                        aid.execute(
                            &id.to_string(),
                            AidCommand::Withdraw {
                                on: today,
                                delivery: delivery.id,
                                reason: Text::parse("ошибка").unwrap(),
                            },
                            &meta(),
                        )
                        .await
                        .unwrap();
                        counted = None;
                    }
                    1 => {
                        let amount = Rubles::from_kopecks(1 + dice.next(9_999_999) as i64);
                        aid.execute(
                            &id.to_string(),
                            AidCommand::Correct {
                                today,
                                delivery: Delivery {
                                    amount,
                                    ..delivery.clone()
                                },
                                reason: Text::parse("уточнена сумма").unwrap(),
                            },
                            &meta(),
                        )
                        .await
                        .unwrap();
                        counted = Some(amount.kopecks());
                    }
                    _ => {}
                }
                if let Some(kopecks) = counted.filter(|_| region == "16" && on >= from && on <= to)
                {
                    total += kopecks;
                    *by_form.entry(form.code()).or_default() += kopecks;
                    let seen = family_children.entry(family).or_default();
                    *seen = (*seen).max(i64::from(children));
                    form_families.entry(form.code()).or_default().insert(family);
                    if large {
                        large_families.insert(family);
                    }
                }
            }
        }
    }
    test.project().await;
    assert!(
        total > 0 && by_form.len() > 3,
        "the generated set is not trivial"
    );
    let expected = Line {
        kopecks: total,
        families: family_children.len() as i64,
        children: family_children.values().sum(),
    };
    let mut curator = test.client();
    curator.login("curator16").await;
    let answer = curator
        .api(
            Method::GET,
            "/api/v1/aid/report?from=2025-01-01&to=31.12.2025",
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let report: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    let line = |v: &serde_json::Value| Line {
        kopecks: v["kopecks"].as_i64().unwrap(),
        families: v["families"].as_i64().unwrap(),
        children: v["children"].as_i64().unwrap(),
    };
    assert_eq!(line(&report["total"]), expected, "{report}");
    for row in report["by_form"].as_array().unwrap() {
        let code = row["key"].as_str().unwrap();
        assert_eq!(
            row["kopecks"].as_i64().unwrap(),
            by_form[code],
            "form {code}"
        );
        assert_eq!(
            row["families"].as_i64().unwrap(),
            form_families[code].len() as i64,
            "families of form {code}"
        );
    }
    assert_eq!(report["by_form"].as_array().unwrap().len(), by_form.len());
    let by_municipality: i64 = report["by_municipality"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kopecks"].as_i64().unwrap())
        .sum();
    assert_eq!(by_municipality, total, "municipalities add up to the total");
    assert_eq!(report["large_families"], large_families.len() as i64);
    assert_eq!(
        report["average_per_family_kopecks"].as_i64().unwrap(),
        Rubles::average(Rubles::from_kopecks(total), expected.families).kopecks()
    );
    // Each figure is traceable: the drill-down of the total lists deliveries that add up,
    // each naming its log entries, and the exports carry the same sum.
    let traced = curator
        .api(
            Method::GET,
            "/api/v1/aid/deliveries?from=2025-01-01&to=2025-12-31",
            None,
        )
        .await;
    let traced: serde_json::Value = serde_json::from_str(&traced.body).unwrap();
    assert_eq!(traced["kopecks"].as_i64().unwrap(), total);
    let entries = traced["deliveries"][0]["entries"].as_array().unwrap();
    assert!(entries[0].as_str().unwrap().starts_with("AidRequest/"));
    let csv = curator
        .get("/vyzov/pomoshch/otchet.csv?from=01.01.2025&to=31.12.2025")
        .await;
    assert!(
        csv.body.contains(&Rubles::from_kopecks(total).plain()),
        "{}",
        csv.body
    );
    let xlsx = curator
        .get("/vyzov/pomoshch/otchet.xlsx?from=01.01.2025&to=31.12.2025")
        .await;
    assert_eq!(xlsx.status, StatusCode::OK);
    assert!(xlsx.body.starts_with("PK"));
    // The NGO of region 16 sees the same figures; a nonsense period is refused.
    let mut ngo = test.client_with(&curator);
    ngo.login("ngo16").await;
    let answer = ngo
        .api(
            Method::GET,
            "/api/v1/aid/report?from=2025-01-01&to=2025-12-31",
            None,
        )
        .await;
    let report: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(line(&report["total"]), expected);
    let bad = ngo
        .api(
            Method::GET,
            "/api/v1/aid/report?from=2025-12-31&to=2025-01-01",
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let page = ngo.get("/vyzov/pomoshch/otchet?from=32.13.2025").await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("Период указан неверно"));
}
