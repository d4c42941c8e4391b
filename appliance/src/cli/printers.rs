//! `appliance printers list`: each configured printer and what it says it
//! can do.

use std::io::Write;

use anyhow::Context;
use appliance::config::Config;
use appliance::output;
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
    Ok(())
}
