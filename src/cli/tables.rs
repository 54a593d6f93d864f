//! `portal tables`: DynamoDB tables for local and test use.

use super::{aws_settings, fail};
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(super) enum TablesCommand {
    /// Create `<PORTAL_TABLE_PREFIX>-devices`, `-audit` and `-rate_limits`
    /// as src/adapters/aws/schema.rs defines them; existing tables are checked.
    Create,
}

impl TablesCommand {
    pub(super) async fn run(self) -> ExitCode {
        match self {
            Self::Create => create_tables().await,
        }
    }
}

async fn create_tables() -> ExitCode {
    let (prefix, _) = match aws_settings() {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let client = match recovery_portal::adapters::aws::sdk_config().await {
        Ok(config) => recovery_portal::adapters::aws::dynamodb_client(config),
        Err(e) => return fail(e),
    };
    match recovery_portal::adapters::aws::create_tables(&client, &prefix).await {
        Ok(tables) => {
            for (name, status) in tables {
                println!("{name}: {status:?}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
