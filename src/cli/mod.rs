//! The `portal` subcommands, one file each (clap derive); this file holds
//! the command line's shape and what several commands share.

mod audit;
#[cfg(feature = "dev-idp")]
mod dev_env;
#[cfg(feature = "dev-idp")]
mod event;
mod import;
mod keys;
mod serve;
mod sync;
mod tables;
#[cfg(feature = "dev-idp")]
mod token;
mod validate;

use clap::{Parser, Subcommand};
use recovery_portal::config::{Backend, Config};
#[cfg(feature = "dev-idp")]
use recovery_portal::tools::devidp::{DEV_AUDIENCE, DevIdentityProvider};
use recovery_portal::tools::seed;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "portal",
    version,
    about = "BitLocker recovery-key portal backend"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The issuer of development tokens: `portal serve`'s default address.
#[cfg(feature = "dev-idp")]
const DEV_ISSUER: &str = "http://127.0.0.1:8080";

#[derive(Subcommand)]
enum Command {
    /// Serve the API locally (embedded backends with demo data by default).
    Serve(serve::Serve),
    /// Print a token from the local development identity provider.
    #[cfg(feature = "dev-idp")]
    Token(token::Token),
    /// Print an API Gateway HTTP API (payload 2.0) event for a Lambda
    /// function, carrying a fresh dev token: the data of
    /// `cargo lambda invoke <function> --data-file`. The function must trust
    /// the dev key: see `portal dev-env`.
    #[cfg(feature = "dev-idp")]
    Event(event::Event),
    /// Print the environment under which a Lambda function run locally
    /// (`cargo lambda watch`) trusts the dev identity provider's tokens, as
    /// shell `export` lines: `eval "$(portal dev-env)"`.
    #[cfg(feature = "dev-idp")]
    DevEnv(dev_env::DevEnv),
    /// Validate a seed file without loading it anywhere.
    Validate(validate::Validate),
    /// Import a seed file into DynamoDB, sealing each key with KMS
    /// (PORTAL_TABLE_PREFIX, PORTAL_KMS_KEY_ID and the usual AWS settings).
    /// The whole file is validated first; an invalid file writes nothing.
    /// A device moved to another owner, and a stored tenant whose settings
    /// change, are recorded in the audit trail as changed by `import:<actor>`.
    Import(import::Import),
    /// Copy recovery keys one way from where the organisation keeps them.
    Sync {
        #[command(subcommand)]
        command: sync::SyncCommand,
    },
    /// The audit trail (PORTAL_TABLE_PREFIX and the usual AWS settings).
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// DynamoDB tables for local and test use (production: Terraform).
    Tables {
        #[command(subcommand)]
        command: tables::TablesCommand,
    },
    /// Stored recovery keys (PORTAL_TABLE_PREFIX, PORTAL_KMS_KEY_ID and the
    /// usual AWS settings).
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
}

impl Cli {
    /// Runs the chosen command.
    pub async fn run(self) -> ExitCode {
        match self.command {
            Command::Serve(c) => c.run().await,
            #[cfg(feature = "dev-idp")]
            Command::Token(c) => c.run(),
            #[cfg(feature = "dev-idp")]
            Command::Event(c) => c.run(),
            #[cfg(feature = "dev-idp")]
            Command::DevEnv(c) => c.run(),
            Command::Validate(c) => c.run(),
            Command::Import(c) => c.run().await,
            Command::Sync { command } => command.run().await,
            Command::Audit { command } => command.run().await,
            Command::Tables { command } => command.run().await,
            Command::Keys { command } => command.run().await,
        }
    }
}

/// `(table prefix, KMS key id)` from the environment, as `PORTAL_BACKEND=aws` reads them.
fn aws_settings() -> Result<(String, Option<String>), String> {
    let c = Config::from_lookup(|k| match k {
        "PORTAL_BACKEND" => Some("aws".into()),
        _ => std::env::var(k).ok(),
    })
    .map_err(|e| e.to_string())?;
    match c.backend {
        Backend::Aws {
            table_prefix,
            kms_key_id,
        } => Ok((table_prefix, kms_key_id)),
        Backend::Embedded => Err("PORTAL_BACKEND: expected aws".into()),
    }
}

/// A progress bar on a terminal, nothing otherwise.
fn progress(done: usize, total: usize) {
    use std::io::{IsTerminal, Write};
    let mut err = std::io::stderr();
    if !err.is_terminal() || total == 0 {
        return;
    }
    let width = 40;
    let filled = done * width / total;
    let _ = write!(
        err,
        "\r[{}{}] {done}/{total} devices",
        "#".repeat(filled),
        " ".repeat(width - filled)
    );
    if done == total {
        let _ = writeln!(err);
    }
    let _ = err.flush();
}

/// The dev identity provider for `issuer`, with its key in
/// `PORTAL_DEV_KEY_FILE` (created on first use), so every command agrees.
#[cfg(feature = "dev-idp")]
fn dev_idp(issuer: &str) -> Result<DevIdentityProvider, String> {
    DevIdentityProvider::load_or_create(
        &DevIdentityProvider::default_key_path(),
        issuer.trim_end_matches('/'),
        DEV_AUDIENCE,
    )
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("portal: {msg}");
    ExitCode::FAILURE
}

fn read_seed(path: &std::path::Path) -> Result<seed::Seed, String> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
    );
    seed::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}
