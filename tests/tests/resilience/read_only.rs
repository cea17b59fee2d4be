//! The database's file system turns read-only under a running service, as the kernel does on an
//! I/O error (`errors=remount-ro`), and an operator repairs it and mounts it back.
//!
//! A real file system, not a simulation: the server runs in its own mount namespace with its
//! data directory on a loop-mounted ext4 image; the fault is ext4's own error path
//! (`/sys/fs/ext4/<dev>/trigger_fs_error`). That needs root and loop devices; where they are
//! missing the test says so and does nothing.

use std::path::Path;
use std::process::Command;

use e2e::process::ServerProcess;
use e2e::{Request, plan, submit};

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn privileged() -> Option<&'static str> {
    if !Path::new("/dev/loop-control").exists() {
        return Some("no loop devices");
    }
    for tool in ["mkfs.ext4", "e2fsck", "nsenter", "findmnt"] {
        if !run("sh", &["-c", &format!("command -v {tool}")])
            .status
            .success()
        {
            return Some("e2fsprogs or util-linux missing");
        }
    }
    if !run("unshare", &["--mount", "true"]).status.success() {
        return Some("cannot make a mount namespace (not root)");
    }
    None
}

/// Runs a shell command inside the server's mount namespace.
fn in_server_namespace(server: &ServerProcess, script: &str) -> String {
    let output = run(
        "nsenter",
        &[
            "--target",
            &server.pid().to_string(),
            "--mount",
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    assert!(
        output.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Database files the process holds open anywhere but under `data` (as it is mounted now).
fn files_outside(pid: u32, data: &Path) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| {
            target.contains("dispatch.db") && !target.starts_with(&*data.to_string_lossy())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_file_system_gives_503_never_202_and_recovers_when_remounted() {
    if let Some(why) = privileged() {
        eprintln!("SKIPPED: the read-only file-system test needs root and loop devices: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pki, config) = e2e::process::dev_pki_server(dir.path());
    let image = dir.path().join("data.img");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::File::create(&image)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let mkfs = run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
    assert!(mkfs.status.success(), "{mkfs:?}");

    let mount = format!(
        "mount -o loop,errors=remount-ro '{}' '{}' && exec \"$0\"",
        image.display(),
        data.display()
    );
    let server = ServerProcess::start_wrapped(
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &mount,
        ],
        &config,
        &[(
            "DISPATCH_DATABASE__PATH",
            data.join("dispatch.db").display().to_string(),
        )],
    );
    let key = std::fs::read_to_string(pki.join("route-worker.api-key")).unwrap();
    let key = key.trim();
    let mut client = e2e::connect(server.https_port, &pki.join("ca.pem"), None, "localhost")
        .await
        .unwrap();
    let before = client
        .send(submit(&plan("before", 3)).api_key(key))
        .await
        .unwrap();
    assert_eq!(before.status, 202, "{}", before.text());
    let before_id = before.json()["id"].as_str().unwrap().to_owned();

    // The fault: ext4 meets an error and the kernel makes the file system read-only.
    let device = in_server_namespace(&server, &format!("findmnt -no SOURCE '{}'", data.display()));
    let device = device.trim_start_matches("/dev/");
    std::fs::write(format!("/sys/fs/ext4/{device}/trigger_fs_error"), "1").unwrap();
    let options = in_server_namespace(
        &server,
        &format!("findmnt -no OPTIONS '{}'", data.display()),
    );
    assert!(
        options.contains("ro"),
        "the file system is read-only: {options}"
    );

    for attempt in 0..2 {
        let refused = client
            .send(submit(&plan(&format!("during-{attempt}"), 3)).api_key(key))
            .await
            .unwrap();
        refused.assert_problem(503, "unavailable");
        assert!(
            refused.header("retry-after").is_some(),
            "503 carries Retry-After"
        );
    }
    let ready = e2e::ops_get(server.ops_port, "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());

    // The operator's repair: detach the broken mount, check a copy of the image, mount it back.
    in_server_namespace(
        &server,
        &format!(
            "umount -l '{data}' && cp '{image}' '{image}.repaired' && \
             {{ e2fsck -fy '{image}.repaired' >/dev/null; [ $? -le 1 ]; }} && \
             mount -o loop '{image}.repaired' '{data}'",
            data = data.display(),
            image = image.display()
        ),
    );

    // No restart: the next plan is taken, and what was acknowledged before the fault is there.
    let after = client
        .send(submit(&plan("after", 3)).api_key(key))
        .await
        .unwrap();
    assert_eq!(
        after.status,
        202,
        "{}\n{}",
        after.text(),
        server.logs.text()
    );
    let after_id = after.json()["id"].as_str().unwrap().to_owned();
    let ready = e2e::ops_get(server.ops_port, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    // Nothing stays open on the detached, failed file system: a connection kept there would
    // write its commits and checkpoints to a file nobody will read again. Pool connections are
    // replaced as they are next used, so give the pool a few uses.
    let mut stale = Vec::new();
    for _ in 0..50 {
        stale = files_outside(server.pid(), &data);
        if stale.is_empty() {
            break;
        }
        e2e::ops_get(server.ops_port, "/readyz").await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        stale.is_empty(),
        "database files still open on the failed file system: {stale:?}"
    );
    for id in [&before_id, &after_id] {
        let stored = client
            .send(Request::get(&format!("/api/dispatch-plans/{id}")).api_key(key))
            .await
            .unwrap();
        assert_eq!(stored.status, 200, "plan {id} is stored: {}", stored.text());
    }
    assert_eq!(server.stop().code(), Some(0));
}
