//! People and access: the authorization matrix over every route, login throttling, session
//! renewal, CSRF, the second factor, the access log and erasure of personal data.

use axum::http::{Method, StatusCode};
use opora_domain::access::Role;
use opora_web::auth::guard::Rule;
use opora_web::Application;
use sqlx::Row;
use uuid::Uuid;

use crate::client::{Client, Response, TestApp};

/// The demo users, one per role (logins from `opora_web::demo`).
const USERS: &[(&str, Role)] = &[
    ("admin", Role::Administrator),
    ("analyst", Role::MinistryAnalyst),
    ("curator16", Role::RegionalCurator),
    ("secretary16", Role::ConsiliumSecretary),
    ("ngo16", Role::NgoOperator),
    ("edu-kazan", Role::MunicipalEducation),
    ("signals", Role::SignalOperator),
];

const PEOPLE: &[Role] = &[
    Role::Administrator,
    Role::RegionalCurator,
    Role::ConsiliumSecretary,
];
const ADMIN: &[Role] = &[Role::Administrator];
const FAMILIES: &[Role] = &[
    Role::Administrator,
    Role::RegionalCurator,
    Role::ConsiliumSecretary,
    Role::NgoOperator,
];
const NGO: &[Role] = &[Role::NgoOperator];
const DASHBOARD: &[Role] = &[
    Role::MinistryAnalyst,
    Role::RegionalCurator,
    Role::Administrator,
];
const AID_READERS: &[Role] = &[
    Role::Administrator,
    Role::RegionalCurator,
    Role::NgoOperator,
];
const AID_WRITERS: &[Role] = &[Role::Administrator, Role::NgoOperator];
const AID_REPORT: &[Role] = &[
    Role::Administrator,
    Role::RegionalCurator,
    Role::NgoOperator,
    Role::MinistryAnalyst,
];
const EDITORS: &[Role] = &[Role::Administrator, Role::RegionalCurator];
const WEEKLY_FILERS: &[Role] = &[Role::MunicipalEducation, Role::Administrator];
const WEEKLY_READERS: &[Role] = &[
    Role::MunicipalEducation,
    Role::MinistryAnalyst,
    Role::RegionalCurator,
    Role::Administrator,
];
const WEEKLY_SUMMARY: &[Role] = &[
    Role::MinistryAnalyst,
    Role::RegionalCurator,
    Role::Administrator,
];
const WEEKLY_REVIEWERS: &[Role] = &[Role::MinistryAnalyst, Role::Administrator];
const SIGNAL_WATCHERS: &[Role] = &[
    Role::SignalOperator,
    Role::MinistryAnalyst,
    Role::Administrator,
];
const SIGNAL_OPERATORS: &[Role] = &[Role::SignalOperator, Role::Administrator];
const SIGNAL_KPI: &[Role] = &[
    Role::MinistryAnalyst,
    Role::SignalOperator,
    Role::Administrator,
];

/// Who may use each route — written here independently of the router, so that a route
/// added without deciding this fails the matrix.
fn expected(method: &Method, path: &str) -> Option<Rule> {
    let rule = match (method.as_str(), path) {
        (
            "GET",
            "/"
            | "/static/opora.css"
            | "/healthz"
            | "/readyz"
            | "/vhod"
            | "/vhod/kod"
            | "/vhod/kod/podklyuchenie"
            | "/yazyk/{lang}",
        ) => Rule::Public,
        ("POST", "/vhod" | "/vhod/kod" | "/vhod/kod/podklyuchenie") => Rule::Public,
        ("POST", "/vyhod" | "/profil/parol" | "/profil/vyhod-vezde") => Rule::SignedIn,
        (
            "GET",
            "/profil" | "/spravochnik" | "/spravochnik/regiony.csv" | "/spravochnik/{code}",
        ) => Rule::SignedIn,
        ("GET", "/lyudi" | "/lyudi.csv" | "/lyudi/novyi" | "/lyudi/{id}") => Rule::Roles(PEOPLE),
        ("POST", "/lyudi") => Rule::Roles(PEOPLE),
        ("GET", "/lyudi/semi" | "/lyudi/semi/novaya" | "/lyudi/semi/{id}") => Rule::Roles(FAMILIES),
        ("POST", "/lyudi/semi" | "/lyudi/semi/{id}/zapis") => Rule::Roles(FAMILIES),
        ("POST", "/lyudi/semi/{id}/nko" | "/api/v1/families/{id}/take-on") => Rule::Roles(NGO),
        (
            "GET",
            "/vyzov/pomoshch"
            | "/vyzov/pomoshch/{id}"
            | "/vyzov/pomoshch/{id}/fayl/{file}"
            | "/api/v1/aid/desk"
            | "/api/v1/aid/requests"
            | "/api/v1/aid/requests/{id}"
            | "/api/v1/aid/requests/{id}/attachments/{file}",
        ) => Rule::Roles(AID_READERS),
        ("GET", "/vyzov/pomoshch/novyi") => Rule::Roles(AID_WRITERS),
        (
            "POST",
            "/vyzov/pomoshch"
            | "/vyzov/pomoshch/{id}/shag"
            | "/api/v1/aid/requests"
            | "/api/v1/aid/requests/{id}/steps"
            | "/api/v1/aid/attachments",
        ) => Rule::Roles(AID_WRITERS),
        (
            "GET",
            "/vyzov/pomoshch/otchet"
            | "/vyzov/pomoshch/otchet.csv"
            | "/vyzov/pomoshch/otchet.xlsx"
            | "/vyzov/pomoshch/vydachi"
            | "/vyzov/pomoshch/vydachi.csv"
            | "/vyzov/pomoshch/vydachi.xlsx"
            | "/api/v1/aid/report"
            | "/api/v1/aid/deliveries",
        ) => Rule::Roles(AID_REPORT),
        ("POST", "/lyudi/{id}/udalenie") => Rule::Roles(ADMIN),
        (
            "GET",
            "/vyzov/reestr" | "/vyzov/reestr.csv" | "/vyzov/reestr.xlsx" | "/vyzov/dela/novoe"
            | "/vyzov/dela/{id}",
        ) => Rule::Roles(PEOPLE),
        ("POST", "/vyzov/dela" | "/vyzov/dela/{id}/zapis") => Rule::Roles(PEOPLE),
        ("GET", "/vyzov/spravochnik" | "/vyzov/zadachi") => Rule::Roles(PEOPLE),
        ("GET", "/vyzov/konsiliumy" | "/vyzov/konsiliumy/novoe" | "/vyzov/konsiliumy/{id}") => {
            Rule::Roles(PEOPLE)
        }
        ("POST", "/vyzov/konsiliumy" | "/vyzov/konsiliumy/{id}/rassmotrenie") => {
            Rule::Roles(PEOPLE)
        }
        ("POST", "/vyzov/spravochnik" | "/vyzov/spravochnik/{id}") => Rule::Roles(EDITORS),
        ("GET", "/static/htmx.min.js" | "/static/console.js") => Rule::Public,
        ("GET", "/admin/integracii") => Rule::Roles(ADMIN),
        (
            "GET",
            "/monitoring/vyzov"
            | "/monitoring/vyzov/vygruzka"
            | "/monitoring/vyzov/{region}"
            | "/monitoring/vyzov/{region}/vygruzka",
        ) => Rule::Roles(DASHBOARD),
        (
            "GET",
            "/monitoring/zastupnik"
            | "/monitoring/zastupnik/vygruzka"
            | "/monitoring/zastupnik/{region}"
            | "/monitoring/zastupnik/{region}/vygruzka",
        ) => Rule::Roles(DASHBOARD),
        (
            "GET",
            "/zastupnik/signaly/kpi" | "/zastupnik/signaly/kpi.xlsx" | "/api/v1/signals/kpi",
        ) => Rule::Roles(SIGNAL_KPI),
        ("POST", "/admin/integracii" | "/admin/integracii/{id}") => Rule::Roles(ADMIN),
        (
            "GET",
            "/zastupnik/signaly"
            | "/zastupnik/signaly/ochered"
            | "/zastupnik/signaly/{id}"
            | "/api/v1/signals"
            | "/api/v1/signals/{id}",
        ) => Rule::Roles(SIGNAL_WATCHERS),
        (
            "POST",
            "/zastupnik/signaly/{id}"
            | "/api/v1/signals/{id}/acknowledge"
            | "/api/v1/signals/{id}/dispatch"
            | "/api/v1/signals/{id}/en-route"
            | "/api/v1/signals/{id}/on-scene"
            | "/api/v1/signals/{id}/resolve"
            | "/api/v1/signals/{id}/link-case",
        ) => Rule::Roles(SIGNAL_OPERATORS),
        ("GET", "/zastupnik/otchet") => Rule::Roles(WEEKLY_FILERS),
        ("POST", "/zastupnik/otchet" | "/api/v1/weekly/reports") => Rule::Roles(WEEKLY_FILERS),
        (
            "GET",
            "/zastupnik/otchet/{id}" | "/api/v1/weekly/reports" | "/api/v1/weekly/reports/{id}",
        ) => Rule::Roles(WEEKLY_READERS),
        (
            "GET",
            "/zastupnik/svodka"
            | "/zastupnik/svodka.xlsx"
            | "/zastupnik/svodka/pechat"
            | "/api/v1/weekly/summary",
        ) => Rule::Roles(WEEKLY_SUMMARY),
        (
            "GET",
            "/zastupnik/napominaniya.csv"
            | "/zastupnik/nastroyki"
            | "/zastupnik/import"
            | "/zastupnik/import/shablon.csv",
        ) => Rule::Roles(WEEKLY_REVIEWERS),
        (
            "POST",
            "/zastupnik/otchet/{id}/reshenie"
            | "/zastupnik/razblokirovat"
            | "/zastupnik/napominaniya"
            | "/zastupnik/nastroyki"
            | "/zastupnik/import"
            | "/api/v1/weekly/reports/{id}/review"
            | "/api/v1/weekly/unlock",
        ) => Rule::Roles(WEEKLY_REVIEWERS),
        (
            "GET",
            "/vyzov/import"
            | "/vyzov/import/shablon.xlsx"
            | "/vyzov/import/shablon.csv"
            | "/vyzov/import/{id}",
        ) => Rule::Roles(EDITORS),
        ("POST", "/vyzov/import" | "/vyzov/import/{id}") => Rule::Roles(EDITORS),
        ("GET", "/api/v1/openapi.json") => Rule::Public,
        ("GET", "/api/v1/me") => Rule::SignedIn,
        (
            "GET",
            "/api/v1/register"
            | "/api/v1/cases/{id}"
            | "/api/v1/tasks"
            | "/api/v1/directory"
            | "/api/v1/sittings"
            | "/api/v1/sittings/{id}",
        ) => Rule::Roles(PEOPLE),
        ("GET", "/api/v1/families" | "/api/v1/families/{id}") => Rule::Roles(FAMILIES),
        (
            "POST",
            "/api/v1/cases"
            | "/api/v1/cases/{id}/facts"
            | "/api/v1/sittings"
            | "/api/v1/sittings/{id}/reviews",
        ) => Rule::Roles(PEOPLE),
        ("POST", "/api/v1/families" | "/api/v1/families/{id}/changes") => Rule::Roles(FAMILIES),
        ("POST", "/api/v1/directory" | "/api/v1/directory/{id}") => Rule::Roles(EDITORS),
        ("GET", "/api/v1/imports/{id}") => Rule::Roles(EDITORS),
        ("POST", "/api/v1/imports" | "/api/v1/imports/{id}") => Rule::Roles(EDITORS),
        (_, p) if p.starts_with("/admin/") => Rule::Roles(ADMIN),
        _ => return None,
    };
    Some(rule)
}

async fn person_id(test: &TestApp, given_name: &str) -> Uuid {
    // The demo ids are derived from region and name (see opora_web::demo).
    let rows = sqlx::query("SELECT id, region_code FROM persons.person ORDER BY registered_at")
        .fetch_all(&test.db.pool)
        .await
        .unwrap();
    for row in rows {
        let id: Uuid = row.get("id");
        let region: String = row.get("region_code");
        let family = if region == "22" {
            "Примерный"
        } else if given_name == "Тимур" {
            "Демонстрационный"
        } else {
            "Демонстрационная"
        };
        let key = format!("person/{region}/{family}/{given_name}");
        if Uuid::new_v5(&DEMO_NS, key.as_bytes()) == id {
            return id;
        }
    }
    panic!("no demo person {given_name}");
}

const DEMO_NS: Uuid = Uuid::from_u128(0x6f70_6f72_612d_4445_4d4f_0000_0000_0001);

fn concrete(path: &str, person: Uuid, user: Uuid) -> String {
    let id = if path.starts_with("/admin/") {
        user
    } else if path.starts_with("/vyzov/") || path.starts_with("/api/") {
        // The demo case of the same Tatarstan child (see opora_web::demo).
        Uuid::new_v5(&DEMO_NS, "case/16-2025-Д0001".as_bytes())
    } else {
        person
    };
    path.replace("{lang}", "ru")
        .replace("{code}", "16")
        .replace("{id}", &id.to_string())
}

/// The guard's refusals: 403 for a role without the route, a redirect to the login page
/// (with `next`) for a visitor who is not signed in (an API call answers 401 instead).
fn refused(response: &Response) -> bool {
    response.status == StatusCode::FORBIDDEN
        || (response.status == StatusCode::SEE_OTHER
            && response.location().starts_with("/vhod?next="))
}

async fn call(client: &mut Client, method: &Method, uri: &str) -> Response {
    if method == Method::POST {
        client.post(uri, &[]).await
    } else {
        client.get(uri).await
    }
}

/// Routes after which the client is no longer signed in.
const ENDS_SESSION: &[&str] = &["/vyhod", "/profil/vyhod-vezde"];

#[tokio::test]
async fn authorization_matrix_every_route_every_role_in_and_out_of_scope() {
    let test = TestApp::with_demo().await;
    let rules = Application::rules();
    assert!(rules.len() > 20, "the router has {} routes", rules.len());
    for rule in &rules {
        let want = expected(&rule.method, rule.path).unwrap_or_else(|| {
            panic!(
                "{} {} has no expected answers in this test",
                rule.method, rule.path
            )
        });
        assert_eq!(
            want, rule.rule,
            "{} {}: the router's rule differs",
            rule.method, rule.path
        );
    }
    let tatarstan_child = person_id(&test, "Алиса").await;
    let altai_child = person_id(&test, "Егор").await;
    let target_user = opora_domain::access::Login::parse("analyst")
        .unwrap()
        .user_id();

    // Anonymous: public routes answer, the others send to the login page.
    let mut anonymous = test.client();
    anonymous.get("/vhod").await;
    for rule in &rules {
        let uri = concrete(rule.path, tatarstan_child, target_user);
        let response = call(&mut anonymous, &rule.method, &uri).await;
        assert!(
            response.status.as_u16() < 500,
            "{} {uri}: {}",
            rule.method,
            response.status
        );
        match rule.rule {
            Rule::Public => assert!(!refused(&response), "anonymous {} {uri}", rule.method),
            _ if uri.starts_with("/api/") => assert_eq!(
                response.status,
                StatusCode::UNAUTHORIZED,
                "anonymous {} {uri}",
                rule.method
            ),
            _ => assert!(
                response.status == StatusCode::SEE_OTHER
                    && response.location().starts_with("/vhod?next="),
                "anonymous {} {uri} answered {}",
                rule.method,
                response.status
            ),
        }
    }

    // The routes that end the session go last (a TOTP code works once, so signing in
    // again more than once within a few seconds is not possible).
    let mut ordered = rules.clone();
    ordered.sort_by_key(|r| {
        ENDS_SESSION
            .iter()
            .position(|p| *p == r.path)
            .map_or(0, |i| i + 1)
    });
    for (login, role) in USERS {
        let mut client = test.client();
        let answer = client.login(login).await;
        assert_eq!(
            answer.status,
            StatusCode::SEE_OTHER,
            "{login} signs in: {}",
            answer.body
        );
        // Records: in scope answers, out of scope is a 404 exactly like a missing one.
        if PEOPLE.contains(role) {
            let inside = client.get(&format!("/lyudi/{tatarstan_child}")).await;
            assert_eq!(
                inside.status,
                StatusCode::OK,
                "{login} sees a Tatarstan child"
            );
            let outside = client.get(&format!("/lyudi/{altai_child}")).await;
            let missing = client.get(&format!("/lyudi/{}", Uuid::now_v7())).await;
            if *role == Role::Administrator {
                assert_eq!(outside.status, StatusCode::OK);
            } else {
                assert_eq!(
                    outside.status,
                    StatusCode::NOT_FOUND,
                    "{login} must not see Altai"
                );
                assert_eq!(
                    outside.body, missing.body,
                    "out of scope looks exactly like missing"
                );
                let list = client.get("/lyudi").await;
                assert!(
                    !list.body.contains("Егор"),
                    "{login}'s list leaks another region"
                );
                let export = client.get("/lyudi.csv").await;
                assert!(
                    !export.body.contains("Егор"),
                    "{login}'s export leaks another region"
                );
                assert!(export.body.contains("Алиса"));
            }
        }
        for rule in &ordered {
            let uri = concrete(rule.path, tatarstan_child, target_user);
            let response = call(&mut client, &rule.method, &uri).await;
            assert!(
                response.status.as_u16() < 500,
                "{login} {} {uri}: {}",
                rule.method,
                response.status
            );
            let allowed = match rule.rule {
                Rule::Public | Rule::SignedIn => true,
                Rule::Roles(roles) => roles.contains(role),
            };
            if rule.rule != Rule::Public {
                assert_eq!(
                    !refused(&response),
                    allowed,
                    "{login} ({role:?}) {} {uri} answered {} {}",
                    rule.method,
                    response.status,
                    response.location()
                );
            }
            if rule.path == ENDS_SESSION[0] {
                client = test.client_with(&client);
                let again = client.login(login).await;
                assert_eq!(
                    again.status,
                    StatusCode::SEE_OTHER,
                    "{login} signs in again"
                );
            }
        }
    }
    // The other region's curator sees its own child and not Tatarstan's.
    let mut altai = test.client();
    altai.login("curator22").await;
    assert_eq!(
        altai.get(&format!("/lyudi/{altai_child}")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        altai.get(&format!("/lyudi/{tatarstan_child}")).await.status,
        StatusCode::NOT_FOUND
    );
    let refusals: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM access.access_log WHERE action = 'refused' AND login = 'curator22'",
    )
    .fetch_one(&test.db.pool)
    .await
    .unwrap();
    assert_eq!(refusals, 1, "a refused record access is logged");
}

#[tokio::test]
async fn failed_logins_are_throttled_per_account_without_revealing_it_exists() {
    let test = TestApp::with_demo().await;
    let mut client = test.client();
    client.get("/vhod").await;
    let known = client
        .post(
            "/vhod",
            &[("login", "ngo16"), ("password", "wrong password 1")],
        )
        .await;
    let unknown = client
        .post(
            "/vhod",
            &[("login", "nobody"), ("password", "wrong password 1")],
        )
        .await;
    assert_eq!(known.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    let message = |r: &Response| {
        r.body
            .split("role=\"alert\"")
            .nth(1)
            .unwrap_or("")
            .split("</p>")
            .next()
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(
        message(&known),
        message(&unknown),
        "same message for a known and an unknown login"
    );
    for _ in 0..4 {
        client
            .post("/vhod", &[("login", "ngo16"), ("password", "still wrong")])
            .await;
    }
    // Five failures: now even the right password is refused for a while.
    let blocked = client.login("ngo16").await;
    assert_eq!(
        blocked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        blocked.body
    );
    assert!(blocked.body.contains("15 минут"));
    assert_eq!(
        client.get("/profil").await.status,
        StatusCode::SEE_OTHER,
        "not signed in"
    );
    // Another account from elsewhere is not affected.
    let mut other = test.client();
    assert_eq!(other.login("analyst").await.location(), "/");
    let attempts: Vec<String> = sqlx::query_scalar(
        "SELECT outcome FROM access.login_attempt WHERE login = 'ngo16' ORDER BY id",
    )
    .fetch_all(&test.db.pool)
    .await
    .unwrap();
    assert_eq!(attempts.iter().filter(|o| *o == "bad_password").count(), 5);
    assert_eq!(attempts.last().map(String::as_str), Some("throttled"));
}

#[tokio::test]
async fn login_renews_the_session_id_and_logout_ends_it() {
    let test = TestApp::with_demo().await;
    let mut client = test.client();
    client.get("/vhod").await;
    let before = client
        .session_id()
        .expect("the login form has a session for its token");
    assert_eq!(client.login("analyst").await.status, StatusCode::SEE_OTHER);
    let after = client.session_id().unwrap();
    assert_ne!(before, after, "session id renewed at login");
    assert_eq!(client.get("/profil").await.status, StatusCode::OK);
    // The pre-login id (a fixation attempt) is worth nothing now.
    let mut attacker = test.client();
    attacker.cookies.insert("opora_session".into(), before);
    assert_eq!(attacker.get("/profil").await.status, StatusCode::SEE_OTHER);
    // Logout everywhere ends a second session of the same user too.
    let mut second = test.client();
    second.login("analyst").await;
    assert_eq!(second.get("/profil").await.status, StatusCode::OK);
    assert_eq!(
        client.post("/profil/vyhod-vezde", &[]).await.location(),
        "/vhod"
    );
    assert_eq!(
        second.get("/profil").await.status,
        StatusCode::SEE_OTHER,
        "other session ended"
    );
    assert_eq!(client.get("/profil").await.status, StatusCode::SEE_OTHER);
    // The session cookie is HttpOnly and SameSite.
    let mut fresh = test.client();
    let page = fresh.get("/vhod").await;
    let cookie = page
        .headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
}

#[tokio::test]
async fn a_state_changing_request_without_the_csrf_token_is_refused() {
    let test = TestApp::with_demo().await;
    let mut client = test.client();
    client.login("analyst").await;
    assert_eq!(client.get("/profil").await.status, StatusCode::OK);
    let none = client.post_raw("/profil/vyhod-vezde", &[]).await;
    assert_eq!(none.status, StatusCode::FORBIDDEN);
    assert!(none.body.contains("Форма устарела"), "{}", none.body);
    let wrong = client
        .post_raw("/profil/vyhod-vezde", &[("csrf", "forged")])
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let token = client.csrf.clone().unwrap();
    let body = format!("csrf={token}");
    let cross = client
        .request(
            Method::POST,
            "/profil/vyhod-vezde",
            Some(body),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(
        cross.status,
        StatusCode::FORBIDDEN,
        "cross-site even with the token"
    );
    assert_eq!(
        client.get("/profil").await.status,
        StatusCode::OK,
        "nothing happened"
    );
    // Without a session at all (a login form posted from elsewhere).
    let mut stranger = test.client();
    let login = stranger
        .post_raw(
            "/vhod",
            &[
                ("login", "analyst"),
                ("password", opora_web::demo::DEMO_PASSWORD),
            ],
        )
        .await;
    assert_eq!(login.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_second_factor_is_required_for_roles_that_see_childrens_data() {
    let test = TestApp::with_demo().await;
    for login in ["admin", "curator16", "secretary16"] {
        let mut client = test.client();
        client.get("/vhod").await;
        let step = client
            .post(
                "/vhod",
                &[
                    ("login", login),
                    ("password", opora_web::demo::DEMO_PASSWORD),
                ],
            )
            .await;
        assert_eq!(
            step.location(),
            "/vhod/kod/podklyuchenie",
            "{login} must enrol first"
        );
        assert_eq!(
            client.get("/profil").await.status,
            StatusCode::SEE_OTHER,
            "{login} is not in yet"
        );
        let page = client.get("/vhod/kod/podklyuchenie").await;
        assert!(page.body.contains("<svg"), "QR code as SVG");
        let wrong = client
            .post("/vhod/kod/podklyuchenie", &[("code", "000000")])
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    }
    for login in ["analyst", "ngo16", "edu-kazan", "signals"] {
        let mut client = test.client();
        assert_eq!(
            client.login(login).await.location(),
            "/",
            "{login} needs no second factor"
        );
    }
    // Enrolled: the next login asks for a code, and a used code does not work twice.
    let mut client = test.client();
    assert_eq!(client.login("curator16").await.location(), "/");
    test.project().await;
    let secret = client.secrets["curator16"].clone();
    let mut again = test.client();
    again.get("/vhod").await;
    let step = again
        .post(
            "/vhod",
            &[
                ("login", "curator16"),
                ("password", opora_web::demo::DEMO_PASSWORD),
            ],
        )
        .await;
    assert_eq!(step.location(), "/vhod/kod");
    again.get("/vhod/kod").await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    let used = opora_web::auth::totp::code_at(&secret, "curator16", now).unwrap();
    let replay = again.post("/vhod/kod", &[("code", &used)]).await;
    assert_eq!(
        replay.status,
        StatusCode::UNAUTHORIZED,
        "a used code is refused"
    );
    let next = opora_web::auth::totp::code_at(&secret, "curator16", now + 30).unwrap();
    assert_eq!(
        again.post("/vhod/kod", &[("code", &next)]).await.location(),
        "/"
    );
    let enrolled: bool = sqlx::query_scalar(
        "SELECT second_factor FROM accounts.user_account WHERE login = 'curator16'",
    )
    .fetch_one(&test.db.pool)
    .await
    .unwrap();
    assert!(enrolled);
}

#[tokio::test]
async fn reads_and_exports_of_personal_data_are_in_the_access_log() {
    let test = TestApp::with_demo().await;
    let child = person_id(&test, "Алиса").await;
    let mut curator = test.client();
    curator.login("curator16").await;
    let page = curator.get(&format!("/lyudi/{child}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Демонстрационная Алиса"));
    let export = curator.get("/lyudi.csv").await;
    assert!(export.body.starts_with('\u{feff}'));
    let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT action, record_id, login FROM access.access_log WHERE action IN ('view', 'export') ORDER BY id",
    )
    .fetch_all(&test.db.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                "view".into(),
                Some(child.to_string()),
                Some("curator16".into())
            ),
            ("export".into(), None, Some("curator16".into())),
        ]
    );
    // The page shows who opened it; the log never holds the data.
    let mut admin = test.client();
    admin.login("admin").await;
    let page = admin.get(&format!("/lyudi/{child}")).await;
    assert!(page.body.contains("curator16"));
    let log = admin.get(&format!("/admin/zhurnal?record={child}")).await;
    assert!(log.body.contains("curator16") && log.body.contains("просмотр"));
    let dump: String =
        sqlx::query_scalar("SELECT string_agg(a::text, ' ') FROM access.access_log a")
            .fetch_one(&test.db.pool)
            .await
            .unwrap();
    assert!(!dump.contains("Алиса") && !dump.contains("Демонстрационная"));
}

#[tokio::test]
async fn erasing_a_person_leaves_no_personal_data_in_a_dump_and_keeps_the_counts() {
    let test = TestApp::with_demo().await;
    let child = person_id(&test, "Алиса").await;
    let mut admin = test.client();
    admin.login("admin").await;
    let summary = |body: &str| {
        body.split("id=\"summary\"")
            .nth(1)
            .unwrap()
            .split("</table>")
            .next()
            .unwrap()
            .to_owned()
    };
    let before = admin.get("/lyudi").await;
    assert!(before.body.contains("Алиса"));
    let counts_before = summary(&before.body);
    let empty = admin
        .post(&format!("/lyudi/{child}/udalenie"), &[("reason", " ")])
        .await;
    assert!(
        empty.location().contains("reason=missing"),
        "a reason is required"
    );
    let erased = admin
        .post(
            &format!("/lyudi/{child}/udalenie"),
            &[("reason", "Заявление законного представителя")],
        )
        .await;
    assert_eq!(erased.status, StatusCode::SEE_OTHER);
    test.project().await;
    let page = admin.get(&format!("/lyudi/{child}")).await;
    assert!(page.body.contains("Личные данные удалены") && !page.body.contains("Алиса"));
    let after = admin.get("/lyudi").await;
    assert_eq!(summary(&after.body), counts_before, "the counts stay");
    assert!(!after.body.contains("Алиса"));
    // The whole database, dumped: neither the name nor the birth date in clear.
    let bin = opora_web::embedded::find_bin_dir().unwrap();
    let url = test.db.url();
    let dump = std::process::Command::new(bin.join("pg_dump"))
        .arg("--dbname")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("PersonalDataErased"),
        "the dump is the real one"
    );
    for needle in ["Алиса", "2014-03-05", "05.03.2014", "\"birth_date\""] {
        assert!(!dump.contains(needle), "{needle} found in the dump");
    }
    // The key is gone, and the vault can neither open the old events nor seal new data.
    let sealed: serde_json::Value = sqlx::query_scalar(
        "SELECT payload->'PersonRegistered'->'personal' FROM event WHERE aggregate_id = $1 AND sequence = 1",
    )
    .bind(child.to_string())
    .fetch_one(&test.db.pool)
    .await
    .unwrap();
    let sealed: opora_domain::person::Sealed = serde_json::from_value(sealed).unwrap();
    let opened: Option<opora_domain::person::PersonalData> =
        test.vault.open(&sealed).await.unwrap();
    assert!(opened.is_none());
    assert!(matches!(
        test.vault.seal(child, &"x").await,
        Err(opora_store::VaultError::Erased)
    ));
    // The log still verifies: nothing was rewritten.
    let report = opora_store::verify::verify(&test.db.pool).await.unwrap();
    assert!(report.first_problem.is_none());
}

#[tokio::test]
async fn idle_sessions_expire_and_failures_from_one_address_are_throttled_too() {
    // Idle for longer than the idle timeout (30 minutes by default; 2 s here): neither
    // the store nor the server's memory of sessions has it any more.
    let test = TestApp::with_demo_config(opora_web::AppConfig {
        idle_timeout: time::Duration::seconds(2),
        ..opora_web::AppConfig::default()
    })
    .await;
    let mut client = test.client();
    client.login("analyst").await;
    assert_eq!(client.get("/profil").await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let idle = client.get("/profil").await;
    assert_eq!(idle.status, StatusCode::SEE_OTHER, "ended after being idle");
    assert!(idle.location().starts_with("/vhod?next="));
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM access.session WHERE expiry_date > now()")
            .fetch_one(&test.db.pool)
            .await
            .unwrap();
    assert_eq!(stored, 0, "no live session in the store");
    // Many logins tried from one address: that address is stopped, whatever the login.
    for i in 0..opora_web::auth::MAX_FAILURES_PER_ADDRESS {
        opora_web::auth::record_attempt(
            &test.db.pool,
            &format!("guess{i}"),
            "203.0.113.7",
            None,
            "bad_password",
        )
        .await
        .unwrap();
    }
    assert!(
        opora_web::auth::throttled(&test.db.pool, "analyst", "203.0.113.7")
            .await
            .unwrap()
    );
    assert!(
        !opora_web::auth::throttled(&test.db.pool, "analyst", "198.51.100.1")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_disabled_user_is_signed_out_and_cannot_sign_in_but_keeps_its_history() {
    let test = TestApp::with_demo().await;
    let mut user = test.client();
    user.login("edu-kazan").await;
    assert_eq!(user.get("/profil").await.status, StatusCode::OK);
    let mut admin = test.client();
    admin.login("admin").await;
    let id = opora_domain::access::Login::parse("edu-kazan")
        .unwrap()
        .user_id();
    let page = admin.get(&format!("/admin/polzovateli/{id}")).await;
    assert!(page.body.contains("Управление образования Казани"));
    let done = admin
        .post(
            &format!("/admin/polzovateli/{id}/otklyuchit"),
            &[("reason", "перевод на другую работу")],
        )
        .await;
    assert!(
        done.location().contains("notice-disabled"),
        "{}",
        done.location()
    );
    test.project().await;
    assert_eq!(
        user.get("/profil").await.status,
        StatusCode::SEE_OTHER,
        "signed out"
    );
    let again = test.client().login("edu-kazan").await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "cannot sign in");
    let events: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM event WHERE aggregate_type = 'User' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(id.to_string())
    .fetch_all(&test.db.pool)
    .await
    .unwrap();
    assert_eq!(events, ["UserCreated", "UserDisabled"]);
    // Re-scoped: the administrator adds a second role, over a region.
    let added = admin
        .post(
            &format!("/admin/polzovateli/{id}/roli"),
            &[("role", "ministry_analyst"), ("region", "16")],
        )
        .await;
    assert!(
        added.location().contains("notice-grants-changed"),
        "{}",
        added.location()
    );
    let refused = admin
        .post(
            &format!("/admin/polzovateli/{id}/roli"),
            &[("role", "regional_curator")],
        )
        .await;
    assert!(
        refused.location().contains("grant-needs-region"),
        "{}",
        refused.location()
    );
    test.project().await;
    let page = admin.get(&format!("/admin/polzovateli/{id}")).await;
    assert!(page.body.contains("отключён"));
    assert!(
        page.body
            .contains("аналитик министерства — Республика Татарстан"),
        "{}",
        page.body
    );
    // A form that cannot be read gets the same calm page, in Russian, and changes nothing.
    let broken = admin
        .post(
            &format!("/admin/polzovateli/{id}/roli/udalit"),
            &[("index", "many")],
        )
        .await;
    assert_eq!(broken.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(broken.body.contains("Запрос не понят"), "{}", broken.body);
}

#[tokio::test]
async fn a_sign_out_everywhere_made_by_another_process_ends_the_session_within_a_second() {
    let test = TestApp::with_demo().await;
    let mut client = test.client();
    client.login("analyst").await;
    assert_eq!(client.get("/profil").await.status, StatusCode::OK);
    // Another process (the command line, another server) ends the analyst's sessions,
    // straight in the store: the server sees it once the user it holds is a second old.
    let id = opora_domain::access::Login::parse("analyst")
        .unwrap()
        .user_id();
    sqlx::query(
        "UPDATE access.credential SET session_epoch = session_epoch + 1 WHERE user_id = $1",
    )
    .bind(id)
    .execute(&test.db.pool)
    .await
    .unwrap();
    tokio::time::sleep(opora_web::auth::USER_KEPT + std::time::Duration::from_millis(200)).await;
    let after = client.get("/profil").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER, "signed out");
    assert!(after.location().starts_with("/vhod?next="));
}

#[tokio::test]
async fn a_session_ends_at_the_absolute_timeout_however_active() {
    let test = TestApp::with_demo_config(opora_web::AppConfig {
        absolute_timeout: time::Duration::seconds(2),
        ..opora_web::AppConfig::default()
    })
    .await;
    let mut client = test.client();
    client.login("analyst").await;
    assert_eq!(client.get("/profil").await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        client.get("/profil").await.status,
        StatusCode::OK,
        "active, within the limit"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1700)).await;
    let after = client.get("/profil").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER, "ended however active");
    assert!(after.location().starts_with("/vhod?next="));
}
