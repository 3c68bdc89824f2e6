//! Finding 8b: refresh rotation logged the original web client out. It redeems its stored
//! refresh token on every page load and never stores the rotated one (and in development mode
//! sends that refresh twice at once).

use futures::future::join_all;

use super::*;

async fn refresh(stack: &Stack, token: &str) -> reqwest::Response {
    stack.http.post(stack.url("/api/v1/auth/refresh")).json(&json!({"refresh_token": token})).send().await.unwrap()
}

async fn sign_in(stack: &Stack) -> String {
    let body: Value = stack.login_as("engineer", "engineer123").await.json().await.unwrap();
    body["refresh_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_client_that_never_stores_the_rotated_token_keeps_its_session_across_reloads() {
    let stack = Stack::start().await;
    let stored = sign_in(&stack).await;
    let mut successors = Vec::new();
    for _reload in 0..5 {
        let answer = refresh(&stack, &stored).await;
        assert_eq!(answer.status(), 200, "every reload signs the user in again");
        let body: Value = answer.json().await.unwrap();
        let access = body["access_token"].as_str().unwrap();
        assert_eq!(stack.get(access, "/api/v1/auth/me").await.status(), 200);
        successors.push(body["refresh_token"].as_str().unwrap().to_owned());
    }
    successors.dedup();
    assert_eq!(successors.len(), 1, "the same successor each time, while it is unused");
}

#[tokio::test]
async fn two_concurrent_refreshes_of_one_token_both_succeed() {
    let stack = Stack::start().await;
    let stored = sign_in(&stack).await;
    let answers = join_all((0..2).map(|_| refresh(&stack, &stored))).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status().as_u16()).collect();
    assert_eq!(statuses, [200, 200]);
    let mut tokens = Vec::new();
    for answer in answers {
        let body: Value = answer.json().await.unwrap();
        tokens.push(body["refresh_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(tokens[0], tokens[1], "both got the one successor");
    assert_eq!(refresh(&stack, &tokens[0]).await.status(), 200, "and it works");
}

#[tokio::test]
async fn a_thief_who_uses_a_token_after_its_owner_moved_on_revokes_the_sign_in() {
    let stack = Stack::start().await;
    let stolen = sign_in(&stack).await;
    let second: Value = refresh(&stack, &stolen).await.json().await.unwrap();
    let second = second["refresh_token"].as_str().unwrap().to_owned();
    let third: Value = refresh(&stack, &second).await.json().await.unwrap();
    let access = third["access_token"].as_str().unwrap().to_owned();

    assert_envelope(refresh(&stack, &stolen).await, 401, "AUTH_003", "already used").await;
    assert_envelope(stack.get(&access, "/api/v1/auth/me").await, 401, "AUTH_003", "revoked").await;
    let events = session_events(&stack, engineer_id()).await;
    assert!(events.iter().any(|e| matches!(e, sovd_domain::Event::RefreshTokenReused(_))), "on the record");
}
