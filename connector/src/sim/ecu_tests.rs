//! The simulated ECU answers as UDS does, and remembers.

use sovd_domain::EcuAddress;

use super::*;

const ECU: EcuAddress = EcuAddress::new(0x10);

fn engine() -> Ecu {
    Ecu::engine("1HGBH41JXMN109186")
}

fn extended(ecu: &mut Ecu) {
    ecu.handle(&Operation::DiagnosticSessionControl { ecu: ECU, session: SessionType::Extended }).unwrap();
}

#[test]
fn read_dtc_answers_like_the_old_mock_in_three_chunks() {
    let chunks = engine().handle(&Operation::ReadDtc { ecu: ECU }).unwrap();
    assert_eq!(chunks.len(), 3);
    assert_eq!((chunks[0]["dtcCode"].as_str(), chunks[0]["status"].as_str()), (Some("P0420"), Some("confirmed")));
    assert_eq!((chunks[1]["dtcCode"].as_str(), chunks[1]["status"].as_str()), (Some("P0171"), Some("pending")));
    assert_eq!(chunks[2], json!({"status": "complete", "totalDtcs": 2}));
}

#[test]
fn the_status_mask_selects_by_iso_14229_bits() {
    let confirmed = engine().handle(&Operation::ReadDtcByStatusMask { ecu: ECU, mask: StatusMask::new(0x08) }).unwrap();
    assert_eq!(confirmed.len(), 2);
    assert_eq!(confirmed[0]["dtcCode"], "P0420");
    assert_eq!(confirmed[0]["statusByte"], "0xA8");
    let none = engine().handle(&Operation::ReadDtcByStatusMask { ecu: ECU, mask: StatusMask::new(0x02) }).unwrap();
    assert_eq!(none, vec![json!({"status": "complete", "totalDtcs": 0, "statusMask": "0x02"})]);
}

#[test]
fn clear_dtc_really_clears_and_an_unknown_code_is_out_of_range() {
    let mut ecu = engine();
    let cleared = ecu.handle(&Operation::ClearDtc { ecu: ECU, dtc: Some(DtcCode::new(0x0420)) }).unwrap();
    assert_eq!(cleared[0]["clearedCount"], 1);
    assert_eq!(ecu.handle(&Operation::ReadDtc { ecu: ECU }).unwrap().last().unwrap()["totalDtcs"], 1);
    assert_eq!(ecu.handle(&Operation::ClearDtc { ecu: ECU, dtc: Some(DtcCode::new(0x0420)) }), Err(Nrc(0x31)));
    let all = ecu.handle(&Operation::ClearDtc { ecu: ECU, dtc: None }).unwrap();
    assert_eq!(all[0]["clearedCount"], 1);
}

#[test]
fn a_snapshot_gives_the_freeze_frame_and_extended_data() {
    let chunks = engine().handle(&Operation::ReadDtcSnapshot { ecu: ECU, dtc: DtcCode::new(0x0420) }).unwrap();
    assert_eq!(chunks[0]["data"]["engineRpm"], 2150);
    assert_eq!(chunks[1]["record"], "extended");
    let missing = engine().handle(&Operation::ReadDtcSnapshot { ecu: ECU, dtc: DtcCode::new(0x0999) });
    assert_eq!(missing, Err(Nrc::REQUEST_OUT_OF_RANGE));
}

#[test]
fn writing_needs_the_extended_session_a_writable_did_and_changes_what_is_read() {
    let mut ecu = engine();
    let write = |data: &str| Operation::WriteDataById {
        ecu: ECU,
        data_id: DataId::new(0x0110),
        data: HexData::parse(data).unwrap(),
    };
    assert_eq!(ecu.handle(&write("0x0320")), Err(Nrc::SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION));
    extended(&mut ecu);
    let read_only = Operation::WriteDataById { ecu: ECU, data_id: DataId::new(0x010C), data: HexData::new(vec![1]) };
    assert_eq!(ecu.handle(&read_only), Err(Nrc::SECURITY_ACCESS_DENIED));
    let unknown = Operation::WriteDataById { ecu: ECU, data_id: DataId::new(0xBEEF), data: HexData::new(vec![1]) };
    assert_eq!(ecu.handle(&unknown), Err(Nrc::REQUEST_OUT_OF_RANGE));
    ecu.handle(&write("0x0320")).unwrap();
    let read = ecu.handle(&Operation::ReadDataById { ecu: ECU, data_id: DataId::new(0x0110) }).unwrap();
    assert_eq!(read[0]["value"], "0x0320");
}

#[test]
fn a_routine_reports_progress_and_its_result_and_refuses_out_of_sequence_requests() {
    let mut ecu = engine();
    let run = |action| Operation::RoutineControl { ecu: ECU, routine: RoutineId::new(0xFF00), action };
    assert_eq!(ecu.handle(&run(RoutineAction::Start)), Err(Nrc::SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION));
    assert_eq!(ecu.handle(&run(RoutineAction::Results)), Err(Nrc::REQUEST_SEQUENCE_ERROR));
    extended(&mut ecu);
    let chunks = ecu.handle(&run(RoutineAction::Start)).unwrap();
    let progress: Vec<_> = chunks.iter().filter_map(|c| c["progress"].as_u64()).collect();
    assert_eq!(progress, vec![25, 50, 75, 100, 100]);
    assert_eq!(chunks.last().unwrap()["result"], "passed");
    assert_eq!(ecu.handle(&run(RoutineAction::Results)).unwrap()[0]["status"], "completed");
    assert_eq!(ecu.handle(&run(RoutineAction::Stop)), Err(Nrc::REQUEST_SEQUENCE_ERROR));
}

#[test]
fn a_reset_returns_the_ecu_to_the_default_session() {
    let mut ecu = engine();
    extended(&mut ecu);
    ecu.handle(&Operation::EcuReset { ecu: ECU, reset: ResetType::Hard }).unwrap();
    let write = Operation::WriteDataById { ecu: ECU, data_id: DataId::new(0x0110), data: HexData::new(vec![1]) };
    assert_eq!(ecu.handle(&write), Err(Nrc::SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION));
}

#[test]
fn nrc_names_follow_iso_14229() {
    assert_eq!(Nrc(0x31).name(), "requestOutOfRange");
    assert_eq!(Nrc(0x7F).name(), "serviceNotSupportedInActiveSession");
}
