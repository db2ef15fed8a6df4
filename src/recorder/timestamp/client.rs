//! The timestamping task: follows the ledger file for new signed tree heads and asks each
//! configured TSA for an RFC 3161 token over the newest one, at most once per `interval` unless
//! `every_leaves` leaves came first, retrying a failing TSA with exponential backoff. It runs on
//! its own tokio task and only reads the ledger, so no session ever waits for a TSA; a TSA that
//! is down shows as lag in `proctor ledger head`.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use rustls_pki_types::CertificateDer;
use tokio::sync::watch;

use super::{Attestation, TimestampSettings, TsaSettings, TsaStatus, token};
use crate::export::bundle::TreeHeadJson;
use crate::http_client::{HttpClient, error_chain, http_client};
use crate::recorder::ledger::{self, ENTRY_TREE_HEAD, LEDGER_HEADER_LEN, MAX_ENTRY_LEN, TreeHead};

/// How often the ledger file is looked at for new heads.
const POLL: Duration = Duration::from_millis(500);
/// A TSA's answer larger than this is refused (tokens are a few KiB).
const MAX_RESPONSE: usize = 1024 * 1024;

/// Reads the ledger file from where it last stopped, keeping the newest tree head.
struct Tail {
    path: PathBuf,
    offset: u64,
    newest: Option<TreeHead>,
}

impl Tail {
    fn new(data: &Path) -> Tail {
        Tail {
            path: ledger::ledger_path(data),
            offset: LEDGER_HEADER_LEN as u64,
            newest: None,
        }
    }

    /// Reads the complete entries appended since the last call; a partial one is read again
    /// next time. Damage stops the tail where it is (`verify` reports it).
    fn poll(&mut self) -> std::io::Result<()> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        let mut at = 0usize;
        while buf.len() - at >= 8 {
            let len = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
            let crc = u32::from_be_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]);
            if len == 0 || len > MAX_ENTRY_LEN || buf.len() - at - 8 < len {
                break;
            }
            let entry = &buf[at + 8..at + 8 + len];
            if crc32fast::hash(entry) != crc {
                break;
            }
            if entry[0] == ENTRY_TREE_HEAD
                && let Ok(h) = TreeHead::decode(&entry[1..])
            {
                self.newest = Some(h);
            }
            at += 8 + len;
        }
        self.offset += at as u64;
        Ok(())
    }
}

/// One TSA and where it stands.
struct Tsa {
    settings: TsaSettings,
    client: HttpClient,
    uri: hyper::Uri,
    trusted: Vec<CertificateDer<'static>>,
    status: TsaStatus,
    last_request: Option<Instant>,
    next_attempt: Instant,
}

impl Tsa {
    fn due(&self, head: &TreeHead, s: &TimestampSettings, now: Instant) -> bool {
        if head.size <= self.status.timestamped_size || now < self.next_attempt {
            return false;
        }
        let interval_over = self
            .last_request
            .is_none_or(|t| now.duration_since(t) >= s.interval);
        interval_over || head.size - self.status.timestamped_size >= s.every_leaves.max(1)
    }

    /// Asks for a token over `head`, checks it and returns the attestation to store.
    async fn fetch(&self, head: &TreeHead, timeout: Duration) -> Result<Attestation, String> {
        let imprint = super::imprint(head);
        let nonce = rand::random::<u64>() >> 1;
        let body = token::request(&imprint, nonce, self.settings.policy.as_deref())?;
        let req = hyper::Request::post(self.uri.clone())
            .header(hyper::header::CONTENT_TYPE, "application/timestamp-query")
            .header(hyper::header::ACCEPT, "application/timestamp-reply")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| error_chain(&e))?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            if !status.is_success() {
                return Err(format!("HTTP {status}"));
            }
            Ok(bytes)
        };
        let bytes = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {}s", timeout.as_secs()))??;
        let der = token::token_from_response(&bytes).map_err(|e| e.to_string())?;
        // The nonce and imprint are always checked; the chain when a TSA certificate is set.
        if self.trusted.is_empty() {
            match token::check(&der, &imprint, Some(nonce), &[]) {
                Ok(_) | Err(token::TokenError::Untrusted(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
        } else {
            token::check(&der, &imprint, Some(nonce), &self.trusted).map_err(|e| e.to_string())?;
        }
        use base64::Engine as _;
        Ok(Attestation {
            format: super::ATTESTATION_FORMAT,
            kind: super::TYPE_RFC3161.into(),
            issuer: self.settings.url.clone(),
            tree_head: TreeHeadJson::from_head(head),
            token: base64::engine::general_purpose::STANDARD.encode(&der),
            received_ns: crate::clock::now_ns(),
        })
    }
}

fn backoff(failures: u32, max: Duration) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(20))
        .min(max.max(Duration::from_secs(1)))
}

/// The newest stored token's tree size per issuer id (from file names), so a restart does
/// not ask again for heads already timestamped.
fn stored_sizes(data: &Path) -> std::collections::HashMap<String, u64> {
    let mut sizes = std::collections::HashMap::new();
    for n in super::names(data).unwrap_or_default() {
        if n.kind == super::TYPE_RFC3161 {
            let e = sizes.entry(n.issuer_id).or_insert(0);
            *e = n.size.max(*e);
        }
    }
    sizes
}

/// Sets up the TSAs (clients, trusted certificates); errors name the TSA and are fatal at
/// start-up, as any other configuration error.
fn setup(data: &Path, settings: &TimestampSettings) -> Result<Vec<Tsa>, String> {
    let sizes = stored_sizes(data);
    let now = Instant::now();
    settings
        .tsa
        .iter()
        .map(|t| {
            let uri: hyper::Uri = t.url.parse().map_err(|e| format!("TSA {}: {e}", t.url))?;
            let client =
                http_client(t.ca_file.as_deref()).map_err(|e| format!("TSA {}: {e}", t.url))?;
            let trusted = match &t.tsa_cert {
                Some(p) => super::check::load_certs(std::slice::from_ref(p))?,
                None => Vec::new(),
            };
            if let Some(p) = &t.policy {
                der::asn1::ObjectIdentifier::new(p)
                    .map_err(|e| format!("TSA {}: policy {p:?}: {e}", t.url))?;
            }
            Ok(Tsa {
                status: TsaStatus {
                    url: t.url.clone(),
                    timestamped_size: sizes.get(&super::issuer_id(&t.url)).copied().unwrap_or(0),
                    ..TsaStatus::default()
                },
                settings: t.clone(),
                client,
                uri,
                trusted,
                last_request: None,
                next_attempt: now,
            })
        })
        .collect()
}

/// Starts one task per configured TSA (none when none is), so a TSA that hangs delays only
/// its own tokens.
pub fn start(
    data: PathBuf,
    settings: TimestampSettings,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let tsas = setup(&data, &settings)?;
    let statuses = Arc::new(Mutex::new(
        tsas.iter().map(|t| t.status.clone()).collect::<Vec<_>>(),
    ));
    if !tsas.is_empty() {
        save_status(&data, &statuses);
    }
    Ok(tsas
        .into_iter()
        .enumerate()
        .map(|(i, tsa)| {
            let shared = Shared {
                data: data.clone(),
                settings: settings.clone(),
                statuses: statuses.clone(),
                index: i,
            };
            tokio::spawn(run(shared, tsa, shutdown.clone()))
        })
        .collect())
}

/// What the per-TSA tasks share: where the store is, the settings, everyone's status.
struct Shared {
    data: PathBuf,
    settings: TimestampSettings,
    statuses: Arc<Mutex<Vec<TsaStatus>>>,
    index: usize,
}

fn save_status(data: &Path, statuses: &Mutex<Vec<TsaStatus>>) {
    let all = match statuses.lock() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    };
    if let Err(e) = super::write_status(data, &all) {
        tracing::warn!(error = %e, "cannot write the timestamping status");
    }
}

async fn run(sh: Shared, mut tsa: Tsa, mut shutdown: watch::Receiver<bool>) {
    let mut tail = Tail::new(&sh.data);
    loop {
        if *shutdown.borrow() {
            return;
        }
        // The ledger is read off the runtime's worker threads: a slow disk delays only this.
        let polled = tokio::task::spawn_blocking(move || {
            let r = tail.poll();
            (tail, r)
        })
        .await;
        let Ok((t, r)) = polled else { return };
        tail = t;
        if let Err(e) = r {
            tracing::warn!(error = %e, "timestamping: cannot read the ledger");
        }
        let now = Instant::now();
        if let Some(head) = tail
            .newest
            .clone()
            .filter(|h| tsa.due(h, &sh.settings, now))
        {
            tsa.last_request = Some(now);
            let outcome = match tsa.fetch(&head, sh.settings.timeout).await {
                Ok(a) => {
                    let d = sh.data.clone();
                    tokio::task::spawn_blocking(move || super::store(&d, &a))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| format!("storing the token: {e}")))
                }
                Err(e) => Err(e),
            };
            let st = &mut tsa.status;
            match outcome {
                Ok(path) => {
                    tracing::info!(tsa = %st.url, tree_size = head.size, file = %path.display(), "tree head timestamped");
                    st.timestamped_size = head.size;
                    st.last_success_ns = Some(crate::clock::now_ns());
                    st.failures = 0;
                    st.last_error = None;
                }
                Err(e) => {
                    st.failures = st.failures.saturating_add(1);
                    let wait = backoff(st.failures, sh.settings.max_backoff);
                    tracing::warn!(tsa = %st.url, tree_size = head.size, failures = st.failures, retry_in = ?wait, error = %e, "timestamping failed");
                    st.last_error = Some(e);
                    st.last_error_ns = Some(crate::clock::now_ns());
                    tsa.next_attempt = Instant::now() + wait;
                }
            }
            if let Ok(mut all) = sh.statuses.lock()
                && let Some(slot) = all.get_mut(sh.index)
            {
                *slot = tsa.status.clone();
            }
            save_status(&sh.data, &sh.statuses);
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_and_caps() {
        let max = Duration::from_secs(60);
        assert_eq!(backoff(1, max), Duration::from_secs(1));
        assert_eq!(backoff(2, max), Duration::from_secs(2));
        assert_eq!(backoff(5, max), Duration::from_secs(16));
        assert_eq!(backoff(30, max), max);
    }
}
