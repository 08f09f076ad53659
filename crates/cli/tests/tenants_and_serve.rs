//! `sluice tenants` and `sluice serve --data` (the embedded default): a key made, listed and
//! revoked; records sent through the front door stored under the key's tenant; config and rules
//! through the tenant API (`sluice config`, `sluice rules upload --api`, `sluice rules status`).

mod support;

use std::io::BufRead as _;
use std::process::Stdio;

use arrow_array::Array as _;

use support::{fails, last_json, ok, run, sluice};

fn tenants(dir: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut cmd = sluice();
    cmd.arg("tenants").args(args).arg("--data").arg(dir);
    cmd.env_remove("SLUICE_KEY_PEPPER");
    cmd
}

#[test]
fn a_key_is_shown_once_listed_without_its_secret_and_revoked() {
    let dir = tempfile::tempdir().expect("temp dir");
    ok(&run(&mut tenants(dir.path(), &["create", "acme"])));
    let (_, err) = fails(&run(&mut tenants(dir.path(), &["create", "acme"])));
    assert!(err.contains("already exists"), "{err}");
    let made = last_json(&ok(&run(&mut tenants(
        dir.path(),
        &[
            "keys", "create", "acme", "--scope", "admin", "--name", "ci", "--json",
        ],
    ))));
    let token = made["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with("slk_"), "{made}");
    assert!(made.get("hash").is_none(), "{made}");
    let key_id = made["key_id"].as_str().expect("key id").to_owned();
    let listed = ok(&run(&mut tenants(
        dir.path(),
        &["keys", "list", "acme", "--json"],
    )));
    assert!(listed.contains(&key_id) && listed.contains("admin") && listed.contains("ci"));
    assert!(!listed.contains(&token[token.len() - 64..]), "{listed}");
    ok(&run(&mut tenants(
        dir.path(),
        &["keys", "revoke", "acme", &key_id],
    )));
    let listed = ok(&run(&mut tenants(
        dir.path(),
        &["keys", "list", "acme", "--json"],
    )));
    assert!(listed.contains("revoked_at"), "{listed}");
    let (_, err) = fails(&run(&mut tenants(
        dir.path(),
        &["keys", "create", "nobody"],
    )));
    assert!(err.contains("no tenant"), "{err}");
}

#[tokio::test]
async fn serve_stores_records_under_the_keys_tenant_in_the_data_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    ok(&run(&mut tenants(dir.path(), &["create", "acme"])));
    let made = last_json(&ok(&run(&mut tenants(
        dir.path(),
        &["keys", "create", "acme", "--json"],
    ))));
    let token = made["token"].as_str().expect("token").to_owned();
    let (server, url) = start_serve(dir.path());
    let client = reqwest::Client::new();
    let body = "{\"service\":\"web\",\"msg\":\"a\",\"tenant\":\"globex\"}\n{\"msg\":\"b\"}\n";
    let answer = client
        .post(format!("{url}/v1/ingest"))
        .bearer_auth(&token)
        .body(body)
        .send()
        .await
        .expect("posting");
    assert_eq!(answer.status().as_u16(), 200);
    let refused = client
        .post(format!("{url}/v1/ingest"))
        .bearer_auth("slk_0123456789abcdef_nope")
        .body(body)
        .send()
        .await
        .expect("posting");
    assert_eq!(refused.status().as_u16(), 401);
    // A clean stop stores what was accepted before it exits.
    stop(server);
    // One raw object per batch (docs/ARCHITECTURE.md §11): every row in it is the key's.
    let raw: Vec<_> = walk(&dir.path().join("raw"));
    assert!(!raw.is_empty(), "no Parquet written");
    let mut tenants = Vec::new();
    for path in &raw {
        let body = std::fs::read(path).expect("reading the raw object");
        for batch in sluice_core::compact::read_batches(body.into()).expect("Parquet") {
            let column = batch.column_by_name("tenant").expect("tenant column");
            let strings = column
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .expect("tenant is a string column");
            tenants.extend(strings.iter().map(|t| t.map(str::to_owned)));
        }
    }
    assert_eq!(tenants, vec![Some("acme".to_owned()); 2], "{raw:?}");
}

/// `sluice serve --data DIR` on a free loopback port; its URL.
fn start_serve(dir: &std::path::Path) -> (std::process::Child, String) {
    let mut server = sluice()
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir)
        .env_remove("SLUICE_KEY_PEPPER")
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting sluice serve");
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("reading the address");
    let url = line.trim().rsplit(' ').next().expect("url").to_owned();
    (server, url)
}

/// Stops the server cleanly (it stores what it accepted before it exits).
fn stop(mut server: std::process::Child) {
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill");
    assert!(stopped.success());
    assert!(server.wait().expect("waiting").success());
}

#[test]
fn config_and_rules_go_through_the_api_for_the_keys_tenant() {
    let dir = tempfile::tempdir().expect("temp dir");
    ok(&run(&mut tenants(dir.path(), &["create", "acme"])));
    let made = last_json(&ok(&run(&mut tenants(
        dir.path(),
        &["keys", "create", "acme", "--scope", "admin", "--json"],
    ))));
    let token = made["token"].as_str().expect("token").to_owned();
    let (server, url) = start_serve(dir.path());
    let api = |args: &[&str]| {
        let mut cmd = sluice();
        cmd.args(args)
            .env("SLUICE_API_URL", &url)
            .env("SLUICE_API_KEY", &token)
            .current_dir(dir.path());
        cmd
    };
    std::fs::write(
        dir.path().join("c.toml"),
        "[[webhooks]]\nid = \"ops\"\nurl = \"https://hooks.example.com/x\"\n",
    )
    .expect("writing the config");
    let set = ok(&run(&mut api(&["config", "set", "c.toml"])));
    let secret = set
        .split_whitespace()
        .find(|w| w.starts_with("whsec_"))
        .expect("the new secret is shown")
        .to_owned();
    let got = ok(&run(&mut api(&["config", "get"])));
    assert!(got.contains("hooks.example.com"), "{got}");
    assert!(!got.contains(&secret), "the secret is shown once");
    assert!(dir.path().join("tenants/acme.toml").exists());

    std::fs::write(
        dir.path().join("bad.toml"),
        "[[webhooks]]\nid = \"ops\"\nurl = \"http://127.0.0.1/x\"\n",
    )
    .expect("writing the config");
    let (_, err) = fails(&run(&mut api(&["config", "set", "bad.toml"])));
    assert!(err.contains("400"), "{err}");

    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/examples/new-pattern/rule.toml");
    std::fs::copy(manifest, dir.path().join("rule.toml")).expect("copying a manifest");
    std::fs::write(dir.path().join("bad.wasm"), b"\0asm\x0d\0\x01\0").expect("writing");
    let (_, err) = fails(&run(&mut api(&[
        "rules",
        "upload",
        "--rule",
        "r1",
        "-m",
        "rule.toml",
        "bad.wasm",
    ])));
    assert!(err.contains("not_a_rule"), "{err}");
    let status = ok(&run(&mut api(&["rules", "status", "r1"])));
    assert!(status.contains("\"rejected\""), "{status}");
    assert!(dir.path().join("rules/acme/r1/module.wasm").exists());

    stop(server);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
