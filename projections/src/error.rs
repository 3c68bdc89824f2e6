#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(String),
    #[error(transparent)]
    Read(#[from] sovd_nats::ReadError),
    #[error("stored event is not valid JSON where JSON is required: {0}")]
    BadJson(String),
}
