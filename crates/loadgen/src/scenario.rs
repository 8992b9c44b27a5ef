//! `run`: one load scenario for a fixed time after a warm-up.

use crate::*;

/// Latencies (µs) and status counts of one connection's measured requests.
#[derive(Default)]
pub(crate) struct Tally {
    latencies_us: Vec<u64>,
    statuses: HashMap<u16, u64>,
    errors: u64,
}

/// The highest customer id (ids of a seeded database are 1..=max).
pub(crate) async fn max_customer_id(client: &reqwest::Client, base: &str) -> anyhow::Result<i64> {
    let page: Value = client
        .get(format!("{base}/api/v1/customers?limit=1"))
        .send()
        .await?
        .json()
        .await?;
    page["data"]["customers"][0]["id"]
        .as_i64()
        .context("the database has no customers: seed it first")
}

pub(crate) async fn run(
    base: &str,
    scenario: Scenario,
    connections: u64,
    duration: Duration,
    warmup: Duration,
    read_percent: u64,
    paths: Arc<Vec<String>>,
) -> anyhow::Result<()> {
    if scenario == Scenario::Paths && paths.is_empty() {
        bail!("the paths scenario needs --paths-file with at least one path");
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections as usize)
        .build()?;
    let max_id = match scenario {
        Scenario::Get | Scenario::Update | Scenario::Mixed => {
            max_customer_id(&client, base).await?
        }
        _ => 0,
    };
    let run = run_id();
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let measure_from = started + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let (client, base, counter, paths) = (
            client.clone(),
            base.to_owned(),
            counter.clone(),
            paths.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut rng = (connection + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ run as u64;
            let mut next = move || {
                // xorshift64: cheap, and each connection has its own sequence.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            while Instant::now() < end {
                let roll = next();
                let id = 1 + (roll % max_id.max(1) as u64) as i64;
                let kind = match scenario {
                    Scenario::Mixed if roll % 100 < read_percent => Scenario::Get,
                    Scenario::Mixed if roll % 2 == 0 => Scenario::Create,
                    Scenario::Mixed => Scenario::Update,
                    other => other,
                };
                let request = match kind {
                    Scenario::Create => {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        client
                            .post(format!("{base}/api/v1/customers"))
                            .json(&body(&email(run, n)))
                    }
                    Scenario::Get => client.get(format!("{base}/api/v1/customers/{id}")),
                    Scenario::Floor => client.get(format!("{base}/api/v1/customers/x{id}")),
                    Scenario::Paths => client.get(format!(
                        "{base}{}",
                        paths[(roll % paths.len() as u64) as usize]
                    )),
                    Scenario::List => client.get(format!(
                        "{base}/api/v1/customers?page={}&limit=10",
                        1 + roll % 100
                    )),
                    Scenario::Search => client.get(format!(
                        "{base}/api/v1/customers?search=mark&page={}&limit=10",
                        1 + roll % 10
                    )),
                    Scenario::Update | Scenario::Mixed => client
                        .patch(format!("{base}/api/v1/customers/{id}"))
                        .json(&json!({"lastName": format!("Mark{}", roll % 1000)})),
                };
                let sent = Instant::now();
                let outcome = match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        Some(status)
                    }
                    Err(_) => None,
                };
                if sent >= measure_from && Instant::now() <= end {
                    tally.latencies_us.push(sent.elapsed().as_micros() as u64);
                    match outcome {
                        Some(status) => *tally.statuses.entry(status).or_default() += 1,
                        None => tally.errors += 1,
                    }
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for task in tasks {
        let tally = task.await?;
        all.latencies_us.extend(tally.latencies_us);
        for (status, n) in tally.statuses {
            *all.statuses.entry(status).or_default() += n;
        }
        all.errors += tally.errors;
    }
    let mut ms: Vec<f64> = all
        .latencies_us
        .iter()
        .map(|us| *us as f64 / 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    let mut statuses: Vec<_> = all.statuses.into_iter().collect();
    statuses.sort();
    let statuses: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}={n}")).collect();
    println!(
        "run {scenario:?}: {connections} connections, {:.0} req/s, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, statuses [{}], transport errors {}",
        ms.len() as f64 / duration.as_secs_f64(),
        quantile(&ms, 0.5),
        quantile(&ms, 0.9),
        quantile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN),
        statuses.join(" "),
        all.errors,
    );
    Ok(())
}
