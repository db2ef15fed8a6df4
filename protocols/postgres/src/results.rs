//! What a statement returned, accumulated while its rows stream through.

use std::sync::Arc;
use std::time::Instant;

use proctor_gate::{SqlError, StatementResult};
use sha2::{Digest, Sha256};

use crate::wire::{ErrorFields, Malformed, Reader, lossy};

/// Column names and wire formats (0 text, 1 binary) of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Columns {
    pub names: Vec<String>,
    pub formats: Vec<i16>,
}

impl Columns {
    /// From a RowDescription body.
    pub fn parse(body: &[u8]) -> Result<Columns, Malformed> {
        let mut r = Reader::new(body, "RowDescription");
        // Each field is at least a NUL and 18 bytes of attributes.
        let n = r.count(19)?;
        let mut names = Vec::with_capacity(n);
        let mut formats = Vec::with_capacity(n);
        for _ in 0..n {
            names.push(lossy(r.cstr()?));
            r.take(16)?;
            formats.push(r.i16()?);
        }
        Ok(Columns { names, formats })
    }

    /// The same columns with the formats a Bind asked for (a Describe of a statement reports
    /// text for all of them, since the formats are not known until Bind).
    pub fn with_bind_formats(&self, result_formats: &[i16]) -> Columns {
        let formats = (0..self.names.len())
            .map(|i| match result_formats.len() {
                0 => 0,
                1 => result_formats[0],
                _ => result_formats.get(i).copied().unwrap_or(0),
            })
            .collect();
        Columns {
            names: self.names.clone(),
            formats,
        }
    }
}

/// Rows affected or returned, from a command tag (`INSERT 0 5`, `UPDATE 3`, `SELECT 2`...).
pub fn rows_from_tag(tag: &str) -> u64 {
    let mut it = tag.rsplit(' ');
    match (it.next(), it.next()) {
        (Some(n), Some(_)) => n.parse().unwrap_or(0),
        _ => 0,
    }
}

/// Accumulates one statement's outcome.
///
/// The digest is SHA-256 over the body of every DataRow message of the result, in the order
/// the target sent them, where a body is the message bytes after its 5-byte header (the type
/// byte `D` and the 4-byte length): the 2-byte column count followed, per column, by the 4-byte
/// length (-1 for NULL) and the value bytes, exactly as on the wire. Nothing separates
/// consecutive bodies, so the same rows in the same wire formats always give the same digest.
/// The severity recorded for a statement the target skipped (see [`ResultAcc::not_executed`]).
pub const NOT_EXECUTED: &str = "NOT EXECUTED";

pub struct ResultAcc {
    pub statement_id: u64,
    started: Instant,
    columns: Option<Arc<Columns>>,
    rows: u64,
    samples: Vec<Vec<Option<String>>>,
    sample_limit: usize,
    hasher: Sha256,
}

impl ResultAcc {
    pub fn new(statement_id: u64, sample_limit: usize, columns: Option<Arc<Columns>>) -> Self {
        ResultAcc {
            statement_id,
            started: Instant::now(),
            columns,
            rows: 0,
            samples: Vec::new(),
            sample_limit,
            hasher: Sha256::new(),
        }
    }

    /// When the statement started (for the second statement of a query string: when the first
    /// one finished).
    pub fn set_start(&mut self, at: Instant) {
        self.started = at;
    }

    pub fn set_columns(&mut self, c: Arc<Columns>) {
        self.columns = Some(c);
    }

    pub fn data_row(&mut self, body: &[u8]) {
        self.hasher.update(body);
        self.rows += 1;
        if self.samples.len() < self.sample_limit {
            self.samples.push(self.render(body));
        }
    }

    fn render(&self, body: &[u8]) -> Vec<Option<String>> {
        let mut r = Reader::new(body, "DataRow");
        let Ok(n) = r.count(4) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let Ok(len) = r.i32() else { break };
            if len < 0 {
                out.push(None);
                continue;
            }
            let Ok(v) = r.take(len as usize) else { break };
            let binary = self
                .columns
                .as_ref()
                .and_then(|c| c.formats.get(i))
                .is_some_and(|&f| f == 1);
            out.push(Some(if binary { hex::encode(v) } else { lossy(v) }));
        }
        out
    }

    fn base(self, tag: String, error: Option<SqlError>, suspended: bool) -> StatementResult {
        // DataRows seen are authoritative; otherwise the tag says how many rows were affected.
        let rows = if self.rows > 0 {
            self.rows
        } else {
            rows_from_tag(&tag)
        };
        StatementResult {
            statement_id: self.statement_id,
            tag,
            rows,
            error,
            duration_ns: self.started.elapsed().as_nanos().min(u64::MAX as u128) as u64,
            columns: self
                .columns
                .as_ref()
                .map(|c| c.names.clone())
                .unwrap_or_default(),
            sample_rows: self.samples,
            digest: self.hasher.finalize().into(),
            suspended,
        }
    }

    pub fn complete(self, tag: String) -> StatementResult {
        self.base(tag, None, false)
    }

    pub fn suspended(self) -> StatementResult {
        let tag = String::new();
        self.base(tag, None, true)
    }

    /// A statement the target never ran: an earlier one in the same query string or pipeline
    /// failed, and PostgreSQL skips the rest (up to Sync) without a word about them. Recorded
    /// so every forwarded statement has an outcome; there is no SQLSTATE because the target
    /// sent none.
    pub fn not_executed(statement_id: u64, after: &ErrorFields) -> StatementResult {
        StatementResult {
            statement_id,
            tag: String::new(),
            rows: 0,
            error: Some(SqlError {
                severity: NOT_EXECUTED.into(),
                code: String::new(),
                message: format!(
                    "not executed: the target skipped it after an earlier statement failed ({} {})",
                    after.code, after.message
                ),
            }),
            duration_ns: 0,
            columns: Vec::new(),
            sample_rows: Vec::new(),
            digest: Sha256::new().finalize().into(),
            suspended: false,
        }
    }

    pub fn failed(self, e: &ErrorFields) -> StatementResult {
        self.base(
            String::new(),
            Some(SqlError {
                severity: e.severity.clone(),
                code: e.code.clone(),
                message: e.message.clone(),
            }),
            false,
        )
    }
}

/// Byte count and SHA-256 of COPY data, over the CopyData payloads in order.
pub struct CopyAcc {
    pub statement_id: u64,
    pub bytes: u64,
    hasher: Sha256,
}

impl CopyAcc {
    pub fn new(statement_id: u64) -> Self {
        CopyAcc {
            statement_id,
            bytes: 0,
            hasher: Sha256::new(),
        }
    }

    pub fn data(&mut self, payload: &[u8]) {
        self.bytes += payload.len() as u64;
        self.hasher.update(payload);
    }

    pub fn digest(self) -> [u8; 32] {
        self.hasher.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(rows_from_tag("INSERT 0 5"), 5);
        assert_eq!(rows_from_tag("UPDATE 3"), 3);
        assert_eq!(rows_from_tag("SELECT 2"), 2);
        assert_eq!(rows_from_tag("CREATE TABLE"), 0);
        assert_eq!(rows_from_tag("BEGIN"), 0);
    }

    #[test]
    fn rows_and_digest() {
        let cols = Arc::new(Columns {
            names: vec!["a".into(), "b".into()],
            formats: vec![0, 1],
        });
        let mut acc = ResultAcc::new(7, 1, Some(cols));
        let row1 = b"\x00\x02\x00\x00\x00\x01x\x00\x00\x00\x02\xab\xcd";
        let row2 = b"\x00\x02\xff\xff\xff\xff\x00\x00\x00\x00";
        acc.data_row(row1);
        acc.data_row(row2);
        let r = acc.complete("SELECT 2".into());
        assert_eq!(r.rows, 2);
        assert_eq!(
            r.sample_rows,
            vec![vec![Some("x".into()), Some("abcd".into())]]
        );
        let mut h = Sha256::new();
        h.update(row1);
        h.update(row2);
        let want: [u8; 32] = h.finalize().into();
        assert_eq!(r.digest, want);
        assert_eq!(r.columns, vec!["a".to_string(), "b".to_string()]);
    }
}
