//! `appliance users ...`: adding, importing, disabling and listing the
//! users who release jobs, with secrets read without echo.

use std::io::{IsTerminal, Write};

use anyhow::Context;
use appliance::config::Config;
use appliance::credentials::Secret;
use appliance::store::{StoreError, UserAdmin};
use appliance::users::{self, NewUser, UserSummary};

use super::Failure;
use super::args::UsersCommand;

pub(crate) fn users_command(command: UsersCommand) -> Result<(), Failure> {
    match command {
        UsersCommand::Add {
            id,
            name,
            email,
            groups,
            cards,
            pin,
            password,
            store,
        } => {
            let config = store.resolve()?;
            let mut secrets = SecretInput::default();
            let user = NewUser {
                pin: pin
                    .then(|| secrets.read(&format!("PIN for {id}: ")))
                    .transpose()?,
                password: password
                    .then(|| secrets.read(&format!("Password for {id}: ")))
                    .transpose()?,
                id,
                display_name: name,
                email,
                groups,
                cards: cards.into_iter().map(Secret::new).collect(),
            };
            add_users(&config, vec![user])
        }
        UsersCommand::Import { file, store } => {
            let config = store.resolve()?;
            let input = std::fs::File::open(&file)
                .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", file.display())))?;
            let users = users::parse_csv(input).map_err(|problems| {
                Failure::Usage(format!(
                    "{} has {} problem(s); nothing was imported:\n  {}",
                    file.display(),
                    problems.len(),
                    problems.join("\n  ")
                ))
            })?;
            add_users(&config, users)
        }
        UsersCommand::Disable { id, store } => set_disabled(&store.resolve()?, &id, true),
        UsersCommand::Enable { id, store } => set_disabled(&store.resolve()?, &id, false),
        UsersCommand::List { json, store } => list_users(&store.resolve()?, json),
    }
}

/// Reads secrets without echo from the terminal, or line by line from
/// standard input when it is not a terminal.
#[derive(Default)]
pub(crate) struct SecretInput {
    lines: Option<std::io::Lines<std::io::StdinLock<'static>>>,
}

impl SecretInput {
    fn read(&mut self, prompt: &str) -> Result<Secret, Failure> {
        use std::io::BufRead;
        if std::io::stdin().is_terminal() {
            return rpassword::prompt_password(prompt)
                .map(Secret::new)
                .map_err(|e| {
                    Failure::Runtime(anyhow::anyhow!("cannot read from the terminal: {e}"))
                });
        }
        let lines = self
            .lines
            .get_or_insert_with(|| std::io::stdin().lock().lines());
        match lines.next() {
            Some(Ok(line)) => Ok(Secret::new(line)),
            _ => Err(Failure::Usage(format!(
                "expected a line on standard input for {:?}",
                prompt.trim_end_matches([':', ' '])
            ))),
        }
    }
}

/// A fleet site takes its users from central only.
fn managed_here(config: &Config) -> Result<(), Failure> {
    if config.central.enabled() {
        return Err(Failure::Usage(format!(
            "users are managed at central ({}): use `central user ...` there; this site \
             receives them within a second",
            config.central.endpoints.join(", ")
        )));
    }
    Ok(())
}

pub(crate) fn add_users(config: &Config, users: Vec<NewUser>) -> Result<(), Failure> {
    managed_here(config)?;
    let mut admin = UserAdmin::open(&config.data_dir).context("cannot open the store")?;
    let total = users.len();
    let mut prepared = Vec::with_capacity(total);
    for (i, user) in users.iter().enumerate() {
        // argon2id takes tens of milliseconds per secret on purpose; say how far along.
        if total > 1 && (i % 25 == 0 || i + 1 == total) {
            eprintln!("hashing credentials: {}/{total}", i + 1);
        }
        let user = users::prepare(user, admin.key(), config.users.pin_only_login)
            .map_err(|e| Failure::Usage(e.to_string()))?;
        prepared.push(user);
    }
    admin.add(&prepared).map_err(|e| match e {
        StoreError::Conflict(message) => Failure::Usage(format!("{message}; nothing was added")),
        other => Failure::Runtime(anyhow::Error::new(other).context("cannot add users")),
    })?;
    println!("added {total} user(s)");
    Ok(())
}

pub(crate) fn set_disabled(config: &Config, id: &str, disabled: bool) -> Result<(), Failure> {
    managed_here(config)?;
    let admin = UserAdmin::open(&config.data_dir).context("cannot open the store")?;
    admin.set_disabled(id, disabled).map_err(|e| match e {
        StoreError::NotFound => Failure::Usage(format!("no user {id}")),
        other => Failure::Runtime(anyhow::Error::new(other).context("cannot change the user")),
    })?;
    println!("{id} {}", if disabled { "disabled" } else { "enabled" });
    Ok(())
}

pub(crate) fn list_users(config: &Config, json: bool) -> Result<(), Failure> {
    let admin = UserAdmin::open(&config.data_dir).context("cannot open the store")?;
    let users = admin.list().context("cannot read users")?;
    let mut out = std::io::stdout().lock();
    let logins = |u: &UserSummary| {
        let mut kinds = Vec::new();
        if u.password {
            kinds.push("password".to_owned());
        }
        if u.pin {
            kinds.push("pin".to_owned());
        }
        if u.pin_only {
            kinds.push("pin-only".to_owned());
        }
        if u.cards > 0 {
            kinds.push(format!("{} card(s)", u.cards));
        }
        kinds.join(", ")
    };
    if json {
        for u in &users {
            let line = serde_json::json!({
                "id": u.id,
                "display_name": u.display_name,
                "email": u.email,
                "groups": u.groups,
                "disabled": u.disabled,
                "password": u.password,
                "pin": u.pin,
                "pin_only": u.pin_only,
                "cards": u.cards,
            });
            writeln!(out, "{line}").context("cannot write to stdout")?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<20}  {:<24}  {:<28}  {:<20}  {:<8}  LOGIN",
        "ID", "NAME", "EMAIL", "GROUPS", "STATE"
    )
    .context("cannot write to stdout")?;
    for u in &users {
        writeln!(
            out,
            "{:<20}  {:<24}  {:<28}  {:<20}  {:<8}  {}",
            u.id,
            u.display_name,
            u.email.as_deref().unwrap_or("-"),
            u.groups.join(","),
            if u.disabled { "disabled" } else { "active" },
            logins(u)
        )
        .context("cannot write to stdout")?;
    }
    Ok(())
}
