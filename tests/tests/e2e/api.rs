//! The JSON API: the OpenAPI document covers every API route, and a case is worked over the
//! API with the pages' rules, refusals, scope and idempotency.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::client::{Response, TestApp};

fn body(response: &Response) -> Value {
    serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", response.body))
}

fn today() -> time::Date {
    opora_web::i18n::today_in("Europe/Moscow")
}

fn iso(date: time::Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        date.month() as u8,
        date.day()
    )
}

#[tokio::test]
async fn the_openapi_document_describes_every_api_route_and_nothing_else() {
    let test = TestApp::with_demo().await;
    let mut anonymous = test.client();
    let doc = anonymous.get("/api/v1/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = body(&doc);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "put", "delete", "patch"].contains(&k.as_str()))
                .map(|method| (method.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut routed: Vec<(String, String)> = opora_web::Application::rules()
        .iter()
        .filter(|r| r.path.starts_with("/api/") && r.path != "/api/v1/openapi.json")
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    documented.sort();
    routed.sort();
    assert_eq!(
        documented, routed,
        "documented routes differ from the router's"
    );
    // The closed lists are in the schema, so a client can offer them.
    let fact = &doc["components"]["schemas"]["CaseFact"]["properties"];
    let exits = fact["exit"]["enum"].as_array().unwrap();
    assert!(exits.iter().any(|v| v == "birth_family"), "{exits:?}");
    assert!(fact["action"]["enum"].as_array().unwrap().len() >= 19);
}

#[tokio::test]
async fn a_case_is_worked_over_the_api_with_the_pages_rules_and_scope() {
    let test = TestApp::with_demo().await;
    let pool = &test.db.pool;

    // Without a session: 401 with a JSON error, not a login page.
    let mut anonymous = test.client();
    let answer = anonymous.get("/api/v1/register").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(body(&answer)["error"], "unauthorized");

    let mut curator = test.client();
    curator.login("curator16").await;
    let me = body(&curator.get("/api/v1/me").await);
    assert_eq!(me["login"], "curator16");
    assert!(!me["csrf_token"].as_str().unwrap().is_empty());

    let child: Uuid = sqlx::query_scalar(
        "SELECT p.id FROM persons.person p WHERE p.kind = 'child' AND p.region_code = '16' \
          ORDER BY NOT EXISTS (SELECT 1 FROM cases.child_case c WHERE c.child = p.id) DESC LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let institution: Uuid = sqlx::query_scalar(
        "SELECT id FROM reference.organisation WHERE kind = 'institution' AND region_code = '16' LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .unwrap();

    // A POST without the CSRF token is refused before anything runs.
    let no_token = curator
        .request(
            Method::POST,
            "/api/v1/cases",
            Some(json!({"person": child, "on": iso(today())}).to_string()),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    assert_eq!(body(&no_token)["error"], "stale-form");

    // Bodies that do not match the schema: 415 / 422 with what is wrong; nothing written.
    let events_before: i64 = sqlx::query_scalar("SELECT count(*) FROM event")
        .fetch_one(pool)
        .await
        .unwrap();
    let form = curator
        .request(
            Method::POST,
            "/api/v1/cases",
            Some("person=x".to_owned()),
            &[("x-csrf-token", "whatever")],
        )
        .await;
    assert!(form.status.is_client_error(), "{}", form.status);
    let unknown = curator
        .api(
            Method::POST,
            "/api/v1/cases",
            Some(&json!({"person": child, "on": iso(today()), "colour": "red"})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body(&unknown)["error"], "invalid-body");
    assert!(body(&unknown)["message"]
        .as_str()
        .unwrap()
        .contains("colour"));
    let future = curator
        .api(
            Method::POST,
            "/api/v1/cases",
            Some(&json!({"person": child, "on": iso(today() + time::Duration::days(3))})),
        )
        .await;
    assert_eq!(
        future.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        future.body
    );
    assert!(body(&future)["error"]
        .as_str()
        .unwrap()
        .starts_with("case-error-"));
    let events_after: i64 = sqlx::query_scalar("SELECT count(*) FROM event")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(events_before, events_after, "refused calls wrote nothing");

    // Opened once, however often the same call is retried.
    let command_id = Uuid::now_v7();
    let open = json!({"person": child, "on": iso(today() - time::Duration::days(40)), "command_id": command_id});
    let first = curator
        .api(Method::POST, "/api/v1/cases", Some(&open))
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let id = body(&first)["id"].as_str().unwrap().to_owned();
    let again = curator
        .api(Method::POST, "/api/v1/cases", Some(&open))
        .await;
    assert_eq!(body(&again)["id"], id.as_str());
    let opened: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM event WHERE aggregate_type = 'ChildCase' AND aggregate_id = $1",
    )
    .bind(&id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(opened, 1);
    test.project().await;

    let case_uri = format!("/api/v1/cases/{id}");
    let facts_uri = format!("{case_uri}/facts");
    let case = body(&curator.get(&case_uri).await);
    assert_eq!(case["case"]["entries"], 1);
    let number = case["case"]["case_number"].as_str().unwrap().to_owned();

    // The aggregate's refusal comes back with its code and message.
    let exit = curator
        .api(
            Method::POST,
            &facts_uri,
            Some(&json!({"action": "exit", "exit": "birth_family", "on": iso(today()), "entries": 1})),
        )
        .await;
    assert_eq!(exit.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body(&exit)["error"],
        "case-error-NotPlaced",
        "{}",
        exit.body
    );

    let place = json!({
        "action": "place", "on": iso(today() - time::Duration::days(30)), "entries": 1,
        "institution": institution, "institution_type": "orphanage_centre", "basis": "parents_application",
        "reasons": ["poverty"], "legal_status": "without_status",
    });
    let placed = curator.api(Method::POST, &facts_uri, Some(&place)).await;
    assert_eq!(placed.status, StatusCode::OK, "{}", placed.body);
    // The same call again is a stale form now: the case has moved on.
    let stale = curator.api(Method::POST, &facts_uri, Some(&place)).await;
    assert_eq!(body(&stale)["error"], "case-stale-form");

    // A review with an action item, then the item done; booleans are accepted.
    let review = curator
        .api(
            Method::POST,
            &facts_uri,
            Some(&json!({"action": "review", "on": iso(today() - time::Duration::days(10)),
                "entries": 2, "level": "regional", "aid": "material_aid", "placement_justified": true,
                "return_possible": true})),
        )
        .await;
    assert_eq!(review.status, StatusCode::OK, "{}", review.body);
    test.project().await;
    let case = body(&curator.get(&case_uri).await);
    assert_eq!(case["case"]["entries"], 3);
    assert_eq!(
        case["reviews"][0]["held_on"],
        iso(today() - time::Duration::days(10))
    );
    assert!(case["reviews"][0]["assessments"]
        .as_str()
        .unwrap()
        .contains("да"));

    // The register lists the child, with ISO dates.
    let register = body(&curator.get(&format!("/api/v1/register?q={number}")).await);
    assert_eq!(register["total"], 1, "{register}");
    assert_eq!(
        register["rows"][0]["placed_on"],
        iso(today() - time::Duration::days(30))
    );

    // Another region's curator: the case is not found, as a missing one; an NGO operator
    // has no register at all. Errors come in the caller's language.
    let mut altai = test.client();
    altai.login("curator22").await;
    let outside = altai.get(&case_uri).await;
    let missing = altai
        .get(&format!("/api/v1/cases/{}", Uuid::now_v7()))
        .await;
    assert_eq!(outside.status, StatusCode::NOT_FOUND);
    assert_eq!(outside.body, missing.body);
    let write = altai
        .api(
            Method::POST,
            &facts_uri,
            Some(&json!({"action": "visit", "on": iso(today()), "entries": 3})),
        )
        .await;
    assert_eq!(write.status, StatusCode::NOT_FOUND);
    let register = body(&altai.get("/api/v1/register").await);
    assert!(!register.to_string().contains(&number));
    let mut ngo = test.client();
    ngo.login("ngo16").await;
    let refused = ngo
        .request(
            Method::GET,
            "/api/v1/register",
            None,
            &[("accept-language", "en")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(body(&refused)["error"], "forbidden");
    assert!(body(&refused)["message"]
        .as_str()
        .unwrap()
        .contains("roles"));
}

/// The ingestion API's own OpenAPI document (for the app's backend, and schemathesis's run
/// with an integration key) lists its six calls, each answered by the router (401 in JSON
/// without a key, not 404 or 405), with the bearer key required and the closed lists
/// (kinds, channels) in the schemas.
#[tokio::test]
async fn the_ingestion_openapi_document_lists_the_six_calls_the_router_answers() {
    let test = TestApp::with_demo().await;
    let mut anonymous = test.client();
    let doc = anonymous.get("/ingest/v1/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = body(&doc);
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(|method| (method.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    documented.sort();
    let expected = [
        ("POST", "/ingest/v1/signals"),
        ("POST", "/ingest/v1/signals/{id}/acknowledgements"),
        ("POST", "/ingest/v1/signals/{id}/cancel"),
        ("POST", "/ingest/v1/signals/{id}/location"),
        ("POST", "/ingest/v1/signals/{id}/resolution"),
        ("PUT", "/ingest/v1/children/{child}"),
    ];
    assert_eq!(
        documented,
        expected
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(doc["security"][0]["integration"], json!([]));
    let position = &doc["components"]["schemas"]["Position"]["properties"];
    let kind = &doc["components"]["schemas"]["KindName"]["enum"];
    assert!(
        kind.as_array().unwrap().iter().any(|k| k == "bullying"),
        "{kind}"
    );
    assert!(position["latitude"]["maximum"] == 90, "{position}");
    for (method, path) in expected {
        let path = path
            .replace("{id}", &Uuid::now_v7().to_string())
            .replace("{child}", "c-1");
        let method: Method = method.parse().unwrap();
        let answer = anonymous
            .request(
                method,
                &path,
                Some("{}".to_owned()),
                &[("content-type", "application/json")],
            )
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body(&answer)["error"], "unauthorized", "{path}");
    }
}
