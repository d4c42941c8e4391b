//! `appliance enroll` and `appliance status`: joining the fleet, and how
//! the link to central stands.

use std::path::Path;

use anyhow::Context;
use appliance::config::Config;
use appliance::store::StoreReader;
use appliance::sync::enroll::EnrollError;
use appliance::sync::status;

use super::{Failure, utc};

/// Reads an enrollment token kept in a file (surrounding white space is not
/// part of it).
pub(crate) fn read_token(path: &Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::Usage(format!(
            "cannot read the token file {}: {e}",
            path.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Failure::Usage(format!(
            "the token file {} is empty",
            path.display()
        )));
    }
    Ok(token.to_owned())
}

pub(crate) fn enroll(config: &Config, central: Option<&str>, token: &str) -> Result<(), Failure> {
    let central = match central.or(config.central.endpoints.first().map(String::as_str)) {
        Some(central) => central,
        None => {
            return Err(Failure::Usage(
                "no central to enroll at: give --central HOST:PORT or set [central] endpoints"
                    .into(),
            ));
        }
    };
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.data_dir)
            .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let site = runtime
        .block_on(appliance::sync::enroll::enroll(
            &config.data_dir,
            central,
            token,
        ))
        .map_err(|e| match e {
            EnrollError::BadToken | EnrollError::BadEndpoint(_) | EnrollError::Refused(_) => {
                Failure::Usage(e.to_string())
            }
            other => Failure::Runtime(other.into()),
        })?;
    println!(
        "enrolled as site {site}; the certificate, central's CA and the fleet key are in {}",
        config.data_dir.display()
    );
    if !config.central.endpoints.iter().any(|e| e == central) {
        println!("add to the configuration, then restart the appliance:");
        println!("[central]\nendpoints = [{central:?}]");
    }
    Ok(())
}

pub(crate) fn status(config: &Config, json: bool) -> Result<(), Failure> {
    if !config.central.enabled() {
        if json {
            println!("{}", serde_json::json!({ "central": null }));
        } else {
            println!("standalone: no [central] endpoints configured");
        }
        return Ok(());
    }
    let reader = StoreReader::open(&config.data_dir).map_err(|e| Failure::Usage(e.to_string()))?;
    let marks = reader.sync_marks().context("cannot read the store")?;
    let (policy_version, rules) = reader.policy().context("cannot read the store")?;
    let daemon = status::read(&config.data_dir).unwrap_or_default();
    // The counts come from the store, so they are right with the daemon down.
    let current = status::SyncStatus {
        policy_version,
        journal_unacked: marks.journal_latest.saturating_sub(marks.journal_acked),
        outbox_unacked: marks.outbox_pending,
        ..daemon
    };
    if json {
        let mut value = serde_json::to_value(&current).context("cannot encode the status")?;
        value["endpoints"] = serde_json::json!(config.central.endpoints);
        value["rules"] = serde_json::json!(rules);
        println!("{value}");
        return Ok(());
    }
    println!(
        "central endpoints:   {}",
        config.central.endpoints.join(", ")
    );
    println!(
        "site name:           {}",
        current.site.as_deref().unwrap_or("(not welcomed yet)")
    );
    println!(
        "connected:           {}",
        current.connected_endpoint.as_deref().unwrap_or("no")
    );
    println!(
        "last contact:        {}",
        current.last_contact_ms.map_or_else(|| "never".into(), utc)
    );
    println!("policy version:      {}", current.policy_version);
    match &rules {
        Some(rules) => println!(
            "rules:               {}",
            serde_json::to_string(rules).unwrap_or_default()
        ),
        None => println!("rules:               none from central yet (the config's [rules] apply)"),
    }
    println!("journal unacked:     {}", current.journal_unacked);
    println!("jobs unannounced:    {}", current.outbox_unacked);
    if let Some(error) = &current.last_error {
        println!("last error:          {error}");
    }
    Ok(())
}
