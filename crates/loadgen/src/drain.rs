//! `drain`: how fast the relay empties the outbox backlog, read from health.

use crate::*;

pub(crate) async fn pending(client: &reqwest::Client, base: &str) -> anyhow::Result<i64> {
    let health: Value = client
        .get(format!("{base}/api/v1/health"))
        .send()
        .await?
        .json()
        .await?;
    health["data"]["checks"]["outbox"]["pending"]
        .as_i64()
        .context("health has no outbox.pending")
}

pub(crate) async fn drain(base: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let initial = pending(&client, base).await?;
    if initial == 0 {
        bail!("no backlog to drain");
    }
    loop {
        let left = pending(&client, base).await?;
        if left == 0 {
            break;
        }
        if started.elapsed() > timeout {
            bail!("{left} events still pending after {timeout:?}");
        }
        // Polling the health route costs the service a count of the backlog (~50 ms at a
        // million pending): not too often.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "drain: {initial} events in {secs:.2} s, {:.0} events/s",
        initial as f64 / secs
    );
    Ok(())
}
