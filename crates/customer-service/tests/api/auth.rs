//! Bearer-token authentication — every way a token can be wrong, on every write route; the
//! subject recorded as the actor; reads open unless protected; RS256 and ES256 keys — and
//! the write rate limit, per token subject or per client address.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::Response;
use serde_json::{json, Value};

use crate::test_app::{json_of, minimal, spawn_app_with, Backend, TestApp};
use customer_service::config::{AuthConfig, JwtKeySource};

crate::for_every_backend!(a_very_long_token_subject_still_scopes_its_keys);

pub(crate) const SECRET: &str = "a-test-secret-of-reasonable-length";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub(crate) fn hs256(claims: Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

async fn app_with(auth: AuthConfig) -> TestApp {
    spawn_app_with(Backend::Sqlite, |c| c.auth = auth).await
}

pub(crate) fn secret_auth() -> AuthConfig {
    AuthConfig {
        key: Some(JwtKeySource::Secret(SECRET.to_owned())),
        issuer: Some("https://id.example.com".to_owned()),
        audience: Some("customer-service".to_owned()),
        protect_reads: false,
    }
}

pub(crate) fn good_claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 300, "iss": "https://id.example.com", "aud": "customer-service"})
}

/// The three write routes with `authorization` (or none).
async fn writes(app: &TestApp, id: i64, authorization: Option<&str>) -> Vec<Response> {
    let with = |request: reqwest::RequestBuilder| match authorization {
        Some(value) => request.header("Authorization", value),
        None => request,
    };
    vec![
        app.send(with(
            app.client
                .post(app.url("/api/v1/customers"))
                .json(&minimal("w@example.com")),
        ))
        .await,
        app.send(with(
            app.client
                .patch(app.url(&format!("/api/v1/customers/{id}")))
                .json(&json!({"lastName": "X"})),
        ))
        .await,
        app.send(with(
            app.client
                .delete(app.url(&format!("/api/v1/customers/{id}"))),
        ))
        .await,
    ]
}

async fn assert_401(response: Response, message: &str, challenge: &str) {
    assert_eq!(
        response.headers()["www-authenticate"].to_str().unwrap(),
        challenge
    );
    let body = json_of(response, 401).await;
    assert_eq!(body["message"], message);
    assert_eq!(body["error"], "Unauthorized");
    assert_eq!(body["statusCode"], 401);
}

#[tokio::test]
async fn every_wrong_token_gets_401_on_every_write_route() {
    let app = app_with(secret_auth()).await;
    let token = hs256(good_claims("admin-1"), SECRET);
    let id = json_of(
        app.send(
            app.client
                .post(app.url("/api/v1/customers"))
                .bearer_auth(&token)
                .json(&minimal("first@example.com")),
        )
        .await,
        201,
    )
    .await["data"]["id"]
        .as_i64()
        .unwrap();

    let missing = "Authentication required: send Authorization: Bearer <token>";
    for response in writes(&app, id, None).await {
        assert_401(response, missing, r#"Bearer realm="customer-service""#).await;
    }
    let mut expired = good_claims("admin-1");
    expired["exp"] = json!(now() - 60);
    let mut other_audience = good_claims("admin-1");
    other_audience["aud"] = json!("billing");
    let mut other_issuer = good_claims("admin-1");
    other_issuer["iss"] = json!("https://evil.example.com");
    // A configured issuer and audience are required, not only checked when present.
    let mut no_issuer = good_claims("admin-1");
    no_issuer.as_object_mut().unwrap().remove("iss");
    let mut no_audience = good_claims("admin-1");
    no_audience.as_object_mut().unwrap().remove("aud");
    let mut not_yet = good_claims("admin-1");
    not_yet["nbf"] = json!(now() + 300);
    let cases = [
        (
            format!("Bearer {}", hs256(no_issuer, SECRET)),
            "the token lacks a required claim",
        ),
        (
            format!("Bearer {}", hs256(no_audience, SECRET)),
            "the token lacks a required claim",
        ),
        (
            format!("Bearer {}", hs256(not_yet, SECRET)),
            "the token is not valid yet",
        ),
        ("Bearer not.a.token".to_owned(), "the token is malformed"),
        (
            format!("Bearer {}", hs256(expired, SECRET)),
            "the token has expired",
        ),
        (
            format!("Bearer {}", hs256(good_claims("admin-1"), "another-secret")),
            "the token's signature is not valid",
        ),
        (
            format!("Bearer {}", hs256(other_audience, SECRET)),
            "the token is for another audience",
        ),
        (
            format!("Bearer {}", hs256(other_issuer, SECRET)),
            "the token is from another issuer",
        ),
        (
            format!(
                "Bearer {}",
                hs256(
                    json!({"sub": "x", "aud": "customer-service", "iss": "https://id.example.com"}),
                    SECRET
                )
            ),
            "the token lacks a required claim",
        ),
    ];
    for (authorization, why) in &cases {
        for response in writes(&app, id, Some(authorization)).await {
            let message = format!("Invalid token: {why}");
            let challenge = format!(
                r#"Bearer realm="customer-service", error="invalid_token", error_description="{message}""#
            );
            assert_401(response, &message, &challenge).await;
        }
    }
    // Nothing was written by any refused request.
    assert_eq!(app.event_count().await, 1);
    // `nbf` has the same 5 s leeway as `exp`: a token valid from 2 s on is accepted now.
    let mut almost = good_claims("admin-1");
    almost["nbf"] = json!(now() + 2);
    let patched = app
        .send(
            app.client
                .patch(app.url(&format!("/api/v1/customers/{id}")))
                .bearer_auth(hs256(almost, SECRET))
                .json(&json!({"lastName": "Nbf"})),
        )
        .await;
    json_of(patched, 200).await;
    // Reads stay open.
    json_of(app.get_customer(id).await, 200).await;
    json_of(app.get("/api/v1/customers").await, 200).await;
}

#[tokio::test]
async fn the_tokens_subject_is_the_actor_of_the_events() {
    let app = app_with(secret_auth()).await;
    let token = hs256(good_claims("admin-7"), SECRET);
    let created = app
        .send(
            app.client
                .post(app.url("/api/v1/customers"))
                .bearer_auth(&token)
                .json(&minimal("a@example.com")),
        )
        .await;
    let id = json_of(created, 201).await["data"]["id"].as_i64().unwrap();
    let patched = app
        .send(
            app.client
                .patch(app.url(&format!("/api/v1/customers/{id}")))
                .bearer_auth(&token)
                .json(&json!({"isActive": false})),
        )
        .await;
    json_of(patched, 200).await;
    let events = app.events_of(id).await;
    assert_eq!(events.len(), 3);
    for event in &events {
        assert_eq!(event["metadata"]["actor"], "admin-7");
    }
    assert_eq!(events[2]["eventType"], "CustomerDeactivated");
    assert_eq!(events[2]["data"]["actor"], "admin-7");
}

#[tokio::test]
async fn a_token_without_a_usable_subject_is_refused() {
    let app = app_with(secret_auth()).await;
    let mut no_subject = good_claims("x");
    no_subject.as_object_mut().unwrap().remove("sub");
    let cases = [
        (no_subject, "the token has no subject (sub)"),
        (good_claims(""), "the token has no subject (sub)"),
        (
            good_claims(&"é".repeat(129)),
            "the token's subject (sub) is longer than 256 bytes",
        ),
        (
            good_claims("admin\n1"),
            "the token's subject (sub) holds control or bidirectional characters",
        ),
        (
            good_claims("admin\u{202E}1"),
            "the token's subject (sub) holds control or bidirectional characters",
        ),
        (
            good_claims("\u{2066}admin"),
            "the token's subject (sub) holds control or bidirectional characters",
        ),
    ];
    for (claims, why) in cases {
        let token = hs256(claims, SECRET);
        let response = app
            .send(
                app.client
                    .post(app.url("/api/v1/customers"))
                    .bearer_auth(&token)
                    .json(&minimal("a@example.com")),
            )
            .await;
        let message = format!("Invalid token: {why}");
        let challenge = format!(
            "Bearer realm=\"customer-service\", error=\"invalid_token\", error_description=\"{}\"",
            message.replace('"', "'")
        );
        assert_401(response, &message, &challenge).await;
    }
    assert_eq!(app.event_count().await, 0);
    // 256 bytes of a multi-byte subject is the limit, not 256 characters.
    let token = hs256(good_claims(&"é".repeat(128)), SECRET);
    let response = app
        .send(
            app.client
                .post(app.url("/api/v1/customers"))
                .bearer_auth(&token)
                .json(&minimal("a@example.com")),
        )
        .await;
    let id = json_of(response, 201).await["data"]["id"].as_i64().unwrap();
    assert_eq!(
        app.events_of(id).await[0]["metadata"]["actor"],
        "é".repeat(128).as_str()
    );
}

#[tokio::test]
async fn without_authentication_events_carry_no_actor() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let id = app.create_id(&minimal("a@example.com")).await;
    let events = app.events_of(id).await;
    assert!(
        events[0]["metadata"].get("actor").is_none(),
        "{}",
        events[0]
    );
}

#[tokio::test]
async fn protected_reads_need_a_token_but_probes_and_docs_do_not() {
    let mut auth = secret_auth();
    auth.protect_reads = true;
    let app = app_with(auth).await;
    for path in [
        "/api/v1/customers",
        "/api/v1/customers/1",
        "/api/v1/events",
        "/api/v1/events/stream",
        "/api/v1/health/stream",
        "/metrics",
    ] {
        assert_eq!(app.get(path).await.status(), 401, "{path}");
    }
    // The dashboard's page and assets hold no data; its feeds above are protected.
    for path in [
        "/livez",
        "/readyz",
        "/api/v1/health",
        "/api/v1/customers/health",
        "/api/docs/openapi.json",
        "/dashboard",
        "/dashboard/app.js",
        "/dashboard/app.css",
    ] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    // A token in the URL is not repeated in the answer.
    let token = hs256(good_claims("reader"), SECRET);
    let body = json_of(
        app.get(&format!(
            "/api/v1/customers/count?access_token={token}&page=1"
        ))
        .await,
        401,
    )
    .await;
    assert_eq!(
        body["path"],
        "/api/v1/customers/count?access_token=[redacted]&page=1"
    );
    assert!(!body.to_string().contains(&token[..20]), "{body}");
    let listed = app
        .send(
            app.client
                .get(app.url("/api/v1/customers"))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(listed.status(), 200);
}

#[tokio::test]
async fn rs256_and_es256_public_keys_verify_their_tokens() {
    for (public, private, algorithm) in [
        ("rsa-public.pem", "rsa-private.pem", Algorithm::RS256),
        ("ec-public.pem", "ec-private.pem", Algorithm::ES256),
    ] {
        let app = app_with(AuthConfig {
            key: Some(JwtKeySource::PublicKeyFile(fixture(public))),
            ..AuthConfig::default()
        })
        .await;
        let pem = std::fs::read(fixture(private)).unwrap();
        let key = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
            _ => EncodingKey::from_ec_pem(&pem).unwrap(),
        };
        let token = encode(
            &Header::new(algorithm),
            &json!({"sub": "svc", "exp": now() + 60}),
            &key,
        )
        .unwrap();
        let created = app
            .send(
                app.client
                    .post(app.url("/api/v1/customers"))
                    .bearer_auth(&token)
                    .json(&minimal("k@example.com")),
            )
            .await;
        assert_eq!(created.status(), 201, "{algorithm:?}");
        // An HS256 token is refused by a public-key configuration.
        let forged = hs256(json!({"sub": "svc", "exp": now() + 60}), "guess");
        let refused = app
            .send(
                app.client
                    .post(app.url("/api/v1/customers"))
                    .bearer_auth(&forged)
                    .json(&minimal("f@example.com")),
            )
            .await;
        assert_eq!(refused.status(), 401, "{algorithm:?}");
    }
}

#[tokio::test]
async fn writes_over_the_rate_limit_get_429_then_recover_and_reads_are_never_limited() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.http.write_rate_per_minute = 120; // 2 per second
        c.http.write_burst = 2;
        c.auth = secret_auth();
    })
    .await;
    let create = |token: String, n: u32| {
        let request = app
            .client
            .post(app.url("/api/v1/customers"))
            .bearer_auth(token)
            .json(&minimal(&format!("r{n}@example.com")));
        app.send(request)
    };
    let alice = hs256(good_claims("alice"), SECRET);
    assert_eq!(create(alice.clone(), 1).await.status(), 201);
    assert_eq!(create(alice.clone(), 2).await.status(), 201);
    let refused = create(alice.clone(), 3).await;
    assert_eq!(refused.headers()["retry-after"], "1");
    let body = json_of(refused, 429).await;
    assert_eq!(body["message"], "Too many requests: retry in 1 s");
    assert_eq!(body["error"], "Too Many Requests");
    // Another client is not affected, and reads never are.
    assert_eq!(
        create(hs256(good_claims("bob"), SECRET), 4).await.status(),
        201
    );
    assert_eq!(app.get("/api/v1/customers").await.status(), 200);
    // A second later alice may write again.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert_eq!(create(alice, 5).await.status(), 201);
    assert_eq!(
        app.event_count().await,
        4,
        "the refused write wrote nothing"
    );
}

#[tokio::test]
async fn without_authentication_the_limit_is_per_client_address() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.http.write_rate_per_minute = 6;
        c.http.write_burst = 1;
    })
    .await;
    assert_eq!(
        app.post_customer(&minimal("a@example.com")).await.status(),
        201
    );
    let refused = app.post_customer(&minimal("b@example.com")).await;
    assert_eq!(refused.headers()["retry-after"], "10");
    json_of(refused, 429).await;
}

/// A token's subject of the longest length accepted (256 bytes): the stored key stays within
/// every store's key column (on MySQL a 1,000-character subject failed the insert), a retry
/// still gets the first answer, and a subject that differs only in its last character has
/// keys of its own.
async fn a_very_long_token_subject_still_scopes_its_keys(backend: Backend) {
    use crate::idempotency::answer;
    let app = spawn_app_with(backend, |c| c.auth = secret_auth()).await;
    let post_as = |subject: String, body: Value| {
        let bearer = format!("Bearer {}", hs256(good_claims(&subject), SECRET));
        app.send(
            app.client
                .post(app.url("/api/v1/customers"))
                .header("Idempotency-Key", "order-7")
                .header("Authorization", bearer)
                .json(&body),
        )
    };
    let long = "s".repeat(256);
    let first = answer(post_as(long.clone(), minimal("long@example.com")).await).await;
    assert_eq!(first.0, 201, "{}", first.3);
    let retry = answer(post_as(long.clone(), minimal("long@example.com")).await).await;
    assert_eq!(retry, first);
    let other = format!("{}t", "s".repeat(255));
    let theirs = answer(post_as(other, minimal("other@example.com")).await).await;
    assert_eq!(theirs.0, 201, "{}", theirs.3);
    assert_ne!(theirs.1, first.1, "another subject's key is another key");
    assert_eq!(app.event_count().await, 2);
}
