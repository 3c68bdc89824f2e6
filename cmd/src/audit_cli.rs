//! `sovd audit verify`: walks the audit trail's hash chain and names the first row that was
//! changed, deleted or moved. Exits non-zero when the chain is broken.

use anyhow::{Context, bail};
use sovd_projections::audit::{self, Verdict};
use sqlx::postgres::PgPoolOptions;

use crate::config::{AuditAction, AuditArgs};

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&args.database_url)
        .await
        .context("cannot reach the read-model database (SOVD_DATABASE_URL)")?;
    match args.action {
        AuditAction::Verify => match audit::verify(&pool).await? {
            Verdict::Intact { rows, head } => {
                println!("audit trail intact: {rows} rows chained; head hash {head}");
                Ok(())
            }
            Verdict::Broken(at) => bail!("audit trail broken: {at}"),
        },
    }
}
