//! `[object_store]` end to end with real parts: SeaweedFS (`weed mini`, which enforces S3
//! Object Lock in COMPLIANCE mode) on loopback, a proctor with a real PostgreSQL target, real
//! `psql` agents. A sealed session lands in the bucket as a locked whole object whose SHA-256
//! equals the local one; the store refuses to delete it or shorten its lock; while the store is
//! down the spool grows until new sessions are refused, and nothing is lost when it returns;
//! `proctor verify-bucket` passes on the bucket and names an object that is missing.

mod api_support;
mod object_store_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use api_support::*;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ChecksumMode, ObjectLockMode, ObjectLockRetentionMode};
use base64::Engine;
use object_store_support::*;
use sha2::{Digest, Sha256};

const BUCKET: &str = "evidence";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn object_store_toml(endpoint: &str, secret_file: &std::path::Path, spool_max: &str) -> String {
    format!(
        "\n[object_store]\nendpoint = \"{endpoint}\"\nbucket = \"{BUCKET}\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key_file = {}\nspool_max = \"{spool_max}\"\ninterval_ms = 200\n",
        toml::Value::String(secret_file.display().to_string())
    )
}

/// Every object in `bucket`: key -> bytes.
async fn objects(s3: &aws_sdk_s3::Client, bucket: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let list = s3
        .list_objects_v2()
        .bucket(bucket)
        .max_keys(1000)
        .send()
        .await
        .expect("list");
    for o in list.contents() {
        let key = o.key().expect("key").to_string();
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .expect("get")
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .to_vec();
        out.insert(key, body);
    }
    out
}

/// `KEY -> SHA-256 hex` of what proctor counts as shipped.
fn shipped_log(p: &Proctor) -> BTreeMap<String, String> {
    let path = p.dir.path().join("data/object-store/shipped.log");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, h)| (k.to_string(), h.to_string()))
        .collect()
}

fn spooled(p: &Proctor) -> usize {
    std::fs::read_dir(p.dir.path().join("data/object-store/spool"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0)
}

async fn wait_for(what: &str, secs: u64, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One psql session through proctor; the target's answer is its output.
async fn run_psql(p: &Proctor, sql: &str) -> std::process::Output {
    p.psql(AGENT_A, SECRET_A, sql)
        .wait_with_output()
        .await
        .expect("psql")
}

fn bundles(o: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    o.keys()
        .filter(|k| k.starts_with("sessions/"))
        .cloned()
        .collect()
}

async fn verify_bucket(endpoint: &str, bucket: &str, pubkey: &std::path::Path) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_proctor"))
        .args(["verify-bucket", "--endpoint", endpoint, "--bucket", bucket])
        .arg("--pubkey")
        .arg(pubkey)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("proctor verify-bucket");
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_sessions_ship_locked_survive_an_outage_and_verify_from_the_bucket() {
    let t_all = Instant::now();
    let Some(bin) = tokio::task::spawn_blocking(weed_binary)
        .await
        .expect("join")
    else {
        return;
    };
    let mut weed = tokio::task::spawn_blocking(move || Weed::start(bin))
        .await
        .expect("join");
    let endpoint = weed.endpoint();
    let s3 = client(&endpoint);
    s3.create_bucket()
        .bucket(BUCKET)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .expect("create the locked bucket");
    let secret = weed.dir.path().join("proctor-secret");
    std::fs::write(&secret, format!("{SECRET_KEY}\n")).expect("secret");
    let p = Proctor::start(&object_store_toml(&endpoint, &secret, "48KiB")).await;
    let pubkey = p.dir.path().join("data/keys/recorder.pub");

    // 1. A sealed session appears in the bucket, locked in COMPLIANCE mode until its
    // retain_until, and the store's SHA-256 is the local one.
    let out = run_psql(&p, "select v from t where id = 1").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("row 1"), "the target answered");
    let mut found = BTreeMap::new();
    wait_for("the first bundle in the bucket", 30, async || {
        found = objects(&s3, BUCKET).await;
        bundles(&found).len() == 1 && spooled(&p) == 0
    })
    .await;
    let key = bundles(&found).remove(0);
    let bytes = &found[&key];
    let (manifest, _) = proctor::export::bundle::read_manifest(bytes).expect("a bundle");
    assert!(manifest.meta.sealed, "{key}");
    let head = s3
        .head_object()
        .bucket(BUCKET)
        .key(&key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .expect("head");
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Compliance));
    let until = head.object_lock_retain_until_date().expect("retain until");
    let want = manifest
        .meta
        .retain_until_ns
        .expect("the session has a retain_until");
    assert_eq!(
        until.secs(),
        want.div_euclid(1_000_000_000),
        "lock = retain_until"
    );
    let local = shipped_log(&p);
    let sha = Sha256::digest(bytes);
    assert_eq!(local.get(&key), Some(&hex::encode(sha)), "shipped.log");
    assert_eq!(
        head.checksum_sha256(),
        Some(
            base64::engine::general_purpose::STANDARD
                .encode(sha)
                .as_str()
        )
    );
    // Every object proctor counts as shipped has the local digest in the store.
    for (k, h) in &local {
        let theirs = found.get(k).map(|b| hex::encode(Sha256::digest(b)));
        assert_eq!(theirs.as_ref(), Some(h), "{k}");
    }

    // 2. The store refuses to delete that version or to shorten its lock (403), also for a
    // caller with the store's admin identity; a second PUT of the key is refused too.
    let version = head.version_id().expect("versioned").to_string();
    let del = s3
        .delete_object()
        .bucket(BUCKET)
        .key(&key)
        .version_id(&version)
        .send()
        .await;
    let status = del
        .as_ref()
        .err()
        .and_then(|e| e.raw_response())
        .map(|r| r.status().as_u16());
    assert_eq!(status, Some(403), "delete of a locked version: {del:?}");
    let bypass = s3
        .delete_object()
        .bucket(BUCKET)
        .key(&key)
        .version_id(&version)
        .bypass_governance_retention(true)
        .send()
        .await;
    let status = bypass
        .as_ref()
        .err()
        .and_then(|e| e.raw_response())
        .map(|r| r.status().as_u16());
    assert_eq!(status, Some(403), "bypass-governance delete: {bypass:?}");
    let shorter = s3
        .put_object_retention()
        .bucket(BUCKET)
        .key(&key)
        .version_id(&version)
        .retention(
            aws_sdk_s3::types::ObjectLockRetention::builder()
                .mode(ObjectLockRetentionMode::Compliance)
                .retain_until_date(DateTime::from_secs(until.secs() - 3600))
                .build(),
        )
        .send()
        .await;
    let status = shorter
        .as_ref()
        .err()
        .and_then(|e| e.raw_response())
        .map(|r| r.status().as_u16());
    assert_eq!(status, Some(403), "shortening the lock: {shorter:?}");
    let overwrite = s3
        .put_object()
        .bucket(BUCKET)
        .key(&key)
        .body(ByteStream::from_static(b"forged"))
        .if_none_match("*")
        .send()
        .await;
    let status = overwrite
        .as_ref()
        .err()
        .and_then(|e| e.raw_response())
        .map(|r| r.status().as_u16());
    assert_eq!(
        status,
        Some(412),
        "If-None-Match on an existing key: {overwrite:?}"
    );
    let still = objects(&s3, BUCKET).await;
    assert_eq!(still.get(&key), Some(bytes), "the evidence is unchanged");

    // 3. The store goes down: recording goes on, the spool grows, and past spool_max new
    // sessions are refused with a clear error (and a journal note).
    tokio::task::block_in_place(|| weed.stop());
    let mut during = 0;
    let mut refused = None;
    for i in 0..40 {
        let out = run_psql(&p, &format!("select v from t where id = {}", 1 + i % 5)).await;
        if out.status.success() {
            during += 1;
            assert!(text(&out.stdout).contains("row "), "the target answered");
        } else {
            refused = Some(text(&out.stderr));
            break;
        }
    }
    let refused = refused.expect("new sessions are refused once the spool passes spool_max");
    assert!(refused.contains("spool_max"), "{refused}");
    assert!(
        during >= 1,
        "sessions ran and were recorded while the store was down"
    );
    let pending = spooled(&p);
    assert!(pending > during, "the spool holds them: {pending} objects");
    let journal = p.events(JOURNAL).await;
    let noted = |needle: &str| journal.iter().any(|e| e.to_string().contains(needle));
    assert!(noted("shipping stopped"), "journal names the outage");
    assert!(
        noted("new sessions are refused"),
        "journal names the refusal"
    );

    // 4. The store returns: the spool drains with no hole, every object's SHA-256 equals the
    // local digest, and sessions are admitted again.
    tokio::task::block_in_place(|| weed.resume());
    wait_for("the spool to drain", 60, async || spooled(&p) == 0).await;
    let out = run_psql(&p, "select v from t where id = 2").await;
    assert!(
        out.status.success(),
        "admitted again: {}",
        text(&out.stderr)
    );
    wait_for("the last session shipped", 30, async || {
        spooled(&p) == 0 && bundles(&objects(&s3, BUCKET).await).len() >= during + 2
    })
    .await;
    let all = objects(&s3, BUCKET).await;
    let local = shipped_log(&p);
    assert_eq!(local.len(), all.len(), "shipped.log lists each object once");
    for (k, h) in &local {
        assert_eq!(
            all.get(k).map(|b| hex::encode(Sha256::digest(b))).as_ref(),
            Some(h),
            "{k}"
        );
    }
    // Every admitted session has its bundle (a refusal is recorded as a session of its own
    // and may add one more); verify-bucket below checks each sealed leaf has one.
    assert!(bundles(&all).len() >= during + 2, "{:?}", bundles(&all));
    // The local copy stays: the store verifies as before.
    let local_verify = tokio::process::Command::new(env!("CARGO_BIN_EXE_proctor"))
        .args(["verify", "--pubkey"])
        .arg(&pubkey)
        .arg("--data")
        .arg(p.dir.path().join("data"))
        .output()
        .await
        .expect("verify");
    assert!(
        local_verify.status.success(),
        "{}",
        text(&local_verify.stdout)
    );

    // 5. Verify from the bucket with only the public key: passes...
    let (ok, report) = verify_bucket(&endpoint, BUCKET, &pubkey).await;
    assert!(ok, "{report}");
    assert!(report.contains("OK"), "{report}");
    // ... and a copy missing one session's object fails, naming it. (Objects in the locked
    // bucket cannot be deleted: the copy is an unlocked bucket with all but one.)
    s3.create_bucket()
        .bucket("copy")
        .send()
        .await
        .expect("copy bucket");
    let victim = bundles(&all)[1].clone();
    for (k, v) in &all {
        if *k != victim {
            s3.put_object()
                .bucket("copy")
                .key(k)
                .body(ByteStream::from(v.clone()))
                .send()
                .await
                .expect("copy");
        }
    }
    let (ok, report) = verify_bucket(&endpoint, "copy", &pubkey).await;
    assert!(!ok, "{report}");
    assert!(report.contains(&format!("{victim}: missing")), "{report}");
    eprintln!(
        "object_store: {} objects, {during} sessions while down, {:?} in all",
        all.len(),
        t_all.elapsed()
    );
    p.stop().await;
}
