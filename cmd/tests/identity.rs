//! Sign-in, sessions, lockout, user management and rate limits, through the real stack.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{Value, json};

async fn login_pair(stack: &Stack, who: (&str, &str)) -> (String, String) {
    let body: Value = stack.login_as(who.0, who.1).await.json().await.unwrap();
    (body["access_token"].as_str().unwrap().to_owned(), body["refresh_token"].as_str().unwrap().to_owned())
}

async fn refresh(stack: &Stack, token: &str) -> reqwest::Response {
    stack.http.post(stack.url("/api/v1/auth/refresh")).json(&json!({"refresh_token": token})).send().await.unwrap()
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_stolen_one_revokes_the_whole_sign_in() {
    let stack = Stack::start().await;
    stack.login(ENGINEER).await;
    let (_, first) = login_pair(&stack, ENGINEER).await;

    let rotated = refresh(&stack, &first).await;
    assert_eq!(rotated.status(), 200);
    assert_eq!(rotated.headers()["cache-control"], "no-store", "tokens are never cached");
    let rotated: Value = rotated.json().await.unwrap();
    let second = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first, "a new refresh token every time");
    assert_eq!(rotated["expires_in"], 900);
    // The rightful client moves on: the second token is used, a third comes back.
    let third: Value = refresh(&stack, &second).await.json().await.unwrap();
    let access = third["access_token"].as_str().unwrap().to_owned();
    assert_eq!(stack.get(&access, "/api/v1/auth/me").await.status(), 200);

    // Someone replays the first token, whose successor was used: the whole family dies.
    assert_envelope(refresh(&stack, &first).await, 401, "AUTH_003", "already used").await;
    let newest = third["refresh_token"].as_str().unwrap();
    assert_envelope(refresh(&stack, newest).await, 401, "AUTH_003", "revoked").await;
    assert_envelope(stack.get(&access, "/api/v1/auth/me").await, 401, "AUTH_003", "revoked").await;
    // Other sign-ins of the same user are untouched.
    let other = stack.login(ENGINEER).await;
    assert_eq!(stack.get(&other, "/api/v1/auth/me").await.status(), 200);
}

#[tokio::test]
async fn signing_out_on_one_gateway_ends_the_session_on_every_replica() {
    let stack = Stack::start().await;
    let replica = stack.second_gateway().await;
    let token = stack.login(ENGINEER).await;
    let me = |base: String, token: String| {
        let http = stack.http.clone();
        async move { http.get(format!("{base}/api/v1/auth/me")).bearer_auth(token).send().await.unwrap().status() }
    };
    assert_eq!(me(replica.clone(), token.clone()).await, 200);

    let out = stack.http.post(stack.url("/api/v1/auth/logout")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(out.status(), 200);
    assert_eq!(me(stack.base.clone(), token.clone()).await, 401, "revoked at once where it was signed out");
    stack.wait_until(|| async { me(replica.clone(), token.clone()).await == 401 }).await;
}

#[tokio::test]
async fn five_failed_sign_ins_lock_a_name_and_unknown_names_get_the_same_answer() {
    let stack = Stack::start().await;
    stack.login(ENGINEER).await;
    for _ in 0..5 {
        assert_envelope(stack.login_as("engineer", "wrong-password").await, 401, "AUTH_001", "invalid").await;
        assert_envelope(stack.login_as("nobody", "wrong-password").await, 401, "AUTH_001", "invalid").await;
    }
    let locked = stack.login_as("engineer", "engineer123").await;
    let locked_unknown = stack.login_as("nobody", "engineer123").await;
    assert_eq!(locked.status(), locked_unknown.status());
    let a: Value = locked.json().await.unwrap();
    let b: Value = locked_unknown.json().await.unwrap();
    assert_eq!(a["error"]["code"], "AUTH_006");
    assert_eq!(a["error"]["message"], b["error"]["message"], "the answer does not tell which names exist");
    assert!(a["error"]["message"].as_str().unwrap().contains("15 minute"), "{a}");
    // Other users are not affected.
    assert_eq!(stack.login_as("admin", "admin123").await.status(), 200);
}

#[tokio::test]
async fn admins_manage_users_and_every_change_takes_effect_at_once() {
    let stack = Stack::start().await;
    let admin = stack.login(ADMIN).await;
    let engineer = stack.login(ENGINEER).await;
    let create =
        |token: &str, body: Value| stack.http.post(stack.url("/api/v1/users")).bearer_auth(token).json(&body).send();

    assert_envelope(
        create(&engineer, json!({"username": "x1y", "password": "password1", "role": "viewer"})).await.unwrap(),
        403,
        "AUTH_005",
        "admins",
    )
    .await;
    assert_envelope(
        create(&admin, json!({"username": "Bad Name", "password": "password1", "role": "viewer"})).await.unwrap(),
        422,
        "VAL_103",
        "username",
    )
    .await;
    assert_envelope(
        create(&admin, json!({"username": "vera", "password": "short", "role": "viewer"})).await.unwrap(),
        422,
        "VAL_103",
        "password",
    )
    .await;
    let created =
        create(&admin, json!({"username": "vera", "password": "vera-pass-1", "role": "viewer"})).await.unwrap();
    assert_eq!(created.status(), 201);
    let vera: Value = created.json().await.unwrap();
    let vera_id = vera["user_id"].as_str().unwrap().to_owned();
    assert_envelope(
        create(&admin, json!({"username": "vera", "password": "vera-pass-2", "role": "admin"})).await.unwrap(),
        409,
        "USR_402",
        "taken",
    )
    .await;

    // A viewer reads but may not submit.
    let viewer = stack.login(("vera", "vera-pass-1")).await;
    assert_eq!(stack.get(&viewer, "/api/v1/commands").await.status(), 200);
    let body = json!({"command_name": "ReadDTC", "vehicle_id": VIN, "command_params": {"ecuAddress": "0x10"}});
    assert_envelope(stack.submit(&viewer, body.clone()).await, 403, "AUTH_005", "viewer").await;

    // Promoted: the old token stops (it carries the old role); a new sign-in may submit.
    let promote = stack
        .send(reqwest::Method::PATCH, &admin, &format!("/api/v1/users/{vera_id}"), json!({"role": "engineer"}))
        .await;
    assert_eq!(promote.status(), 200);
    assert_eq!(stack.get(&viewer, "/api/v1/auth/me").await.status(), 401);
    let promoted = stack
        .wait_for(|| async {
            let token = stack.try_login(("vera", "vera-pass-1")).await.ok()?;
            let me: Value = stack.get(&token, "/api/v1/auth/me").await.json().await.ok()?;
            (me["role"] == "engineer").then_some(token)
        })
        .await;
    assert_eq!(stack.submit(&promoted, body).await.status(), 202);

    // Password reset, then deactivation.
    let reset = stack
        .send(
            reqwest::Method::POST,
            &admin,
            &format!("/api/v1/users/{vera_id}/reset-password"),
            json!({"password": "vera-pass-NEW"}),
        )
        .await;
    assert_eq!(reset.status(), 200);
    stack.wait_until(|| async { stack.try_login(("vera", "vera-pass-NEW")).await.is_ok() }).await;
    let deactivate =
        stack.send(reqwest::Method::PATCH, &admin, &format!("/api/v1/users/{vera_id}"), json!({"active": false})).await;
    assert_eq!(deactivate.status(), 200);
    stack.wait_until(|| async { stack.login_as("vera", "vera-pass-NEW").await.status() == 401 }).await;
    assert_envelope(stack.login_as("vera", "vera-pass-NEW").await, 401, "AUTH_006", "deactivated").await;

    let users: Vec<Value> = stack.get(&admin, "/api/v1/users").await.json().await.unwrap();
    let vera = users.iter().find(|u| u["username"] == "vera").unwrap();
    assert_eq!((vera["role"].as_str(), vera["active"].as_bool()), (Some("engineer"), Some(false)));
    // Admins cannot lock themselves out.
    let admin_id = users.iter().find(|u| u["username"] == "admin").unwrap()["user_id"].as_str().unwrap().to_owned();
    let self_demote = stack
        .send(reqwest::Method::PATCH, &admin, &format!("/api/v1/users/{admin_id}"), json!({"role": "viewer"}))
        .await;
    assert_envelope(self_demote, 409, "USR_403", "own account").await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_spare_admins() {
    let mut settings = test_settings();
    settings.limits = sovd::gateway::ratelimit::RateLimits { login: 3, submit: 2, vehicles: 100 };
    let stack = Stack::start_with(settings).await;
    let engineer = stack.login(ENGINEER).await;
    let admin = stack.login(ADMIN).await;
    let body = json!({"command_name": "ReadDTC", "vehicle_id": VIN, "command_params": {"ecuAddress": "0x10"}});

    let first = stack.submit(&engineer, body.clone()).await;
    assert_eq!(first.status(), 202);
    assert_eq!(first.headers()["x-ratelimit-limit"], "2");
    assert_eq!(first.headers()["x-ratelimit-remaining"], "1");
    assert_eq!(stack.submit(&engineer, body.clone()).await.status(), 202);
    let refused = stack.submit(&engineer, body.clone()).await;
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_envelope(refused, 429, "RATE_001", "too many requests").await;
    for _ in 0..4 {
        assert_eq!(stack.submit(&admin, body.clone()).await.status(), 202, "admins are exempt");
    }
    // Sign-in is limited per client address (two sign-ins above, one more allowed).
    assert_eq!(stack.login_as("engineer", "engineer123").await.status(), 200);
    assert_envelope(stack.login_as("engineer", "engineer123").await, 429, "RATE_001", "too many").await;
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retry_return_the_same_command() {
    let stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;
    let body = json!({"command_name": "ReadDTC", "vehicle_id": VIN, "command_params": {"ecuAddress": "0x10"}});
    let send = |body: Value, key: &'static str| {
        stack
            .http
            .post(stack.url("/api/v1/commands"))
            .bearer_auth(&token)
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let before = stack.commands_in_log().await;
    let a: Value = send(body.clone(), "retry-1").await.unwrap().json().await.unwrap();
    let b = send(body.clone(), "retry-1").await.unwrap();
    assert_eq!(b.status(), 202);
    let b: Value = b.json().await.unwrap();
    assert_eq!(a["command_id"], b["command_id"]);
    assert_eq!(stack.commands_in_log().await, before + 1, "one command in the log");

    let other = json!({"command_name": "ReadDTC", "vehicle_id": VIN, "command_params": {"ecuAddress": "0x18"}});
    assert_envelope(send(other, "retry-1").await.unwrap(), 422, "VAL_103", "Idempotency-Key").await;
    assert_envelope(send(body, "bad key!").await.unwrap(), 422, "VAL_103", "Idempotency-Key").await;
}

#[tokio::test]
async fn a_finished_command_cannot_be_cancelled() {
    let stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;
    let body = json!({"command_name": "ReadDTC", "vehicle_id": VIN, "command_params": {"ecuAddress": "0x10"}});
    let command: Value = stack.submit(&token, body).await.json().await.unwrap();
    let id = command["command_id"].as_str().unwrap().to_owned();
    stack.wait_completed(&token, &id).await;
    let cancel = stack.http.post(stack.url(&format!("/api/v1/commands/{id}/cancel"))).bearer_auth(&token).send().await;
    assert_envelope(cancel.unwrap(), 409, "VEH_303", "completed").await;
}

#[tokio::test]
async fn the_audit_trail_shows_sign_ins_submits_and_outcomes_to_admins_only() {
    let stack = Stack::start().await;
    let engineer = stack.login(ENGINEER).await;
    let admin = stack.login(ADMIN).await;
    let _ = stack.login_as("engineer", "not-the-password").await;
    let body = json!({"command_name": "ReadDTC", "vehicle_id": VIN, "command_params": {"ecuAddress": "0x10"}});
    let command: Value = stack.submit(&engineer, body).await.json().await.unwrap();
    let target = format!("command:{}", command["command_id"].as_str().unwrap());

    let entries: Vec<Value> = stack
        .wait_for(|| async {
            let page: Value = stack.get(&admin, "/api/v1/audit?limit=100").await.json().await.ok()?;
            let entries = page["entries"].as_array()?.clone();
            entries.iter().any(|e| e["action"] == "command_completed" && e["target"] == target).then_some(entries)
        })
        .await;
    let submitted = entries.iter().find(|e| e["action"] == "command_submitted" && e["target"] == target).unwrap();
    assert_eq!(submitted["actor_name"], "engineer");
    assert_eq!(submitted["vin"], VIN);
    assert!(submitted["correlation_id"].as_str().is_some_and(|c| !c.is_empty()));
    let failed = entries.iter().find(|e| e["action"] == "login_failed").unwrap();
    assert_eq!(failed["details"]["reason"], "wrong password");
    assert_eq!(failed["details"]["ip"], "127.0.0.1");
    assert!(entries.iter().any(|e| e["action"] == "login_succeeded"));

    let only_submits: Value =
        stack.get(&admin, "/api/v1/audit?action=command_submitted&actor=engineer").await.json().await.unwrap();
    assert!(only_submits["entries"].as_array().unwrap().iter().all(|e| e["action"] == "command_submitted"));
    let csv = stack.get(&admin, "/api/v1/audit?format=csv").await;
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(csv.text().await.unwrap().starts_with("occurred_at,actor,actor_name,action"));
    assert_envelope(stack.get(&engineer, "/api/v1/audit").await, 403, "AUTH_005", "admins").await;
}

#[tokio::test]
async fn the_catalogue_stats_and_cors_are_served() {
    let stack = Stack::start().await;
    let token = stack.login(ENGINEER).await;
    let operations: Vec<Value> = stack.get(&token, "/api/v1/operations").await.json().await.unwrap();
    let clear = operations.iter().find(|o| o["name"] == "ClearDTC").unwrap();
    assert_eq!(clear["idempotent"], false);
    assert_eq!(clear["params"][1]["name"], "dtcCode");
    assert_eq!(clear["params"][1]["required"], false);
    let stats: Value = stack.get(&token, "/api/v1/stats").await.json().await.unwrap();
    assert_eq!((stats["vehicles_connected"].as_i64(), stats["vehicles_total"].as_i64()), (Some(3), Some(4)));

    let preflight = |origin: &'static str| {
        stack
            .http
            .request(reqwest::Method::OPTIONS, stack.url("/api/v1/vehicles"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
    };
    let allowed = preflight("https://tools.example.com").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://tools.example.com");
    let other = preflight("https://evil.example.com").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn operators_manage_users_from_the_command_line() {
    let stack = Stack::start().await;
    // Async: the Postgres proxy runs on this test's runtime and must keep serving meanwhile.
    let sovd = |args: &[&str]| stack.cli(&["user"]).args(args).env("SOVD_NEW_PASSWORD", "carol-pass-1").output();
    let added = sovd(&["add", "carol", "--role", "viewer", "--email", "carol@example.com"]).await.unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    assert!(String::from_utf8_lossy(&added.stdout).contains("created carol (viewer)"));
    let carol = stack.login(("carol", "carol-pass-1")).await;
    let me: Value = stack.get(&carol, "/api/v1/auth/me").await.json().await.unwrap();
    assert_eq!((me["role"].as_str(), me["email"].as_str()), (Some("viewer"), Some("carol@example.com")));

    let taken = sovd(&["add", "carol", "--role", "admin"]).await.unwrap();
    assert!(!taken.status.success());
    assert!(String::from_utf8_lossy(&taken.stderr).contains("username is taken"));

    assert!(sovd(&["deactivate", "carol"]).await.unwrap().status.success());
    stack.wait_until(|| async { stack.get(&carol, "/api/v1/auth/me").await.status() == 401 }).await;
    stack.wait_until(|| async { stack.login_as("carol", "carol-pass-1").await.status() == 401 }).await;
    let listed = sovd(&["list"]).await.unwrap();
    let listing = String::from_utf8_lossy(&listed.stdout);
    assert!(listing.lines().any(|l| l.starts_with("carol") && l.contains("deactivated")), "{listing}");
    let unknown = sovd(&["set-role", "nobody", "admin"]).await.unwrap();
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no user named"));
}

#[tokio::test]
async fn operators_verify_the_audit_chain_and_are_told_which_row_was_tampered_with() {
    let stack = Stack::start().await;
    stack.login(ADMIN).await;
    let verify = || stack.cli(&["audit", "verify"]).output();
    stack
        .wait_until(|| async {
            let rows: (i64,) = sqlx::query_as("SELECT count(*) FROM audit_log WHERE action = 'login_succeeded'")
                .fetch_one(&stack.deps.pool)
                .await
                .unwrap();
            rows.0 >= 1
        })
        .await;
    let intact = verify().await.unwrap();
    assert!(intact.status.success(), "{}", String::from_utf8_lossy(&intact.stderr));
    assert!(String::from_utf8_lossy(&intact.stdout).contains("audit trail intact"));

    // Someone rewrites who signed in.
    let (id,): (i64,) = sqlx::query_as(
        "UPDATE audit_log SET actor = 'user:someone-else' WHERE id = (SELECT min(id) FROM audit_log WHERE action = 'login_succeeded') RETURNING id",
    )
    .fetch_one(&stack.deps.pool)
    .await
    .unwrap();
    let caught = verify().await.unwrap();
    assert!(!caught.status.success(), "a broken chain exits non-zero");
    let said = String::from_utf8_lossy(&caught.stderr);
    assert!(said.contains(&format!("audit row {id} ")) && said.contains("was changed"), "{said}");
}
