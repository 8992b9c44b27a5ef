//! The dashboard: its status feed over HTTP, its page and assets, and the page itself in
//! headless Chromium, driven over WebDriver by Debian's `chromedriver`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::test_app::{
    minimal, redis_url, spawn_app, spawn_app_with, unique_redis, Backend, TestApp,
};

/// The first `status` event of the status feed.
async fn first_status(app: &TestApp) -> Value {
    let mut response = app.get("/api/v1/health/stream").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("a status within 10 s")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let frame = text.split("\n\n").next().unwrap();
    let mut lines = frame.lines();
    assert_eq!(lines.next(), Some("event: status"), "{frame}");
    let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
    serde_json::from_str(data).unwrap()
}

#[tokio::test]
async fn the_status_feed_reports_health_relay_watermark_dead_letters_and_traffic() {
    let Some(url) = redis_url() else {
        return;
    };
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.redis = Some(unique_redis(url.clone()))
    })
    .await;
    app.create(&minimal("one@example.com")).await;
    app.create(&minimal("two@example.com")).await;
    app.wait_until_published().await;
    // Two dead letters, as a consumer would leave them.
    let redis = app.redis.as_ref().unwrap();
    let mut connection = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for n in 0..2 {
        let _: String = redis::cmd("XADD")
            .arg(customer_events::consumer::dead_letter_stream(&redis.stream))
            .arg("*")
            .arg("id")
            .arg(format!("CustomerCreated_1_{n}"))
            .query_async(&mut connection)
            .await
            .unwrap();
    }

    let status = first_status(&app).await;
    assert_eq!(status["health"]["status"], "healthy");
    assert_eq!(status["health"]["checks"]["database"]["status"], "ok");
    assert_eq!(status["health"]["checks"]["redis"]["status"], "ok");
    assert_eq!(status["health"]["checks"]["outbox"]["pending"], 0);
    assert_eq!(status["health"]["checks"]["outbox"]["isLeader"], true);
    assert_eq!(status["watermark"], 2);
    assert_eq!(
        status["relay"],
        json!({"publishedTotal": 2, "failuresTotal": 0})
    );
    assert_eq!(status["deadLetters"], 2);
    // The two creates and this stream (counted once its headers went out).
    assert_eq!(
        status["http"],
        json!({"requestsTotal": 3, "serverErrorsTotal": 0})
    );
}

#[tokio::test]
async fn without_redis_the_status_feed_has_no_dead_letter_depth() {
    let app = spawn_app(Backend::Sqlite).await;
    let status = first_status(&app).await;
    assert_eq!(status["health"]["checks"]["redis"]["status"], "disabled");
    assert_eq!(status["deadLetters"], Value::Null);
    assert_eq!(status["watermark"], 0);
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_from_the_binary_with_a_strict_policy() {
    let app = spawn_app(Backend::Sqlite).await;
    let page = app.get("/dashboard").await;
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()["content-type"].to_str().unwrap(),
        "text/html; charset=utf-8"
    );
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.starts_with("default-src 'none'; script-src 'self';"),
        "{policy}"
    );
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    let html = page.text().await.unwrap();
    // Nothing from elsewhere: every reference is to this origin (or an empty data: icon).
    for attribute in ["src=\"", "href=\""] {
        for reference in html.split(attribute).skip(1) {
            let target = reference.split('"').next().unwrap();
            assert!(
                target.starts_with('/') || target == "data:,",
                "{attribute}{target}"
            );
        }
    }
    for (path, content_type) in [
        ("/dashboard/app.js", "text/javascript; charset=utf-8"),
        ("/dashboard/app.css", "text/css; charset=utf-8"),
    ] {
        assert!(html.contains(path), "the page loads {path}");
        let asset = app.get(path).await;
        assert_eq!(asset.status(), 200, "{path}");
        assert_eq!(
            asset.headers()["content-type"].to_str().unwrap(),
            content_type
        );
        assert_eq!(asset.headers()["x-content-type-options"], "nosniff");
    }
    // Every element the script looks up by id is in the page, but those it makes itself.
    let script = app.get("/dashboard/app.js").await.text().await.unwrap();
    let looked_up: Vec<&str> = ["$(\"", "setText(\"", "setLevel(\""]
        .iter()
        .flat_map(|call| script.split(call).skip(1))
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    assert!(looked_up.len() > 30, "{looked_up:?}");
    for id in looked_up {
        assert!(
            html.contains(&format!("id=\"{id}\"")),
            "#{id} is not in the page"
        );
    }
}

// ---------------------------------------------------------------- in a browser

/// Set by `.ci/run`, which installs Chromium: there a missing browser fails the test instead
/// of skipping it.
const REQUIRE_BROWSER: &str = "REQUIRE_BROWSER_TESTS";

fn executable(env: &str, default: &str) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var(env).unwrap_or_else(|_| default.to_owned()));
    path.is_file().then_some(path)
}

/// A headless Chromium session behind a `chromedriver` that this test started (and kills).
pub(crate) struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
    _profile: TempDir,
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    /// `None` (with a note) when Chromium or chromedriver is not installed, unless
    /// `REQUIRE_BROWSER_TESTS` is set.
    pub(crate) async fn start() -> Option<Browser> {
        let driver = executable("CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = executable("CHROMIUM", "/usr/bin/chromium");
        let (Some(driver), Some(chromium)) = (driver, chromium) else {
            assert!(
                std::env::var_os(REQUIRE_BROWSER).is_none(),
                "{REQUIRE_BROWSER} is set but Chromium or chromedriver is missing: \
                 apt-get install chromium chromium-driver"
            );
            test_servers::skip(
                "Chromium or chromedriver is not installed (apt-get install chromium \
                 chromium-driver)",
            );
            return None;
        };
        let port = test_servers::free_port();
        // Its own process group, which the Chromium it starts joins: dropping the browser
        // kills the group, so a failing test leaves no Chromium behind.
        let driver = Command::new(driver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let mut ready = false;
        for _ in 0..100 {
            if let Ok(response) = http.get(format!("{base}/status")).send().await {
                let status: Value = response.json().await.unwrap_or_default();
                if status["value"]["ready"] == true {
                    ready = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "chromedriver did not become ready in 10 s");
        let profile = std::env::temp_dir().join(format!("cs-chromium-{}", uuid::Uuid::new_v4()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-quic",
                    "--window-size=1440,1200",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        Some(Browser {
            driver,
            http,
            session: format!("{base}/session/{session}"),
            _profile: TempDir(profile),
        })
    }

    pub(crate) async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let request = self.http.request(method, format!("{}{path}", self.session));
        let request = if body.is_null() {
            request
        } else {
            request.json(&body)
        };
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(
            answer["value"].get("error").is_none(),
            "WebDriver {path}: {answer}"
        );
        answer["value"].clone()
    }

    pub(crate) async fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub(crate) async fn run(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Runs `script` until it returns something other than `null`, for up to 15 s.
    pub(crate) async fn wait_for(&self, what: &str, script: &str) -> Value {
        for _ in 0..150 {
            let value = self.run(script).await;
            if !value.is_null() {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let text = self.run("return document.body.innerText").await;
        panic!("{what} did not happen within 15 s; the page reads:\n{text}");
    }

    pub(crate) async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .command(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
            PathBuf::from,
        );
        std::fs::create_dir_all(&target).unwrap();
        let path = target.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// What the page wrote to the console at level SEVERE (script errors, failed loads).
    pub(crate) async fn errors(&self) -> Vec<Value> {
        let log = self
            .command(reqwest::Method::POST, "/se/log", json!({"type": "browser"}))
            .await;
        log.as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .cloned()
            .collect()
    }

    /// Ends the session (closing Chromium); dropping stops chromedriver.
    pub(crate) async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_customers_event_appears_on_the_dashboard_in_headless_chromium() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = match crate::test_app::redis_url_if_any() {
        Some(url) => spawn_app_with(Backend::Sqlite, |c| c.redis = Some(unique_redis(url))).await,
        None => spawn_app(Backend::Sqlite).await,
    };
    // Some history before the page opens: it shows the recent past, not only what follows.
    let earlier = app.create_id(&minimal("earlier@example.com")).await;
    app.wait_until_published().await;

    browser.open(&app.url("/dashboard")).await;
    // Until the table's events have arrived from the log, it never claims there are none.
    let first_paint = browser
        .run(
            "const empty = document.getElementById('events-empty'); \
             return empty.hidden ? 'rows' : empty.textContent",
        )
        .await;
    assert!(
        first_paint == "rows" || first_paint == "Loading the latest events…",
        "{first_paint}"
    );
    browser
        .wait_for(
            "the status feed going live",
            "return document.getElementById('conn').dataset.state === 'live' \
             && document.getElementById('db-status').textContent === 'OK' || null",
        )
        .await;
    // No erasure sagas configured here: the card says so.
    let sagas = browser
        .run(
            "const shown = id => !document.getElementById(id).hidden; \
             return [document.getElementById('sagas-open').textContent, shown('sagas-off'), \
                     shown('sagas-detail'), shown('sagas-open-label')]",
        )
        .await;
    assert_eq!(sagas, serde_json::json!(["Off", true, false, false]));
    browser
        .wait_for(
            "the earlier event shown",
            &format!(
                "return document.querySelector('#events tr[data-event-type=\"CustomerCreated\"]') \
                 && document.querySelector('#events tbody').innerText.includes('\\t{earlier}\\t') || null"
            ),
        )
        .await;

    let id = app.create_id(&minimal("dashboard@example.com")).await;
    app.wait_until_published().await;
    let event_id = app.stored_events_of(id).await[0].event_id.clone();
    let row = browser
        .wait_for(
            "the new customer's event on the page",
            &format!(
                "const row = document.querySelector('#events tr[data-event-id=\"{event_id}\"]'); \
                 return row && [...row.cells].map(c => c.textContent)"
            ),
        )
        .await;
    let cells: Vec<&str> = row
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(cells[1], "2", "its log position: {cells:?}");
    assert_eq!(cells[2], "CustomerCreated", "{cells:?}");
    assert_eq!(cells[3], id.to_string(), "{cells:?}");
    assert_eq!(cells[5], event_id, "{cells:?}");
    // Newest first.
    let first = browser
        .run("return document.querySelector('#events tbody tr').dataset.eventId")
        .await;
    assert_eq!(first, event_id);
    // The cards: the outbox is empty, this instance publishes, the chart counts both events.
    let cards = browser
        .wait_for(
            "the cards catching up",
            "const t = id => document.getElementById(id).textContent; \
             return t('relay-published') === '2' ? \
               [t('outbox-pending'), t('relay-role'), t('watermark'), t('dlq-depth')] : null",
        )
        .await;
    let dlq = if app.redis.is_some() { "0" } else { "–" };
    assert_eq!(cards, json!(["0", "Publishing", "2", dlq]));
    let legend = browser
        .run("return document.getElementById('legend').innerText")
        .await;
    assert!(
        legend.as_str().unwrap().contains("CustomerCreated"),
        "{legend}"
    );

    // Filters, by type, customer and text, over three events of two customers.
    app.update(id, &json!({"lastName": "Renamed"})).await;
    app.wait_until_published().await;
    browser
        .wait_for(
            "the update on the page",
            "return document.querySelector('#events tr[data-event-type=\"CustomerUpdated\"]')",
        )
        .await;
    let filtered = |filter: &str, value: String| {
        format!(
            "const input = document.getElementById('{filter}'); \
             input.value = '{value}'; input.dispatchEvent(new Event('input')); \
             const shown = [...document.querySelectorAll('#events tbody tr')] \
               .map(r => r.dataset.eventType + ' ' + r.cells[3].textContent); \
             input.value = ''; input.dispatchEvent(new Event('input')); \
             return shown"
        )
    };
    let by_type = browser
        .run(&filtered("filter-type", "CustomerUpdated".into()))
        .await;
    assert_eq!(by_type, json!([format!("CustomerUpdated {id}")]));
    let by_customer = browser
        .run(&filtered("filter-customer", id.to_string()))
        .await;
    assert_eq!(
        by_customer,
        json!([
            format!("CustomerUpdated {id}"),
            format!("CustomerCreated {id}")
        ])
    );
    let by_text = browser
        .run(&filtered("filter-text", "EARLIER@example".into()))
        .await;
    assert_eq!(by_text, json!([format!("CustomerCreated {earlier}")]));

    // The lookup: the customer as it is and its history.
    browser
        .run(&format!(
            "document.getElementById('lookup-input').value = '{id}'; \
             document.getElementById('lookup-button').click(); return null"
        ))
        .await;
    let history = browser
        .wait_for(
            "the customer's history",
            "const items = document.querySelectorAll('#history li'); \
             return items.length ? [...items].map(li => li.dataset.eventType) : null",
        )
        .await;
    assert_eq!(history, json!(["CustomerCreated", "CustomerUpdated"]));
    let card = browser
        .run("return document.getElementById('lookup-customer').innerText")
        .await;
    let card = card.as_str().unwrap();
    assert!(card.contains("Renamed"), "{card}");
    assert!(card.contains("dashboard@example.com"), "{card}");

    let errors = browser.errors().await;
    let shot = browser.screenshot("dashboard.png").await;
    eprintln!("dashboard screenshot: {}", shot.display());
    browser.close().await;
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
}

/// More events than the page reads back for its table, one customer erased, and a phone's
/// screen: the chart counts every event of its window (from the log, not from the rows it
/// shows), its labels keep their size, and the lookup says the customer was erased.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_counts_its_whole_window_and_the_lookup_shows_an_erasure_on_a_phone() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = spawn_app(Backend::Sqlite).await;
    const CREATED: usize = 240;
    let mut ids = Vec::new();
    for n in 0..CREATED {
        ids.push(
            app.create_id(&minimal(&format!("chart{n}@example.com")))
                .await,
        );
    }
    let erased = ids[0];
    let response = app
        .send(
            app.client
                .delete(app.url(&format!("/api/v1/customers/{erased}?erase=true"))),
        )
        .await;
    assert_eq!(response.status(), 204);
    app.wait_until_published().await;

    browser
        .command(
            reqwest::Method::POST,
            "/window/rect",
            json!({"width": 390, "height": 900}),
        )
        .await;
    browser.open(&app.url("/dashboard")).await;
    let legend = browser
        .wait_for(
            "the chart's legend counting the window",
             "const items = [...document.querySelectorAll('#legend li')]; \
             return items.length >= 3 ? items.map(li => li.innerText.replace(/\\s+/g, ' ').trim()) : null",
        )
        .await;
    assert_eq!(
        legend,
        json!([
            format!("CustomerCreated {CREATED}"),
            "CustomerDeleted 1",
            "CustomerErased 1"
        ])
    );
    // The stats read model's card: every customer but the erased one.
    let stats = browser
        .wait_for(
            "the customers card",
            "const t = id => document.getElementById(id).textContent; \
             return t('stats-customers') === '239' ? \
               [t('stats-active'), t('stats-deleted'), t('stats-erased'), t('stats-lag')] : null",
        )
        .await;
    assert_eq!(stats, json!(["239", "1", "1", "none"]));
    // One SVG unit per CSS pixel: the labels are drawn at their font size, not squeezed.
    let geometry = browser
        .run(
            "const svg = document.getElementById('chart'); \
             const label = svg.querySelector('text'); \
             const box = label.getBoundingClientRect(); \
             return [svg.viewBox.baseVal.width, svg.clientWidth, box.width, box.height, \
             document.documentElement.scrollWidth <= window.innerWidth]",
        )
        .await;
    let geometry = geometry.as_array().unwrap();
    assert_eq!(geometry[0], geometry[1], "{geometry:?}");
    assert!(geometry[1].as_f64().unwrap() < 390.0, "{geometry:?}");
    assert!(
        geometry[2].as_f64().unwrap() > 14.0 && geometry[3].as_f64().unwrap() >= 10.0,
        "the scale's label is readable: {geometry:?}"
    );
    assert_eq!(geometry[4], true, "no sideways scrolling: {geometry:?}");

    browser
        .run(&format!(
            "document.getElementById('lookup-input').value = '{erased}'; \
             document.getElementById('lookup-button').click(); return null"
        ))
        .await;
    let card = browser
        .wait_for(
            "the erased customer's card",
            "const card = document.getElementById('lookup-customer'); \
             return card && document.getElementById('history') ? \
             [card.dataset.state, card.querySelector('h3').textContent, \
             document.getElementById('lookup-gone').textContent] : null",
        )
        .await;
    assert_eq!(card[0], "erased");
    assert_eq!(card[1], "Erased customer");
    assert!(
        card[2].as_str().unwrap().contains("personal data erased"),
        "{card}"
    );
    // The lookup's GET of the erased customer answers 404, which Chromium logs.
    let expected = format!(
        "/api/v1/customers/{erased} - Failed to load resource: \
         the server responded with a status of 404"
    );
    let errors: Vec<Value> = browser
        .errors()
        .await
        .into_iter()
        .filter(|e| {
            !e["message"]
                .as_str()
                .unwrap_or_default()
                .contains(&expected)
        })
        .collect();
    browser
        .run("document.getElementById('chart').scrollIntoView(); return null")
        .await;
    browser.screenshot("dashboard-phone.png").await;
    browser.close().await;
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_protected_reads_the_page_asks_for_a_token_and_then_goes_live() {
    use crate::auth::{good_claims, hs256, secret_auth, SECRET};

    let Some(browser) = Browser::start().await else {
        return;
    };
    let mut auth = secret_auth();
    auth.protect_reads = true;
    let app = spawn_app_with(Backend::Sqlite, |c| c.auth = auth).await;
    browser.open(&app.url("/dashboard")).await;
    browser
        .wait_for(
            "the token form",
            "return !document.getElementById('auth').hidden && \
             document.getElementById('conn').dataset.state === 'down' || null",
        )
        .await;
    let token = hs256(good_claims("operator"), SECRET);
    browser
        .run(&format!(
            "document.getElementById('auth-token').value = '{token}'; \
             document.getElementById('auth-form').requestSubmit(); return null"
        ))
        .await;
    browser
        .wait_for(
            "the status feed going live with the token",
            "return document.getElementById('conn').dataset.state === 'live' \
             && document.getElementById('auth').hidden || null",
        )
        .await;
    let created = app
        .send(
            app.client
                .post(app.url("/api/v1/customers"))
                .bearer_auth(&token)
                .json(&minimal("token@example.com")),
        )
        .await;
    assert_eq!(created.status(), 201);
    let actor = browser
        .wait_for(
            "the event, with its actor",
            "const row = document.querySelector('#events tr[data-event-type=\"CustomerCreated\"]'); \
             return row && row.cells[4].textContent",
        )
        .await;
    assert_eq!(actor, "operator");
    let errors = browser.errors().await;
    browser.close().await;
    // The refused first attempts are the only console errors: 401s of the two feeds.
    assert!(
        errors
            .iter()
            .all(|e| e["message"].as_str().unwrap().contains("401")),
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_and_failed_erasure_sagas_are_listed_on_the_dashboard() {
    let Some(url) = redis_url() else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let redis = unique_redis(url);
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.redis = Some(redis.clone());
        c.erasure = Some(customer_service::config::ErasureConfig {
            participants: vec!["billing".into(), "email".into()],
            deadline: Duration::from_secs(3600),
            retry_after: Duration::from_secs(3600),
        });
    })
    .await;
    let erase = |id: i64| {
        app.send(
            app.client
                .delete(app.url(&format!("/api/v1/customers/{id}?erase=true"))),
        )
    };
    let late = app.create_id(&minimal("late@example.com")).await;
    assert_eq!(erase(late).await.status(), 204);
    // Billing answers that it failed (with its request's token, from the stream).
    app.wait_until_published().await;
    let request: Value = crate::test_app::streamed_payloads(&redis)
        .await
        .iter()
        .map(|p| serde_json::from_str::<Value>(p).unwrap())
        .find(|e| {
            e["eventType"] == "CustomerErasureRequested" && e["data"]["participant"] == "billing"
        })
        .expect("billing's request");
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: String = redis::cmd("XADD")
        .arg(customer_events::participant::reply_stream(&redis.stream))
        .arg("*")
        .arg("sagaId")
        .arg(request["data"]["sagaId"].as_i64().unwrap())
        .arg("participant")
        .arg("billing")
        .arg("token")
        .arg(request["data"]["token"].as_str().unwrap())
        .arg("outcome")
        .arg("failed")
        .arg("reason")
        .arg("ledger locked")
        .query_async(&mut connection)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while crate::test_app::json_of(app.get("/api/v1/sagas?state=failed").await, 200).await["data"]
        ["sagas"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the saga never failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waiting = app.create_id(&minimal("waiting@example.com")).await;
    assert_eq!(erase(waiting).await.status(), 204);

    browser.open(&app.url("/dashboard")).await;
    let rows = browser
        .wait_for(
            "the open and the failed saga in the table",
            "const rows = [...document.querySelectorAll('#sagas tbody tr')]; \
             return rows.length === 2 ? rows.map(r => [...r.cells].map(c => c.textContent)) : null",
        )
        .await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows[0][1], late.to_string());
    assert_eq!(rows[0][2], "failed");
    assert_eq!(rows[0][4], "billing ✗ · email waiting");
    assert_eq!(rows[0][5], "billing answered failed: ledger locked");
    assert_eq!(rows[1][1], waiting.to_string());
    assert_eq!(rows[1][2], "open");
    assert_eq!(rows[1][5], "");
    let card = browser
        .wait_for(
            "the Erasures card",
            "const t = id => document.getElementById(id).textContent; \
             return t('sagas-open') === '1' ? [t('sagas-failed'), \
               document.getElementById('card-sagas').dataset.level] : null",
        )
        .await;
    assert_eq!(card, json!(["1", "bad"]));
    assert!(
        browser
            .run("return document.getElementById('sagas-empty').hidden")
            .await
            == true
    );
    assert_eq!(browser.errors().await, Vec::<Value>::new());
    browser.close().await;
}
