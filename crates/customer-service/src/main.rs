//! The `customer-service` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use customer_service::config::{environment_help, Config};
use customer_service::{cli, telemetry};

/// glibc's allocator cost a quarter of the CPU of a list request (perf, `bench/RESULTS.md`).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Customer records with reliable events. Configuration comes from the environment.
#[derive(Debug, Parser)]
#[command(name = "customer-service", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (the default): applies pending migrations, then serves on PORT.
    Serve,
    /// Apply pending database migrations to DATABASE_URL and exit.
    Migrate,
    /// Fill DATABASE_URL with realistic, varied customers (each with its CustomerCreated).
    Seed {
        /// How many customers to create.
        #[arg(long, default_value_t = 400)]
        count: u64,
        /// CustomerUpdated events to add per customer (a larger event log).
        #[arg(long, default_value_t = 0)]
        updates_per_customer: u64,
    },
    /// Bring the original service's customers (its MySQL `customers` table) into
    /// DATABASE_URL, each with a CustomerImported event; re-run to bring later changes.
    Import(cli::import::ImportArgs),
    /// Exit 0 if the service on this host (PORT) answers GET /livez: for container health
    /// checks.
    Healthcheck,
    /// Tools over the event log.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// The read models the service keeps from its event log (customer statistics).
    Projections {
        #[command(subcommand)]
        command: cli::projections::ProjectionsCommand,
    },
    /// Sagas: each erased customer's erasure across the participating services.
    Sagas {
        #[command(subcommand)]
        command: cli::sagas::SagasCommand,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Rebuild every customer from its events and compare it with the customers table;
    /// prints each mismatch and exits non-zero if there is any.
    Verify,
    /// Re-publish envelopes from the log, unchanged (same eventIds), to a Redis stream: to
    /// rebuild a consumer from scratch. Needs REDIS_URL (or REDIS_HOST).
    Replay(cli::events::ReplayArgs),
    /// Print events as they are published, one JSON line each ({"position","event"}).
    Tail(cli::events::TailArgs),
    /// The dead-letter stream of consumers (`<stream>:dlq`, see customer-events' consumer).
    Dlq {
        #[command(subcommand)]
        command: cli::dlq::DlqCommand,
        /// The event stream whose dead letters to manage [default: EVENT_STREAM].
        #[arg(long, global = true)]
        stream: Option<String>,
    },
}

fn main() -> ExitCode {
    // The environment section of --help comes from the settings table.
    let matches = Cli::command().after_help(environment_help()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("customer-service: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("customer-service: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Only the service makes request spans; the tools export nothing. The exporter is set up
    // inside the runtime's context (the gRPC one spawns its channel there).
    let serving = matches!(cli.command, None | Some(Command::Serve));
    let trace_export = {
        let _context = runtime.enter();
        // Logs go to stderr (stdout is the tools' output), coloured only on a terminal.
        let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
        match telemetry::init(&config.log, serving, colour, std::io::stderr) {
            Ok(export) => export,
            Err(error) => {
                eprintln!("customer-service: {error:#}");
                return ExitCode::from(2);
            }
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => cli::serve::run(config).await,
            Command::Migrate => cli::migrate::run(config).await,
            Command::Seed {
                count,
                updates_per_customer,
            } => cli::seed::run(config, count, updates_per_customer).await,
            Command::Import(args) => cli::import::run(config, args).await,
            // One blocking request, then the exit status: nothing else runs meanwhile.
            Command::Healthcheck => cli::healthcheck::run(&config),
            Command::Events { command } => match command {
                EventsCommand::Verify => cli::events::verify(config).await,
                EventsCommand::Replay(args) => cli::events::replay(config, args).await,
                EventsCommand::Tail(args) => cli::events::tail(config, args).await,
                EventsCommand::Dlq { command, stream } => {
                    cli::dlq::run(config, command, stream).await
                }
            },
            Command::Projections { command } => cli::projections::run(config, command).await,
            Command::Sagas { command } => cli::sagas::run(config, command).await,
        }
    });
    // The last spans go out while the runtime (which the gRPC channel runs on) still exists.
    if let Some(export) = trace_export {
        export.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Said once, on stderr (where the logs go too).
        Err(error) => {
            eprintln!("customer-service: {}", report(&error));
            ExitCode::FAILURE
        }
    }
}

/// `error` and its causes, `: `-separated, each cause left out when the message before it
/// already says it (sqlx's messages quote their source: "error communicating with database:
/// Connection refused", then the same `Connection refused` as the source).
fn report(error: &anyhow::Error) -> String {
    let mut said = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if said.contains(&text) {
            continue;
        }
        if !said.is_empty() {
            said.push_str(": ");
        }
        said.push_str(&text);
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_subcommand_means_serve() {
        assert!(Cli::try_parse_from(["customer-service"])
            .unwrap()
            .command
            .is_none());
        assert!(matches!(
            Cli::try_parse_from(["customer-service", "migrate"])
                .unwrap()
                .command,
            Some(Command::Migrate)
        ));
    }
}
