//! Vehicles over NATS: the simulator's service and the connector's remote transport against a
//! real nats-server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use sovd_connector::remote::{self, Executions, RemoteFleet};
use sovd_connector::{TransportError, VehicleTransport};
use sovd_domain::uds::Nrc;
use sovd_domain::{DataId, EcuAddress, Event, Operation, OperationName};
use sovd_nats::testing::NatsServer;
use sovd_nats::{StreamName, Subject};
use tokio::sync::watch;

const ECU: EcuAddress = EcuAddress::new(0x10);

async fn collect(
    transport: &RemoteFleet,
    operation: Operation,
) -> Vec<Result<sovd_connector::transport::Chunk, TransportError>> {
    transport.execute(&vin(), &operation).collect().await
}

#[tokio::test]
async fn a_connector_reaches_the_simulator_process_over_nats_and_sees_its_vehicles_come_and_go() {
    let server = NatsServer::start().await;
    let store = started(&server).await;
    let (_stop, shutdown) = watch::channel(false);
    let fleet = fleet(Duration::ZERO);
    for (vin, connected) in fleet.vins() {
        sovd_connector::fleet::announce(&store, &vin, connected, "test").await.unwrap();
    }
    tokio::spawn(sovd_connector::fleet::record_changes(store.clone(), fleet.clone(), shutdown.clone()));
    let client = server.client().await;

    // Before the simulator listens, nobody answers: unreachable, and nothing ran.
    let transport = RemoteFleet::start(&store, shutdown.clone()).await.unwrap();
    let nobody = collect(&transport, Operation::ReadDtc { ecu: ECU }).await;
    assert_eq!(nobody, vec![Err(TransportError::Unreachable(vin()))]);

    tokio::spawn(remote::serve(client.clone(), fleet.clone(), shutdown.clone()));
    // The service is up once it answers the executions query.
    let mut executions: Vec<Executions> = Vec::new();
    for _ in 0..100 {
        if let Ok(answer) = client.request("sovd.sim.executions", "".into()).await {
            executions = serde_json::from_slice(&answer.payload).unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(executions.is_empty(), "nothing ran yet: {executions:?}");
    assert!(transport.is_connected(&vin()));

    let chunks = collect(&transport, Operation::ReadDtc { ecu: ECU }).await;
    assert_eq!(chunks.len(), 3);
    assert!(chunks.iter().all(Result::is_ok));
    assert!(chunks[2].as_ref().unwrap().is_final);
    assert!(chunks[0].as_ref().unwrap().payload.to_string().contains("P0420"));

    let refused = collect(&transport, Operation::ReadDataById { ecu: ECU, data_id: DataId::new(0xBEEF) }).await;
    assert_eq!(refused, vec![Err(TransportError::NegativeResponse(Nrc::REQUEST_OUT_OF_RANGE))]);

    let answer = client.request("sovd.sim.executions", "".into()).await.unwrap();
    let executions: Vec<Executions> = serde_json::from_slice(&answer.payload).unwrap();
    let read = executions.iter().find(|e| e.vin == vin() && e.operation == OperationName::ReadDtc).unwrap();
    assert_eq!(read.count, 1, "the unanswered request never ran");

    // A drill switches the vehicle off: the log records it, and the connector sees it.
    client.request(format!("sovd.sim.{}.disconnect", vin()), "".into()).await.unwrap();
    let subject = Subject::vehicle(&vin());
    let shared = Arc::new(transport);
    for _ in 0..200 {
        if !shared.is_connected(&vin()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!shared.is_connected(&vin()), "the connector follows SOVD_FLEET");
    let last = store.last_on_subject(StreamName::Fleet, subject.as_str()).await.unwrap().unwrap();
    assert!(matches!(last.event, Event::VehicleDisconnected(_)), "{:?}", last.event);
    let offline = collect(&shared, Operation::ReadDtc { ecu: ECU }).await;
    assert_eq!(offline, vec![Err(TransportError::NotConnected(vin()))]);
}
