//! The audit log, newest last; `--follow` keeps printing new events.

use std::time::Duration;

use serde_json::Value;

use crate::api::Admin;
use crate::error::CtlError;

fn audit_line(event: &Value) -> String {
    let field = |key: &str| event[key].as_str().unwrap_or("-").to_owned();
    let mut line = format!(
        "{} {:13} {:28} client={} actor={}",
        field("at"),
        field("kind"),
        field("reason"),
        field("client"),
        field("actor")
    );
    if event["before"].is_string() || event["after"].is_string() {
        line += &format!(" {} -> {}", field("before"), field("after"));
    }
    if let Some(note) = event["detail"]["note"].as_str() {
        line += &format!(" note={note:?}");
    }
    line
}

pub async fn audit(
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
        let answer = admin.get(&path(limit)).await?;
        let mut events: Vec<&Value> = answer["events"].as_array().into_iter().flatten().collect();
        events.reverse();
        for event in events {
            let id = event["id"].as_i64().unwrap_or(i64::MIN);
            if id > last_id {
                println!("{}", audit_line(event));
                last_id = id;
            }
        }
        if !follow {
            return Ok(());
        }
        limit = 1000;
        actix_rt::time::sleep(Duration::from_secs(2)).await;
    }
}
