//! `sovd projections status`: each projection's checkpoint, its stream's last sequence, the
//! lag between them, and the events set aside. `sovd projections retry [NAME]`: those events
//! applied again after a fix. `sovd projections rebuild [NAME]`: a projection built again from
//! the log beside the live one, then swapped in; recorded as ProjectionRebuilt on SOVD_OPS.

use anyhow::Context;
use sovd_domain::Event;
use sovd_domain::events::ProjectionRebuilt;
use sovd_nats::{EventStore, OpsKind};
use sovd_projections::apply::Projection;
use sqlx::postgres::PgPoolOptions;
use time::OffsetDateTime;

use crate::config::{ProjectionsAction, ProjectionsArgs};
use crate::progress::{Progress, operator};
use crate::run;

pub async fn run(args: ProjectionsArgs) -> anyhow::Result<()> {
    let (_stop, shutdown) = run::shutdown_signal();
    let common = &args.common;
    let Some((_, store)) = run::connect_nats(&common.nats, "sovd-projections", &shutdown).await? else {
        return Ok(());
    };
    let pool = PgPoolOptions::new()
        .max_connections(2)
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
            let quarantined = sovd_projections::quarantine::list(&pool).await?;
            if quarantined.is_empty() {
                println!("\nno events set aside");
            } else {
                println!("\n{} event(s) set aside (fix the cause, then: sovd projections retry):", quarantined.len());
                for q in quarantined {
                    println!(
                        "{:<10} {:<15} {:>12} {:<18} x{} {}: {}",
                        q.projection, q.stream, q.stream_sequence, q.event_type, q.attempts, q.last_failed_at, q.error
                    );
                }
            }
        }
        ProjectionsAction::Retry { name } => {
            let projection = match name.as_deref() {
                Some(name) => Some(Projection::from_name(name).context("unknown projection")?),
                None => None,
            };
            let retried = sovd_projections::quarantine::retry(&pool, &store, projection).await?;
            println!("{} applied, {} still failing", retried.applied, retried.still_failing);
            if retried.still_failing > 0 {
                anyhow::bail!("{} event(s) still cannot be applied (sovd projections status)", retried.still_failing);
            }
        }
        ProjectionsAction::Rebuild { name } => {
            let projections = match name.as_deref() {
                Some(name) => vec![Projection::from_name(name).context("unknown projection")?],
                None => Projection::ALL.to_vec(),
            };
            for projection in projections {
                rebuild(&pool, &store, projection).await?;
            }
        }
    }
    Ok(())
}

async fn rebuild(pool: &sqlx::PgPool, store: &EventStore, projection: Projection) -> anyhow::Result<()> {
    let name = projection.name();
    let started_at = OffsetDateTime::now_utc();
    let progress = Progress::new(name, 0, "sequences");
    let report = |p: sovd_projections::rebuild::RebuildProgress| progress.set(p.done, p.total);
    let rebuilt = sovd_projections::rebuild::rebuild(pool, store, projection, &report)
        .await
        .with_context(|| format!("rebuilding {name} failed; the live tables are unchanged"))?;
    let summary = format!(
        "{name}: rebuilt from {} events into {} rows in {:.1} s and switched over; digest {}",
        rebuilt.events, rebuilt.rows, rebuilt.seconds, rebuilt.digest
    );
    progress.finish(&summary);
    println!("{summary}");
    let event = Event::ProjectionRebuilt(ProjectionRebuilt {
        projection: name.to_owned(),
        events: rebuilt.events,
        rows: rebuilt.rows,
        digest: rebuilt.digest,
        started_at,
        finished_at: OffsetDateTime::now_utc(),
    });
    store
        .record_operation(OpsKind::Projections, &event, &operator())
        .await
        .context("the rebuild is done, but recording it on SOVD_OPS failed")?;
    Ok(())
}
