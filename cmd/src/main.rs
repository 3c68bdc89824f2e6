//! sovd: the one binary. `sovd dev | gateway | connector | projector | bench | backup | archive | restore …`.

use clap::Parser;
use sovd::config::{self, Cli, Command, LogFormat};
use sovd::{audit_cli, bench, dr, metrics, projections_cli, replay_cli, run, seed, user_cli, watch};
use tracing_subscriber::EnvFilter;

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,async_nats=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Bench(args) => bench::run(args).await,
        Command::Watch(args) => watch::run(args).await,
        Command::User(args) => user_cli::run(args).await,
        Command::Simulator(args) => run::run_simulator(args).await,
        Command::Audit(args) => audit_cli::run(args).await,
        Command::Projections(args) => projections_cli::run(args).await,
        Command::Replay(args) => replay_cli::run(args).await,
        Command::Dev(args) => dev(args).await,
        Command::Backup(args) => dr::cli::run_backup(args).await,
        Command::Archive(args) => dr::cli::run_archive(args).await,
        Command::Restore(args) => dr::cli::run_restore(args).await,
        Command::Gateway(args) => {
            let (_stop, shutdown) = run::shutdown_signal();
            let settings = run::GatewaySettings::from_args(&args, false)?;
            let listener = run::bind(&args).await?;
            let Some(deps) = run::connect(&args.common, "sovd-gateway", &shutdown).await? else { return Ok(()) };
            run::serve_gateway(&deps, listener, settings, metrics::Metrics::new()?, shutdown).await
        }
        Command::Connector(args) => {
            let (_stop, mut shutdown) = run::shutdown_signal();
            let Some(store) = run::connect_connector(&args, &shutdown).await? else { return Ok(()) };
            let (task, _) = run::spawn_connector(&store, &args.connector, &metrics::Metrics::new()?, &shutdown).await?;
            let _ = shutdown.wait_for(|stop| *stop).await;
            let _ = task.await;
            Ok(())
        }
        Command::Projector(common) => {
            let (_stop, mut shutdown) = run::shutdown_signal();
            let Some(deps) = run::connect(&common, "sovd-projector", &shutdown).await? else { return Ok(()) };
            let tasks = run::spawn_projector(&deps, &shutdown);
            let _ = shutdown.wait_for(|stop| *stop).await;
            for task in tasks {
                let _ = task.await;
            }
            Ok(())
        }
    }
}

/// Everything in one process, with the seed users and vehicles.
async fn dev(args: config::DevArgs) -> anyhow::Result<()> {
    let (_stop, shutdown) = run::shutdown_signal();
    let settings = run::GatewaySettings::from_args(&args.gateway, true)?;
    // Bind first: a taken port is reported before anything else starts.
    let listener = run::bind(&args.gateway).await?;
    let Some(deps) = run::connect(&args.gateway.common, "sovd-dev", &shutdown).await? else { return Ok(()) };
    seed::seed_users(&deps.store, &deps.buckets).await?;
    let metrics = metrics::Metrics::new()?;
    let projector = run::spawn_projector(&deps, &shutdown);
    let (connector, _) = run::spawn_connector(&deps.store, &args.connector, &metrics, &shutdown).await?;
    if !args.no_archive {
        let storage = dr::storage::Storage::open(&args.storage)?;
        let keys = args.archive.keys.keys_or_random()?;
        tracing::info!(location = storage.location(), "archiving every stream");
        let (store, settings, shutdown) =
            (deps.store.clone(), args.archive.settings(args.gateway.common.nats.stream_replicas), shutdown.clone());
        tokio::spawn(async move {
            if let Err(error) = dr::archive::run(store, storage, keys, settings, shutdown).await {
                tracing::error!(error = format!("{error:#}"), "the archive stopped");
            }
        });
    }
    let served = run::serve_gateway(&deps, listener, settings, metrics, shutdown).await;
    for task in projector {
        let _ = task.await;
    }
    let _ = connector.await;
    served
}
