//! `portal audit`: the audit trail.

use super::{aws_settings, fail};
use clap::Subcommand;
use recovery_portal::domain::audit::AuditQuery;
use recovery_portal::domain::ids::{DeviceId, TenantId, UserId};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

#[derive(Subcommand)]
pub(super) enum AuditCommand {
    /// Write one tenant's audit events as JSON Lines on stdout (newest
    /// first, the API's event fields), for a SIEM. Pages through the store
    /// as `GET /v1/audit-events` does; progress goes to stderr on a terminal.
    Export {
        #[arg(long)]
        tenant: String,
        /// Events at or after this RFC 3339 time.
        #[arg(long)]
        since: String,
        /// Events before this RFC 3339 time (default: no end).
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        device_id: Option<String>,
        /// A user id, or `import:<name>` for an importer.
        #[arg(long)]
        actor: Option<String>,
        /// Events per store read (1–1000).
        #[arg(long, default_value_t = 1000)]
        page_size: usize,
    },
}

impl AuditCommand {
    pub(super) async fn run(self) -> ExitCode {
        match self {
            Self::Export {
                tenant,
                since,
                until,
                device_id,
                actor,
                page_size,
            } => {
                audit_export(
                    &tenant,
                    &since,
                    until.as_deref(),
                    device_id.as_deref(),
                    actor.as_deref(),
                    page_size,
                )
                .await
            }
        }
    }
}

/// The flags of `portal audit export`, checked: the tenant and the first
/// page's query, or what is wrong with them (named by flag).
fn export_query(
    tenant: &str,
    since: &str,
    until: Option<&str>,
    device_id: Option<&str>,
    actor: Option<&str>,
    page_size: usize,
) -> Result<(TenantId, AuditQuery), String> {
    let rfc3339 = |flag: &str, v: &str| {
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).map_err(
            |_| format!("{flag} must be an RFC 3339 time such as 2026-01-01T00:00:00Z, got {v:?}"),
        )
    };
    let tenant = TenantId::parse(tenant).map_err(|e| format!("--tenant {e}"))?;
    let query = AuditQuery {
        since: Some(rfc3339("--since", since)?),
        until: until.map(|u| rfc3339("--until", u)).transpose()?,
        device_id: device_id
            .map(|d| DeviceId::parse(d).map_err(|e| format!("--device-id {e}")))
            .transpose()?,
        actor: actor
            .map(|a| UserId::parse_actor(a).map_err(|e| format!("--actor {e}")))
            .transpose()?,
        after: None,
        limit: page_size,
    };
    if !(1..=AuditQuery::MAX_LIMIT).contains(&page_size) {
        return Err(format!(
            "--page-size must be from 1 to {}",
            AuditQuery::MAX_LIMIT
        ));
    }
    if query.is_empty_range() {
        return Err("--since must be earlier than --until".into());
    }
    Ok((tenant, query))
}

/// `portal audit export`: every matching event, page by page, as JSON Lines.
async fn audit_export(
    tenant: &str,
    since: &str,
    until: Option<&str>,
    device_id: Option<&str>,
    actor: Option<&str>,
    page_size: usize,
) -> ExitCode {
    let (tenant, query) = match export_query(tenant, since, until, device_id, actor, page_size) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let (prefix, _) = match aws_settings() {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let (store, _) = match recovery_portal::adapters::aws::aws_backends(&prefix, None).await {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    match write_events(store.as_ref(), &tenant, query).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// Every page of `query` from `store`, one JSON line per event on stdout,
/// with a running count on stderr when that is a terminal.
async fn write_events(
    store: &dyn recovery_portal::domain::ports::Store,
    tenant: &TenantId,
    mut query: AuditQuery,
) -> Result<(), String> {
    let terminal = std::io::stderr().is_terminal();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let stdout_error = |e: std::io::Error| format!("writing to stdout: {e}");
    let mut written = 0usize;
    loop {
        let page = match store.audit_events(tenant, &query).await {
            Ok(p) => p,
            Err(e) => {
                let _ = out.flush();
                return Err(format!(
                    "audit export stopped after {written} events: {e}. Export the same range again (events are written newest first)"
                ));
            }
        };
        for e in &page.events {
            let line = recovery_portal::api::event_json(e).to_string();
            writeln!(out, "{line}").map_err(stdout_error)?;
            written += 1;
        }
        if terminal {
            eprint!("\r{written} events exported");
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    out.flush().map_err(stdout_error)?;
    if terminal {
        eprintln!();
    }
    Ok(())
}
