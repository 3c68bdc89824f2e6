//! Given events, when an intent, then events or a refusal.

use super::*;
use crate::ids::{DtcCode, EcuAddress, VehicleId, Vin};

fn at() -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH
}

fn id() -> CommandId {
    CommandId::from_uuid(Uuid::from_u128(7))
}

fn requested(operation: Operation) -> Event {
    Event::CommandRequested(CommandRequested {
        command_id: id(),
        vehicle_id: VehicleId::from_uuid(Uuid::from_u128(1)),
        vin: Vin::parse("1HGBH41JXMN109186").unwrap(),
        user_id: UserId::from_uuid(Uuid::from_u128(2)),
        operation,
        requested_at: at(),
        timeout_ms: None,
    })
}

fn read_dtc() -> Event {
    requested(Operation::ReadDtc { ecu: EcuAddress::new(0x10) })
}

fn clear_dtc() -> Event {
    requested(Operation::ClearDtc { ecu: EcuAddress::new(0x10), dtc: Some(DtcCode::new(0x0420)) })
}

fn dispatched(attempt: u32) -> Event {
    Event::CommandDispatched(CommandDispatched {
        command_id: id(),
        attempt,
        connector: "c1".into(),
        dispatched_at: at(),
    })
}

fn chunk(sequence_number: u32, is_final: bool) -> Event {
    Event::ResponseChunk(ResponseChunk {
        command_id: id(),
        response_id: Uuid::from_u128(100 + u128::from(sequence_number)),
        sequence_number,
        payload_json: "{}".into(),
        is_final,
        received_at: at(),
    })
}

fn completed() -> Event {
    Event::CommandCompleted(CommandCompleted { command_id: id(), completed_at: at() })
}

fn failed(reason: &str) -> Event {
    Event::CommandFailed(CommandFailed {
        command_id: id(),
        reason: reason.into(),
        completed_at: at(),
        negative_response: None,
    })
}

fn timed_out() -> Event {
    Event::CommandTimedOut(CommandTimedOut { command_id: id(), after_ms: 30_000, completed_at: at() })
}

fn cancelled() -> Event {
    Event::CommandCancelled(CommandCancelled { command_id: id(), completed_at: at() })
}

fn given(events: &[Event]) -> CommandState {
    CommandState::replay(events)
}

fn then_status(events: &[Event]) -> Option<CommandStatus> {
    given(events).status
}

fn chunk_intent(is_final: bool) -> CommandIntent {
    CommandIntent::RecordChunk { response_id: Uuid::from_u128(100), payload_json: "{}".into(), is_final, at: at() }
}

fn every_intent() -> Vec<CommandIntent> {
    let Event::CommandRequested(request) = read_dtc() else { unreachable!() };
    vec![
        CommandIntent::Submit(request),
        CommandIntent::RequestCancel { user_id: UserId::from_uuid(Uuid::from_u128(2)), at: at() },
        CommandIntent::Dispatch { connector: "c2".into(), at: at() },
        chunk_intent(false),
        CommandIntent::Complete { at: at() },
        CommandIntent::Fail { reason: "x".into(), at: at() },
        CommandIntent::TimeOut { after_ms: 1, at: at() },
        CommandIntent::Cancel { at: at() },
        CommandIntent::FailAttempt { reason: "x".into(), may_have_executed: false, at: at() },
        CommandIntent::Reject { nrc: Nrc::REQUEST_OUT_OF_RANGE, at: at() },
    ]
}

#[test]
fn given_nothing_when_submit_then_requested_and_pending() {
    let Event::CommandRequested(request) = read_dtc() else { unreachable!() };
    let events = decide(&given(&[]), CommandIntent::Submit(request)).unwrap();
    assert_eq!(events, vec![read_dtc()]);
    assert_eq!(then_status(&events), Some(CommandStatus::Pending));
}

#[test]
fn given_nothing_when_anything_but_submit_then_not_requested() {
    for intent in every_intent().into_iter().skip(1) {
        assert_eq!(decide(&given(&[]), intent.clone()), Err(DomainError::NotRequested), "{intent:?}");
    }
}

#[test]
fn given_requested_when_submit_again_then_already_requested() {
    let Event::CommandRequested(request) = read_dtc() else { unreachable!() };
    assert_eq!(decide(&given(&[read_dtc()]), CommandIntent::Submit(request)), Err(DomainError::AlreadyRequested));
}

#[test]
fn given_pending_when_dispatch_then_first_attempt_and_in_progress() {
    let events = decide(&given(&[read_dtc()]), CommandIntent::Dispatch { connector: "c1".into(), at: at() }).unwrap();
    assert_eq!(events, vec![dispatched(1)]);
    assert_eq!(then_status(&[read_dtc(), dispatched(1)]), Some(CommandStatus::InProgress));
}

#[test]
fn given_pending_when_chunk_complete_or_time_out_then_not_dispatched() {
    let state = given(&[read_dtc()]);
    assert_eq!(decide(&state, chunk_intent(false)), Err(DomainError::NotDispatched));
    assert_eq!(decide(&state, CommandIntent::Complete { at: at() }), Err(DomainError::NotDispatched));
    assert_eq!(decide(&state, CommandIntent::TimeOut { after_ms: 5, at: at() }), Err(DomainError::NotDispatched));
}

#[test]
fn given_pending_when_fail_then_failed_with_the_reason() {
    let events =
        decide(&given(&[read_dtc()]), CommandIntent::Fail { reason: "vehicle not connected".into(), at: at() })
            .unwrap();
    assert_eq!(events, vec![failed("vehicle not connected")]);
    let state = given(&[read_dtc(), failed("vehicle not connected")]);
    assert_eq!(state.status, Some(CommandStatus::Failed));
    assert_eq!(state.error_message.as_deref(), Some("vehicle not connected"));
}

#[test]
fn given_pending_or_in_progress_when_cancel_requested_then_recorded_and_still_running() {
    for history in [vec![read_dtc()], vec![read_dtc(), dispatched(1)]] {
        let intent = CommandIntent::RequestCancel { user_id: UserId::from_uuid(Uuid::from_u128(2)), at: at() };
        let events = decide(&given(&history), intent).unwrap();
        assert!(matches!(events.as_slice(), [Event::CommandCancelRequested(_)]));
        let mut all = history.clone();
        all.extend(events);
        let state = given(&all);
        assert!(state.cancel_requested);
        assert_eq!(state.status, given(&history).status);
    }
}

#[test]
fn given_pending_or_in_progress_when_cancel_then_cancelled() {
    for history in [vec![read_dtc()], vec![read_dtc(), dispatched(1)]] {
        let events = decide(&given(&history), CommandIntent::Cancel { at: at() }).unwrap();
        assert_eq!(events, vec![cancelled()]);
    }
}

#[test]
fn given_in_progress_when_chunks_then_numbered_from_zero_in_order() {
    let state = given(&[read_dtc(), dispatched(1)]);
    let first = decide(&state, chunk_intent(false)).unwrap();
    assert!(matches!(&first[..], [Event::ResponseChunk(c)] if c.sequence_number == 0 && !c.is_final));
    let state = given(&[read_dtc(), dispatched(1), chunk(0, false), chunk(1, false)]);
    let third = decide(&state, chunk_intent(true)).unwrap();
    assert!(matches!(&third[..], [Event::ResponseChunk(c)] if c.sequence_number == 2 && c.is_final));
}

#[test]
fn given_final_chunk_when_another_chunk_then_stream_closed() {
    let state = given(&[read_dtc(), dispatched(1), chunk(0, true)]);
    assert_eq!(decide(&state, chunk_intent(false)), Err(DomainError::StreamClosed));
}

#[test]
fn given_in_progress_when_complete_then_completed() {
    let history = [read_dtc(), dispatched(1), chunk(0, true)];
    assert_eq!(decide(&given(&history), CommandIntent::Complete { at: at() }).unwrap(), vec![completed()]);
    assert_eq!(then_status(&[read_dtc(), dispatched(1), chunk(0, true), completed()]), Some(CommandStatus::Completed));
}

#[test]
fn given_in_progress_when_fail_then_failed() {
    let events =
        decide(&given(&[read_dtc(), dispatched(1)]), CommandIntent::Fail { reason: "unreachable".into(), at: at() })
            .unwrap();
    assert_eq!(events, vec![failed("unreachable")]);
}

#[test]
fn given_in_progress_when_time_out_then_timed_out_with_a_message() {
    let events =
        decide(&given(&[read_dtc(), dispatched(1)]), CommandIntent::TimeOut { after_ms: 30_000, at: at() }).unwrap();
    assert_eq!(events, vec![timed_out()]);
    let state = given(&[read_dtc(), dispatched(1), timed_out()]);
    assert_eq!(state.status, Some(CommandStatus::TimedOut));
    assert!(state.error_message.unwrap().contains("30000 ms"));
}

#[test]
fn given_idempotent_in_progress_when_redispatched_then_next_attempt_resumes_after_last_chunk() {
    let state = given(&[read_dtc(), dispatched(1), chunk(0, false)]);
    let events = decide(&state, CommandIntent::Dispatch { connector: "c2".into(), at: at() }).unwrap();
    assert!(matches!(&events[..], [Event::CommandDispatched(d)] if d.attempt == 2));
    let resumed = given(&[read_dtc(), dispatched(1), chunk(0, false), events[0].clone()]);
    assert_eq!(resumed.next_chunk, 1);
}

#[test]
fn given_non_idempotent_in_progress_when_redispatched_then_refused() {
    let state = given(&[clear_dtc(), dispatched(1)]);
    assert_eq!(
        decide(&state, CommandIntent::Dispatch { connector: "c2".into(), at: at() }),
        Err(DomainError::AlreadyDispatched { attempts: 1 })
    );
}

#[test]
fn given_any_terminal_state_when_anything_then_already_terminal() {
    let endings = [
        (completed(), CommandStatus::Completed),
        (failed("x"), CommandStatus::Failed),
        (timed_out(), CommandStatus::TimedOut),
        (cancelled(), CommandStatus::Cancelled),
    ];
    for (ending, status) in endings {
        let state = given(&[read_dtc(), dispatched(1), ending]);
        for intent in every_intent().into_iter().skip(1) {
            assert_eq!(decide(&state, intent.clone()), Err(DomainError::AlreadyTerminal(status)), "{intent:?}");
        }
    }
}

#[test]
fn status_names_round_trip_and_rank_never_goes_back() {
    for status in [
        CommandStatus::Pending,
        CommandStatus::Queued,
        CommandStatus::InProgress,
        CommandStatus::Completed,
        CommandStatus::Failed,
        CommandStatus::TimedOut,
        CommandStatus::Cancelled,
    ] {
        assert_eq!(CommandStatus::parse(status.as_str()), Some(status));
        assert_eq!(status.is_terminal(), status.rank() == 3);
    }
}

fn attempt_failed(may_have_executed: bool) -> Event {
    Event::AttemptFailed(AttemptFailed {
        command_id: id(),
        attempt: 1,
        reason: "unreachable".into(),
        may_have_executed,
        at: at(),
    })
}

#[test]
fn given_in_progress_when_an_attempt_fails_then_recorded_and_still_in_progress() {
    let intent = CommandIntent::FailAttempt { reason: "unreachable".into(), may_have_executed: false, at: at() };
    let events = decide(&given(&[read_dtc(), dispatched(1)]), intent).unwrap();
    assert_eq!(events, vec![attempt_failed(false)]);
    assert_eq!(then_status(&[read_dtc(), dispatched(1), attempt_failed(false)]), Some(CommandStatus::InProgress));
}

#[test]
fn given_pending_when_an_attempt_fails_then_not_dispatched() {
    let intent = CommandIntent::FailAttempt { reason: "x".into(), may_have_executed: false, at: at() };
    assert_eq!(decide(&given(&[read_dtc()]), intent), Err(DomainError::NotDispatched));
}

#[test]
fn a_non_idempotent_command_is_retried_only_after_a_failure_that_never_reached_the_vehicle() {
    let redispatch = || CommandIntent::Dispatch { connector: "c1".into(), at: at() };
    let safe = given(&[clear_dtc(), dispatched(1), attempt_failed(false)]);
    assert!(matches!(&decide(&safe, redispatch()).unwrap()[..], [Event::CommandDispatched(d)] if d.attempt == 2));
    let unsafe_ = given(&[clear_dtc(), dispatched(1), attempt_failed(true)]);
    assert_eq!(decide(&unsafe_, redispatch()), Err(DomainError::AlreadyDispatched { attempts: 1 }));
    // A new dispatch makes it unsafe again until its own outcome is known.
    let again = given(&[clear_dtc(), dispatched(1), attempt_failed(false), dispatched(2)]);
    assert_eq!(decide(&again, redispatch()), Err(DomainError::AlreadyDispatched { attempts: 2 }));
}

fn queued() -> Event {
    Event::CommandQueued(CommandQueued {
        command_id: id(),
        reason: "vehicle offline".into(),
        until: at() + time::Duration::seconds(300),
        at: at(),
    })
}

#[test]
fn given_pending_when_queued_then_queued_until_the_limit() {
    let intent =
        CommandIntent::Queue { reason: "vehicle offline".into(), until: at() + time::Duration::seconds(300), at: at() };
    assert_eq!(decide(&given(&[read_dtc()]), intent.clone()).unwrap(), vec![queued()]);
    let state = given(&[read_dtc(), queued()]);
    assert_eq!(state.status, Some(CommandStatus::Queued));
    assert_eq!(state.queued_until, Some(at() + time::Duration::seconds(300)));
    assert_eq!(decide(&state, intent), Err(DomainError::NotPending(CommandStatus::Queued)));
}

#[test]
fn given_queued_when_the_vehicle_returns_then_dispatched_or_when_the_time_is_up_then_failed() {
    let state = given(&[read_dtc(), queued()]);
    let events = decide(&state, CommandIntent::Dispatch { connector: "c1".into(), at: at() }).unwrap();
    assert!(matches!(&events[..], [Event::CommandDispatched(d)] if d.attempt == 1));
    let events = decide(&state, CommandIntent::Fail { reason: "stayed offline".into(), at: at() }).unwrap();
    assert_eq!(events, vec![failed("stayed offline")]);
    assert_eq!(decide(&state, CommandIntent::Cancel { at: at() }).unwrap(), vec![cancelled()]);
}

#[test]
fn given_dispatched_when_the_ecu_refuses_then_failed_with_the_code_and_its_name() {
    let history = [read_dtc(), dispatched(1)];
    let events = decide(&given(&history), CommandIntent::Reject { nrc: Nrc(0x22), at: at() }).unwrap();
    let [Event::CommandFailed(failed)] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!(failed.negative_response, Some(Nrc::CONDITIONS_NOT_CORRECT));
    assert_eq!(failed.reason, "ECU answered with negative response 0x22 (conditionsNotCorrect)");
    let state = given(&[read_dtc(), dispatched(1), events[0].clone()]);
    assert_eq!(state.status, Some(CommandStatus::Failed));
    assert_eq!(state.negative_response, Some(Nrc(0x22)));
}

#[test]
fn given_pending_when_the_ecu_refuses_then_not_dispatched() {
    let refused = decide(&given(&[read_dtc()]), CommandIntent::Reject { nrc: Nrc(0x31), at: at() });
    assert_eq!(refused, Err(DomainError::NotDispatched));
}
