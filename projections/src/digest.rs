//! A digest of a projection's tables: equal digests mean equal rows, whatever order they
//! were written in. Used to prove that re-applying or rebuilding changes nothing.

use crate::ProjectionError;
use crate::apply::Projection;

pub async fn table_digest(pool: &sqlx::PgPool, table: &str) -> Result<String, ProjectionError> {
    // The table name comes from `Projection::tables`, never from user input. Surrogate ids
    // and the audit chain's hashes (audit_log) depend on the order rows were applied in, not
    // on the events, so they are left out; `sovd audit verify` checks the chain itself.
    let sql = format!(
        "SELECT COALESCE(md5(string_agg(row_text, E'\\n' ORDER BY row_text)), 'empty')
         FROM (SELECT (to_jsonb(t) - 'id' - 'prev_hash' - 'row_hash')::text AS row_text FROM {table} t) rows"
    );
    let (digest,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await?;
    Ok(digest)
}

pub async fn projection_digest(pool: &sqlx::PgPool, projection: Projection) -> Result<String, ProjectionError> {
    let mut parts = Vec::new();
    for table in projection.tables() {
        parts.push(format!("{table}:{}", table_digest(pool, table).await?));
    }
    Ok(parts.join(" "))
}
