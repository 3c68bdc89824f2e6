//! Prometheus metrics of this process, served at `/metrics`.

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub commands_executed_total: IntCounterVec,
    pub command_execution_duration_seconds: Histogram,
    pub websocket_connections_active: IntGauge,
    pub vehicle_connections_active: IntGauge,
    pub event_append_seconds: Histogram,
    /// 0 closed, 1 open, 2 half-open, per vehicle (set by this process's connector).
    pub vehicle_circuit_breaker_state: IntGaugeVec,
    /// The last stream sequence each projection applied; its rate is the apply rate.
    pub projection_checkpoint: IntGaugeVec,
    /// Sequences each projection is behind its stream.
    pub projection_lag: IntGaugeVec,
    /// Events each projection set aside because it could not apply them.
    pub projection_quarantined_events: IntGaugeVec,
    /// Unix time the last backup finished (absent until there is one).
    pub backup_last_success_timestamp_seconds: IntGauge,
    /// Age of the oldest event not yet shipped to the archive, per stream (0 = all shipped).
    pub archive_lag_seconds: GaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let commands_executed_total = IntCounterVec::new(
            Opts::new("commands_executed_total", "Commands this process ended, by terminal status"),
            &["status"],
        )?;
        let command_execution_duration_seconds = Histogram::with_opts(
            HistogramOpts::new("command_execution_duration_seconds", "From dispatch to terminal event")
                .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
        )?;
        let websocket_connections_active =
            IntGauge::new("websocket_connections_active", "Open WebSocket response streams")?;
        let vehicle_connections_active =
            IntGauge::new("vehicle_connections_active", "Vehicles currently connected (from the fleet read model)")?;
        let event_append_seconds = Histogram::with_opts(
            HistogramOpts::new("event_append_seconds", "Time for JetStream to store and acknowledge one event")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0]),
        )?;
        registry.register(Box::new(commands_executed_total.clone()))?;
        registry.register(Box::new(command_execution_duration_seconds.clone()))?;
        registry.register(Box::new(websocket_connections_active.clone()))?;
        registry.register(Box::new(vehicle_connections_active.clone()))?;
        let vehicle_circuit_breaker_state = IntGaugeVec::new(
            Opts::new("vehicle_circuit_breaker_state", "Circuit breaker per vehicle: 0 closed, 1 open, 2 half-open"),
            &["vin"],
        )?;
        let projection_checkpoint = IntGaugeVec::new(
            Opts::new(
                "projection_checkpoint",
                "Last stream sequence applied, per projection and stream (rate = events/s)",
            ),
            &["projection", "stream"],
        )?;
        let projection_lag = IntGaugeVec::new(
            Opts::new("projection_lag", "Stream sequences not yet applied, per projection and stream"),
            &["projection", "stream"],
        )?;
        registry.register(Box::new(event_append_seconds.clone()))?;
        registry.register(Box::new(vehicle_circuit_breaker_state.clone()))?;
        registry.register(Box::new(projection_checkpoint.clone()))?;
        registry.register(Box::new(projection_lag.clone()))?;
        let projection_quarantined_events = IntGaugeVec::new(
            Opts::new(
                "projection_quarantined_events",
                "Events a projection set aside because it cannot apply them (sovd projections status)",
            ),
            &["projection"],
        )?;
        registry.register(Box::new(projection_quarantined_events.clone()))?;
        let backup_last_success_timestamp_seconds = IntGauge::new(
            "backup_last_success_timestamp_seconds",
            "Unix time the last successful backup finished (BackupCompleted on SOVD_OPS)",
        )?;
        let archive_lag_seconds = GaugeVec::new(
            Opts::new("archive_lag_seconds", "Age of the oldest event not yet in the archive (the RPO now)"),
            &["stream"],
        )?;
        registry.register(Box::new(backup_last_success_timestamp_seconds.clone()))?;
        registry.register(Box::new(archive_lag_seconds.clone()))?;
        Ok(Self {
            registry,
            commands_executed_total,
            command_execution_duration_seconds,
            websocket_connections_active,
            vehicle_connections_active,
            event_append_seconds,
            vehicle_circuit_breaker_state,
            projection_checkpoint,
            projection_lag,
            projection_quarantined_events,
            backup_last_success_timestamp_seconds,
            archive_lag_seconds,
        })
    }

    pub fn render(&self) -> String {
        TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}
