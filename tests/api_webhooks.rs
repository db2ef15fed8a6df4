//! Webhooks against local receivers: signed deliveries retried with backoff until the receiver
//! recovers, no retries for a receiver that refuses (4xx), and a dead receiver that only ever
//! costs a bounded queue, with the losses noted in the journal.

mod api_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_support::*;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
    at: Instant,
}

#[derive(Clone, Default)]
struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
}

/// `/flaky`: 503 for a delivery's first two attempts, then 200. `/reject`: always 400.
async fn receive(
    State(r): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let delivery = headers
        .get("x-proctor-delivery")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut hits = r.hits.lock().unwrap();
    let earlier = hits
        .iter()
        .filter(|h| {
            h.headers
                .get("x-proctor-delivery")
                .and_then(|v| v.to_str().ok())
                == Some(delivery.as_str())
        })
        .count();
    hits.push(Hit {
        path: path.clone(),
        headers,
        body: body.to_vec(),
        at: Instant::now(),
    });
    match path.as_str() {
        "flaky" if earlier < 2 => StatusCode::SERVICE_UNAVAILABLE,
        "flaky" => StatusCode::OK,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_deliveries_retry_until_the_receiver_recovers() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/{path}", axum::routing::post(receive))
        .with_state(receiver.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    // A port with nothing listening: the "dead" receiver.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();

    let secrets = tempfile::tempdir().unwrap();
    let secret = "whsec-3f9a1c";
    let secret_file = secrets.path().join("pager.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let extra = format!(
        r#"
[[webhooks]]
name = "pager"
url = "http://{addr}/flaky"
secret_file = "{secret}"
events = ["hold", "alert"]

[[webhooks]]
name = "picky"
url = "http://{addr}/reject"
secret_file = "{secret}"
events = ["session_start"]

[[webhooks]]
name = "dead"
url = "http://{dead}/hook"
secret_file = "{secret}"
events = ["session_start", "session_end", "verdict", "hold", "alert", "approval"]
queue = 2
"#,
        secret = secret_file.display()
    );
    let p = Proctor::start(&extra).await;

    // DDL in an elevated session: an alert and a hold.
    let psql = p.psql(AGENT_A, SECRET_A, "create table hooked (a int)");
    let hold = p.wait_for_hold("create table hooked").await;
    let approval_id = hold["id"].as_str().unwrap().to_string();

    // Each of the pager's two deliveries takes three attempts: 503, 503 (after ~0.5 s), then
    // 200 (after ~1 s more).
    let deadline = Instant::now() + Duration::from_secs(20);
    let by_delivery = loop {
        let hits: Vec<Hit> = receiver
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == "flaky")
            .cloned()
            .collect();
        let mut by: BTreeMap<String, Vec<Hit>> = BTreeMap::new();
        for h in hits {
            let id = h.headers["x-proctor-delivery"]
                .to_str()
                .unwrap()
                .to_string();
            by.entry(id).or_default().push(h);
        }
        let kinds: Vec<String> = by
            .values()
            .filter(|v| v.len() >= 3)
            .map(|v| {
                v[0].headers["x-proctor-event"]
                    .to_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        if kinds.contains(&"hold".to_string()) && kinds.contains(&"alert".to_string()) {
            break by;
        }
        assert!(
            Instant::now() < deadline,
            "pager deliveries incomplete: {by:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut saw_hold = false;
    for (id, attempts) in &by_delivery {
        assert_eq!(
            attempts.len(),
            3,
            "delivery {id} retried until success, then stopped"
        );
        for (n, h) in attempts.iter().enumerate() {
            assert_eq!(h.headers["x-proctor-attempt"], (n + 1).to_string().as_str());
            assert_eq!(h.headers["content-type"], "application/json");
            let sig = h.headers["x-proctor-signature"].to_str().unwrap();
            assert_eq!(
                sig,
                format!("sha256={}", hmac_hex(secret.as_bytes(), &h.body)),
                "valid HMAC"
            );
            assert_ne!(sig, format!("sha256={}", hmac_hex(b"wrong", &h.body)));
            assert_eq!(h.body, attempts[0].body, "a retry resends the same body");
        }
        let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1].at - w[0].at).collect();
        assert!(gaps[0] >= Duration::from_millis(400), "backoff {gaps:?}");
        assert!(
            gaps[1] >= Duration::from_millis(900),
            "backoff doubles {gaps:?}"
        );
        let body: Value = serde_json::from_slice(&attempts[0].body).unwrap();
        assert_eq!(body["delivery"], id.as_str());
        assert_eq!(body["webhook"], "pager");
        let kind = attempts[0].headers["x-proctor-event"].to_str().unwrap();
        assert_eq!(body["event"], kind);
        assert_eq!(body["data"]["agent"], AGENT_A);
        if kind == "hold" {
            saw_hold = true;
            assert_eq!(body["data"]["type"], "verdict");
            assert_eq!(body["data"]["verdict"], "hold");
            assert_eq!(body["data"]["approval_id"], approval_id.as_str());
            assert_eq!(body["data"]["rule"], "pg-hold-ddl");
        } else {
            assert_eq!(kind, "alert");
            assert_eq!(body["data"]["type"], "alert");
        }
    }
    assert!(saw_hold);

    let (s, _) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{approval_id}/deny"),
            json!({ "reason": "no" }),
        )
        .await;
    assert_eq!(s, 200);
    assert!(!psql.wait_with_output().await.unwrap().status.success());

    // More sessions, so the dead receiver's queue of two overflows.
    for _ in 0..3 {
        let out = p
            .psql(AGENT_B, SECRET_B, "select 1")
            .wait_with_output()
            .await
            .unwrap();
        assert!(out.status.success());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let notes: Vec<String> = p
            .events(JOURNAL)
            .await
            .into_iter()
            .filter(|e| e["topic"] == "webhook")
            .filter_map(|e| e["text"].as_str().map(String::from))
            .collect();
        let dropped = notes
            .iter()
            .any(|n| n.starts_with("webhook dead: dropped") && n.contains("queue of 2"));
        let refused = notes.iter().any(|n| {
            n.starts_with("webhook picky: delivery")
                && n.contains("400")
                && n.contains("not retried")
        });
        if dropped && refused {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "journal notes missing: {notes:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The refusing receiver got each delivery once.
    let picky: Vec<Hit> = receiver
        .hits
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.path == "reject")
        .cloned()
        .collect();
    assert!(!picky.is_empty());
    for h in &picky {
        assert_eq!(h.headers["x-proctor-attempt"], "1", "a 4xx is not retried");
        assert_eq!(h.headers["x-proctor-event"], "session_start");
    }
    p.stop().await;
    server.abort();
}

#[test]
fn webhook_config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let write = |body: &str| {
        let path = dir.path().join("proctor.toml");
        std::fs::write(&path, format!("data_dir = \"data\"\n{body}")).unwrap();
        proctor::config::Config::load(&path)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let e = write("[[webhooks]]\nname = \"x\"\nurl = \"ftp://h/\"\nsecret_file = \"s\"\n");
    assert!(e.contains("webhooks[0].url"), "{e}");
    let e = write(
        "[[webhooks]]\nname = \"x\"\nurl = \"http://h/\"\nsecret_file = \"s\"\nevents = [\"holds\"]\n",
    );
    assert!(
        e.contains("webhooks[0].events[0]") && e.contains("hold, alert"),
        "{e}"
    );
    let e = write(
        "[[webhooks]]\nname = \"x\"\nurl = \"http://h/\"\nsecret_file = \"s\"\nsecret = \"inline\"\n",
    );
    assert!(e.contains("secret"), "unknown keys are errors: {e}");
    let e =
        write("[[webhooks]]\nname = \"x\"\nurl = \"http://h/\"\nsecret_file = \"s\"\nqueue = 0\n");
    assert!(e.contains("webhooks[0].queue"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_without_its_secret_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proctor.toml");
    std::fs::write(
        &path,
        "data_dir = \"data\"\n[[webhooks]]\nname = \"pager\"\nurl = \"https://pager.invalid/hook\"\nsecret_file = \"missing.secret\"\n",
    )
    .unwrap();
    let config = proctor::config::Config::load(&path).expect("valid config");
    assert_eq!(
        config.webhooks[0].events,
        ["hold", "alert"],
        "default events"
    );
    let err = match proctor::serve::start(config).await {
        Ok(s) => {
            s.stop().await;
            panic!("started without the webhook secret");
        }
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("webhooks[pager].secret_file") && err.contains("missing.secret"),
        "{err}"
    );
}

/// An https receiver with a private CA (`ca_file`): the client side is rustls on aws-lc-rs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_delivery_trusts_the_configured_ca() {
    use hyper_util::rt::TokioIo;

    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(HeaderMap, Vec<u8>)>();
    let receiver = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = http_body_util::BodyExt::collect(body).await?.to_bytes();
                            let _ = tx.send((parts.headers, body.to_vec()));
                            Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from_static(b"ok"),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });

    let secret_file = dir.path().join("hook.secret");
    std::fs::write(&secret_file, "tls-secret").unwrap();
    let path = dir.path().join("proctor.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"data\"\n[[webhooks]]\nname = \"tls\"\nurl = \"https://localhost:{port}/hook\"\nsecret_file = \"hook.secret\"\nca_file = \"ca.pem\"\n"
        ),
    )
    .unwrap();
    let config = proctor::config::Config::load(&path).unwrap();
    let server = proctor::serve::start(config).await.expect("proctor starts");
    server.core.bus.publish(proctor::bus::LiveEvent::Alert {
        session_id: "s-1".into(),
        agent: "agent-x".into(),
        rule: "r".into(),
        severity: "high".into(),
        message: "over tls".into(),
        ts_ns: proctor::clock::now_ns(),
    });
    let (headers, body) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("delivered over https")
        .unwrap();
    assert_eq!(headers["x-proctor-event"], "alert");
    assert_eq!(
        headers["x-proctor-signature"].to_str().unwrap(),
        format!("sha256={}", hmac_hex(b"tls-secret", &body))
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["data"]["message"], "over tls");
    server.stop().await;
    receiver.abort();
}
