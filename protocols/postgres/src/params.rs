//! Bound parameters sent in binary format, read as the values the server takes, for approval
//! cards and the record (issue 18: `UPDATE accounts SET owner = $1` says nothing without `$1`,
//! and `\x0000002a` says little more).
//!
//! The type of a parameter is the one the server gives it: the OID in the client's Parse, or,
//! when the client left it unspecified, the server's ParameterDescription. A value is shown
//! decoded only when its bytes are exactly a value of that type (an int4 is four bytes, text is
//! UTF-8...); anything else, and every type not listed here, stays hex with its type named, so
//! two different values never look the same. Text comes back as a SQL literal (quotes doubled);
//! control and invisible characters in it are the reader's to show (the CLI and console escape
//! agent text wherever a person reads it).

use std::fmt::Write;

use postgres_protocol::types as t;

/// The name of a type OID this module knows, with whether it decodes it.
fn type_name(oid: u32) -> Option<&'static str> {
    Some(match oid {
        16 => "bool",
        17 => "bytea",
        19 => "name",
        20 => "int8",
        21 => "int2",
        23 => "int4",
        25 => "text",
        26 => "oid",
        114 => "json",
        700 => "float4",
        701 => "float8",
        1042 => "bpchar",
        1043 => "varchar",
        1082 => "date",
        1114 => "timestamp",
        1184 => "timestamptz",
        1700 => "numeric",
        2950 => "uuid",
        3802 => "jsonb",
        _ => return None,
    })
}

/// The element type of an array type OID this module decodes.
fn element_of(oid: u32) -> Option<u32> {
    Some(match oid {
        1000 => 16,
        1001 => 17,
        1003 => 19,
        1005 => 21,
        1007 => 23,
        1009 => 25,
        1014 => 1042,
        1015 => 1043,
        1016 => 20,
        1021 => 700,
        1022 => 701,
        1028 => 26,
        1115 => 1114,
        1182 => 1082,
        1185 => 1184,
        1231 => 1700,
        199 => 114,
        2951 => 2950,
        3807 => 3802,
        _ => return None,
    })
}

/// How a parameter sent in binary is shown: `42 (int4, sent in binary)`, or its bytes in hex
/// with its type when it is not decoded: `(binary, type OID 600, not decoded) \x...`.
pub fn show_binary(oid: u32, value: &[u8]) -> String {
    let name = type_name(oid)
        .map(str::to_string)
        .or_else(|| element_of(oid).and_then(|e| type_name(e).map(|n| format!("{n}[]"))));
    match (decode(oid, value, 0), &name) {
        (Some(v), Some(n)) => format!("{v} ({n}, sent in binary)"),
        (_, Some(n)) => format!(
            "(binary {n}, not a valid {n} value) \\x{}",
            hex::encode(value)
        ),
        // Type 0: the Parse left the type to the server, and its ParameterDescription had
        // not come when the value was judged (a Bind pipelined with its Parse). The bytes are
        // shown as sent, never read as whatever type their length suggests.
        (_, None) if oid == 0 => format!(
            "(binary, type not declared by the client and not yet described by the server: \
             not decoded) \\x{}",
            hex::encode(value)
        ),
        (_, None) => format!(
            "(binary, type OID {oid}, not decoded) \\x{}",
            hex::encode(value)
        ),
    }
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn decode(oid: u32, v: &[u8], depth: u32) -> Option<String> {
    Some(match oid {
        16 => (if t::bool_from_sql(v).ok()? {
            "true"
        } else {
            "false"
        })
        .into(),
        17 => format!("'\\x{}'", hex::encode(t::bytea_from_sql(v))),
        19 | 25 | 114 | 1042 | 1043 => literal(t::text_from_sql(v).ok()?),
        3802 => match v.split_first() {
            Some((1, rest)) => literal(std::str::from_utf8(rest).ok()?),
            _ => return None,
        },
        20 => t::int8_from_sql(v).ok()?.to_string(),
        21 => t::int2_from_sql(v).ok()?.to_string(),
        23 => t::int4_from_sql(v).ok()?.to_string(),
        26 => t::oid_from_sql(v).ok()?.to_string(),
        700 => float(f64::from(t::float4_from_sql(v).ok()?)),
        701 => float(t::float8_from_sql(v).ok()?),
        1082 => date(t::date_from_sql(v).ok()?),
        1114 => timestamp(t::timestamp_from_sql(v).ok()?, "")?,
        1184 => timestamp(t::timestamp_from_sql(v).ok()?, "+00")?,
        1700 => numeric(v)?,
        2950 => uuid(t::uuid_from_sql(v).ok()?),
        _ if depth == 0 => array(element_of(oid)?, v)?,
        _ => return None,
    })
}

fn float(f: f64) -> String {
    if f.is_nan() {
        "'NaN'".into()
    } else if f.is_infinite() {
        if f > 0.0 { "'Infinity'" } else { "'-Infinity'" }.into()
    } else {
        f.to_string()
    }
}

fn uuid(b: [u8; 16]) -> String {
    let h = hex::encode(b);
    format!(
        "'{}-{}-{}-{}-{}'",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Days since 2000-01-01 as a proleptic Gregorian date (Howard Hinnant's civil_from_days).
fn civil(days_since_2000: i64) -> (i64, u32, u32) {
    let z = days_since_2000 + 10_957 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn ymd(days: i64) -> String {
    let (y, m, d) = civil(days);
    if y <= 0 {
        format!("{:04}-{m:02}-{d:02} BC", 1 - y)
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

fn date(days: i32) -> String {
    match days {
        i32::MAX => "'infinity'".into(),
        i32::MIN => "'-infinity'".into(),
        d => format!("'{}'", ymd(i64::from(d))),
    }
}

/// Microseconds since 2000-01-01 00:00, with `zone` after the time (`+00` for timestamptz,
/// which the server sends in UTC).
fn timestamp(us: i64, zone: &str) -> Option<String> {
    Some(match us {
        i64::MAX => "'infinity'".into(),
        i64::MIN => "'-infinity'".into(),
        _ => {
            let days = us.div_euclid(86_400_000_000);
            let rest = us.rem_euclid(86_400_000_000);
            let (h, rest) = (rest / 3_600_000_000, rest % 3_600_000_000);
            let (m, rest) = (rest / 60_000_000, rest % 60_000_000);
            let (s, frac) = (rest / 1_000_000, rest % 1_000_000);
            let mut out = format!("'{} {h:02}:{m:02}:{s:02}", ymd(days));
            if frac != 0 {
                let _ = write!(out, ".{frac:06}");
                while out.ends_with('0') {
                    out.pop();
                }
            }
            out.push_str(zone);
            out.push('\'');
            out
        }
    })
}

/// PostgreSQL's binary numeric: ndigits, weight, sign, dscale, then base-10000 digits.
fn numeric(v: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<i16> {
        let b = v.get(i * 2..i * 2 + 2)?;
        Some(i16::from_be_bytes([b[0], b[1]]))
    };
    let (ndigits, weight, sign, dscale) = (word(0)?, word(1)?, word(2)? as u16, word(3)?);
    if ndigits < 0 || dscale < 0 || v.len() != 8 + 2 * ndigits as usize {
        return None;
    }
    match sign {
        0xC000 => return Some("'NaN'".into()),
        0xD000 => return Some("'Infinity'".into()),
        0xF000 => return Some("'-Infinity'".into()),
        0x0000 | 0x4000 => {}
        _ => return None,
    }
    let digits: Vec<i16> = (0..ndigits as usize)
        .map(|i| word(4 + i))
        .collect::<Option<_>>()?;
    if digits.iter().any(|d| !(0..10_000).contains(d)) || weight.unsigned_abs() > 10_000 {
        return None;
    }
    let digit = |pos: i32| -> i16 {
        usize::try_from(pos)
            .ok()
            .and_then(|p| digits.get(p).copied())
            .unwrap_or(0)
    };
    let mut int = String::new();
    for pos in 0..=i32::from(weight) {
        let d = digit(pos);
        if int.is_empty() {
            if d != 0 {
                int = d.to_string();
            }
        } else {
            let _ = write!(int, "{d:04}");
        }
    }
    if int.is_empty() {
        int.push('0');
    }
    let mut frac = String::new();
    let mut pos = i32::from(weight) + 1;
    while frac.len() < dscale as usize {
        let _ = write!(frac, "{:04}", digit(pos));
        pos += 1;
    }
    frac.truncate(dscale as usize);
    let mut out = if sign == 0x4000 {
        "-".to_string()
    } else {
        String::new()
    };
    out.push_str(&int);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(&frac);
    }
    Some(out)
}

fn word(r: &mut &[u8]) -> Option<i32> {
    let (b, rest) = r.split_first_chunk::<4>()?;
    *r = rest;
    Some(i32::from_be_bytes(*b))
}

/// One dimension of an array value: its length and lower bound.
#[derive(Clone, Copy)]
struct Dim {
    len: i32,
    lower: i32,
}

/// The binary array format: dimensions, a has-nulls flag, the element type, each dimension's
/// length and lower bound, then each element as a length (-1: NULL) and its bytes.
fn array(element: u32, v: &[u8]) -> Option<String> {
    let mut r = v;
    let ndim = word(&mut r)?;
    let _has_nulls = word(&mut r)?;
    if word(&mut r)? as u32 != element || !(0..=6).contains(&ndim) {
        return None;
    }
    let mut dims = Vec::new();
    for _ in 0..ndim {
        let (len, lower) = (word(&mut r)?, word(&mut r)?);
        if len < 0 {
            return None;
        }
        dims.push(Dim { len, lower });
    }
    let expected: i64 = dims.iter().map(|d| i64::from(d.len)).product();
    let mut items = Vec::new();
    for _ in 0..if ndim == 0 { 0 } else { expected } {
        let len = word(&mut r)?;
        items.push(if len == -1 {
            "NULL".to_string()
        } else {
            let len = usize::try_from(len).ok()?;
            let b = r.get(..len)?;
            r = &r[len..];
            decode(element, b, 1)?
        });
    }
    if !r.is_empty() {
        return None;
    }
    let mut out = String::from("ARRAY");
    if dims.is_empty() {
        out.push_str("[]");
        return Some(out);
    }
    nest(&dims, &items, &mut out);
    if dims.iter().any(|d| d.lower != 1) {
        let bounds: Vec<String> = dims
            .iter()
            .map(|d| {
                format!(
                    "[{}:{}]",
                    d.lower,
                    i64::from(d.lower) + i64::from(d.len) - 1
                )
            })
            .collect();
        let _ = write!(out, " -- bounds {}", bounds.concat());
    }
    Some(out)
}

fn nest(dims: &[Dim], items: &[String], out: &mut String) {
    out.push('[');
    match dims {
        [_] => out.push_str(&items.join(", ")),
        [first, rest @ ..] => {
            let chunk = items.len() / (first.len.max(1) as usize);
            for (i, part) in items.chunks(chunk.max(1)).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                nest(rest, part, out);
            }
        }
        [] => {}
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn scalars() {
        assert_eq!(
            show_binary(23, &42i32.to_be_bytes()),
            "42 (int4, sent in binary)"
        );
        assert_eq!(
            show_binary(20, &(-7i64).to_be_bytes()),
            "-7 (int8, sent in binary)"
        );
        assert_eq!(show_binary(16, &[1]), "true (bool, sent in binary)");
        assert_eq!(show_binary(25, b"it's"), "'it''s' (text, sent in binary)");
        assert_eq!(
            show_binary(3802, b"\x01{\"a\":1}"),
            "'{\"a\":1}' (jsonb, sent in binary)"
        );
        assert_eq!(
            show_binary(701, &1.5f64.to_be_bytes()),
            "1.5 (float8, sent in binary)"
        );
        assert_eq!(
            show_binary(2950, &[0x12; 16]),
            "'12121212-1212-1212-1212-121212121212' (uuid, sent in binary)"
        );
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(date(0), "'2000-01-01'");
        assert_eq!(date(-1), "'1999-12-31'");
        assert_eq!(date(9191), "'2025-03-01'");
        assert_eq!(
            timestamp(86_400_000_000 + 3_723_000_500, "").as_deref(),
            Some("'2000-01-02 01:02:03.0005'")
        );
        assert_eq!(
            timestamp(-1, "+00").as_deref(),
            Some("'1999-12-31 23:59:59.999999+00'")
        );
    }

    #[test]
    fn numerics() {
        // 12345.678: weight 1, digits 1 2345 6780, dscale 3.
        let mut v = Vec::new();
        for w in [3i16, 1, 0, 3, 1, 2345, 6780] {
            v.extend_from_slice(&w.to_be_bytes());
        }
        assert_eq!(numeric(&v).as_deref(), Some("12345.678"));
        // -0.05: weight -1, digit 500, dscale 2.
        let mut v = Vec::new();
        for w in [1i16, -1, 0x4000, 2, 500] {
            v.extend_from_slice(&w.to_be_bytes());
        }
        assert_eq!(numeric(&v).as_deref(), Some("-0.05"));
        assert_eq!(numeric(&[0, 1]), None);
    }

    #[test]
    fn arrays_and_what_does_not_decode() {
        let mut buf = BytesMut::new();
        t::array_to_sql(
            [t::ArrayDimension {
                len: 3,
                lower_bound: 1,
            }],
            23,
            [Some(1i32), None, Some(3)],
            |v, buf| match v {
                Some(v) => {
                    t::int4_to_sql(v, buf);
                    Ok(postgres_protocol::IsNull::No)
                }
                None => Ok(postgres_protocol::IsNull::Yes),
            },
            &mut buf,
        )
        .unwrap();
        assert_eq!(
            show_binary(1007, &buf),
            "ARRAY[1, NULL, 3] (int4[], sent in binary)"
        );
        assert_eq!(
            show_binary(23, &[0, 0, 1]),
            "(binary int4, not a valid int4 value) \\x000001"
        );
        assert_eq!(
            show_binary(600, &[1, 2]),
            "(binary, type OID 600, not decoded) \\x0102"
        );
        assert_eq!(
            show_binary(0, &[1]),
            "(binary, type not declared by the client and not yet described by the server: \
             not decoded) \\x01"
        );
        assert_eq!(
            show_binary(25, &[0xff]),
            "(binary text, not a valid text value) \\xff"
        );
    }
}
