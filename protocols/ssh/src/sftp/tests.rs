//! Decoding and tracking examples.

use super::request::*;
use super::*;

fn packet(ty: u8, id: u32, fields: &[&[u8]], tail: &[u8]) -> Bytes {
    let mut body = vec![ty];
    body.extend_from_slice(&id.to_be_bytes());
    for f in fields {
        body.extend_from_slice(&(f.len() as u32).to_be_bytes());
        body.extend_from_slice(f);
    }
    body.extend_from_slice(tail);
    let mut p = (body.len() as u32).to_be_bytes().to_vec();
    p.extend_from_slice(&body);
    Bytes::from(p)
}

#[test]
fn framer_rejects_huge_lengths_without_allocating() {
    let mut f = Framer::default();
    f.push(&[0xff, 0xff, 0xff, 0xff, 1]);
    assert_eq!(f.next_packet(), Err(SftpError::TooLong(0xffff_ffff)));
    let mut f = Framer::default();
    f.push(&[0, 0, 0, 5, 1, 0]);
    assert_eq!(f.next_packet(), Ok(None));
    f.push(&[0, 0, 3]);
    assert!(matches!(f.next_packet(), Ok(Some(p)) if p.len() == 9));
}

#[test]
fn truncated_fields_are_malformed() {
    let p = packet(FXP_OPEN, 7, &[], &[0, 0, 0, 50, b'/']);
    assert_eq!(parse_request(&p).err(), Some(SftpError::Malformed));
}

#[test]
fn upload_is_tracked_and_digested() {
    let mut t = SftpTracker::new(0);
    let mut flags = (FXF_WRITE | FXF_CREAT | FXF_TRUNC).to_be_bytes().to_vec();
    flags.extend_from_slice(&0u32.to_be_bytes());
    let open = parse_request(&packet(FXP_OPEN, 1, &[b"/tmp/x"], &flags)).expect("open");
    assert_eq!(
        t.changes(&open),
        vec![Change {
            op: "open-write".into(),
            path: "/tmp/x".into(),
            target_path: String::new(),
        }]
    );
    t.forwarded(open);
    let done = t.replies(&packet(FXP_HANDLE, 1, &[b"h1"], &[]));
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].status, "ok");
    assert_eq!(done[0].detail, "write|creat|trunc");
    let mut tail = 0u64.to_be_bytes().to_vec();
    tail.extend_from_slice(&5u32.to_be_bytes());
    tail.extend_from_slice(b"hello");
    let write = parse_request(&packet(FXP_WRITE, 2, &[b"h1"], &tail)).expect("write");
    assert!(t.changes(&write).is_empty());
    t.forwarded(write);
    t.forwarded(parse_request(&packet(FXP_CLOSE, 3, &[b"h1"], &[])).expect("close"));
    let mut ok = 0u32.to_be_bytes().to_vec();
    ok.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    let done = t.replies(&packet(FXP_STATUS, 3, &[], &ok));
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].op, "close");
    assert_eq!(done[0].bytes_written, 5);
    let want: [u8; 32] = Sha256::digest(b"hello").into();
    assert_eq!(done[0].digest_written, Some(want));
}

#[test]
fn copy_data_is_recorded_with_both_paths() {
    let mut t = SftpTracker::new(0);
    let mut ok = 0u32.to_be_bytes().to_vec();
    ok.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    for (id, path, flags, h) in [
        (1, &b"/tmp/src"[..], FXF_READ, &b"hr"[..]),
        (
            2,
            &b"/tmp/dst"[..],
            FXF_WRITE | FXF_CREAT | FXF_TRUNC,
            &b"hw"[..],
        ),
    ] {
        let mut tail = flags.to_be_bytes().to_vec();
        tail.extend_from_slice(&0u32.to_be_bytes());
        t.forwarded(parse_request(&packet(FXP_OPEN, id, &[path], &tail)).expect("open"));
        t.replies(&packet(FXP_HANDLE, id, &[h], &[]));
    }
    let mut body = vec![FXP_EXTENDED];
    body.extend_from_slice(&3u32.to_be_bytes());
    for (f, n) in [
        (&b"copy-data"[..], None),
        (b"hr", Some(0u64)),
        (b"hw", None),
    ] {
        body.extend_from_slice(&(f.len() as u32).to_be_bytes());
        body.extend_from_slice(f);
        if let Some(off) = n {
            body.extend_from_slice(&off.to_be_bytes());
            body.extend_from_slice(&0u64.to_be_bytes());
        }
    }
    body.extend_from_slice(&0u64.to_be_bytes());
    let mut p = (body.len() as u32).to_be_bytes().to_vec();
    p.extend_from_slice(&body);
    let req = parse_request(&Bytes::from(p)).expect("copy-data");
    assert!(
        t.changes(&req).is_empty(),
        "both handles were judged at open"
    );
    t.forwarded(req);
    let done = t.replies(&packet(FXP_STATUS, 3, &[], &ok));
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].op, "copy-data");
    assert_eq!(done[0].path, "/tmp/dst");
    assert_eq!(done[0].target_path, "/tmp/src");
    assert_eq!(done[0].status, "ok");
    assert_eq!(done[0].detail, "read_offset=0 length=0 write_offset=0");
}

#[test]
fn rename_judges_both_paths() {
    let t = SftpTracker::new(0);
    let req = parse_request(&packet(FXP_RENAME, 4, &[b"/a", b"/etc/shadow"], &[])).expect("rename");
    let c = t.changes(&req);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].path, "/a");
    assert_eq!(c[0].target_path, "/etc/shadow");
}
