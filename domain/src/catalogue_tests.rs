//! The catalogue's rules, one test each.

use serde_json::json;

use super::*;

fn params(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[test]
fn every_name_has_a_spec() {
    assert_eq!(CATALOGUE.len(), OperationName::ALL.len());
    for &name in OperationName::ALL {
        assert_eq!(name.spec().name, name);
        assert_eq!(OperationName::parse(name.as_str()), Ok(name));
    }
}

#[test]
fn parses_each_operation_from_the_contract() {
    assert_eq!(
        Operation::parse("ReadDTC", &params(json!({"ecuAddress": "0x10"}))),
        Ok(Operation::ReadDtc { ecu: EcuAddress::new(0x10) })
    );
    assert_eq!(
        Operation::parse("ClearDTC", &params(json!({"ecuAddress": "0x10", "dtcCode": "P0420"}))),
        Ok(Operation::ClearDtc { ecu: EcuAddress::new(0x10), dtc: Some(DtcCode::new(0x0420)) })
    );
    assert_eq!(
        Operation::parse("ClearDTC", &params(json!({"ecuAddress": "0x10"}))),
        Ok(Operation::ClearDtc { ecu: EcuAddress::new(0x10), dtc: None })
    );
    assert_eq!(
        Operation::parse("ReadDataByID", &params(json!({"ecuAddress": "0x10", "dataId": "0x010C"}))),
        Ok(Operation::ReadDataById { ecu: EcuAddress::new(0x10), data_id: DataId::new(0x010C) })
    );
}

#[test]
fn rejects_unknown_operation() {
    let err = Operation::parse("FlashECU", &Map::new()).unwrap_err();
    assert_eq!(err, ParamError::UnknownOperation("FlashECU".into()));
    assert_eq!(err.field(), "command_name");
}

#[test]
fn rejects_unknown_parameter_and_names_it() {
    let err = Operation::parse("ReadDTC", &params(json!({"ecuAddress": "0x10", "force": "yes"}))).unwrap_err();
    assert_eq!(err.field(), "command_params.force");
    assert!(err.to_string().contains("unknown parameter"));
}

#[test]
fn rejects_missing_required_parameter_and_names_it() {
    let err = Operation::parse("ReadDataByID", &params(json!({"ecuAddress": "0x10"}))).unwrap_err();
    assert_eq!(err, ParamError::MissingParameter { operation: OperationName::ReadDataById, field: "dataId" });
    let err = Operation::parse("ReadDTC", &Map::new()).unwrap_err();
    assert_eq!(err.field(), "command_params.ecuAddress");
}

#[test]
fn rejects_malformed_values_and_says_why() {
    let err = Operation::parse("ReadDTC", &params(json!({"ecuAddress": "16"}))).unwrap_err();
    assert_eq!(err.field(), "command_params.ecuAddress");
    assert!(err.to_string().contains("2 hex digits"), "{err}");
    let err = Operation::parse("ClearDTC", &params(json!({"ecuAddress": "0x10", "dtcCode": "X1"}))).unwrap_err();
    assert_eq!(err.field(), "command_params.dtcCode");
    let err = Operation::parse("ReadDTC", &params(json!({"ecuAddress": 16}))).unwrap_err();
    assert!(matches!(err, ParamError::NotAString { field: "ecuAddress", .. }));
}

#[test]
fn params_json_round_trips_through_parse() {
    let op = Operation::ClearDtc { ecu: EcuAddress::new(0x18), dtc: Some(DtcCode::new(0x0171)) };
    let Value::Object(map) = op.params_json() else { panic!("object expected") };
    assert_eq!(Operation::parse("ClearDTC", &map), Ok(op));
}

#[test]
fn operations_that_change_the_vehicle_are_not_idempotent() {
    let ecu = EcuAddress::new(1);
    assert!(!Operation::ClearDtc { ecu, dtc: None }.is_idempotent());
    assert!(!Operation::WriteDataById { ecu, data_id: DataId::new(1), data: HexData::new(vec![1]) }.is_idempotent());
    assert!(!Operation::EcuReset { ecu, reset: ResetType::Hard }.is_idempotent());
    let routine = RoutineId::new(0xFF00);
    assert!(!Operation::RoutineControl { ecu, routine, action: RoutineAction::Start }.is_idempotent());
    assert!(Operation::RoutineControl { ecu, routine, action: RoutineAction::Results }.is_idempotent());
    assert!(Operation::ReadDtc { ecu }.is_idempotent());
    assert!(Operation::DiagnosticSessionControl { ecu, session: SessionType::Extended }.is_idempotent());
}

#[test]
fn parses_the_new_operations_and_round_trips_their_params() {
    let cases = [
        ("WriteDataByID", json!({"ecuAddress": "0x10", "dataId": "0xF190", "data": "0x0A1B"})),
        ("RoutineControl", json!({"ecuAddress": "0x10", "routineId": "0xFF00", "action": "start"})),
        ("ECUReset", json!({"ecuAddress": "0x18", "resetType": "keyOffOn"})),
        ("DiagnosticSessionControl", json!({"ecuAddress": "0x10", "session": "extended"})),
        ("ReadDTCByStatusMask", json!({"ecuAddress": "0x10", "statusMask": "0x08"})),
        ("ReadDTCSnapshot", json!({"ecuAddress": "0x10", "dtcCode": "P0420"})),
    ];
    for (name, value) in cases {
        let op = Operation::parse(name, &params(value.clone())).unwrap();
        assert_eq!(op.name().as_str(), name);
        assert_eq!(op.params_json(), value, "{name}");
    }
}

#[test]
fn a_word_outside_the_choice_is_refused_naming_the_choices() {
    let err = Operation::parse("ECUReset", &params(json!({"ecuAddress": "0x10", "resetType": "reboot"}))).unwrap_err();
    assert_eq!(err.field(), "command_params.resetType");
    assert!(err.to_string().contains("hard, keyOffOn, soft"), "{err}");
}
