//! Limits per agent over the HTTP API, against a real proctor and PostgreSQL: an annotation over
//! the size limit is refused with 413 naming its size and digest, the refusal is recorded in the
//! session, and an annotation at the limit still reaches approvers.

mod api_support;

use api_support::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_annotations_are_refused_with_413_and_recorded() {
    let p = Proctor::start("").await;
    let known = p.live_of(AGENT_A).await;
    let client = p.connect(AGENT_A, SECRET_A).await;
    let id = p.wait_new_live(AGENT_A, &known).await;

    // Over the 16 KiB text limit, under the API's 64 KiB body limit (bigger bodies are cut by
    // the framework with 413 before anything is read).
    let huge = "z".repeat(40 * 1024);
    let (s, v) = p
        .post(
            BOT_A,
            &format!("/api/sessions/{id}/annotations"),
            json!({ "source": "planner", "text": huge }),
        )
        .await;
    assert_eq!(s.as_u16(), 413, "{v}");
    let digest = hex::encode(Sha256::digest(huge.as_bytes()));
    let msg = v.to_string();
    assert!(
        msg.contains(&format!("{} bytes", 40 * 1024)) && msg.contains(&digest),
        "{msg}"
    );
    let fits = "y".repeat(16 * 1024);
    let (s, v) = p
        .post(
            BOT_A,
            &format!("/api/sessions/{id}/annotations"),
            json!({ "text": fits }),
        )
        .await;
    assert_eq!(s.as_u16(), 201, "{v}");

    // The refusal is in the recording; the refused text is not.
    let records = p.events(&id).await;
    let refusals: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "verdict" && r["rule"] == "limit:annotation-size")
        .collect();
    assert_eq!(refusals.len(), 1, "{records:?}");
    assert!(refusals[0].to_string().contains(&digest));
    assert!(
        !records
            .iter()
            .any(|r| r.to_string().contains(&huge[..20_000]))
    );
    drop(client);
    p.stop().await;
}
