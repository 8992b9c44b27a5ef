//! E-mails that look alike are one customer's: NFC before storing, invisible and
//! bidirectional characters refused, a confusable of a customer's e-mail answered 409 like
//! the e-mail itself, the lookup by e-mail finding by the same rule; and rows from before the
//! rule keyed by `migrate`, which reports the look-alike pairs it finds and changes neither.

use serde_json::{json, Value};

use crate::test_app::{json_of, minimal, urlencode, TestApp};

crate::on_every_backend!(
    look_alike_emails_are_one_customer,
    migrate_keys_earlier_rows_and_reports_look_alikes,
);

async fn look_alike_emails_are_one_customer(app: TestApp) {
    let alice = app.create_id(&minimal("alice@example.com")).await;
    for look_alike in [
        "\u{430}lice@example.com",  // Cyrillic а
        "\u{ff41}lice@example.com", // fullwidth a
        "ALIC\u{415}@example.com",  // Cyrillic Е, upper-case
        "alice@\u{435}xample.com",  // in the domain
    ] {
        let body = json_of(app.post_customer(&minimal(look_alike)).await, 409).await;
        assert_eq!(body["message"], "Email already exists", "{look_alike:?}");
    }
    for invisible in [
        "al\u{200b}ice@example.com", // zero-width space
        "al\u{ad}ice@example.com",   // soft hyphen
        "\u{202e}alice@example.com", // right-to-left override
        "alice\u{2066}@example.com", // left-to-right isolate
    ] {
        let body = json_of(app.post_customer(&minimal(invisible)).await, 400).await;
        assert_eq!(
            body["fieldErrors"],
            json!({"email": ["email must be an email"]}),
            "{invisible:?}"
        );
    }
    // Composed and decomposed é: one address, stored composed.
    let jose = app.create(&minimal("JOSE\u{301}@example.com")).await;
    assert_eq!(jose["email"], "jos\u{e9}@example.com");
    let body = json_of(
        app.post_customer(&minimal("jos\u{e9}@example.com")).await,
        409,
    )
    .await;
    assert_eq!(body["message"], "Email already exists");
    // An update to another customer's look-alike is taken too; to one's own, it is not.
    let jose_id = jose["id"].as_i64().unwrap();
    let body = json_of(
        app.patch_customer(jose_id, &json!({"email": "\u{251}lice@example.com"}))
            .await,
        409,
    )
    .await;
    assert_eq!(body["message"], "Email already exists");
    let updated = app
        .update(jose_id, &json!({"email": "jose\u{301}@example.com"}))
        .await;
    assert_eq!(updated["email"], "jos\u{e9}@example.com");
    // The lookup by e-mail finds the customer by any look-alike.
    for typed in [
        "alice@example.com",
        "\u{430}lice@example.com",
        "\u{ff21}LICE@example.com",
    ] {
        let path = format!("/api/v1/customers/email/{}", urlencode(typed));
        let found = json_of(app.get(&path).await, 200).await;
        assert_eq!(found["data"]["id"], alice, "{typed:?}");
    }
    let path = format!(
        "/api/v1/customers/email/{}",
        urlencode("jose\u{301}@example.com")
    );
    assert_eq!(
        json_of(app.get(&path).await, 200).await["data"]["id"],
        jose_id
    );
    // Distinct ASCII addresses stay distinct customers.
    app.create_id(&minimal("alice1@example.com")).await;
    app.create_id(&minimal("alicel@example.com")).await;
    assert_eq!(
        app.event_count().await,
        4,
        "four creates; the update changed nothing"
    );
}

async fn migrate_keys_earlier_rows_and_reports_look_alikes(app: TestApp) {
    let alice = app.create_id(&minimal("alice@example.com")).await;
    let bob = app.create_id(&minimal("bob@example.com")).await;
    let carol = app.create_id(&minimal("carol@example.com")).await;
    // As rows written before the key existed: no keys, and bob's address a look-alike of
    // alice's (possible then), carol's decomposed.
    let mut db = customer_service::store::connect_one(&app.database_url)
        .await
        .unwrap();
    sqlx::query(app.sql("update customers set email_key = null"))
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query(app.sql("update customers set email = $1 where id = $2"))
        .bind("\u{430}lice@example.com")
        .bind(bob)
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query(app.sql("update customers set email = $1 where id = $2"))
        .bind("carol\u{301}@example.com")
        .bind(carol)
        .execute(&mut db)
        .await
        .unwrap();
    let rows = "select id, email, version from customers order by id";
    let before: Vec<(i64, String, i64)> = sqlx::query_as(app.sql(rows))
        .fetch_all(&mut db)
        .await
        .unwrap();

    let report = format!(
        "customer {bob} has an e-mail that looks like customer {alice}'s: it keeps no e-mail key \
         (found by its exact address only) until one of the two is changed or deleted\n"
    );
    let (ok, out) = app.run_cli(&["migrate"]).await;
    assert!(ok, "{out}");
    assert_eq!(out, format!("keyed the e-mails of 2 customers\n{report}"));
    // Nothing else changed, and a second run reports the pair again and keys nothing.
    let after: Vec<(i64, String, i64)> = sqlx::query_as(app.sql(rows))
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert_eq!(after, before);
    let keyless: Vec<i64> =
        sqlx::query_scalar(app.sql("select id from customers where email_key is null"))
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(keyless, [bob]);
    let (ok, out) = app.run_cli(&["migrate"]).await;
    assert!(ok, "{out}");
    assert_eq!(out, report);

    // alice's key stands: a new look-alike of hers is taken; bob is found by his exact
    // address, alice by hers and by other look-alikes, carol (stored decomposed) by either
    // form of hers and not by the plain `carol@`, another address.
    let body = json_of(
        app.post_customer(&minimal("\u{ff41}lice@example.com"))
            .await,
        409,
    )
    .await;
    assert_eq!(body["message"], "Email already exists");
    for (typed, id) in [
        ("\u{430}lice@example.com", bob),
        ("alice@example.com", alice),
        ("\u{ff41}lice@example.com", alice),
        ("caro\u{13a}@example.com", carol),
        ("carol\u{301}@example.com", carol),
    ] {
        let path = format!("/api/v1/customers/email/{}", urlencode(typed));
        let found: Value = json_of(app.get(&path).await, 200).await;
        assert_eq!(found["data"]["id"], id, "{typed:?}");
    }
    let path = format!("/api/v1/customers/email/{}", urlencode("carol@example.com"));
    assert_eq!(app.get(&path).await.status(), 404);
}

mod background {
    use crate::test_app::{fresh_database, json_of, minimal, spawn_app_on, Backend};

    crate::for_every_backend!(serve_keys_earlier_rows_in_the_background);

    /// A database with customers from before the key (made here with SQL): `serve` answers at
    /// once and keys them in the background.
    async fn serve_keys_earlier_rows_in_the_background(backend: Backend) {
        let (url, _dir) = fresh_database(backend).await;
        let migrated = std::process::Command::new(env!("CARGO_BIN_EXE_customer-service"))
            .arg("migrate")
            .env("DATABASE_URL", &url)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        assert!(migrated.status.success(), "{migrated:?}");
        let mut db = customer_service::store::connect_one(&url).await.unwrap();
        let backend_of = customer_service::store::Backend::of_url(&url).unwrap();
        let sql = |text: &str| {
            sqlx::AssertSqlSafe(customer_service::store::statement_for(backend_of, text))
        };
        for (i, email) in [
            "dana@example.com",
            "d\u{430}na@example.com",
            "erin@example.com",
        ]
        .into_iter()
        .enumerate()
        {
            sqlx::query(sql(
                "insert into customers (email, first_name, last_name, is_active, search_text, \
                 created_at_ms, updated_at_ms, version) values ($1, 'Ann', 'Lee', $2, $3, $4, $5, 1)",
            ))
            .bind(email)
            .bind(true)
            .bind(format!("ann\u{1f}lee\u{1f}{email}"))
            .bind(1_000 + i as i64)
            .bind(1_000 + i as i64)
            .execute(&mut db)
            .await
            .unwrap();
        }
        let app = spawn_app_on(url.clone(), |_| {}).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let keyed: i64 = sqlx::query_scalar(sql(
                "select count(*) from customers where email_key is not null",
            ))
            .fetch_one(&mut db)
            .await
            .unwrap();
            if keyed == 2 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{keyed} keyed after 20 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // The first of the look-alikes keeps the key: a new look-alike of it is taken.
        let body = json_of(
            app.post_customer(&minimal("\u{ff44}ana@example.com")).await,
            409,
        )
        .await;
        assert_eq!(body["message"], "Email already exists");
        app.create_id(&minimal("frank@example.com")).await;
    }
}
