//! Every event, with arbitrary contents, survives encode -> NATS headers + payload -> decode.

use proptest::prelude::*;
use sovd_domain::events::*;
use sovd_domain::{CommandId, DataId, DtcCode, EcuAddress, Operation, Role, UserId, VehicleId, Vin};

use super::*;

fn timestamp() -> impl Strategy<Value = OffsetDateTime> {
    (0i64..4_102_444_800, 0u32..1_000_000_000).prop_map(|(secs, nanos)| {
        OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
            + time::Duration::nanoseconds(i64::from(nanos))
    })
}

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn vin() -> impl Strategy<Value = Vin> {
    "[A-HJ-NPR-Z0-9]{17}".prop_map(|s| Vin::parse(&s).unwrap())
}

fn operation() -> impl Strategy<Value = Operation> {
    use sovd_domain::catalogue::{ResetType, RoutineAction, SessionType};
    let ecu = || any::<u8>().prop_map(EcuAddress::new);
    let more = prop_oneof![
        (ecu(), any::<u16>(), proptest::collection::vec(any::<u8>(), 1..64)).prop_map(|(ecu, d, bytes)| {
            Operation::WriteDataById { ecu, data_id: DataId::new(d), data: sovd_domain::HexData::new(bytes) }
        }),
        (
            ecu(),
            any::<u16>(),
            prop_oneof![Just(RoutineAction::Start), Just(RoutineAction::Stop), Just(RoutineAction::Results)]
        )
            .prop_map(|(ecu, r, action)| Operation::RoutineControl {
                ecu,
                routine: sovd_domain::RoutineId::new(r),
                action
            }),
        (ecu(), prop_oneof![Just(ResetType::Hard), Just(ResetType::KeyOffOn), Just(ResetType::Soft)])
            .prop_map(|(ecu, reset)| Operation::EcuReset { ecu, reset }),
        (ecu(), prop_oneof![Just(SessionType::Default), Just(SessionType::Programming), Just(SessionType::Extended)])
            .prop_map(|(ecu, session)| Operation::DiagnosticSessionControl { ecu, session }),
        (ecu(), any::<u8>())
            .prop_map(|(ecu, m)| Operation::ReadDtcByStatusMask { ecu, mask: sovd_domain::StatusMask::new(m) }),
        (ecu(), any::<u16>()).prop_map(|(ecu, d)| Operation::ReadDtcSnapshot { ecu, dtc: DtcCode::new(d) }),
    ];
    prop_oneof![
        more,
        any::<u8>().prop_map(|e| Operation::ReadDtc { ecu: EcuAddress::new(e) }),
        (any::<u8>(), proptest::option::of(any::<u16>()))
            .prop_map(|(e, d)| Operation::ClearDtc { ecu: EcuAddress::new(e), dtc: d.map(DtcCode::new) }),
        (any::<u8>(), any::<u16>())
            .prop_map(|(e, d)| Operation::ReadDataById { ecu: EcuAddress::new(e), data_id: DataId::new(d) }),
    ]
}

fn command_id() -> impl Strategy<Value = CommandId> {
    uuid().prop_map(CommandId::from_uuid)
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (command_id(), uuid(), vin(), uuid(), operation(), timestamp(), proptest::option::of(any::<u32>())).prop_map(
            |(c, v, vin, u, op, t, timeout_ms)| {
                Event::CommandRequested(CommandRequested {
                    command_id: c,
                    vehicle_id: VehicleId::from_uuid(v),
                    vin,
                    user_id: UserId::from_uuid(u),
                    operation: op,
                    requested_at: t,
                    timeout_ms,
                })
            }
        ),
        (command_id(), ".{0,30}", timestamp(), timestamp()).prop_map(|(command_id, reason, until, at)| {
            Event::CommandQueued(CommandQueued { command_id, reason, until, at })
        }),
        (command_id(), any::<u32>(), ".{0,30}", any::<bool>(), timestamp()).prop_map(
            |(command_id, attempt, reason, may_have_executed, at)| {
                Event::AttemptFailed(AttemptFailed { command_id, attempt, reason, may_have_executed, at })
            }
        ),
        (command_id(), uuid(), timestamp()).prop_map(|(c, u, t)| {
            Event::CommandCancelRequested(CommandCancelRequested {
                command_id: c,
                user_id: UserId::from_uuid(u),
                requested_at: t,
            })
        }),
        (command_id(), any::<u32>(), ".{0,20}", timestamp()).prop_map(|(c, attempt, connector, t)| {
            Event::CommandDispatched(CommandDispatched { command_id: c, attempt, connector, dispatched_at: t })
        }),
        (command_id(), uuid(), any::<u32>(), ".{0,64}", any::<bool>(), timestamp()).prop_map(
            |(c, r, sequence_number, payload_json, is_final, t)| {
                Event::ResponseChunk(ResponseChunk {
                    command_id: c,
                    response_id: r,
                    sequence_number,
                    payload_json,
                    is_final,
                    received_at: t,
                })
            }
        ),
        (command_id(), timestamp())
            .prop_map(|(c, t)| Event::CommandCompleted(CommandCompleted { command_id: c, completed_at: t })),
        (command_id(), ".{0,40}", timestamp(), proptest::option::of(any::<u8>())).prop_map(|(c, reason, t, nrc)| {
            Event::CommandFailed(CommandFailed {
                command_id: c,
                reason,
                completed_at: t,
                negative_response: nrc.map(sovd_domain::uds::Nrc),
            })
        }),
        (command_id(), any::<u64>(), timestamp()).prop_map(|(c, after_ms, t)| {
            Event::CommandTimedOut(CommandTimedOut { command_id: c, after_ms, completed_at: t })
        }),
        (command_id(), timestamp())
            .prop_map(|(c, t)| Event::CommandCancelled(CommandCancelled { command_id: c, completed_at: t })),
        (uuid(), vin(), ".{0,10}", ".{0,10}", any::<u16>(), ".{0,30}", timestamp()).prop_map(
            |(v, vin, make, model, year, metadata_json, t)| {
                Event::VehicleRegistered(VehicleRegistered {
                    vehicle_id: VehicleId::from_uuid(v),
                    vin,
                    make,
                    model,
                    year,
                    metadata_json,
                    registered_at: t,
                })
            }
        ),
        (vin(), timestamp()).prop_map(|(vin, at)| Event::VehicleConnected(VehicleConnected { vin, at })),
        (vin(), ".{0,20}", timestamp()).prop_map(|(vin, reason, at)| Event::VehicleDisconnected(VehicleDisconnected {
            vin,
            reason,
            at
        })),
        (vin(), "[a-z_]{1,9}", ".{0,12}", timestamp()).prop_map(|(vin, state, connector, at)| {
            Event::VehicleCircuitChanged(VehicleCircuitChanged { vin, state, connector, at })
        }),
        (uuid(), "[a-z]{1,12}", 0..3usize, proptest::option::of("[a-z]{1,8}@x\\.io"), ".{0,40}", timestamp()).prop_map(
            |(u, username, role, email, password_hash, t)| {
                Event::UserCreated(UserCreated {
                    user_id: UserId::from_uuid(u),
                    username,
                    role: [Role::Viewer, Role::Engineer, Role::Admin][role],
                    email,
                    password_hash,
                    created_at: t,
                })
            }
        ),
    ]
}

fn user_id() -> impl Strategy<Value = UserId> {
    uuid().prop_map(UserId::from_uuid)
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Viewer), Just(Role::Engineer), Just(Role::Admin)]
}

fn client() -> impl Strategy<Value = ClientInfo> {
    ("[0-9.:a-f]{0,39}", ".{0,60}").prop_map(|(ip, user_agent)| ClientInfo { ip, user_agent })
}

/// The account and sign-in events.
fn iam_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (user_id(), role(), user_id(), timestamp()).prop_map(|(user_id, role, changed_by, at)| Event::RoleChanged(
            RoleChanged { user_id, role, changed_by, at }
        )),
        (user_id(), ".{0,40}", user_id(), timestamp()).prop_map(|(user_id, password_hash, changed_by, at)| {
            Event::PasswordChanged(PasswordChanged { user_id, password_hash, changed_by, at })
        }),
        (user_id(), user_id(), timestamp())
            .prop_map(|(user_id, changed_by, at)| Event::UserDeactivated(UserDeactivated { user_id, changed_by, at })),
        (user_id(), user_id(), timestamp())
            .prop_map(|(user_id, changed_by, at)| Event::UserReactivated(UserReactivated { user_id, changed_by, at })),
        (user_id(), "[a-z]{1,12}", client(), timestamp()).prop_map(|(user_id, username, client, at)| {
            Event::LoginSucceeded(LoginSucceeded { user_id, username, client, at })
        }),
        (".{0,20}", proptest::option::of(user_id()), ".{0,20}", client(), timestamp()).prop_map(
            |(username, user_id, reason, client, at)| {
                Event::LoginFailed(LoginFailed { username, user_id, reason, client, at })
            }
        ),
        (
            ".{0,20}",
            proptest::option::of(user_id()),
            timestamp(),
            timestamp(),
            proptest::option::of("[0-9.:a-f]{3,39}")
        )
            .prop_map(|(username, user_id, until, at, client_ip)| {
                Event::AccountLocked(AccountLocked { username, user_id, until, at, client_ip })
            }),
        (".{0,20}", proptest::option::of(user_id()), user_id(), "unlock|password reset", timestamp()).prop_map(
            |(username, user_id, by, reason, at)| {
                Event::AccountUnlocked(AccountUnlocked { username, user_id, by, reason, at })
            }
        ),
        (user_id(), timestamp()).prop_map(|(user_id, at)| Event::LoggedOut(LoggedOut { user_id, at })),
        (user_id(), user_id(), timestamp()).prop_map(|(user_id, changed_by, at)| {
            let permission = sovd_domain::users::Permission::VehicleChanges;
            Event::PermissionGranted(PermissionGranted { user_id, permission, changed_by, at })
        }),
        (user_id(), user_id(), timestamp()).prop_map(|(user_id, changed_by, at)| {
            let permission = sovd_domain::users::Permission::VehicleChanges;
            Event::PermissionRevoked(PermissionRevoked { user_id, permission, changed_by, at })
        }),
        (user_id(), uuid(), client(), timestamp()).prop_map(|(user_id, family, client, at)| {
            Event::RefreshTokenReused(RefreshTokenReused { user_id, family, client, at })
        }),
    ]
}

/// The operators' events on SOVD_OPS.
fn ops_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (".{0,30}", ".{0,60}", any::<u32>(), any::<u64>(), any::<u64>(), timestamp(), timestamp()).prop_map(
            |(backup_id, location, streams, messages, bytes, started_at, finished_at)| {
                Event::BackupCompleted(BackupCompleted {
                    backup_id,
                    location,
                    streams,
                    messages,
                    bytes,
                    started_at,
                    finished_at,
                })
            }
        ),
        (".{0,60}", ".{0,80}", timestamp()).prop_map(|(location, error, at)| Event::BackupFailed(BackupFailed {
            location,
            error,
            at
        })),
        ("[A-Z_]{1,20}", ".{0,60}", ".{0,80}", timestamp()).prop_map(|(stream, location, error, at)| {
            Event::ArchiveFailed(ArchiveFailed { stream, location, error, at })
        }),
        (
            (".{0,30}", ".{0,60}", proptest::option::of(".{0,30}"), any::<u32>()),
            (any::<u64>(), any::<u64>(), proptest::collection::vec(".{0,40}", 0..5), timestamp(), timestamp())
        )
            .prop_map(
                |((backup_id, location, until, streams), (messages, segments, digests, started_at, finished_at))| {
                    Event::RestoreCompleted(RestoreCompleted {
                        backup_id,
                        location,
                        until,
                        streams,
                        messages,
                        segments,
                        digests,
                        started_at,
                        finished_at,
                    })
                }
            ),
    ]
}

fn meta() -> impl Strategy<Value = EventMeta> {
    (uuid(), "[ -~]{0,40}", proptest::option::of("[ -~]{1,40}"), "[a-z:0-9-]{1,30}", timestamp(), any::<bool>())
        .prop_map(|(event_id, correlation_id, causation_id, actor, occurred_at, traced)| EventMeta {
            event_id,
            correlation_id: correlation_id.trim().to_owned(),
            causation_id: causation_id.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()),
            actor,
            occurred_at,
            traceparent: traced.then(|| "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
        })
}

proptest! {
    #[test]
    fn every_event_round_trips_through_the_envelope(event in prop_oneof![event(), iam_event(), ops_event()], meta in meta()) {
        let (headers, payload) = encode(&event, &meta).unwrap();
        let (meta_back, event_back) = decode(Some(&headers), &payload).unwrap();
        prop_assert_eq!(event_back, event);
        prop_assert_eq!(meta_back, meta);
    }
}

#[test]
fn a_message_without_headers_is_rejected_with_a_reason() {
    let err = decode(None, b"anything").unwrap_err();
    assert!(err.to_string().contains("Sovd-Event-Type"), "{err}");
}
