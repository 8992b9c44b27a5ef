//! The scale issue's read paths: indexed search (PostgreSQL's trigram index, SQLite's FTS5
//! trigram table) returns exactly what a full scan with the contract's rules returns; keyset
//! paging (`nextCursor` / `after`) visits every customer once while writes happen; and
//! `/customers/active` streams, with `limit` and `after`.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{json, Value};

use crate::test_app::{json_of, minimal, page_ids as ids, urlencode, TestApp};

crate::on_every_backend!(
    indexed_search_returns_exactly_what_a_full_scan_returns,
    keyset_paging_visits_every_customer_once_while_writes_happen,
    cursors_combine_with_search_and_refuse_page_and_garbage,
    active_customers_are_streamed_with_limit_and_cursor,
);

/// Pieces of names: Unicode case pairs (Ä/ä, Σ/σ/ς, İ), LIKE's wildcards and escape, quotes
/// (FTS5's phrase syntax), and short and long runs of the same letters.
const PIECES: [&str; 22] = [
    "ann",
    "ANNA",
    "Åsa",
    "zoë",
    "ZOË",
    "o'neil",
    "50%",
    "a_b",
    r"x\y",
    "\"q\"",
    "Σίσυφος",
    "ΟΔΥΣΣΕΥΣ",
    "straße",
    "İsa",
    "li",
    "mo",
    "%",
    "_",
    "ab",
    "ba",
    "Ünal",
    "lim",
];
/// Characters of random terms: the same hazards, one at a time.
const TERM_CHARS: [&str; 20] = [
    "a", "n", "b", "%", "_", "\\", "\"", "'", "ë", "Ë", "σ", "Σ", "ß", "i", "İ", ".", "@", "1",
    " ", "*",
];

/// The contract's rule, as a full scan: the trimmed, lower-cased term is a substring of the
/// lower-cased first name, last name or e-mail.
fn full_scan(customers: &[(i64, [String; 3])], term: &str) -> Vec<i64> {
    let term = term.trim().to_lowercase();
    let mut ids: Vec<i64> = customers
        .iter()
        .filter(|(_, fields)| {
            term.is_empty() || fields.iter().any(|f| f.to_lowercase().contains(&term))
        })
        .map(|(id, _)| *id)
        .collect();
    // Newest first: created one after another, so by id.
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids
}

async fn indexed_search_returns_exactly_what_a_full_scan_returns(app: TestApp) {
    let mut customers = Vec::new();
    for i in 0..60usize {
        let first = format!(
            "{}{}",
            PIECES[i % PIECES.len()],
            PIECES[(i * 7) % PIECES.len()]
        );
        let last = format!(
            "{} {}",
            PIECES[(i * 3 + 1) % PIECES.len()],
            PIECES[(i * 5 + 2) % 11]
        );
        let email = format!("{}{i}@Ex{}.io", ["p%_c", "ann", "zo.e", "li"][i % 4], i % 3);
        let id = app
            .create_id(&json!({"email": email, "firstName": first, "lastName": last}))
            .await;
        // The API stores the e-mail lower-cased: the rule applies to what is stored.
        customers.push((id, [first, last, email.to_lowercase()]));
    }
    // Changes after creation, so the indexes' update and delete paths are compared too
    // (MySQL's posting table is kept by triggers on each).
    for i in (0..60).step_by(5) {
        let first = format!("{}{}", PIECES[(i * 11 + 3) % PIECES.len()], i);
        app.update(customers[i].0, &json!({"firstName": first}))
            .await;
        customers[i].1[0] = first;
    }
    for i in (3..60).step_by(10).rev() {
        assert_eq!(app.delete_customer(customers[i].0).await.status(), 204);
        customers.remove(i);
    }
    // A long last name: a term of 50 of its characters has 48 trigrams, more than MySQL's
    // store sizes (it samples 16 of them).
    let long = "Abcdefg Longname Klmnopqrstuvwxyz Ålesund Øresund Straße Zoë".to_owned();
    let id = app
        .create_id(&json!({"email": "long@example.com", "firstName": "Lena", "lastName": long}))
        .await;
    customers.push((
        id,
        ["L".to_owned(), long.clone(), "long@example.com".to_owned()],
    ));
    let before = search_queries(&app).await;
    let served = std::sync::Mutex::new((0u64, 0u64));
    // Terms: slices of stored values in a random case, and random runs of hazards.
    let stored: Vec<Vec<char>> = customers
        .iter()
        .flat_map(|(_, fields)| fields.iter().map(|f| f.chars().collect()))
        .collect();
    let slice = (0..stored.len(), 0usize..40, 1usize..8, any::<bool>()).prop_map(
        move |(which, start, len, upper)| {
            let chars = &stored[which];
            let start = start % chars.len();
            let end = (start + len).min(chars.len());
            let term: String = chars[start..end].iter().collect();
            if upper {
                term.to_uppercase()
            } else {
                term
            }
        },
    );
    let random = proptest::collection::vec(proptest::sample::select(&TERM_CHARS[..]), 1..6)
        .prop_map(|chars| chars.concat());
    let terms = prop_oneof![slice, random];
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 120,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::block_in_place(|| {
        runner.run(&terms, |term| {
            let expected = full_scan(&customers, &term);
            let body = handle.block_on(async {
                json_of(
                    app.get(&format!(
                        "/api/v1/customers?limit=100&search={}",
                        urlencode(&term)
                    ))
                    .await,
                    200,
                )
                .await
            });
            prop_assert_eq!(ids(&body), expected.clone(), "term {:?}", term);
            prop_assert_eq!(
                body["data"]["total"].as_i64(),
                Some(expected.len() as i64),
                "total of {:?}",
                term
            );
            // With `limit=100` and ~50 customers, walking the list order is never cheaper
            // than a trigram lookup: every term of three characters or more that matches
            // has its page found through the index, every shorter one by the walk.
            let normalized = term.trim().to_lowercase();
            if !expected.is_empty() && !normalized.is_empty() {
                if let Ok(mut served) = served.lock() {
                    if normalized.chars().count() >= 3 {
                        served.0 += 1;
                    } else {
                        served.1 += 1;
                    }
                }
            }
            Ok::<(), TestCaseError>(())
        })
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    let term: String = long.chars().skip(5).take(50).collect();
    let body = json_of(
        app.get(&format!("/api/v1/customers?search={}", urlencode(&term)))
            .await,
        200,
    )
    .await;
    assert_eq!(ids(&body), full_scan(&customers, &term));
    assert_eq!(ids(&body), vec![id]);
    let after = search_queries(&app).await;
    let (mut index, walk) = *served.lock().unwrap();
    index += 1; // the long term
    assert!(index > 10, "too few indexed terms to say anything: {index}");
    assert_eq!(
        (
            after.page_index - before.page_index,
            after.page_walk - before.page_walk
        ),
        (index, walk),
        "pages through the index and by the walk"
    );
    assert!(after.count_index > before.count_index);
}

/// The search series of `/metrics`.
async fn search_queries(app: &TestApp) -> customer_service::application::SearchQueries {
    let series = |query: &str, path: &str| {
        format!(r#"customer_search_queries_total{{path="{path}",query="{query}"}}"#)
    };
    customer_service::application::SearchQueries {
        count_index: app.metric(&series("count", "index")).await as u64,
        count_scan: app.metric(&series("count", "scan")).await as u64,
        page_index: app.metric(&series("page", "index")).await as u64,
        page_walk: app.metric(&series("page", "walk")).await as u64,
    }
}

async fn keyset_paging_visits_every_customer_once_while_writes_happen(app: TestApp) {
    let mut existing = Vec::new();
    for i in 0..30 {
        existing.push(
            app.create_id(&minimal(&format!("walk{i}@example.com")))
                .await,
        );
    }
    // Newest first; the walk deletes three customers it has not reached yet.
    existing.reverse();
    let doomed = [existing[13], existing[14], existing[27]];
    let mut visited = Vec::new();
    let mut path = "/api/v1/customers?limit=4".to_owned();
    let mut pages = 0;
    loop {
        let body = json_of(app.get(&path).await, 200).await;
        pages += 1;
        visited.extend(ids(&body));
        // Writes between pages: a new customer (newer than the walk's start), an update
        // of one already visited and of one ahead, and the deletions.
        let fresh = app
            .create_id(&minimal(&format!("during{pages}@example.com")))
            .await;
        assert!(fresh > existing[0]);
        app.update(visited[0], &json!({"firstName": format!("Seen{pages}")}))
            .await;
        app.update(existing[29], &json!({"lastName": format!("Ahead{pages}")}))
            .await;
        if pages == 2 {
            for id in doomed {
                assert_eq!(app.delete_customer(id).await.status(), 204);
            }
        }
        match body["data"]["nextCursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/customers?limit=4&after={cursor}"),
            None => break,
        }
        assert!(pages < 20, "the walk does not end");
    }
    let expected: Vec<i64> = existing
        .iter()
        .copied()
        .filter(|id| !doomed.contains(id))
        .collect();
    assert_eq!(visited, expected);
}

async fn cursors_combine_with_search_and_refuse_page_and_garbage(app: TestApp) {
    let mut smiths = Vec::new();
    for i in 0..7 {
        smiths.push(
            app.create_id(&json!({"email": format!("s{i}@example.com"),
                                  "firstName": "Jo", "lastName": "Smith"}))
                .await,
        );
        app.create(&minimal(&format!("other{i}@example.com"))).await;
    }
    smiths.reverse();
    // Offset pages carry a cursor too; the last page's is null.
    let first = json_of(app.get("/api/v1/customers?search=smi&limit=3").await, 200).await;
    assert_eq!(ids(&first), smiths[..3]);
    assert_eq!(first["data"]["page"], 1);
    assert_eq!(first["data"]["total"], 7);
    assert_eq!(first["data"]["totalPages"], 3);
    let cursor = first["data"]["nextCursor"].as_str().unwrap().to_owned();
    assert_eq!(cursor.len(), 32);
    let second = json_of(
        app.get(&format!(
            "/api/v1/customers?search=smi&limit=3&after={cursor}"
        ))
        .await,
        200,
    )
    .await;
    assert_eq!(ids(&second), smiths[3..6]);
    // A page asked for by cursor has no number; the total is still the search's.
    assert_eq!(second["data"]["page"], Value::Null);
    assert_eq!(second["data"]["total"], 7);
    let cursor = second["data"]["nextCursor"].as_str().unwrap().to_owned();
    let last = json_of(
        app.get(&format!(
            "/api/v1/customers?search=smi&limit=3&after={cursor}"
        ))
        .await,
        200,
    )
    .await;
    assert_eq!(ids(&last), smiths[6..]);
    assert_eq!(last["data"]["nextCursor"], Value::Null);
    // Exactly a full last page: still null, not a cursor to an empty page.
    let exact = json_of(app.get("/api/v1/customers?search=smi&limit=7").await, 200).await;
    assert_eq!(exact["data"]["nextCursor"], Value::Null);

    let body = json_of(
        app.get(&format!("/api/v1/customers?page=2&after={cursor}"))
            .await,
        400,
    )
    .await;
    assert_eq!(
        body["fieldErrors"]["after"],
        json!(["after and page cannot be combined: a cursor already says where the page starts"])
    );
    for garbage in ["abc", "0000019ab697e87b0000000000000000", "%22%3B--"] {
        let body = json_of(
            app.get(&format!("/api/v1/customers?after={garbage}")).await,
            400,
        )
        .await;
        assert_eq!(
            body["fieldErrors"]["after"],
            json!(["after must be a nextCursor returned by this list"]),
            "{garbage}"
        );
    }
}

async fn active_customers_are_streamed_with_limit_and_cursor(app: TestApp) {
    let mut active = Vec::new();
    for i in 0..150 {
        let mut body = minimal(&format!("a{i}@example.com"));
        if i % 3 == 0 {
            body["isActive"] = json!(false);
            app.create(&body).await;
        } else {
            active.push(app.create_id(&body).await);
        }
    }
    active.reverse();
    let active_ids = |body: &Value| -> Vec<i64> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_i64().unwrap())
            .collect()
    };
    // Whole (more rows than one streamed chunk), in the contract's envelope.
    let response = app.get("/api/v1/customers/active").await;
    assert!(response.headers().get("content-length").is_none());
    let body = json_of(response, 200).await;
    assert_eq!(active_ids(&body), active);
    assert_eq!(body["message"], "Success");
    assert_eq!(body["statusCode"], 200);
    assert_eq!(body["success"], true);
    assert!(crate::test_app::is_iso_millis(&body["timestamp"]));
    // A cursor of the list works here too.
    let page = json_of(app.get("/api/v1/customers?limit=5").await, 200).await;
    let fifth = ids(&page)[4];
    let cursor = page["data"]["nextCursor"].as_str().unwrap().to_owned();
    let body = json_of(
        app.get(&format!("/api/v1/customers/active?limit=3&after={cursor}"))
            .await,
        200,
    )
    .await;
    let after: Vec<i64> = active
        .iter()
        .copied()
        .filter(|id| *id < fifth)
        .take(3)
        .collect();
    assert_eq!(active_ids(&body), after);
    let body = json_of(app.get("/api/v1/customers/active?limit=0").await, 400).await;
    assert_eq!(
        body["fieldErrors"]["limit"],
        json!(["limit must not be less than 1"])
    );
    // Nothing to stream is still a whole envelope.
    let body = json_of(
        app.get(&format!(
            "/api/v1/customers/active?after={}",
            "0".repeat(31) + "1"
        ))
        .await,
        200,
    )
    .await;
    assert_eq!(body["data"], json!([]));
}

/// Migration 10 (issue #29) moves PostgreSQL's trigram index to the narrow `customers_search`
/// table, filled from `customers` by the migration itself: customers written by an older
/// release (schema 9) must be found, counted and paged after the upgrade, and the table
/// must follow their later changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_customers_from_before_the_narrow_search_table_are_found_after_the_upgrade() {
    use crate::test_app::Available as _;
    use sqlx::Connection;
    let backend = crate::test_app::Backend::Postgres;
    if !backend.available() {
        return;
    }
    let (url, _) = crate::test_app::fresh_database(backend).await;
    // Schema 9, as the release before applied it: the same files, so their checksums match.
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let older =
        std::env::temp_dir().join(format!("cs_migrations_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&older).unwrap();
    for entry in std::fs::read_dir(&all).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < "20261209" {
            std::fs::copy(&path, older.join(&name)).unwrap();
        }
    }
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(older.as_path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&older);
    for (n, (first, last)) in [("Ada", "Lovelace"), ("Adam", "Smith"), ("Grace", "Hopper")]
        .into_iter()
        .enumerate()
    {
        let email = format!(
            "{}.{}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        );
        let text = format!("{first}\u{1f}{last}\u{1f}{email}").to_lowercase();
        sqlx::query(
            "insert into customers (email, first_name, last_name, is_active, search_text, \
             created_at_ms, updated_at_ms, version) values ($1, $2, $3, true, $4, $5, $5, 1)",
        )
        .bind(&email)
        .bind(first)
        .bind(last)
        .bind(&text)
        .bind(1_700_000_000_000_i64 + n as i64)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();

    // Start the current release on it: it applies migration 10.
    let app = crate::test_app::spawn_app_on(url, |_| {}).await;
    let names = |page: &Value| -> Vec<String> {
        page["data"]["customers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["lastName"].as_str().unwrap().to_owned())
            .collect()
    };
    let page = json_of(app.get("/api/v1/customers?search=ada").await, 200).await;
    assert_eq!(page["data"]["total"], 2, "{page}");
    assert_eq!(names(&page), ["Smith", "Lovelace"]);
    let page = json_of(app.get("/api/v1/customers?search=hopper").await, 200).await;
    assert_eq!(page["data"]["total"], 1, "{page}");
    assert_eq!(names(&page), ["Hopper"]);
    // The table follows a rename through the API.
    let id = page["data"]["customers"][0]["id"].as_i64().unwrap();
    let renamed = app.patch_customer(id, &json!({"lastName": "Adams"})).await;
    assert_eq!(renamed.status(), 200);
    let page = json_of(app.get("/api/v1/customers?search=ada").await, 200).await;
    assert_eq!(page["data"]["total"], 3, "{page}");
    assert_eq!(names(&page), ["Adams", "Smith", "Lovelace"]);
    let page = json_of(app.get("/api/v1/customers?search=adams").await, 200).await;
    assert_eq!(page["data"]["total"], 1, "{page}");
    assert_eq!(names(&page), ["Adams"]);
}
