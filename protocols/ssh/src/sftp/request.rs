//! SFTP v3 requests: which request is which, and the paths and handles each names.

use bytes::Bytes;

use super::wire::{Reader, SftpError};

pub(super) const FXP_INIT: u8 = 1;
pub(super) const FXP_OPEN: u8 = 3;
pub(super) const FXP_CLOSE: u8 = 4;
pub(super) const FXP_READ: u8 = 5;
pub(super) const FXP_WRITE: u8 = 6;
pub(super) const FXP_SETSTAT: u8 = 9;
pub(super) const FXP_FSETSTAT: u8 = 10;
pub(super) const FXP_OPENDIR: u8 = 11;
pub(super) const FXP_REMOVE: u8 = 13;
pub(super) const FXP_MKDIR: u8 = 14;
pub(super) const FXP_RMDIR: u8 = 15;
pub(super) const FXP_RENAME: u8 = 18;
pub(super) const FXP_SYMLINK: u8 = 20;
pub(super) const FXP_EXTENDED: u8 = 200;
pub(super) const FXP_STATUS: u8 = 101;
pub(super) const FXP_HANDLE: u8 = 102;
pub(super) const FXP_DATA: u8 = 103;

pub(super) const FXF_READ: u32 = 0x01;
pub(super) const FXF_WRITE: u32 = 0x02;
pub(super) const FXF_APPEND: u32 = 0x04;
pub(super) const FXF_CREAT: u32 = 0x08;
pub(super) const FXF_TRUNC: u32 = 0x10;
pub(super) const FXF_EXCL: u32 = 0x20;

pub(crate) const FX_PERMISSION_DENIED: u32 = 3;

/// A change to the target that policy must allow before it is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub op: String,
    pub path: String,
    /// The other path of a rename or link; empty otherwise.
    pub target_path: String,
}

/// What the relay must do with one request.
#[derive(Debug)]
pub(crate) struct Request {
    pub id: Option<u32>,
    pub(super) kind: Kind,
}

#[derive(Debug)]
pub(super) enum Kind {
    Open {
        path: String,
        flags: u32,
        attrs: String,
    },
    OpenDir {
        path: String,
    },
    Close {
        handle: Vec<u8>,
    },
    Read {
        handle: Vec<u8>,
    },
    Write {
        handle: Vec<u8>,
        data: Bytes,
    },
    Op {
        op: String,
        path: String,
        target: String,
        detail: String,
        handle: Option<Vec<u8>>,
    },
    /// `copy-data`: the target copies between two open handles itself, so the bytes never
    /// cross proctor; the copy is recorded as an operation of its own (both handles were
    /// judged when they were opened).
    CopyData {
        from: Vec<u8>,
        to: Vec<u8>,
        detail: String,
    },
    Other,
}

pub(super) fn flags_text(flags: u32) -> String {
    let names = [
        (FXF_READ, "read"),
        (FXF_WRITE, "write"),
        (FXF_APPEND, "append"),
        (FXF_CREAT, "creat"),
        (FXF_TRUNC, "trunc"),
        (FXF_EXCL, "excl"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    v.join("|")
}

/// Decodes one request packet (length prefix included).
pub(crate) fn parse_request(packet: &Bytes) -> Result<Request, SftpError> {
    let body = packet.get(4..).ok_or(SftpError::Malformed)?;
    let mut r = Reader { b: body };
    let ty = r.u8()?;
    if ty == FXP_INIT {
        return Ok(Request {
            id: None,
            kind: Kind::Other,
        });
    }
    let id = r.u32()?;
    let op = |op: &str, path: String, target: String, detail: String, handle: Option<Vec<u8>>| {
        Kind::Op {
            op: op.to_string(),
            path,
            target,
            detail,
            handle,
        }
    };
    let kind = match ty {
        FXP_OPEN => {
            let path = r.path()?;
            let flags = r.u32()?;
            let attrs = r.attrs().unwrap_or_default();
            Kind::Open { path, flags, attrs }
        }
        FXP_OPENDIR => Kind::OpenDir { path: r.path()? },
        FXP_CLOSE => Kind::Close {
            handle: r.string()?.to_vec(),
        },
        FXP_READ => Kind::Read {
            handle: r.string()?.to_vec(),
        },
        FXP_WRITE => {
            let handle = r.string()?.to_vec();
            let _offset = r.u64()?;
            let len = r.u32()? as usize;
            // The data is the packet's tail: slice it without copying.
            let start = packet.len() - r.b.len();
            if r.b.len() < len {
                return Err(SftpError::Malformed);
            }
            Kind::Write {
                handle,
                data: packet.slice(start..start + len),
            }
        }
        FXP_SETSTAT => {
            let path = r.path()?;
            let attrs = r.attrs()?;
            op("setstat", path, String::new(), attrs, None)
        }
        FXP_FSETSTAT => {
            let handle = r.string()?.to_vec();
            let attrs = r.attrs()?;
            op(
                "fsetstat",
                String::new(),
                String::new(),
                attrs,
                Some(handle),
            )
        }
        FXP_REMOVE => op("remove", r.path()?, String::new(), String::new(), None),
        FXP_MKDIR => {
            let path = r.path()?;
            let attrs = r.attrs().unwrap_or_default();
            op("mkdir", path, String::new(), attrs, None)
        }
        FXP_RMDIR => op("rmdir", r.path()?, String::new(), String::new(), None),
        FXP_RENAME => {
            let from = r.path()?;
            let to = r.path()?;
            op("rename", from, to, String::new(), None)
        }
        FXP_SYMLINK => {
            // OpenSSH sends (target, link): the order the draft specified was swapped.
            let target = r.path()?;
            let link = r.path()?;
            op("symlink", link, target, String::new(), None)
        }
        FXP_EXTENDED => {
            let name = String::from_utf8_lossy(r.string()?).into_owned();
            match name.as_str() {
                "posix-rename@openssh.com" => {
                    let from = r.path()?;
                    let to = r.path()?;
                    op("rename", from, to, "posix".into(), None)
                }
                "hardlink@openssh.com" => {
                    let from = r.path()?;
                    let to = r.path()?;
                    op("hardlink", to, from, String::new(), None)
                }
                "lsetstat@openssh.com" => {
                    let path = r.path()?;
                    let attrs = r.attrs()?;
                    op("setstat", path, String::new(), attrs, None)
                }
                // Read-only queries, or operations on handles already judged at open.
                "fsync@openssh.com"
                | "statvfs@openssh.com"
                | "fstatvfs@openssh.com"
                | "limits@openssh.com"
                | "expand-path@openssh.com"
                | "home-directory"
                | "users-groups-by-id@openssh.com" => Kind::Other,
                "copy-data" => {
                    let from = r.string()?.to_vec();
                    let read_offset = r.u64()?;
                    let length = r.u64()?;
                    let to = r.string()?.to_vec();
                    let write_offset = r.u64()?;
                    Kind::CopyData {
                        from,
                        to,
                        detail: format!(
                            "read_offset={read_offset} length={length} write_offset={write_offset}"
                        ),
                    }
                }
                _ => op(
                    &format!("extended:{name}"),
                    String::new(),
                    String::new(),
                    String::new(),
                    None,
                ),
            }
        }
        _ => Kind::Other,
    };
    Ok(Request { id: Some(id), kind })
}
