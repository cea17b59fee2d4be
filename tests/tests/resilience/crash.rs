//! Crash safety: every plan that got a 202 is present and intact after a SIGKILL.

use std::sync::{Arc, Mutex};

use e2e::process::ServerProcess;
use e2e::{connect, plan, submit};

/// How many kill/restart rounds (raise with CRASH_ITERATIONS for a longer run).
fn iterations() -> usize {
    std::env::var("CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_plan_survives_sigkill_and_the_database_stays_sound() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, config) = e2e::process::dev_pki_server(dir.path());
    let key = std::fs::read_to_string(pki.join("route-worker.api-key")).unwrap();
    let ca = pki.join("ca.pem");
    let acknowledged: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let mut server = ServerProcess::start(&config, &[]);
    for round in 0..iterations() {
        let port = server.https_port;
        let mut clients = Vec::new();
        for client in 0..4 {
            let (key, ca, acknowledged) = (key.clone(), ca.clone(), acknowledged.clone());
            clients.push(tokio::spawn(async move {
                // Bounded: at most 5 000 plans per client per round; stops at the first failure.
                for n in 0..5_000 {
                    let stops = 1 + (n % 7);
                    let request = submit(&plan(&format!("r{round}-c{client}-{n}"), stops))
                        .api_key(key.trim());
                    let Ok(mut connection) = connect(port, &ca, None, "localhost").await else {
                        break;
                    };
                    match connection.send(request).await {
                        Ok(response) if response.status == 202 => {
                            let id = response.json()["id"].as_str().unwrap().to_owned();
                            acknowledged.lock().unwrap().push((id, stops));
                        }
                        _ => break,
                    }
                }
            }));
        }
        // Kill at a moment nobody chose: between 150 and 650 ms into the load.
        let delay = 150
            + (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
                % 500);
        tokio::time::sleep(std::time::Duration::from_millis(delay as u64)).await;
        server.kill();
        for client in clients {
            client.await.unwrap();
        }
        server = ServerProcess::start(&config, &[]);
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 10,
        "the load ran ({} plans)",
        acknowledged.len()
    );
    e2e::process::assert_acknowledged_plans_stored(
        server.https_port,
        &ca,
        key.trim(),
        &acknowledged,
    )
    .await;
    assert_eq!(server.stop().code(), Some(0));
    let pool = crate::open_database(&dir.path().join("dispatch.db")).await;
    let integrity = dispatch_api::storage::integrity_check(&pool).await.unwrap();
    assert_eq!(integrity, "ok");
    let half_written: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM plans WHERE json_valid(body) = 0 OR json_array_length(body, '$.stops') != stop_count")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(half_written, 0, "no plan is half-written");
}
