//! Findings 2, 4 and 5: concurrent guesses bypassed the lockout, anyone could lock anyone out
//! for good, and password checks had no concurrency limit.

use std::time::Duration;

use futures::future::join_all;
use sovd_domain::Event;

use super::*;

fn settings(per_client: u32, per_name: u32) -> sovd::run::GatewaySettings {
    let mut settings = test_settings();
    settings.lockout = sovd::lockouts::LockoutPolicy { per_client, per_name, lock_for: Duration::from_secs(900) };
    settings
}

/// A guesser who comes back whenever told to (503 with Retry-After), until a real answer.
async fn guess(stack: &Stack, client: &reqwest::Client, password: &str) -> (u16, String) {
    loop {
        let answer = login_from(stack, client, ("engineer", password)).await;
        if answer.status() != 503 {
            return code_of(answer).await;
        }
        assert!(answer.headers().contains_key("retry-after"), "a 503 says when to come back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn forty_concurrent_guesses_from_one_address_check_five_passwords_at_most() {
    let stack = Stack::start_with(settings(5, 50)).await;
    let attacker = client_from("127.0.0.2");
    let guesses = (0..40).map(|i| {
        let attacker = attacker.clone();
        let stack = &stack;
        async move { guess(stack, &attacker, &format!("guess-{i}")).await }
    });
    let answers = join_all(guesses).await;
    assert!(answers.iter().all(|(s, _)| *s == 401), "every guess is refused in the end: {answers:?}");
    assert_eq!(passwords_checked(&stack, engineer_id()).await, 5, "exactly the threshold was checked");
    assert_eq!(answers.iter().filter(|(_, code)| code == "AUTH_006").count(), 35, "the rest met the lock");
    // The right password is refused too: the address is locked.
    let right = login_from(&stack, &attacker, ENGINEER).await;
    assert_envelope(right, 401, "AUTH_006", "try again in 15 minute").await;
    assert_eq!(passwords_checked(&stack, engineer_id()).await, 5);
}

#[tokio::test]
async fn guesses_from_ten_addresses_are_bounded_by_the_name_wide_budget() {
    let stack = Stack::start_with(settings(5, 20)).await;
    let guesses = (0..40).map(|i| {
        let client = client_from(&format!("127.0.1.{}", i % 10 + 1));
        let stack = &stack;
        async move { guess(stack, &client, &format!("guess-{i}")).await }
    });
    let answers = join_all(guesses).await;
    assert!(answers.iter().all(|(s, _)| *s == 401), "{answers:?}");
    assert_eq!(passwords_checked(&stack, engineer_id()).await, 20);
    // Spent: every address is locked now, the right password included.
    let elsewhere = client_from("127.0.2.1");
    assert_envelope(login_from(&stack, &elsewhere, ENGINEER).await, 401, "AUTH_006", "try again").await;
}

#[tokio::test]
async fn concurrent_sign_ins_with_the_right_password_are_never_locked_out() {
    let stack = Stack::start_with(settings(5, 50)).await;
    let office = client_from("127.0.0.3");
    let sign_ins = (0..30).map(|_| {
        let office = office.clone();
        let stack = &stack;
        async move { guess(stack, &office, "engineer123").await }
    });
    let answers = join_all(sign_ins).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
}

#[tokio::test]
async fn an_outsider_locks_only_their_own_address_and_an_admin_unlocks_it_on_the_record() {
    let stack = Stack::start().await;
    let outsider = client_from("127.0.0.66");
    for _ in 0..5 {
        login_from(&stack, &outsider, ("engineer", "wrong-password")).await;
    }
    assert_envelope(login_from(&stack, &outsider, ENGINEER).await, 401, "AUTH_006", "try again").await;
    // The engineer, signing in from their own machine, is not affected.
    let own = client_from("127.0.0.77");
    assert_eq!(login_from(&stack, &own, ENGINEER).await.status(), 200);

    // An admin lifts the lock; the outsider's address may sign in again.
    let admin = stack.login(ADMIN).await;
    let path = format!("/api/v1/users/{}/unlock", engineer_id());
    let unlocked = stack.send(reqwest::Method::POST, &admin, &path, json!({})).await;
    assert_eq!(unlocked.status(), 200);
    let body: Value = unlocked.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("every address"), "{body}");
    assert_eq!(login_from(&stack, &outsider, ENGINEER).await.status(), 200);
    // Only admins may.
    let engineer = stack.login(ENGINEER).await;
    assert_eq!(stack.send(reqwest::Method::POST, &engineer, &path, json!({})).await.status(), 403);

    // Both the lock and the unlock are on the record, with who and where.
    let events = session_events(&stack, engineer_id()).await;
    let locked = events.iter().find_map(|e| match e {
        Event::AccountLocked(l) => Some(l.clone()),
        _ => None,
    });
    assert_eq!(locked.unwrap().client_ip.as_deref(), Some("127.0.0.66"));
    let unlocked = events.iter().find_map(|e| match e {
        Event::AccountUnlocked(u) => Some(u.clone()),
        _ => None,
    });
    let unlocked = unlocked.unwrap();
    assert_eq!((unlocked.by, unlocked.reason.as_str()), (admin_id(), "unlock"));
    stack
        .wait_until(|| async {
            let audit: Value = stack.get(&admin, "/api/v1/audit?limit=100").await.json().await.unwrap();
            let actions = audit.to_string();
            actions.contains("account_locked") && actions.contains("account_unlocked")
        })
        .await;
}

#[tokio::test]
async fn a_password_reset_and_the_console_lift_a_lock() {
    let stack = Stack::start().await;
    let outsider = client_from("127.0.0.88");
    for _ in 0..5 {
        login_from(&stack, &outsider, ("engineer", "wrong-password")).await;
    }
    let admin = stack.login(ADMIN).await;
    let path = format!("/api/v1/users/{}/reset-password", engineer_id());
    let reset = stack.send(reqwest::Method::POST, &admin, &path, json!({"password": "new-engineer-pass"})).await;
    assert_eq!(reset.status(), 200);
    assert_eq!(login_from(&stack, &outsider, ("engineer", "new-engineer-pass")).await.status(), 200);

    for _ in 0..5 {
        login_from(&stack, &outsider, ("engineer", "wrong-password")).await;
    }
    let unlock = stack.cli(&["user", "unlock", "engineer"]).output().await.unwrap();
    assert!(unlock.status.success(), "{}", String::from_utf8_lossy(&unlock.stderr));
    assert!(String::from_utf8_lossy(&unlock.stdout).contains("may sign in again"));
    assert_eq!(login_from(&stack, &outsider, ("engineer", "new-engineer-pass")).await.status(), 200);
    let reasons: Vec<String> = session_events(&stack, engineer_id())
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::AccountUnlocked(u) => Some(u.reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, ["password reset", "unlock"]);
}

#[tokio::test]
async fn a_sign_in_storm_is_answered_503_with_retry_after_beyond_the_password_check_pool() {
    let mut settings = test_settings();
    settings.passwords = sovd::passwords::Passwords::new(1, Duration::from_millis(100)).unwrap();
    let stack = Stack::start_with(settings).await;
    let storm = (0..24).map(|i| {
        let client = client_from(&format!("127.0.3.{}", i + 1));
        let stack = &stack;
        async move { login_from(stack, &client, ADMIN).await }
    });
    let answers = join_all(storm).await;
    let mut busy = 0;
    for answer in answers {
        match answer.status().as_u16() {
            200 => {}
            503 => {
                busy += 1;
                assert_eq!(answer.headers()["retry-after"], "1");
                assert_eq!(code_of(answer).await.1, "SYS_505");
            }
            other => panic!("unexpected answer {other}"),
        }
    }
    assert!(busy > 0, "one check at a time cannot serve 24 at once within 100 ms");
    // Turned away before anything was counted: the admin is not locked.
    assert_eq!(stack.login_as("admin", "admin123").await.status(), 200);
}
