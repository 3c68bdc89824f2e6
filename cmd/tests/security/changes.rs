//! Decision 16: operations that change a vehicle (ECUReset, WriteDataByID, starting a routine,
//! the programming session) need the vehicle-changes permission, which an admin grants, and an
//! explicit confirmation in the request (docs/adr/010-roles-and-vehicle-changes.md).

use super::*;

fn reset(confirm: Option<bool>) -> Value {
    let mut body = json!({"command_name": "ECUReset", "vehicle_id": VIN,
        "command_params": {"ecuAddress": "0x10", "resetType": "hard"}});
    if let Some(confirm) = confirm {
        body["confirm"] = json!(confirm);
    }
    body
}

fn programming_session() -> Value {
    json!({"command_name": "DiagnosticSessionControl", "vehicle_id": VIN,
        "command_params": {"ecuAddress": "0x10", "session": "programming"}, "confirm": true})
}

#[tokio::test]
async fn an_engineer_changes_a_vehicle_only_once_granted_and_only_when_confirming() {
    let stack = Stack::start().await;
    let admin = stack.login(ADMIN).await;
    let engineer = stack.login(ENGINEER).await;
    let before = stack.commands_in_log().await;
    assert_envelope(stack.submit(&engineer, reset(Some(true))).await, 403, "AUTH_005", "vehicle-changes").await;
    assert_envelope(stack.submit(&engineer, programming_session()).await, 403, "AUTH_005", "vehicle-changes").await;
    // What a diagnosis needs stays open to every engineer.
    let extended = json!({"command_name": "DiagnosticSessionControl", "vehicle_id": VIN,
        "command_params": {"ecuAddress": "0x10", "session": "extended"}});
    assert_eq!(stack.submit(&engineer, extended).await.status(), 202);
    assert_eq!(stack.commands_in_log().await, before + 1, "the refused ones wrote nothing");

    let path = format!("/api/v1/users/{}", engineer_id());
    let granted = stack.send(reqwest::Method::PATCH, &admin, &path, json!({"permissions": ["vehicle-changes"]})).await;
    assert_eq!(granted.status(), 200);
    let granted: Value = granted.json().await.unwrap();
    assert_eq!(granted["permissions"], json!(["vehicle-changes"]));
    // Granted: the same token may now, but only with the confirmation.
    stack.wait_until(|| async { stack.submit(&engineer, reset(None)).await.status() == 422 }).await;
    assert_envelope(stack.submit(&engineer, reset(Some(false))).await, 422, "VAL_103", "confirm").await;
    assert_eq!(stack.submit(&engineer, reset(Some(true))).await.status(), 202);

    let revoked = stack.send(reqwest::Method::PATCH, &admin, &path, json!({"permissions": []})).await;
    assert_eq!(revoked.status(), 200);
    stack.wait_until(|| async { stack.submit(&engineer, reset(Some(true))).await.status() == 403 }).await;
    // On the record.
    stack
        .wait_until(|| async {
            let audit: Value = stack.get(&admin, "/api/v1/audit?limit=100").await.json().await.unwrap();
            let text = audit.to_string();
            text.contains("permission_granted") && text.contains("permission_revoked")
        })
        .await;
}

#[tokio::test]
async fn the_catalogue_names_each_operations_risk_and_admins_confirm_too() {
    let stack = Stack::start().await;
    let admin = stack.login(ADMIN).await;
    let ops: Vec<Value> = stack.get(&admin, "/api/v1/operations").await.json().await.unwrap();
    let risk = |name: &str| ops.iter().find(|o| o["name"] == name).unwrap()["risk"].as_str().unwrap().to_owned();
    assert_eq!(risk("ReadDTC"), "read");
    assert_eq!(risk("ClearDTC"), "service");
    assert_eq!(risk("ECUReset"), "change");
    assert_eq!(risk("WriteDataByID"), "change");
    assert_envelope(stack.submit(&admin, reset(None)).await, 422, "VAL_103", "confirm").await;
    assert_eq!(stack.submit(&admin, reset(Some(true))).await.status(), 202);
    // The console grants and revokes the same way.
    let grant = stack.cli(&["user", "grant", "engineer", "vehicle-changes"]).output().await.unwrap();
    assert!(grant.status.success(), "{}", String::from_utf8_lossy(&grant.stderr));
    let engineer = stack.login(ENGINEER).await;
    stack.wait_until(|| async { stack.submit(&engineer, reset(Some(true))).await.status() == 202 }).await;
}
