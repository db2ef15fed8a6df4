//! Frontend messages for the raw wire-protocol tests, built with `postgres-protocol`, and a
//! round of them through a [`RawClient`](super::RawClient).

use bytes::BytesMut;
use postgres_protocol::message::frontend;

use super::RawClient;

pub fn parse(b: &mut BytesMut, name: &str, sql: &str) {
    frontend::parse(name, sql, [], b).unwrap();
}

pub fn bind(b: &mut BytesMut, portal: &str, statement: &str) {
    frontend::bind(
        portal,
        statement,
        [],
        [] as [Option<&[u8]>; 0],
        |v: Option<&[u8]>, buf: &mut BytesMut| {
            buf.extend_from_slice(v.unwrap_or_default());
            Ok(postgres_protocol::IsNull::No)
        },
        [],
        b,
    )
    .map_err(|_| ())
    .unwrap();
}

pub fn query(b: &mut BytesMut, sql: &str) {
    frontend::query(sql, b).unwrap();
}

/// Sends `b` in one write and reads until `readies` ReadyForQuery messages; returns the tags.
pub async fn exchange(raw: &mut RawClient, b: &BytesMut, readies: usize) -> String {
    raw.send(b).await;
    let mut tags = String::new();
    let mut seen = 0;
    while seen < readies {
        let (tag, _) = raw.read().await.expect("an answer");
        tags.push(tag as char);
        seen += usize::from(tag == b'Z');
    }
    tags
}
