//! `event-latency`: each event timed from its HTTP 201 to its arrival on Redis or JetStream.

use crate::*;

/// Customer id → (when its 201 was read, when its CustomerCreated arrived).
pub(crate) type Timings = HashMap<i64, (Option<Instant>, Option<Instant>)>;

/// Where `event-latency` waits for the events.
pub(crate) enum Arrivals {
    /// Subscribed to the pub/sub channel.
    Redis { url: String, channel: String },
    /// An ordered pull consumer of the stream, from the first new message on.
    JetStream { url: String, stream: String },
}

/// Notes when the CustomerCreated in `payload` arrived.
pub(crate) fn arrived(seen: &Mutex<Timings>, payload: &[u8]) {
    let arrived = Instant::now();
    let Ok(event) = serde_json::from_slice::<Value>(payload) else {
        return;
    };
    if event["eventType"] != "CustomerCreated" {
        return;
    }
    if let (Some(id), Ok(mut seen)) = (event["metadata"]["aggregateId"].as_i64(), seen.lock()) {
        seen.entry(id).or_default().1 = Some(arrived);
    }
}

/// Listens for arrivals until aborted.
pub(crate) async fn listen(
    arrivals: &Arrivals,
    seen: Arc<Mutex<Timings>>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    Ok(match arrivals {
        Arrivals::Redis { url, channel } => {
            let mut pubsub = redis::Client::open(url.as_str())?
                .get_async_pubsub()
                .await?;
            pubsub.subscribe(channel).await?;
            tokio::spawn(async move {
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    arrived(&seen, message.get_payload_bytes());
                }
            })
        }
        Arrivals::JetStream { url, stream } => {
            use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
            let client = async_nats::connect(url.as_str()).await?;
            let consumer = async_nats::jetstream::new(client)
                .get_stream(stream)
                .await?
                .create_consumer(OrderedConfig {
                    deliver_policy: DeliverPolicy::New,
                    ..Default::default()
                })
                .await?;
            let mut messages = consumer.messages().await?;
            tokio::spawn(async move {
                while let Some(Ok(message)) = messages.next().await {
                    arrived(&seen, &message.payload);
                }
            })
        }
    })
}

pub(crate) async fn event_latency(
    base: &str,
    arrivals: Arrivals,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<()> {
    let seen: Arc<Mutex<Timings>> = Arc::default();
    let listener = listen(&arrivals, seen.clone()).await?;

    let client = reqwest::Client::new();
    let run = run_id();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let started = Instant::now();
    let mut requests = Vec::new();
    let mut n = 0;
    while started.elapsed() < duration {
        ticker.tick().await;
        let (client, seen, url) = (
            client.clone(),
            seen.clone(),
            format!("{base}/api/v1/customers"),
        );
        let address = email(run, n);
        n += 1;
        requests.push(tokio::spawn(async move {
            let response = client.post(&url).json(&body(&address)).send().await.ok()?;
            let answered = Instant::now();
            let data: Value = response.json().await.ok()?;
            let id = data["data"]["id"].as_i64()?;
            if let Ok(mut seen) = seen.lock() {
                seen.entry(id).or_default().0 = Some(answered);
            }
            Some(())
        }));
    }
    let sent = requests.len();
    let mut answered = 0;
    for request in requests {
        answered += usize::from(request.await?.is_some());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    listener.abort();
    let seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let mut latencies: Vec<f64> = seen
        .values()
        .filter_map(|(answered, arrived)| {
            Some(
                arrived
                    .as_ref()?
                    .saturating_duration_since(answered.as_ref()?.to_owned()),
            )
        })
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let missing = answered - latencies.len();
    println!(
        "event-latency: rate {rate}/s for {:.1} s, {sent} sent, {answered} answered 201, {missing} events not received; \
         201→event p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
         (0 when the event arrived before the HTTP answer was read)",
        duration.as_secs_f64(),
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.9),
        quantile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
    Ok(())
}
