//! `create`: POST unique customers as fast as N connections allow.

use crate::*;

pub(crate) async fn create(base: &str, count: u64, connections: u64) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicU64::new(0));
    let run = run_id();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, next, url) = (
            client.clone(),
            next.clone(),
            format!("{base}/api/v1/customers"),
        );
        tasks.push(tokio::spawn(async move {
            let mut failed = 0u64;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return failed;
                }
                let ok = client
                    .post(&url)
                    .json(&body(&email(run, n)))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 201);
                failed += u64::from(!ok);
            }
        }));
    }
    let mut failed = 0;
    for task in tasks {
        failed += task.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "create: {count} requests, {failed} failed, {secs:.2} s, {:.0} req/s",
        count as f64 / secs
    );
    Ok(())
}
