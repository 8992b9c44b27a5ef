//! A read model outside the service, as a consumer team writes one: a customer directory in
//! the team's own SQLite file, built from nothing but this crate and the service's HTTP API.
//!
//! ```sh
//! # Follow the service (catches up on its whole history first, then stays live):
//! cargo run -p customer-events --features projection-http --example customer_directory -- \
//!     follow --service http://localhost:3004 --db directory.db
//! # Meanwhile, from another shell:
//! cargo run -p customer-events --features projection-http --example customer_directory -- \
//!     search ada --db directory.db
//! # Start over (a new copy replayed beside the old one, which serves until it has caught up):
//! cargo run -p customer-events --features projection-http --example customer_directory -- \
//!     rebuild --db directory.db
//! ```
//! With `AUTH_PROTECT_READS` on the service, pass `--token <JWT>`. Stopping and starting
//! `follow` at any moment loses and repeats nothing: each batch and its checkpoint commit
//! together in `directory.db`.

mod directory;

use customer_events::projection::{self, http::HttpSource, Options, Runner};
use sqlx::any::AnyPoolOptions;

struct Args {
    command: String,
    service: String,
    db: String,
    token: Option<String>,
    rest: Vec<String>,
}

fn args() -> Args {
    let mut args = Args {
        command: "follow".into(),
        service: "http://localhost:3004".into(),
        db: "directory.db".into(),
        token: None,
        rest: Vec::new(),
    };
    let mut iter = std::env::args().skip(1);
    let mut first = true;
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--service" => args.service = iter.next().unwrap_or_default(),
            "--db" => args.db = iter.next().unwrap_or_default(),
            "--token" => args.token = iter.next(),
            command if first && !command.starts_with("--") => args.command = command.into(),
            other => args.rest.push(other.into()),
        }
        first = false;
    }
    args
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args();
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}?mode=rwc", args.db);
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await?;
    match args.command.as_str() {
        "follow" => {
            let source = HttpSource::new(&args.service, args.token.clone());
            let runner = Runner::start(
                directory::Directory,
                source,
                pool.clone(),
                Options::default(),
            )
            .await?;
            println!("following {} into {} (Ctrl-C stops)", args.service, args.db);
            runner
                .run(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await;
        }
        "search" => {
            let term = args.rest.first().cloned().unwrap_or_default();
            let country = args.rest.get(1).map(String::as_str);
            let mut conn = pool.acquire().await?;
            for person in directory::search(&mut conn, &term, country).await? {
                let state = if person.active { "" } else { " (inactive)" };
                let country = person.country.as_deref().unwrap_or("-");
                println!(
                    "{:>6}  {}  <{}>  {country}{state}",
                    person.id, person.name, person.email
                );
            }
        }
        "rebuild" => {
            let mut conn = pool.acquire().await?;
            if projection::request_rebuild(&mut conn, "directory").await? {
                println!("rebuild requested: a running `follow` carries it out");
            } else {
                println!("the directory has never been built here: run `follow`");
            }
        }
        other => {
            eprintln!("unknown command {other:?}: follow, search TERM [COUNTRY], rebuild");
            std::process::exit(2);
        }
    }
    pool.close().await;
    Ok(())
}
