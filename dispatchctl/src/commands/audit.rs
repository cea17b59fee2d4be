//! The audit log, newest last; `--follow` keeps printing new events.

use std::time::Duration;

use clap::Subcommand;
use dispatch_types::{AuditEntry, AuditLog};

use crate::api::Admin;
use crate::error::CtlError;

/// The audit log's command.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// The audit log, newest last; `--follow` keeps printing new events.
    Audit {
        #[arg(long)]
        client: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        follow: bool,
    },
}

impl AuditCommand {
    pub async fn run(self, admin: &Admin) -> Result<u8, CtlError> {
        let Self::Audit {
            client,
            limit,
            follow,
        } = self;
        audit(admin, client.as_deref(), limit, follow).await?;
        Ok(0)
    }
}

fn audit_line(event: &AuditEntry) -> String {
    let field = |value: &Option<String>| value.as_deref().unwrap_or("-").to_owned();
    let mut line = format!(
        "{} {:13} {:28} client={} actor={}",
        field(&event.at),
        event.kind,
        event.reason,
        field(&event.client),
        field(&event.actor)
    );
    if event.before.is_some() || event.after.is_some() {
        line += &format!(" {} -> {}", field(&event.before), field(&event.after));
    }
    if let Some(note) = event.detail["note"].as_str() {
        line += &format!(" note={note:?}");
    }
    line
}

async fn audit(
    admin: &Admin,
    client: Option<&str>,
    limit: u32,
    follow: bool,
) -> Result<(), CtlError> {
    let path = |limit: u32| match client {
        Some(c) => format!("/admin/audit?client={c}&limit={limit}"),
        None => format!("/admin/audit?limit={limit}"),
    };
    let mut last_id = i64::MIN;
    let mut limit = limit;
    loop {
        let answer: AuditLog = admin.get(&path(limit)).await?;
        for event in answer.events.iter().rev() {
            if event.id > last_id {
                println!("{}", audit_line(event));
                last_id = event.id;
            }
        }
        if !follow {
            return Ok(());
        }
        limit = 1000;
        actix_rt::time::sleep(Duration::from_secs(2)).await;
    }
}
