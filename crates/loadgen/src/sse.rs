//! `sse`: many clients on the event stream, each delivery timed.

use crate::*;

/// Reads one SSE client's stream until `until`: the CustomerCreated events it received, by
/// customer id, with their arrival times.
pub(crate) async fn sse_client(
    client: reqwest::Client,
    url: String,
    until: Instant,
) -> anyhow::Result<Vec<(i64, Instant)>> {
    let mut response = client.get(&url).send().await?.error_for_status()?;
    let mut arrivals = Vec::new();
    let mut buffer = String::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let Ok(chunk) = tokio::time::timeout(left, response.chunk()).await else {
            return Ok(arrivals);
        };
        let Some(chunk) = chunk? else {
            bail!("the stream ended");
        };
        let arrived = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let Ok(event) = serde_json::from_str::<Value>(data.trim()) else {
                continue;
            };
            if event["eventType"] == "CustomerCreated" {
                if let Some(id) = event["metadata"]["aggregateId"].as_i64() {
                    arrivals.push((id, arrived));
                }
            }
        }
    }
}

pub(crate) async fn sse(
    base: &str,
    clients: u64,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<()> {
    // One connection per SSE client, as separate subscribers would have.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let until = Instant::now() + Duration::from_secs(5) + duration + Duration::from_secs(3);
    let mut readers = Vec::new();
    for _ in 0..clients {
        readers.push(tokio::spawn(sse_client(
            client.clone(),
            format!("{base}/api/v1/events/stream"),
            until,
        )));
    }
    // Let every client connect and reach the tip.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let run = run_id();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let started = Instant::now();
    let mut answered: HashMap<i64, Instant> = HashMap::new();
    let mut n = 0;
    while started.elapsed() < duration {
        ticker.tick().await;
        let response = client
            .post(format!("{base}/api/v1/customers"))
            .json(&body(&email(run, n)))
            .send()
            .await?;
        let at = Instant::now();
        n += 1;
        let data: Value = response.json().await?;
        if let Some(id) = data["data"]["id"].as_i64() {
            answered.insert(id, at);
        }
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    let mut received = 0;
    for reader in readers {
        match reader.await? {
            Ok(arrivals) => {
                for (id, arrived) in arrivals {
                    if let Some(at) = answered.get(&id) {
                        received += 1;
                        latencies
                            .push(arrived.saturating_duration_since(*at).as_secs_f64() * 1000.0);
                    }
                }
            }
            Err(_) => failed += 1,
        }
    }
    latencies.sort_by(f64::total_cmp);
    let expected = answered.len() as u64 * (clients - failed);
    println!(
        "sse: {clients} clients ({failed} failed), {} events at {rate}/s, {received} of {expected} deliveries; \
         201→client p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        answered.len(),
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.9),
        quantile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
    Ok(())
}
