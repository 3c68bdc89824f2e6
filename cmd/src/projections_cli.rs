//! `sovd projections status`: each projection's checkpoint, its stream's last sequence, and
//! the lag between them.

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;

use crate::config::{ProjectionsAction, ProjectionsArgs};
use crate::run;

pub async fn run(args: ProjectionsArgs) -> anyhow::Result<()> {
    let (_stop, shutdown) = run::shutdown_signal();
    let common = &args.common;
    let Some((_, store)) = run::connect_nats(&common.nats, "sovd-projections", &shutdown).await? else {
        return Ok(());
    };
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&common.database_url)
        .await
        .context("cannot reach the read-model database (SOVD_DATABASE_URL)")?;
    match args.action {
        ProjectionsAction::Status => {
            let rows = sovd_projections::status::progress(&pool, &store).await?;
            println!("{:<10} {:<15} {:>12} {:>12} {:>10}", "projection", "stream", "checkpoint", "last", "lag");
            for row in rows {
                println!(
                    "{:<10} {:<15} {:>12} {:>12} {:>10}",
                    row.projection.name(),
                    row.stream.as_str(),
                    row.checkpoint,
                    row.last_sequence,
                    row.lag()
                );
            }
        }
    }
    Ok(())
}
