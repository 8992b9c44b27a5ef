//! `customer-service import`: the original service's `customers` table (its TypeORM DDL, in
//! a MariaDB database of the test's own, on the tests' MariaDB) brought into every backend.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::test_app::{
    create_mysql_database, json_of, minimal, mysql_url, spawn_app, Backend, TestApp,
};

crate::on_every_backend!(
    an_import_keeps_ids_times_and_fields_and_rejects_what_our_rules_refuse,
    a_rerun_imports_nothing_and_brings_later_changes_and_deletions,
    e_mails_equal_ignoring_case_keep_the_lowest_id,
    customers_already_here_conflict_by_id_or_e_mail,
    an_import_killed_half_way_resumes_without_duplicates,
);

/// The original's table, as its TypeORM migration created it; `email_collation` names the
/// e-mail column's collation (`None`: the database default).
fn original_ddl(email_collation: Option<&str>) -> String {
    let collate = email_collation.map_or(String::new(), |c| format!(" COLLATE {c}"));
    format!(
        "CREATE TABLE `customers` (\
         `id` int NOT NULL AUTO_INCREMENT, \
         `createdAt` datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
         `updatedAt` datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), \
         `email` varchar(255){collate} NOT NULL, \
         `firstName` varchar(255) NOT NULL, \
         `lastName` varchar(255) NOT NULL, \
         `phone` varchar(255) NULL, \
         `isActive` tinyint NOT NULL DEFAULT 1, \
         `dateOfBirth` date NULL, \
         `address` json NULL, \
         `preferences` json NULL, \
         UNIQUE INDEX `IDX_customers_email` (`email`), \
         PRIMARY KEY (`id`)) ENGINE=InnoDB"
    )
}

/// A source database of the test's own with the original's table; its URL. `None` (the
/// test recorded as skipped) where no MariaDB can be had.
async fn original(email_collation: Option<&str>, rows: &[&str]) -> Option<String> {
    let server = mysql_url()?;
    let name = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
    let url = create_mysql_database(&server, &name).await;
    run_source(&url, &original_ddl(email_collation)).await;
    for row in rows {
        run_source(&url, row).await;
    }
    Some(url)
}

async fn run_source(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut db = sqlx::MySqlConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The edge cases: NULLs everywhere they are allowed, Unicode, microseconds, nested JSON,
/// ids with gaps, and two rows our rules refuse.
const EDGE_ROWS: &[&str] = &[
    "INSERT INTO customers (id, createdAt, updatedAt, email, firstName, lastName, phone, isActive, \
     dateOfBirth, address, preferences) VALUES \
     (2, '2019-03-14 08:21:07.114999', '2024-11-02 17:45:51.020001', '  Zoë.Ørsted@Example.COM ', \
      'Zoë', 'Ørsted-Łukasiewicz', NULL, 0, NULL, NULL, NULL), \
     (5, '2020-02-29 23:59:59.999999', '2020-03-01 00:00:00.000000', 'ada@example.com', 'Ada', \
      'Lovelace', '+44-20-7946-0000', 1, '1990-12-10', \
      '{\"street\": \"12 St James''s Square\", \"city\": \"London\", \"zipCode\": \"SW1Y 4JH\", \"country\": \"UK\"}', \
      '{\"newsletter\": true, \"company\": \"Analytical Engines\", \"tags\": {\"deep\": [1, {\"deeper\": [true, null]}]}}'), \
     (9, '2021-06-01 12:00:00', '2021-06-01 12:00:00', 'listy@example.com', 'Lis', 'Ty', NULL, 1, \
      NULL, NULL, '[\"not\", \"an\", \"object\"]'), \
     (12, '2021-06-01 12:00:00', '2021-06-01 12:00:00', 'not-an-email', 'Nem', 'Ail', NULL, 1, \
      NULL, NULL, NULL), \
     (40, '2022-01-01 00:00:00.5', '2023-07-04 09:08:07.000001', 'li.wei@example.cn', '李明', '王伟', \
      '+86 10 1234 5678', 1, '1985-05-05', \
      '{\"street\": \"1 长安街\", \"city\": \"北京\", \"state\": null, \"zipCode\": null, \"country\": \"中国\"}', \
      '{\"preferredContact\": \"sms\"}')",
];

async fn import(app: &TestApp, source: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["import", "--from", source];
    args.extend_from_slice(extra);
    app.run_cli(&args).await
}

/// `import --skip-invalid` (the rejected rows listed nowhere) that must succeed; its output.
async fn import_valid(app: &TestApp, source: &str, extra: &[&str]) -> String {
    let mut args = vec!["--skip-invalid", "--skip-file", "/dev/null"];
    args.extend_from_slice(extra);
    let (ok, out) = import(app, source, &args).await;
    assert!(ok, "{out}");
    out
}

async fn customer(app: &TestApp, id: i64) -> Value {
    json_of(app.get_customer(id).await, 200).await["data"].clone()
}

async fn an_import_keeps_ids_times_and_fields_and_rejects_what_our_rules_refuse(app: TestApp) {
    let Some(source) = original(None, EDGE_ROWS).await else {
        return;
    };
    // Rejected rows block a real run, which then imports nothing.
    let (ok, out) = import(&app, &source, &[]).await;
    assert!(!ok, "{out}");
    assert_eq!(
        out,
        "row 9: preferences: preferences must be an object\n\
         row 12: email: email must be an email\n"
    );
    assert_eq!(app.event_count().await, 0);

    let (ok, out) = import(&app, &source, &["--dry-run"]).await;
    assert!(ok, "{out}");
    assert!(
        out.ends_with(
            "dry run: imported 3, updated 0, deleted 0, unchanged 0, changed here since their \
             import 0, deleted here since their import 0, rejected 2\n"
        ),
        "{out}"
    );
    assert_eq!(app.event_count().await, 0, "a dry run writes nothing");

    let skip_file = std::env::temp_dir().join(format!("cs_skip_{}.csv", uuid::Uuid::new_v4()));
    let skip = skip_file.display().to_string();
    let (ok, out) = import(&app, &source, &["--skip-invalid", "--skip-file", &skip]).await;
    assert!(ok, "{out}");
    assert!(
        out.starts_with(&format!(
            "2 rows not imported, listed in {skip}\nimported 3, "
        )),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&skip_file).unwrap(),
        "id,reason\n9,\"preferences: preferences must be an object\"\n\
         12,\"email: email must be an email\"\n"
    );
    let _ = std::fs::remove_file(&skip_file);

    // Ids, times (truncated to ms, read as UTC) and fields, normalised as the contract
    // stores them.
    assert_eq!(
        customer(&app, 2).await,
        json!({"id": 2, "email": "zoë.ørsted@example.com", "firstName": "Zoë",
               "lastName": "Ørsted-Łukasiewicz", "fullName": "Zoë Ørsted-Łukasiewicz",
               "phone": null, "isActive": false, "dateOfBirth": null, "address": null,
               "preferences": null, "createdAt": "2019-03-14T08:21:07.114Z",
               "updatedAt": "2024-11-02T17:45:51.020Z", "version": 1})
    );
    let ada = customer(&app, 5).await;
    assert_eq!(ada["createdAt"], "2020-02-29T23:59:59.999Z");
    assert_eq!(ada["updatedAt"], "2020-03-01T00:00:00.000Z");
    assert_eq!(ada["address"]["street"], "12 St James's Square");
    assert_eq!(
        ada["preferences"],
        json!({"company": "Analytical Engines", "newsletter": true,
               "tags": {"deep": [1, {"deeper": [true, null]}]}})
    );
    let li = customer(&app, 40).await;
    assert_eq!(
        (li["firstName"].clone(), li["address"]["city"].clone()),
        (json!("李明"), json!("北京"))
    );
    assert_eq!(li["createdAt"], "2022-01-01T00:00:00.500Z");
    for id in [9, 12] {
        assert_eq!(app.get_customer(id).await.status(), 404);
    }

    // One CustomerImported each, sequence 1, the customer's data (checked against the
    // catalog's schema), occurring at the import's time.
    for id in [2, 5, 40] {
        let events = app.events_of(id).await;
        assert_eq!(events.len(), 1, "customer {id}");
        assert_eq!(events[0]["eventType"], "CustomerImported");
        assert_eq!(events[0]["metadata"]["sequence"], 1);
        assert_eq!(events[0]["data"]["customerId"], id);
        let read = customer(&app, id).await;
        for field in ["email", "createdAt", "updatedAt", "preferences", "address"] {
            assert_eq!(events[0]["data"][field], read[field], "{field}");
        }
        assert!(events[0]["correlationId"].is_null());
        assert!(events[0]["metadata"]["correlationId"]
            .as_str()
            .unwrap()
            .starts_with("import-"));
    }
    app.wait_until_published().await;

    // New customers get ids above the highest imported one.
    assert_eq!(app.create_id(&minimal("new@example.com")).await, 41);
    // And the e-mails stay unique case-insensitively against the imported ones.
    let taken = app.post_customer(&minimal("ADA@example.com")).await;
    assert_eq!(taken.status(), 409);

    let (ok, out) = import(&app, &source, &["--verify"]).await;
    assert!(ok, "{out}");
    assert_eq!(out, "checked 5 rows against the source: 0 differences\n");
    let (ok, out) = app.run_cli(&["events", "verify"]).await;
    assert!(ok, "{out}");
}

async fn a_rerun_imports_nothing_and_brings_later_changes_and_deletions(app: TestApp) {
    let Some(source) = original(None, EDGE_ROWS).await else {
        return;
    };
    import_valid(&app, &source, &[]).await;
    let events = app.event_count().await;
    assert_eq!(events, 3);

    let out = import_valid(&app, &source, &[]).await;
    assert!(
        out.contains(
            "imported 0, updated 0, deleted 0, unchanged 3, changed here since their import 0, \
             deleted here since their import 0, rejected 2"
        ),
        "{out}"
    );
    assert_eq!(app.event_count().await, events, "a re-run appends nothing");

    // The original keeps serving: a change, a deletion and a new sign-up; and one customer
    // is changed here (after the switch began) and not in the source since.
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(20)).await;
    run_source(
        &source,
        "UPDATE customers SET lastName = 'King', isActive = 0, updatedAt = '2030-01-01 00:00:00' \
         WHERE id = 5",
    )
    .await;
    run_source(&source, "DELETE FROM customers WHERE id = 2").await;
    run_source(
        &source,
        "INSERT INTO customers (id, createdAt, updatedAt, email, firstName, lastName) VALUES \
         (41, '2030-01-02 00:00:00', '2030-01-02 00:00:00', 'late@example.com', 'Late', 'Comer')",
    )
    .await;
    app.update(40, &json!({"phone": "+86 10 8765 4321"})).await;

    let out = import_valid(&app, &source, &["--since", &since]).await;
    assert!(
        out.contains(
            "imported 1, updated 1, deleted 1, unchanged 0, changed here since their import 0, \
             deleted here since their import 0, rejected 0"
        ),
        "{out}"
    );
    let types = |events: Vec<Value>| -> Vec<String> {
        events
            .iter()
            .map(|e| e["eventType"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        types(app.events_of(5).await),
        ["CustomerImported", "CustomerUpdated", "CustomerDeactivated"]
    );
    let ada = customer(&app, 5).await;
    assert_eq!(
        (ada["lastName"].clone(), ada["isActive"].clone()),
        (json!("King"), json!(false))
    );
    assert_eq!(ada["updatedAt"], "2030-01-01T00:00:00.000Z");
    let updated = &app.events_of(5).await[1];
    assert_eq!(updated["data"]["changes"]["lastName"]["new"], "King");
    assert_eq!(app.get_customer(2).await.status(), 404);
    assert_eq!(
        types(app.events_of(2).await),
        ["CustomerImported", "CustomerDeleted"]
    );
    assert_eq!(types(app.events_of(41).await), ["CustomerImported"]);

    // A full re-run: customer 40 was changed here only, and stays as it is here.
    let out = import_valid(&app, &source, &[]).await;
    assert!(
        out.contains(
            "imported 0, updated 0, deleted 0, unchanged 2, changed here since their import 1, \
             deleted here since their import 0, rejected 2"
        ),
        "{out}"
    );
    assert_eq!(customer(&app, 40).await["phone"], "+86 10 8765 4321");
    let (ok, out) = import(&app, &source, &["--verify"]).await;
    assert!(!ok);
    assert_eq!(
        out,
        "customer 40: differs in phone, updatedAt\n\
         checked 5 rows against the source: 1 difference\n"
    );
    let (ok, out) = app.run_cli(&["events", "verify"]).await;
    assert!(ok, "{out}");
}

/// Under a case-sensitive collation the original could hold two e-mails equal ignoring
/// case, and under any two that look alike; here only the lowest id can have it.
async fn e_mails_equal_ignoring_case_keep_the_lowest_id(app: TestApp) {
    let Some(source) = original(
        Some("utf8mb4_bin"),
        &[
            "INSERT INTO customers (id, email, firstName, lastName) VALUES \
           (3, 'Dup@Example.com', 'Ann', 'Lee'), (4, 'dup@example.com', 'Bob', 'Lee'), \
           (7, 'DUP@EXAMPLE.COM', 'Cy', 'Lee'), (8, 'solo@example.com', 'Dee', 'Lee'), \
           (9, 'dup@ex\u{430}mple.com', 'Eve', 'Lee')",
        ],
    )
    .await
    else {
        return;
    };
    let (ok, out) = import(&app, &source, &["--dry-run"]).await;
    assert!(ok, "{out}");
    assert!(
        out.starts_with(
            "row 4: the e-mail equals that of source row 3 ignoring case\n\
             row 7: the e-mail equals that of source row 3 ignoring case\n\
             row 9: the e-mail looks like that of source row 3\n"
        ),
        "{out}"
    );
    import_valid(&app, &source, &[]).await;
    assert_eq!(customer(&app, 3).await["email"], "dup@example.com");
    assert_eq!(customer(&app, 3).await["firstName"], "Ann");
    assert_eq!(app.get_customer(4).await.status(), 404);
    assert_eq!(app.event_count().await, 2);
}

/// Into a database that has customers of its own: an id or an e-mail taken here by another
/// customer (or one that looks like it) is a conflict, reported like an invalid row.
async fn customers_already_here_conflict_by_id_or_e_mail(app: TestApp) {
    assert_eq!(app.create_id(&minimal("native@example.com")).await, 1);
    assert_eq!(app.create_id(&minimal("shared@example.com")).await, 2);
    let Some(source) = original(
        None,
        &[
            "INSERT INTO customers (id, email, firstName, lastName) VALUES \
           (1, 'other@example.com', 'Ann', 'Lee'), (5, 'Shared@Example.com', 'Bob', 'Lee'), \
           (6, 'fine@example.com', 'Cy', 'Lee'), (8, 'n\u{430}tive@example.com', 'Di', 'Lee')",
        ],
    )
    .await
    else {
        return;
    };
    let (ok, out) = import(&app, &source, &[]).await;
    assert!(!ok);
    assert_eq!(
        out,
        "row 1: the id belongs to another customer here\n\
         row 5: the e-mail belongs to customer 2 here\n\
         row 8: the e-mail looks like that of customer 1 here\n"
    );
    import_valid(&app, &source, &[]).await;
    assert_eq!(customer(&app, 1).await["email"], "native@example.com");
    assert_eq!(customer(&app, 6).await["email"], "fine@example.com");
    assert_eq!(app.get_customer(5).await.status(), 404);
    assert_eq!(app.get_customer(8).await.status(), 404);
    assert_eq!(app.create_id(&minimal("next@example.com")).await, 7);
}

/// `kill -9` of an import half-way: the batches that committed stay, and the next run
/// imports exactly the rest.
async fn an_import_killed_half_way_resumes_without_duplicates(app: TestApp) {
    const ROWS: i64 = 30_000;
    let Some(source) = original(
        None,
        &[&format!(
            // MariaDB's name for MySQL's cte_max_recursion_depth.
            "SET SESSION max_recursive_iterations = {ROWS}; \
             INSERT INTO customers (id, createdAt, updatedAt, email, firstName, lastName) \
             WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS}) \
             SELECT i, '2020-01-01 00:00:00', '2020-01-01 00:00:00', CONCAT('c', i, '@example.com'), \
             'Ann', 'Lee' FROM n"
        )],
    )
    .await
    else {
        return;
    };
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_customer-service"));
    command
        .args(["import", "--from", &source])
        .env("DATABASE_URL", &app.database_url)
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let imported = app.event_count().await;
        if imported > 0 {
            assert!(
                imported < ROWS,
                "the import finished before it could be killed"
            );
            break;
        }
        assert!(Instant::now() < deadline, "nothing imported within 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // A COMMIT the killed process had already sent still completes on the server: count
    // once the log has stopped growing.
    let mut partial = app.event_count().await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = app.event_count().await;
        if now == partial {
            break;
        }
        partial = now;
    }
    assert!(partial > 0 && partial < ROWS, "{partial}");
    assert_eq!(partial % 2_000, 0, "whole batches only: {partial}");

    let (ok, out) = import(&app, &source, &[]).await;
    assert!(ok, "{out}");
    assert!(
        out.starts_with(&format!(
            "imported {}, updated 0, deleted 0, unchanged {partial},",
            ROWS - partial
        )),
        "{out}"
    );
    assert_eq!(
        app.event_count().await,
        ROWS,
        "one CustomerImported per row"
    );
    let (ok, out) = app.run_cli(&["events", "verify"]).await;
    assert!(ok, "{out}");
    assert_eq!(
        out,
        format!("checked {ROWS} customers and {ROWS} events: 0 mismatches\n")
    );
}

/// The source must be MySQL; a bad URL or zone is refused before anything happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_is_not_mysql_or_a_bad_zone_is_refused() {
    let app = spawn_app(Backend::Sqlite).await;
    let (ok, _) = import(&app, "postgres://h/db", &[]).await;
    assert!(!ok);
    let (ok, _) = import(&app, "mysql://h/db", &["--source-timezone", "Mars/Olympus"]).await;
    assert!(!ok);
    assert_eq!(app.event_count().await, 0);
}
