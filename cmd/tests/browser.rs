//! The web UI in a real headless Chromium against the real stack. The screenshots it takes
//! illustrate docs/user-guides/engineer_guide.md (regenerate with
//! `SOVD_SCREENSHOTS=$PWD/docs/user-guides/images ./deploy/local/test --test browser`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::browser::{Browser, screenshot_dir};
use common::*;
use serde_json::json;

async fn sign_in(b: &Browser, stack: &Stack, (username, password): (&str, &str)) {
    b.goto(&stack.url("/")).await;
    b.type_into("login-username", username).await;
    b.type_into("login-password", password).await;
    b.click("login-submit").await;
    b.wait_visible("nav-user").await;
}

#[tokio::test]
async fn an_engineer_signs_in_runs_read_dtc_live_and_finds_it_in_history() {
    let stack = Stack::start().await;
    let b = Browser::launch().await;
    let shots = screenshot_dir();

    b.goto(&stack.url("/")).await;
    b.wait_visible("login-username").await;
    b.screenshot(&shots, "01-sign-in").await;
    b.type_into("login-username", "engineer").await;
    b.type_into("login-password", "wrong-password").await;
    b.click("login-submit").await;
    b.wait_for("document.querySelector('[data-testid=\"login-error\"]').innerText.includes('Reference')").await;
    assert!(b.text("login-error").await.contains("invalid username or password"));

    b.type_into("login-password", "engineer123").await;
    b.click("login-submit").await;
    b.wait_visible("dashboard-connected").await;
    b.wait_for("document.querySelector('[data-testid=\"dashboard-connected\"]').innerText.includes('3 / 4')").await;
    assert!(b.text("nav-user").await.contains("engineer"));
    b.screenshot(&shots, "02-dashboard").await;

    b.click("nav-vehicles").await;
    b.wait_for("document.querySelectorAll('[data-testid=\"vehicle-row\"]').length === 4").await;
    b.screenshot(&shots, "03-vehicles").await;

    b.click("nav-command").await;
    b.choose("command-vehicle", VIN).await;
    b.choose("command-operation", "ReadDTC").await;
    b.type_into("command-param-ecuAddress", "0x10").await;
    b.screenshot(&shots, "04-new-command").await;
    b.click("command-submit").await;
    b.wait_visible("live-viewer").await;
    b.wait_for("document.querySelector('[data-testid=\"live-status\"]').innerText.trim() === 'completed'").await;
    assert_eq!(b.count("live-chunk").await, 3, "three chunks arrived live");
    let first = b.eval("document.querySelector('[data-testid=\"live-chunk\"]').innerText").await;
    assert!(first.as_str().unwrap().contains("P0420"), "{first}");
    b.screenshot(&shots, "05-live-responses").await;

    b.click("nav-history").await;
    b.wait_for("document.querySelectorAll('[data-testid=\"history-row\"]').length >= 1").await;
    b.screenshot(&shots, "06-history").await;
    b.eval("document.querySelector('[data-testid=\"history-row\"] a').click()").await;
    b.wait_for("(document.querySelector('[data-testid=\"detail-status\"]') || {}).innerText === 'completed'").await;
    b.wait_for("document.querySelectorAll('[data-testid=\"response-chunk\"]').length === 3").await;
    b.screenshot(&shots, "07-command-detail").await;

    // The ECU refuses an unknown data identifier: the code and its name are shown as such.
    b.click("nav-command").await;
    b.choose("command-vehicle", VIN).await;
    b.choose("command-operation", "ReadDataByID").await;
    b.type_into("command-param-ecuAddress", "0x10").await;
    b.type_into("command-param-dataId", "0xBEEF").await;
    b.click("command-submit").await;
    b.wait_for("(document.querySelector('[data-testid=\"live-status\"]') || {}).innerText?.trim() === 'failed'").await;
    assert!(b.text("live-error-message").await.contains("0x31 (requestOutOfRange)"));
    b.click("live-details-link").await;
    b.wait_visible("detail-nrc").await;
    assert_eq!(b.text("detail-nrc").await.trim(), "0x31 requestOutOfRange");

    b.click("signout").await;
    b.wait_visible("login-username").await;
}

#[tokio::test]
async fn a_viewer_is_told_clearly_that_they_cannot_submit() {
    let stack = Stack::start().await;
    let admin = stack.login(ADMIN).await;
    let created = stack
        .http
        .post(stack.url("/api/v1/users"))
        .bearer_auth(&admin)
        .json(&json!({"username": "vic", "password": "vic-pass-123", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    stack.login(("vic", "vic-pass-123")).await;

    let b = Browser::launch().await;
    sign_in(&b, &stack, ("vic", "vic-pass-123")).await;
    b.click("nav-command").await;
    b.wait_visible("command-forbidden").await;
    assert!(b.text("command-forbidden").await.to_lowercase().contains("viewer"));
    assert_eq!(b.visible("command-submit").await, 0, "no submit button for viewers");
    assert_eq!(b.visible("nav-audit").await + b.visible("nav-users").await, 0, "admin pages are not offered");
    b.screenshot(&screenshot_dir(), "08-viewer-cannot-submit").await;
}

#[tokio::test]
async fn an_admin_reads_the_audit_trail_and_manages_users() {
    let stack = Stack::start().await;
    let engineer = stack.login(ENGINEER).await;
    let body = json!({"command_name": "ReadDTC", "vehicle_id": VIN, "command_params": {"ecuAddress": "0x10"}});
    assert_eq!(stack.submit(&engineer, body).await.status(), 202);

    let b = Browser::launch().await;
    sign_in(&b, &stack, ADMIN).await;
    b.click("nav-audit").await;
    b.wait_for("[...document.querySelectorAll('[data-testid=\"audit-row\"]')].some(r => r.innerText.includes('command_submitted'))")
        .await;
    b.screenshot(&screenshot_dir(), "09-audit").await;

    b.click("nav-users").await;
    b.wait_for("document.querySelectorAll('[data-testid=\"user-row\"]').length === 2").await;
    b.type_into("user-add-username", "nina").await;
    b.type_into("user-add-password", "nina-pass-123").await;
    b.choose("user-add-role", "engineer").await;
    b.click("user-add-submit").await;
    b.wait_for("document.querySelectorAll('[data-testid=\"user-row\"]').length === 3").await;
    b.screenshot(&screenshot_dir(), "10-users").await;
    stack.login(("nina", "nina-pass-123")).await;

    b.click("signout").await;
    b.wait_visible("login-username").await;
}

#[tokio::test]
async fn an_admin_lifts_a_lock_and_allows_vehicle_changes_which_the_engineer_confirms_before_they_run() {
    let stack = Stack::start().await;
    // Someone guessed the engineer's password from another address until it locked.
    let elsewhere = reqwest::Client::builder().local_address("127.0.0.9".parse::<std::net::IpAddr>().unwrap()).build();
    let elsewhere = elsewhere.unwrap();
    let guess = || {
        elsewhere
            .post(stack.url("/api/v1/auth/login"))
            .json(&json!({"username": "engineer", "password": "wrong-password"}))
            .send()
    };
    for _ in 0..6 {
        guess().await.unwrap();
    }
    let engineer_id = sovd::seed::USERS[1].0;
    let row = |testid: &str| {
        format!(
            "document.querySelector('[data-testid=\"user-row\"][data-user-id=\"{engineer_id}\"] [data-testid=\"{testid}\"]')"
        )
    };

    let b = Browser::launch().await;
    sign_in(&b, &stack, ADMIN).await;
    b.click("nav-users").await;
    b.wait_for(&format!("{} !== null", row("user-unlock"))).await;
    b.eval(&format!("{}.click()", row("user-unlock"))).await;
    b.wait_for("[...document.querySelectorAll('.alert')].some(a => a.innerText.includes('may sign in again'))").await;
    b.eval(&format!("{}.click()", row("user-vehicle-changes"))).await;
    b.wait_for("[...document.querySelectorAll('.alert')].some(a => a.innerText.includes('may now run operations'))")
        .await;
    b.click("signout").await;
    b.wait_visible("login-username").await;

    sign_in(&b, &stack, ENGINEER).await;
    b.click("nav-command").await;
    b.choose("command-vehicle", VIN).await;
    b.choose("command-operation", "ECUReset").await;
    b.type_into("command-param-ecuAddress", "0x10").await;
    b.choose("command-param-resetType", "soft").await;
    b.click("command-submit").await;
    b.wait_visible("command-confirm").await;
    assert_eq!(b.visible("live-viewer").await, 0, "nothing is sent before the confirmation");
    b.click("command-confirm").await;
    b.wait_visible("live-viewer").await;
    b.wait_for("document.querySelector('[data-testid=\"live-status\"]').innerText.trim() === 'completed'").await;
}
