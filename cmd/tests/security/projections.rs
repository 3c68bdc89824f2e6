//! Finding 3 (b): one event the users read model could not store (a NUL byte in an e-mail
//! address, accepted by the API of the time) stalled it for good, and a rebuild would stall on
//! it too. Now it is set aside, the projection goes on, and the operator sees and retries it.

use sovd_domain::events::{UserCreated, VehicleRegistered};
use sovd_domain::{Event, Role, UserId, VehicleId, Vin};
use sovd_nats::{AppendOptions, EventMeta};

use super::*;

async fn append(stack: &Stack, subject: &Subject, event: Event) -> u64 {
    let meta = EventMeta::new("test", "system");
    stack.deps.store.append(subject, &event, &meta, AppendOptions::default()).await.unwrap().sequence
}

async fn users_named(stack: &Stack, name: &str) -> i64 {
    sqlx::query_as::<_, (i64,)>("SELECT count(*) FROM users WHERE username = $1")
        .bind(name)
        .fetch_one(&stack.deps.pool)
        .await
        .unwrap()
        .0
}

async fn status(stack: &Stack) -> String {
    let out = stack.cli(&["projections", "status"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn an_event_a_projection_cannot_store_is_set_aside_and_the_projection_goes_on() {
    let stack = Stack::start().await;
    // As the API of the time accepted it: straight into the log.
    let poisoned = UserId::from_uuid(uuid::Uuid::now_v7());
    let created = |user_id, username: &str, email: &str| {
        Event::UserCreated(UserCreated {
            user_id,
            username: username.into(),
            role: Role::Viewer,
            email: Some(email.into()),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$x$y".into(),
            created_at: time::OffsetDateTime::now_utc(),
        })
    };
    let sequence = append(&stack, &Subject::user(poisoned), created(poisoned, "nulmail", "a\u{0}@x.com")).await;
    let after = UserId::from_uuid(uuid::Uuid::now_v7());
    append(&stack, &Subject::user(after), created(after, "afterwards", "ok@example.com")).await;

    stack.wait_until(|| async { users_named(&stack, "afterwards").await == 1 }).await;
    assert_eq!(users_named(&stack, "nulmail").await, 0);
    let shown = status(&stack).await;
    assert!(shown.contains("1 event(s) set aside"), "{shown}");
    assert!(shown.contains(&format!("users      SOVD_IAM        {sequence:>12} UserCreated")), "{shown}");
    let admin = stack.login(ADMIN).await;
    let metrics = stack.get(&admin, "/metrics").await.text().await.unwrap();
    assert!(metrics.contains("projection_quarantined_events{projection=\"users\"} 1"), "{metrics}");

    // Still unstorable: a retry says so and keeps it.
    let retry = stack.cli(&["projections", "retry", "users"]).output().await.unwrap();
    assert!(!retry.status.success());
    assert!(String::from_utf8_lossy(&retry.stdout).contains("0 applied, 1 still failing"));
}

#[tokio::test]
async fn after_the_cause_is_fixed_a_retry_applies_the_event_and_clears_it() {
    let stack = Stack::start().await;
    // A projection defect, emulated: the read model refuses a value the log holds.
    sqlx::query("ALTER TABLE vehicles ADD CONSTRAINT no_ladas CHECK (make <> 'Lada')")
        .execute(&stack.deps.pool)
        .await
        .unwrap();
    let registered = |vin: &str, make: &str| {
        Event::VehicleRegistered(VehicleRegistered {
            vehicle_id: VehicleId::from_uuid(uuid::Uuid::now_v7()),
            vin: Vin::parse(vin).unwrap(),
            make: make.into(),
            model: "Niva".into(),
            year: 1999,
            metadata_json: "{}".into(),
            registered_at: time::OffsetDateTime::now_utc(),
        })
    };
    let lada = Vin::parse("XTA21214071234567").unwrap();
    append(&stack, &Subject::vehicle(&lada), registered(lada.as_str(), "Lada")).await;
    let next = Vin::parse("WVWZZZ1JZXW000001").unwrap();
    append(&stack, &Subject::vehicle(&next), registered(next.as_str(), "VW")).await;
    let count = |vin: &'static str| {
        let pool = stack.deps.pool.clone();
        async move {
            sqlx::query_as::<_, (i64,)>("SELECT count(*) FROM vehicles WHERE vin = $1")
                .bind(vin)
                .fetch_one(&pool)
                .await
                .unwrap()
                .0
        }
    };
    stack.wait_until(|| async { count("WVWZZZ1JZXW000001").await == 1 }).await;
    assert!(status(&stack).await.contains("VehicleRegistered"));

    // The fix, then the retry.
    sqlx::query("ALTER TABLE vehicles DROP CONSTRAINT no_ladas").execute(&stack.deps.pool).await.unwrap();
    let retry = stack.cli(&["projections", "retry"]).output().await.unwrap();
    assert!(retry.status.success(), "{}", String::from_utf8_lossy(&retry.stderr));
    assert!(String::from_utf8_lossy(&retry.stdout).contains("1 applied, 0 still failing"));
    assert_eq!(count("XTA21214071234567").await, 1);
    assert!(status(&stack).await.contains("no events set aside"));
}
