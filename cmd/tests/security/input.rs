//! Findings 3, 9, 10 and 12: hostile text. A NUL byte stalled the users read model for good
//! (and with it deactivation at sign-in), a NUL in a sign-in name or a filter answered 500, a
//! sign-in name of 60 KB or with a newline was stored and logged, and `from=1€` panicked.

use std::time::Duration;

use sovd_domain::users::UserIntent;

use super::*;

async fn create_user(stack: &Stack, admin: &str, body: Value) -> reqwest::Response {
    stack.http.post(stack.url("/api/v1/users")).bearer_auth(admin).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn a_nul_byte_or_control_character_anywhere_in_a_body_is_refused_and_nothing_is_stored() {
    let stack = Stack::start().await;
    let admin = stack.login(ADMIN).await;
    let iam_before = stack.deps.store.last_sequence(StreamName::Iam).await.unwrap();
    let nul_email = json!({"username": "nulla", "password": "password-1", "role": "viewer", "email": "a\u{0}@x.com"});
    assert_envelope(create_user(&stack, &admin, nul_email).await, 422, "VAL_103", "control characters").await;
    let bad_email = json!({"username": "nulla", "password": "password-1", "role": "viewer", "email": "not-an-address"});
    assert_envelope(create_user(&stack, &admin, bad_email).await, 422, "VAL_103", "e-mail").await;
    let nested = json!({"command_name": "ReadDTC", "vehicle_id": VIN, "command_params": {"ecuAddress": "0x1\u{0}"}});
    assert_envelope(stack.submit(&admin, nested).await, 422, "VAL_103", "command_params.ecuAddress").await;
    assert_eq!(stack.deps.store.last_sequence(StreamName::Iam).await.unwrap(), iam_before, "nothing appended");
    // The users view still works and still follows changes.
    let fine = json!({"username": "plain", "password": "password-1", "role": "viewer", "email": "plain@example.com"});
    assert_eq!(create_user(&stack, &admin, fine).await.status(), 201);
    let users: Vec<Value> = stack.get(&admin, "/api/v1/users").await.json().await.unwrap();
    assert!(users.iter().any(|u| u["username"] == "plain"));
}

#[tokio::test]
async fn sign_in_names_with_nul_newlines_or_60_kb_are_refused_with_the_envelope_and_never_recorded() {
    let stack = Stack::start().await;
    for name in ["engi\u{0}neer", "engineer\nINFO forged: admin signed in", &"x".repeat(60_000)] {
        let (status, code) = code_of(stack.login_as(name, "whatever-pass").await).await;
        assert_eq!((status, code.as_str()), (422, "VAL_103"), "{:?}", &name[..name.len().min(20)]);
    }
    let unknown =
        stack.deps.store.read_filtered(StreamName::Iam, Subject::unknown_user_sessions().as_str()).await.unwrap();
    assert!(unknown.is_empty(), "no LoginFailed was written for any of them");
    // A name just within the cap is an ordinary failed sign-in.
    let (status, code) = code_of(stack.login_as(&"y".repeat(64), "whatever-pass").await).await;
    assert_eq!((status, code.as_str()), (401, "AUTH_001"));
}

#[tokio::test]
async fn a_nul_byte_or_megabyte_in_a_list_filter_is_a_400_not_a_500() {
    let stack = Stack::start().await;
    let admin = stack.login(ADMIN).await;
    for path in [
        "/api/v1/vehicles?search=%00",
        "/api/v1/commands?status=%00",
        "/api/v1/audit?action=a%0Ab",
        "/api/v1/events?vehicle=%00",
    ] {
        assert_envelope(stack.get(&admin, path).await, 400, "VAL_104", "control characters").await;
    }
    let long = format!("/api/v1/vehicles?search={}", "a".repeat(10_000));
    assert_envelope(stack.get(&admin, &long).await, 400, "VAL_104", "at most").await;
}

#[tokio::test]
async fn event_time_filters_that_used_to_panic_answer_400() {
    let stack = Stack::start().await;
    let admin = stack.login(ADMIN).await;
    let overflowing = ["99999999999999999d", "9223372036854775807s", "99999999999999999999d", "18446744073709551615s"];
    for from in ["1%E2%82%AC", "%E2%82%AC"].into_iter().chain(overflowing) {
        let response = stack.get(&admin, &format!("/api/v1/events?from={from}")).await;
        assert_envelope(response, 400, "VAL_104", "from").await;
    }
    // The gateway is alive and well.
    assert_eq!(stack.get(&admin, "/api/v1/events?from=1h").await.status(), 200);
}

#[tokio::test]
async fn a_read_model_that_says_otherwise_does_not_let_a_deactivated_user_sign_in() {
    let stack = Stack::start().await;
    in_the_log(&stack, engineer_id(), |by, at| UserIntent::Deactivate { by, at }).await;
    let active = || async {
        sqlx::query_as::<_, (bool,)>("SELECT active FROM users WHERE username = 'engineer'")
            .fetch_one(&stack.deps.pool)
            .await
            .unwrap()
            .0
    };
    stack.wait_until(|| async { !active().await }).await;
    // A stale or damaged read model: it still says active.
    sqlx::query("UPDATE users SET active = true WHERE username = 'engineer'").execute(&stack.deps.pool).await.unwrap();
    assert_envelope(stack.login_as("engineer", "engineer123").await, 401, "AUTH_006", "deactivated").await;
}

#[tokio::test]
async fn sign_in_decides_on_the_accounts_events_even_when_the_read_model_is_behind() {
    let stack = Stack::start().await;
    // The read model cannot move: Postgres is cut off.
    stack.postgres.set_down(true);
    in_the_log(&stack, engineer_id(), |by, at| UserIntent::Deactivate { by, at }).await;
    assert_envelope(stack.login_as("engineer", "engineer123").await, 401, "AUTH_006", "deactivated").await;
    // An active account still signs in, and a role change counts at the next sign-in.
    in_the_log(&stack, admin_id(), |by, at| UserIntent::SetRole { role: sovd_domain::Role::Engineer, by, at }).await;
    let token = tokio::time::timeout(Duration::from_secs(10), stack.try_login(ADMIN)).await.unwrap().unwrap();
    let claims = stack.settings.jwt.verify(&token, now()).unwrap();
    assert_eq!(claims.role, "engineer");
    stack.postgres.set_down(false);
}
