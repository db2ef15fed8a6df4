//! `proctor verify` and `export`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};

use super::StoreArgs;
use super::sessions::find_session;
use crate::ops::{self, ExportFormat};
use crate::recorder::signing;
use proctor_gate::inert::line;

/// Writes a verification's output. A reader that goes away early (`proctor verify | head -1`)
/// gets what it read and proctor exits 1: the full result was not delivered, so it cannot
/// count as a pass (and it is not a crash either).
fn emit(text: &str, code: i32) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(code),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(1),
        Err(e) => Err(e).context("writing the verification result"),
    }
}

/// Exit status of `proctor verify`: 0 intact, 1 a problem, 3 intact but with records that no
/// signature made before a crash covers (an unsigned tail).
pub const EXIT_UNSIGNED_TAIL: i32 = 3;

fn bundle_text(path: &std::path::Path, report: &crate::export::bundle::BundleReport) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "bundle {}: session {}, {} records, key: {}",
        path.display(),
        line(&report.session),
        report.records,
        report.key_source
    );
    for p in &report.problems {
        let _ = writeln!(t, "FAIL {}", line(&p.to_string()));
    }
    unsigned_text(&mut t, &report.unsigned_tails);
    if report.problems.is_empty() {
        let verdict = if report.unsigned_tails.is_empty() {
            "OK"
        } else {
            "UNSIGNED TAIL"
        };
        let _ = writeln!(
            t,
            "{verdict}: the chain, its signatures, the seal, the metadata, the ledger inclusion proof and the tree head verify"
        );
    }
    t
}

fn unsigned_text(t: &mut String, tails: &[crate::recorder::verify::UnsignedTail]) {
    use std::fmt::Write as _;
    for u in tails {
        let _ = writeln!(
            t,
            "UNSIGNED TAIL session {} seq {} to {}: {} records ({} to {}) {}",
            u.session,
            u.from_seq,
            u.to_seq,
            u.records,
            crate::clock::format_ns(u.first_ts_ns),
            crate::clock::format_ns(u.last_ts_ns),
            if u.sealed_by_recovery {
                "written after the last checkpoint before a crash; only proctor's restart vouches for them"
            } else {
                "written after the last checkpoint of a chain a crash left open; no signature covers them"
            }
        );
    }
}

fn store_text(report: &crate::recorder::verify::Report, key_source: &str) -> String {
    use crate::recorder::verify::Verdict;
    use std::fmt::Write as _;
    let mut t = String::new();
    for n in &report.notes {
        let _ = writeln!(t, "note: {}", line(&n.to_string()));
    }
    for p in &report.problems {
        let _ = writeln!(t, "FAIL {}", line(&p.to_string()));
    }
    unsigned_text(&mut t, &report.unsigned_tails);
    let mb = report.bytes as f64 / 1e6;
    let verdict = match report.verdict() {
        Verdict::Ok => "OK",
        Verdict::UnsignedTail => "UNSIGNED TAIL",
        Verdict::Failed => "FAILED",
    };
    let _ = writeln!(
        t,
        "{verdict}: {} sessions ({} sealed, {} open, {} tampered), {} records, {:.1} MB in {} segments, {} ledger leaves, {} tree heads; {:.2}s ({:.0} MB/s); key: {key_source}",
        report.sessions,
        report.sealed,
        report.open,
        report.tampered,
        report.records,
        mb,
        report.segments,
        report.ledger_leaves,
        report.tree_heads,
        report.seconds,
        if report.seconds > 0.0 {
            mb / report.seconds
        } else {
            0.0
        },
    );
    t
}

/// What `proctor verify` was asked.
pub struct VerifyArgs {
    pub session: Option<String>,
    pub pubkey: Option<PathBuf>,
    pub bundle: Option<PathBuf>,
    pub known_head: Option<PathBuf>,
    /// `--tsa-cert`: check the tree heads' timestamp tokens against these.
    pub tsa_certs: Vec<PathBuf>,
    pub json: bool,
}

/// `--known-head FILE` against the store's ledger, with the key verify uses.
fn check_known_head(
    data: &std::path::Path,
    pubkey: Option<&std::path::Path>,
    file: &std::path::Path,
) -> Result<(
    Option<crate::recorder::verify::Problem>,
    crate::recorder::ledger::TreeHead,
)> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let head = crate::export::bundle::parse_known_head(&bytes)
        .map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let key = match pubkey {
        Some(p) => signing::load_public_key(p)?,
        None => signing::load_public_key(&signing::public_key_path(data))?,
    };
    let problem = crate::recorder::consistency::check_known_head(data, &key, &head)?;
    Ok((problem, head))
}

/// What of a bundle's session an outside head pins (FORMAT.md, "Anchoring"): the tokens that
/// checked out and a `--known-head` linked to the bundle's head. A known head that is not signed
/// by the key, or that forks from the bundle's head, is added to the report's problems.
fn bundle_anchoring(
    bytes: &[u8],
    pinned: Option<&ed25519_dalek::VerifyingKey>,
    report: &mut crate::export::bundle::BundleReport,
    stamps: Option<&crate::recorder::timestamp::check::TimestampReport>,
    known_head: Option<&std::path::Path>,
) -> Result<crate::recorder::verify::BundleAnchoring> {
    use crate::recorder::verify::{AnchorSource, BundleAnchoring, KnownHeadUse, ProblemKind};
    // Decided before a known head's own problem is added: that one says nothing of the
    // session's records (as a rolled-back store keeps its chains' anchoring).
    let failed = report
        .problems
        .iter()
        .any(|p| p.kind != ProblemKind::Timestamp);
    let (manifest, _) = crate::export::bundle::read_manifest(bytes).map_err(|e| anyhow!(e))?;
    let leaf = hex::decode(&manifest.leaf_data)
        .ok()
        .and_then(|d| crate::recorder::ledger::Leaf::decode(&d).ok());
    let sealed = crate::recorder::verify::SealedLeaf {
        session: manifest.session.clone(),
        leaf_index: manifest.leaf_index,
        final_seq: leaf.as_ref().map_or(0, |l| l.final_seq),
        ended_ns: leaf.as_ref().map_or(0, |l| l.ended_ns),
    };
    let mut sources: Vec<AnchorSource> = Vec::new();
    let mut notes = Vec::new();
    if let Some(file) = known_head {
        let raw = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let head = crate::export::bundle::parse_known_head(&raw)
            .map_err(|e| anyhow!("{}: {e}", file.display()))?;
        let key = match pinned {
            Some(k) => *k,
            None => signing::parse_public_key(&manifest.public_key_pem)
                .map_err(|e| anyhow!("bundle public key: {e}"))?,
        };
        let bundle_head = manifest
            .tree_head
            .to_head()
            .ok_or_else(|| anyhow!("the bundle's tree head is malformed"))?;
        match crate::recorder::verify::known_head_for_bundle(
            &head,
            consistency_of(&raw),
            &bundle_head,
            &key,
            &manifest.session,
        ) {
            KnownHeadUse::Anchor(a) => sources.push(a),
            KnownHeadUse::Problem(p) => report.problems.insert(0, p),
            KnownHeadUse::Unlinked(n) => notes.push(n),
        }
    }
    if let Some(s) = stamps {
        sources.extend(s.tokens.iter().map(|t| AnchorSource {
            kind: "rfc3161".into(),
            tree_size: t.tree_size,
            tree_head_ts_ns: t.tree_head_ts_ns,
            gen_time_ns: Some(t.gen_time_ns),
        }));
    }
    let mut a = BundleAnchoring::new(sources, &sealed, manifest.tree_head.size, failed);
    a.notes = notes;
    Ok(a)
}

/// `consistency_from` and `consistency_proof` of a head `proctor ledger head --from M` printed;
/// None when the file has none (or they are malformed: the head is then not linked).
fn consistency_of(raw: &[u8]) -> Option<(u64, Vec<[u8; 32]>)> {
    let v: serde_json::Value = serde_json::from_slice(raw).ok()?;
    let from = v.get("consistency_from")?.as_u64()?;
    let proof = v
        .get("consistency_proof")?
        .as_array()?
        .iter()
        .map(|h| hex::decode(h.as_str()?).ok()?.try_into().ok())
        .collect::<Option<Vec<[u8; 32]>>>()?;
    Some((from, proof))
}

pub async fn verify(store: StoreArgs, args: VerifyArgs) -> Result<i32> {
    let VerifyArgs {
        session,
        pubkey,
        bundle,
        known_head,
        tsa_certs,
        json,
    } = args;
    let trusted = if tsa_certs.is_empty() {
        None
    } else {
        Some(crate::recorder::timestamp::check::load_certs(&tsa_certs).map_err(|e| anyhow!(e))?)
    };
    if let Some(path) = bundle {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let key = pubkey
            .as_deref()
            .map(signing::load_public_key)
            .transpose()?;
        let mut report =
            crate::export::bundle::verify_bundle(&bytes, key.as_ref()).map_err(|e| anyhow!(e))?;
        let stamps = match &trusted {
            Some(t) => Some(super::timestamps::bundle(&bytes, key.as_ref(), t)?),
            None => None,
        };
        if let Some(s) = &stamps {
            report.problems.extend(s.problems.iter().cloned());
        }
        let anchoring = bundle_anchoring(
            &bytes,
            key.as_ref(),
            &mut report,
            stamps.as_ref(),
            known_head.as_deref(),
        )?;
        let code = if !report.problems.is_empty() {
            1
        } else if !report.unsigned_tails.is_empty() {
            EXIT_UNSIGNED_TAIL
        } else {
            0
        };
        let text = if json {
            let mut v = serde_json::to_value(&report)?;
            if let Some(s) = &stamps {
                v["timestamps"] = serde_json::to_value(s)?;
            }
            v["anchoring"] = serde_json::to_value(&anchoring)?;
            format!("{}\n", serde_json::to_string_pretty(&v)?)
        } else {
            let mut t = String::new();
            if let Some(s) = &stamps {
                super::timestamps::text(&mut t, s);
            }
            anchoring.text(&mut t);
            t.push_str(&bundle_text(&path, &report));
            t
        };
        return emit(&text, code);
    }
    let data = store.data_dir()?;
    let live = crate::recorder::is_locked(&data);
    let full_id = match &session {
        None => None,
        Some(s) if crate::recorder::index::parse_session_id(s).is_some() => Some(s.clone()),
        // A prefix needs the index to resolve; the verification itself never uses the index.
        Some(s) => Some(find_session(&store, s).await?.id),
    };
    let (mut report, key_source) = ops::verify(&data, full_id.as_deref(), pubkey.as_deref(), live)?;
    let mut sources = Vec::new();
    if let Some(file) = &known_head {
        // Reported first: a rolled-back ledger explains sessions that are missing from it.
        match check_known_head(&data, pubkey.as_deref(), file)? {
            (Some(p), _) => report.problems.insert(0, p),
            (None, head) => sources.push(crate::recorder::verify::AnchorSource {
                kind: "known_head".into(),
                tree_size: head.size,
                tree_head_ts_ns: head.ts_ns,
                gen_time_ns: None,
            }),
        }
    }
    let stamps = match &trusted {
        Some(t) => {
            let key = match pubkey.as_deref() {
                Some(p) => signing::load_public_key(p)?,
                None => signing::load_public_key(&signing::public_key_path(&data))?,
            };
            let s = crate::recorder::timestamp::check::check_store(&data, &key, t)?;
            report.problems.extend(s.problems.iter().cloned());
            Some(s)
        }
        None => {
            let n = crate::recorder::timestamp::list(&data)?.len();
            if n > 0 {
                report.notes.push(format!(
                    "{n} tree head attestations (timestamp tokens) not checked: pass --tsa-cert"
                ));
            }
            None
        }
    };
    // What an outside anchor pins (one session alone is read without the journal, whose store
    // checkpoints carry the anchors of open sessions: no summary then).
    let anchoring = full_id.is_none().then(|| {
        if let Some(s) = &stamps {
            sources.extend(
                s.tokens
                    .iter()
                    .map(|t| crate::recorder::verify::AnchorSource {
                        kind: "rfc3161".into(),
                        tree_size: t.tree_size,
                        tree_head_ts_ns: t.tree_head_ts_ns,
                        gen_time_ns: Some(t.gen_time_ns),
                    }),
            );
        }
        let size = sources.iter().map(|s| s.tree_size).max().unwrap_or(0);
        report.anchors.summarize(size, sources)
    });
    let code = match report.verdict() {
        crate::recorder::verify::Verdict::Ok => 0,
        crate::recorder::verify::Verdict::UnsignedTail => EXIT_UNSIGNED_TAIL,
        crate::recorder::verify::Verdict::Failed => 1,
    };
    let text = if json {
        let mut v = serde_json::json!({
            "ok": report.ok(),
            "verdict": report.verdict(),
            "key": key_source,
            "report": report
        });
        if let Some(s) = &stamps {
            v["timestamps"] = serde_json::to_value(s)?;
        }
        if let Some(a) = &anchoring {
            v["anchoring"] = serde_json::to_value(a)?;
        }
        format!("{}\n", serde_json::to_string_pretty(&v)?)
    } else {
        let mut t = String::new();
        if let Some(s) = &stamps {
            super::timestamps::text(&mut t, s);
        }
        if let Some(a) = &anchoring {
            a.text(&mut t);
        }
        t.push_str(&store_text(&report, &key_source));
        t
    };
    emit(&text, code)
}

pub fn verify_archive(
    dir: &std::path::Path,
    store: &StoreArgs,
    pubkey: Option<&std::path::Path>,
    json: bool,
) -> Result<i32> {
    let key = pubkey.map(signing::load_public_key).transpose()?;
    let mut check = crate::retention::verify_archive(dir, key.as_ref())?;
    // The manifests are not signed: only the store's ledger says what must be in the archive.
    let ledger_checked = match store.data_dir() {
        Ok(data) => {
            check
                .problems
                .extend(crate::recorder::verify::archive_completeness(&data, dir)?);
            true
        }
        Err(_) => false,
    };
    if json {
        let mut v = serde_json::to_value(&check)?;
        v["ledger_checked"] = ledger_checked.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for p in &check.problems {
            println!("FAIL {}", line(&p.to_string()));
        }
        println!(
            "{}: {} sessions in {} manifests{}",
            if check.problems.is_empty() {
                "OK"
            } else {
                "FAILED"
            },
            check.sessions,
            check.manifests,
            if key.is_some() {
                " (pinned key)"
            } else {
                " (key from the manifest; pin it with --pubkey)"
            }
        );
        if !ledger_checked {
            println!(
                "completeness not checked: pass --data (the store whose ledger lists what was archived)"
            );
        }
    }
    Ok(if check.problems.is_empty() { 0 } else { 1 })
}

pub async fn export(
    store: StoreArgs,
    session: &str,
    format: &str,
    output: Option<PathBuf>,
) -> Result<i32> {
    let format = ExportFormat::parse(format)?;
    let data = store.data_dir()?;
    let meta = find_session(&store, session).await?;
    match output {
        Some(path) => {
            let tmp = path.with_extension("partial");
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?,
            );
            ops::export(&data, &meta, format, &mut f)?;
            f.flush()?;
            drop(f);
            std::fs::rename(&tmp, &path)?;
            eprintln!("wrote {}", path.display());
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = std::io::BufWriter::new(stdout.lock());
            ops::export(&data, &meta, format, &mut lock)?;
            lock.flush()?;
        }
    }
    Ok(0)
}

/// `export --reveal --key FILE`: jsonl with sealed fields opened. The reveal is journaled in
/// the store (through the running proctor, or by opening the store) before anything is written.
pub async fn export_reveal(
    store: StoreArgs,
    session: &str,
    format: &str,
    output: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<i32> {
    if !matches!(ExportFormat::parse(format)?, ExportFormat::Jsonl) {
        bail!("--reveal writes jsonl only (a bundle must stay exactly as recorded)");
    }
    let key = key.ok_or_else(|| anyhow!("--reveal needs --key AUDITOR_KEY_FILE"))?;
    let opener = crate::redact::seal::Opener::load(&key)?;
    let data = store.data_dir()?;
    let meta = find_session(&store, session).await?;
    let who = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "an unnamed user".into());
    let note = format!(
        "reveal: session {} exported with sealed fields opened by auditor key {} (by {who}, to {})",
        meta.id,
        opener.sealer().public_hex(),
        output
            .as_ref()
            .map_or("stdout".to_string(), |p| p.display().to_string())
    );
    if super::is_running(&data) {
        crate::control::call(
            &data,
            &crate::control::Request::Journal {
                topic: "audit".into(),
                text: note,
            },
        )
        .await
        .map_err(|e| anyhow!("could not record the reveal, so nothing is revealed: {e}"))?;
    } else {
        let mut s = crate::recorder::Store::open(&data, crate::recorder::WriterOptions::default())?;
        s.finish_recovery().await?;
        s.recorder
            .journal("audit", &note)
            .await
            .map_err(|e| anyhow!("could not record the reveal, so nothing is revealed: {e}"))?;
        s.close();
    }
    let (opened, failed) = match &output {
        Some(path) => {
            let tmp = path.with_extension("partial");
            let f = std::io::BufWriter::new(
                std::fs::File::create(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?,
            );
            let mut w = crate::redact::reveal::RevealWriter::new(f, &opener, &meta.id);
            ops::export(&data, &meta, ExportFormat::Jsonl, &mut w)?;
            let r = w.finish()?;
            std::fs::rename(&tmp, path)?;
            r
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = crate::redact::reveal::RevealWriter::new(
                std::io::BufWriter::new(stdout.lock()),
                &opener,
                &meta.id,
            );
            ops::export(&data, &meta, ExportFormat::Jsonl, &mut w)?;
            w.finish()?
        }
    };
    eprintln!(
        "revealed {opened} sealed values; {failed} did not open with this key; the reveal is recorded in the store journal"
    );
    Ok(0)
}
