//! `appliance printers list`: each configured printer and what it says it
//! can do, and each pool with how fit its members are, judged as the
//! daemon's prober judges them (`output::pool`).

use std::io::Write;

use anyhow::Context;
use appliance::config::{self, Config};
use appliance::output;
use appliance::output::pool::{self, PoolView};
use appliance::printer::DeviceUri;

use super::Failure;

pub(crate) fn list_printers(config: &Config, timeout: u64, json: bool) -> Result<(), Failure> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let timeout = std::time::Duration::from_secs(timeout.max(1));
    let answers = runtime.block_on(futures_util::future::join_all(config.printers.iter().map(
        |printer| async move {
            match DeviceUri::with_trust(&printer.uri, printer.tls_ca.as_deref()) {
                Ok(DeviceUri::Ipp(ipp)) => Some(output::ipp::capabilities(&ipp, timeout).await),
                Ok(_) => None,
                Err(e) => Some(Err(output::OutputError::Rejected(e))),
            }
        },
    )));
    let pools: Vec<PoolView> = runtime.block_on(futures_util::future::join_all(
        config.pools.iter().map(|pool| async move {
            let members = pool
                .printers
                .iter()
                .filter_map(|id| config.printers.iter().find(|p| &p.id == id));
            let mut view = PoolView::new(pool.clone());
            view.members =
                futures_util::future::join_all(members.map(|member| pool::probe(member, timeout)))
                    .await;
            view
        }),
    ));
    let mut out = std::io::stdout().lock();
    if config.printers.is_empty() {
        writeln!(
            out,
            "(no printers configured; add [[printer]] tables to the config)"
        )
        .context("cannot write to stdout")?;
        return Ok(());
    }
    let yes_no = |b: Option<bool>| match b {
        Some(true) => "yes",
        Some(false) => "no",
        None => "?",
    };
    let pool_of = |id: &str| {
        config
            .pools
            .iter()
            .find(|p| p.printers.iter().any(|m| m == id))
            .map(|p| p.id.clone())
    };
    for (printer, answer) in config.printers.iter().zip(answers) {
        let (caps, problem) = match answer {
            Some(Ok(caps)) => (Some(caps), None),
            Some(Err(e)) => (None, Some(format!("unreachable: {e}"))),
            None => (
                None,
                Some("capabilities unknown (raw socket or LPD printers cannot say)".to_owned()),
            ),
        };
        if json {
            let line = serde_json::json!({
                "id": printer.id,
                "name": printer.name,
                "location": printer.location,
                "uri": printer.uri,
                "reachable": caps.is_some(),
                "problem": problem,
                "make_and_model": caps.as_ref().and_then(|c| c.make_and_model.clone()),
                "color": caps.as_ref().and_then(|c| c.color),
                "duplex": caps.as_ref().and_then(|c| c.duplex),
                "formats": caps.as_ref().map(|c| c.formats.clone()),
                "state": caps.as_ref().and_then(|c| c.state.clone()),
                "state_message": caps.as_ref().and_then(|c| c.state_message.clone()),
                "state_reasons": caps.as_ref().map(|c| c.state_reasons.clone()),
                "pool": pool_of(&printer.id),
            });
            writeln!(out, "{line}").context("cannot write to stdout")?;
            continue;
        }
        writeln!(
            out,
            "{} ({}){}",
            printer.id,
            printer.name.as_deref().unwrap_or(&printer.id),
            printer
                .location
                .as_deref()
                .map(|l| format!(", {l}"))
                .unwrap_or_default()
        )
        .context("cannot write to stdout")?;
        writeln!(out, "  uri:     {}", printer.uri).context("cannot write to stdout")?;
        if let Some(pool) = pool_of(&printer.id) {
            writeln!(out, "  pool:    {pool}").context("cannot write to stdout")?;
        }
        match (&caps, &problem) {
            (Some(c), _) => {
                writeln!(
                    out,
                    "  model:   {}\n  state:   {}{}\n  colour:  {}   duplex: {}\n  formats: {}",
                    c.make_and_model.as_deref().unwrap_or("?"),
                    c.state.as_deref().unwrap_or("?"),
                    c.state_message
                        .as_deref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default(),
                    yes_no(c.color),
                    yes_no(c.duplex),
                    c.formats.join(", ")
                )
                .context("cannot write to stdout")?;
            }
            (None, Some(problem)) => {
                writeln!(out, "  {problem}").context("cannot write to stdout")?;
            }
            (None, None) => {}
        }
    }
    for view in &pools {
        write_pool(&mut out, view, json).context("cannot write to stdout")?;
    }
    Ok(())
}

/// One pool: its policy, and each member's fitness and whether it takes
/// the pool's jobs now.
fn write_pool(out: &mut impl Write, view: &PoolView, json: bool) -> std::io::Result<()> {
    let pool = &view.config;
    let takers = view.takers();
    if json {
        let members: Vec<_> = pool
            .printers
            .iter()
            .zip(&view.members)
            .zip(&takers)
            .map(|((id, fitness), takes)| {
                serde_json::json!({
                    "printer": id,
                    "state": fitness.keyword(),
                    "reason": fitness.reason(),
                    "takes_jobs": takes,
                })
            })
            .collect();
        let line = serde_json::json!({
            "pool": pool.id,
            "name": pool.name,
            "location": pool.location,
            "policy": pool.policy.keyword(),
            "members": members,
        });
        return writeln!(out, "{line}");
    }
    let printing: Vec<&str> = pool
        .printers
        .iter()
        .zip(&takers)
        .filter(|(_, takes)| **takes)
        .map(|(id, _)| id.as_str())
        .collect();
    let order = match pool.policy {
        config::PoolPolicy::Failover => "jobs go out in submission order",
        config::PoolPolicy::LeastBusy => "jobs may finish out of submission order across members",
    };
    writeln!(
        out,
        "pool {} ({}), {}: {order}",
        pool.id,
        pool.label(),
        pool.policy.keyword()
    )?;
    if printing.is_empty() {
        writeln!(out, "  takes jobs: none; the pool's jobs wait")?;
    } else {
        writeln!(out, "  takes jobs: {}", printing.join(", "))?;
    }
    for (id, fitness) in pool.printers.iter().zip(&view.members) {
        match fitness.reason() {
            Some(reason) => writeln!(out, "  {id}: {} ({reason})", fitness.keyword())?,
            None => writeln!(out, "  {id}: {}", fitness.keyword())?,
        }
    }
    Ok(())
}
