//! Entry points for fuzzing the PostgreSQL front end's own parsers: each takes arbitrary bytes
//! and must never panic, hang or allocate without bound. `fuzz/` drives them with libFuzzer
//! (`cargo fuzz`), and the root `tests/fuzz_smoke.rs` runs them over the committed seed corpus
//! (`fuzz/corpus/TARGET/`) plus mutations in every CI run.
//!
//! Inputs are what crosses the wire, as the session reads it: untyped startup packets, typed
//! backend messages from the target, the two SCRAM messages, and statement text. `pg_relay`
//! runs the real relay (no copy of its dispatch) over both sides' bytes at once, and checks
//! what reached the target against what was judged.

mod relay_core;
#[cfg(test)]
mod relay_property;
mod relay_run;

use std::sync::{Arc, OnceLock};

use bytes::BytesMut;

use crate::classify::{self, LexContext};
use crate::relay::note_parameter;
use crate::results::{Columns, CopyAcc, ResultAcc, rows_from_tag};
use crate::scram_server::{ServerFirst, Verifier};
use crate::sqllex;
use crate::startup::{Packet, decode_packet};
use crate::wire::{ErrorFields, MAX_STARTUP_BYTES, Reader, lossy, take_typed_frame};

/// Largest typed message the fuzz targets accept (the relay's default is 64 MiB; inputs are
/// smaller than this anyway).
const MAX_FRAME: usize = 1 << 20;

/// Result rows kept as samples, as in the default configuration.
const SAMPLE_ROWS: usize = 5;

/// The agent's first bytes: untyped packets framed by `untyped_frame_len` and decoded as
/// SSLRequest, GSSENCRequest, CancelRequest or a startup packet, whose parameters then go
/// through the filter that decides what is passed on to the target. Like the session, it stops
/// at the first error, CancelRequest or startup packet.
pub fn startup(data: &[u8]) {
    let mut buf = data;
    loop {
        let len = match crate::wire::untyped_frame_len(buf) {
            Ok(Some(len)) if buf.len() >= len => len,
            Ok(_) | Err(_) => return,
        };
        assert!((8..=MAX_STARTUP_BYTES).contains(&len));
        let (packet, rest) = buf.split_at(len);
        buf = rest;
        match decode_packet(packet) {
            Ok(Packet::SslRequest | Packet::GssEncRequest) => continue,
            Ok(Packet::Cancel { .. }) | Err(_) => return,
            Ok(Packet::Startup { params, .. }) => {
                assert!(params.len() <= len / 2, "each parameter takes two NULs");
                let (kept, _dropped) = crate::target::forwardable_params(&params);
                for (k, _) in &kept {
                    assert!(
                        !matches!(k.as_str(), "user" | "database" | "replication"),
                        "{k} is proctor's to decide"
                    );
                    assert!(!k.starts_with("_pq_."));
                }
                return;
            }
        }
    }
}

/// The target's messages, as a hostile target could send them: results (RowDescription,
/// DataRow, CommandComplete), errors and notices, ParameterStatus (which changes how later
/// statements are lexed), notifications, COPY, and the authentication requests of the login.
pub fn backend(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let mut lex = LexContext::default();
    let mut columns: Option<Arc<Columns>> = None;
    let mut acc: Option<ResultAcc> = None;
    let mut download: Option<CopyAcc> = None;
    let mut status = b'I';
    loop {
        let frame = match take_typed_frame(&mut buf, MAX_FRAME) {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => break,
        };
        let body = frame.body();
        match frame.tag {
            b'T' => {
                // The relay ends the session on an undecodable RowDescription.
                let Ok(c) = Columns::parse(body) else { break };
                assert_eq!(c.names.len(), c.formats.len());
                let c = Arc::new(c);
                acc.get_or_insert_with(|| ResultAcc::new(1, SAMPLE_ROWS, None))
                    .set_columns(c.clone());
                columns = Some(c);
            }
            b'D' => acc
                .get_or_insert_with(|| ResultAcc::new(1, SAMPLE_ROWS, columns.clone()))
                .data_row(body),
            b'C' | b'I' | b's' => {
                let tag = if frame.tag == b'C' {
                    Reader::new(body, "CommandComplete")
                        .cstr()
                        .map(lossy)
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                let _ = rows_from_tag(&tag);
                let a = acc
                    .take()
                    .unwrap_or_else(|| ResultAcc::new(1, SAMPLE_ROWS, columns.clone()));
                let r = if frame.tag == b's' {
                    a.suspended()
                } else {
                    a.complete(tag)
                };
                assert!(r.sample_rows.len() <= SAMPLE_ROWS);
            }
            b'E' | b'N' => {
                let f = ErrorFields::parse(body);
                let _ = f.is_fatal();
                if frame.tag == b'E'
                    && let Some(a) = acc.take()
                {
                    let r = a.failed(&f);
                    assert!(r.error.is_some());
                }
            }
            b'Z' => status = body.first().copied().unwrap_or(b'I'),
            b'A' => {
                let mut r = Reader::new(body, "NotificationResponse");
                let _ = r.i32().unwrap_or(0);
                let _ = r.cstr().map(lossy).unwrap_or_default();
                let _ = r.cstr().map(lossy).unwrap_or_default();
            }
            b'S' => {
                let mut r = Reader::new(body, "ParameterStatus");
                let name = r.cstr().map(lossy).unwrap_or_default();
                let value = r.cstr().map(lossy).unwrap_or_default();
                note_parameter(&mut lex, &name, &value);
            }
            b'K' => {
                let mut r = Reader::new(body, "BackendKeyData");
                let _ = (r.i32(), r.i32());
            }
            b'R' => authentication(body),
            b'H' => download = Some(CopyAcc::new(1)),
            b'd' => {
                if let Some(d) = download.as_mut() {
                    d.data(body);
                }
            }
            b'c' => {
                let _ = download.take().map(CopyAcc::digest);
            }
            _ => {}
        }
    }
    let _ = status;
    // What the target said about the session changes how agent statements are read.
    if let Some(sql) = data.get(..data.len().min(256)) {
        let _ = classify::classify_query(&String::from_utf8_lossy(sql), lex);
    }
}

/// The Authentication requests the target login reads (the SCRAM client itself is
/// postgres-protocol's and not exercised here: its cost is set by the target's iteration count).
fn authentication(body: &[u8]) {
    let mut r = Reader::new(body, "Authentication");
    let Ok(code) = r.i32() else { return };
    let data = &body[4..];
    match code {
        10 => {
            let mut r = Reader::new(data, "AuthenticationSASL");
            let mut mechs = Vec::new();
            while let Ok(m) = r.cstr() {
                if m.is_empty() {
                    break;
                }
                mechs.push(lossy(m));
            }
            let _ = mechs.iter().any(|m| m == "SCRAM-SHA-256");
        }
        5 => {
            let _: Option<[u8; 4]> = data.get(..4).and_then(|s| s.try_into().ok());
        }
        _ => {}
    }
}

/// A verifier for the password `secret`, computed once (4096 PBKDF2 iterations).
fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let s = postgres_protocol::password::scram_sha_256(b"secret");
        Verifier::parse(&s).unwrap_or_else(|_| Verifier::fake("fuzz"))
    })
}

/// Marker in the client-final message replaced by the server's nonce, which is random: without
/// it the fuzzer could never get past the nonce check to the proof.
const NONCE_MARKER: &str = "r=@";

/// Server side of SCRAM-SHA-256: the first byte says how many of the following bytes are the
/// client-first message, the rest is the client-final message. `r=@` in the client-final
/// message stands for the nonce the server chose.
pub fn scram(data: &[u8]) {
    let _ = Verifier::parse(&String::from_utf8_lossy(data));
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (first, fin) = rest.split_at(usize::from(split).min(rest.len()));
    // Channel binding offered, PLUS selected when the client binds: every flag's path runs.
    let binding = crate::scram_server::Binding {
        offered: Some(&[0x42; 32]),
        plus_selected: first.starts_with(b"p="),
    };
    let Ok((state, server_first)) = ServerFirst::start(verifier().clone(), first, binding) else {
        return;
    };
    let nonce = server_first
        .strip_prefix("r=")
        .and_then(|s| s.split(',').next())
        .unwrap_or_default();
    assert!(!nonce.is_empty(), "server-first always carries the nonce");
    let fin = String::from_utf8_lossy(fin).replace(NONCE_MARKER, &format!("r={nonce}"));
    if let Ok(Some(server_final)) = state.finish(fin.as_bytes()) {
        assert!(server_final.starts_with("v="));
    }
}

/// Statement splitting and classification over any text, in every lexing context a session
/// can be in. Where a string holds a backslash and `standard_conforming_strings` is off, the
/// class must be `Unknown`.
pub fn classifier(data: &[u8]) {
    let sql = String::from_utf8_lossy(data);
    let _ = classify::leading_words(&sql);
    let contexts = [
        LexContext::default(),
        LexContext {
            standard_strings: false,
            ..LexContext::default()
        },
        LexContext {
            unsafe_encoding: true,
            ..LexContext::default()
        },
    ];
    // The policy's text (literals kept) is split exactly where the classification is.
    fn texts(r: Result<Vec<sqllex::Piece<'_>>, sqllex::LexError>) -> Option<Vec<&str>> {
        r.ok().map(|v| v.iter().map(|p| p.text).collect())
    }
    assert_eq!(
        texts(sqllex::split_literals(&sql)),
        texts(sqllex::split(&sql))
    );
    for ctx in contexts {
        let judged = classify::classify_query(&sql, ctx);
        assert!(!judged.is_empty());
        let again = classify::classify_query(&sql, ctx);
        assert_eq!(judged.len(), again.len());
        for (a, b) in judged.iter().zip(&again) {
            assert_eq!(a.info.class, b.info.class, "classification is not stable");
        }
        let _ = classify::classify_prepared(&sql, ctx);
        if let Ok(pieces) = sqllex::split(&sql) {
            assert_eq!(judged.len(), pieces.len().max(1));
            for (p, j) in pieces.iter().zip(&judged) {
                if p.backslash_in_string && !ctx.standard_strings {
                    assert_eq!(j.info.class, proctor_gate::StatementClass::Unknown);
                }
                if p.non_ascii && ctx.unsafe_encoding {
                    assert_eq!(j.info.class, proctor_gate::StatementClass::Unknown);
                }
            }
        }
    }
}

/// The real relay between an agent and a hostile target, in memory, judged by an in-memory
/// gate whose decisions (allow, deny, hold then approve or refuse), durability acks (at once or
/// late) and kill come from the input; the relay's invariants are checked against what the
/// gate recorded (see [`relay_run`]). It replaces the `pg_frontend` target, which decoded the
/// agent's messages by a copy of the relay's dispatch.
pub fn relay(data: &[u8]) {
    relay_run::run(data);
}

/// A named fuzz entry point.
pub type Target = (&'static str, fn(&[u8]));

/// Every target by name, for runners.
pub const TARGETS: &[Target] = &[
    ("pg_startup", startup),
    ("pg_relay", relay),
    ("pg_backend", backend),
    ("pg_scram", scram),
    ("pg_classifier", classifier),
    ("pg_names", names),
    ("pg_core", core),
];

/// The relay's I/O-free core driven directly (no adapter, no tokio): pipelines, verdicts,
/// late approvals and durability acks, recording failures, and a model server answering in
/// order; checked against rules 1 and 3 and the names model.
pub fn core(data: &[u8]) {
    relay_core::run(data);
}

/// The relay's model of the server's prepared statements and portals (I/O-free), driven by
/// any sequence of changes, sync points, confirmations and refusals.
pub fn names(data: &[u8]) {
    crate::relay::fuzz_names(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use postgres_protocol::message::frontend as fe;

    fn startup_packet(params: &[(&str, &str)]) -> Vec<u8> {
        let mut b = BytesMut::new();
        fe::startup_message(params.iter().copied(), &mut b).unwrap();
        b.to_vec()
    }

    #[test]
    fn startup_packets_decode() {
        let p = startup_packet(&[
            ("user", "agent"),
            ("database", "app"),
            ("options", "-c a=b"),
        ]);
        match decode_packet(&p).unwrap() {
            Packet::Startup {
                minor_version,
                params,
            } => {
                assert_eq!(minor_version, 0);
                assert_eq!(params[0], ("user".into(), "agent".into()));
            }
            other => panic!("{other:?}"),
        }
        let ssl = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        assert_eq!(decode_packet(&ssl).unwrap(), Packet::SslRequest);
        let gss = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
        assert_eq!(decode_packet(&gss).unwrap(), Packet::GssEncRequest);
        let mut cancel = vec![0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e];
        cancel.extend_from_slice(&7i32.to_be_bytes());
        cancel.extend_from_slice(&(-9i32).to_be_bytes());
        assert_eq!(
            decode_packet(&cancel).unwrap(),
            Packet::Cancel { pid: 7, secret: -9 }
        );
        assert!(decode_packet(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2e]).is_err());
        assert!(decode_packet(&[0, 0, 0, 8, 0, 2, 0, 0]).is_err());
        assert!(decode_packet(&[0, 0, 0]).is_err());
        let mut all = ssl.to_vec();
        all.extend_from_slice(&p);
        startup(&all);
        startup(&cancel);
    }

    #[test]
    fn frontend_pipeline() {
        let mut b = BytesMut::new();
        fe::query("select 1; delete from t", &mut b).unwrap();
        fe::parse(
            "s1",
            "with d as (delete from t returning *) select * from d",
            [],
            &mut b,
        )
        .unwrap();
        fe::bind(
            "",
            "s1",
            [0i16],
            [Some(&b"1"[..])],
            |v: Option<&[u8]>, buf| {
                buf.extend_from_slice(v.unwrap_or_default());
                Ok(postgres_protocol::IsNull::No)
            },
            [1i16],
            &mut b,
        )
        .map_err(|_| ())
        .unwrap();
        fe::describe(b'P', "", &mut b).unwrap();
        fe::execute("", 0, &mut b).unwrap();
        fe::sync(&mut b);
        // Agent bytes in one chunk, for every policy seed's first few values.
        let input = |seed: u8, bytes: &[u8]| {
            let mut v = vec![seed, 0, 0];
            v.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            v.extend_from_slice(bytes);
            v
        };
        for seed in 0..8 {
            relay(&input(seed, &b));
        }
        for cut in (0..b.len()).step_by(7) {
            relay(&input(0, &b[..cut]));
        }
    }

    #[test]
    fn backend_results() {
        let mut b = Vec::new();
        let mut msg = |tag: u8, body: &[u8]| {
            b.push(tag);
            b.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
            b.extend_from_slice(body);
        };
        let mut row_desc = vec![0, 1];
        row_desc.extend_from_slice(b"id\0");
        row_desc.extend_from_slice(&[0; 16]);
        row_desc.extend_from_slice(&[0, 0]);
        msg(b'T', &row_desc);
        msg(b'D', b"\x00\x01\x00\x00\x00\x0142");
        msg(b'C', b"SELECT 1\0");
        msg(b'S', b"standard_conforming_strings\0off\0");
        msg(b'E', b"SERROR\0VERROR\0C42501\0Mdenied\0\0");
        msg(b'Z', b"I");
        backend(&b);
        for cut in 0..b.len() {
            backend(&b[..cut]);
        }
    }

    #[test]
    fn scram_exchange_reaches_the_proof() {
        let mut client = ScramSha256::new(b"secret", ChannelBinding::unsupported());
        let first = client.message().to_vec();
        let (state, server_first) = ServerFirst::start(
            verifier().clone(),
            &first,
            crate::scram_server::Binding::NONE,
        )
        .unwrap();
        client.update(server_first.as_bytes()).unwrap();
        assert!(state.finish(client.message()).unwrap().is_some());
        let mut input = vec![first.len() as u8];
        input.extend_from_slice(&first);
        input.extend_from_slice(b"c=biws,r=@,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        scram(&input);
    }

    #[test]
    fn classifier_texts() {
        for sql in [
            "select 1",
            "DO $$ BEGIN PERFORM pg_sleep(1); END $$",
            "with d as (delete from t returning *) select * from d",
            "copy t to program 'rm -rf /'",
            "select $tag$ ; ' $tag$; drop table x",
            "select 'a\\'; drop table t; --'",
            "select 'é'",
            "",
            ";;",
            "'unterminated",
        ] {
            classifier(sql.as_bytes());
        }
    }

    #[test]
    fn targets_accept_anything_small() {
        for (_, f) in TARGETS {
            f(&[]);
            f(&[0]);
            f(&[0xff; 64]);
            f(&[0; 64]);
            f(b"Q\0\0\0\x05\0\0\0\0\x08\x04\xd2\x16\x2f");
            f(b"\x7f\xff\xff\xff\x00\x03\x00\x00user\0");
        }
    }
}
