//! `sovd user add|set-role|deactivate|reactivate|reset-password|unlock|grant|revoke|list`: account management at
//! the console, through the same rules and events as `/api/v1/users`.

use std::io::BufRead;

use anyhow::{Context, bail};
use sovd_domain::Role;
use sovd_domain::users::{Permission, UserIntent};

use crate::accounts::{self, Actor};
use crate::config::{UserAction, UserArgs};
use crate::gateway::sessions::revoke_user_sessions;
use crate::lockouts::{LockoutPolicy, Lockouts};
use crate::passwords::Passwords;
use crate::run;

fn new_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("SOVD_NEW_PASSWORD") {
        return Ok(password);
    }
    eprint!("new password: ");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn role(raw: &str) -> anyhow::Result<Role> {
    Role::parse(raw).with_context(|| format!("role must be viewer, engineer or admin, got {raw:?}"))
}

pub async fn run(args: UserArgs) -> anyhow::Result<()> {
    let (_stop, shutdown) = run::shutdown_signal();
    let Some(deps) = run::connect(&args.common, "sovd-user", &shutdown).await? else { return Ok(()) };
    let actor = Actor::system();
    let passwords = Passwords::per_core().context("cannot start the password-check threads")?;
    let lockouts = Lockouts::new(deps.buckets.lockouts.clone(), LockoutPolicy::default());
    let find = |username: String| {
        let buckets = deps.buckets.clone();
        async move {
            match accounts::lookup(&buckets, &username).await? {
                Some(id) => Ok(id),
                None => bail!("no user named {username:?}"),
            }
        }
    };
    match args.action {
        UserAction::Add { username, role: raw_role, email } => {
            let role = role(&raw_role)?;
            let password = new_password()?;
            let account =
                accounts::NewAccount { username: &username, password: &password, role, email: email.as_deref() };
            let (id, _) = accounts::create(&deps.store, &deps.buckets, &passwords, &actor, account).await?;
            println!("created {username} ({role}) with id {id}");
        }
        UserAction::SetRole { username, role: raw_role } => {
            let role = role(&raw_role)?;
            let id = find(username.clone()).await?;
            accounts::change(&deps.store, &actor, id, |by, at| UserIntent::SetRole { role, by, at }).await?;
            revoke_user_sessions(&deps.buckets, id.as_uuid()).await?;
            println!("{username} is now {role}; their sessions were signed out");
        }
        UserAction::Deactivate { username } => {
            let id = find(username.clone()).await?;
            accounts::change(&deps.store, &actor, id, |by, at| UserIntent::Deactivate { by, at }).await?;
            revoke_user_sessions(&deps.buckets, id.as_uuid()).await?;
            println!("{username} is deactivated; their sessions were signed out");
        }
        UserAction::Reactivate { username } => {
            let id = find(username.clone()).await?;
            accounts::change(&deps.store, &actor, id, |by, at| UserIntent::Reactivate { by, at }).await?;
            println!("{username} may sign in again");
        }
        UserAction::ResetPassword { username } => {
            let id = find(username.clone()).await?;
            accounts::set_password(&deps.store, &passwords, &actor, id, &new_password()?).await?;
            revoke_user_sessions(&deps.buckets, id.as_uuid()).await?;
            accounts::unlock(&deps.store, &lockouts, &actor, id, &username, "password reset").await?;
            println!("password of {username} reset; their sessions were signed out and any sign-in lock lifted");
        }
        UserAction::Unlock { username } => {
            let id = find(username.clone()).await?;
            match accounts::unlock(&deps.store, &lockouts, &actor, id, &username, "unlock").await? {
                true => println!("{username} may sign in again from every address"),
                false => println!("{username} was not locked"),
            }
        }
        UserAction::Grant { username, permission } => {
            let id = find(username.clone()).await?;
            let permission = Permission::parse(&permission).context("unknown permission")?;
            accounts::change(&deps.store, &actor, id, |by, at| UserIntent::Grant { permission, by, at }).await?;
            println!("{username} now holds {}", permission.as_str());
        }
        UserAction::Revoke { username, permission } => {
            let id = find(username.clone()).await?;
            let permission = Permission::parse(&permission).context("unknown permission")?;
            accounts::change(&deps.store, &actor, id, |by, at| UserIntent::Revoke { permission, by, at }).await?;
            println!("{username} no longer holds {}", permission.as_str());
        }
        UserAction::List => {
            for user in sovd_projections::queries::list_users(&deps.pool).await? {
                let state = if user.active { "active" } else { "deactivated" };
                let permissions = user.permissions.join(",");
                println!("{:<24} {:<9} {:<12} {} {}", user.username, user.role, state, user.user_id, permissions);
            }
        }
    }
    Ok(())
}
