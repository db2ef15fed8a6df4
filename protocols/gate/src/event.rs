//! What happened in a session. One enum shared by every protocol and by the recorder's encoder.
//!
//! The recorder assigns the sequence number and wall-clock timestamp; an event only says what
//! happened. Adding a variant is a format change: give it a new kind code in the recorder's
//! `FORMAT.md` and never reuse an old one.

use bytes::Bytes;

/// Which wire protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Ssh,
    Postgres,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Ssh => "ssh",
            Protocol::Postgres => "postgres",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ssh" => Some(Protocol::Ssh),
            "postgres" | "postgresql" | "pg" => Some(Protocol::Postgres),
            _ => None,
        }
    }
}

/// Privilege level of a session, set by the grant that admitted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Privilege {
    Routine,
    Elevated,
    BreakGlass,
}

impl Privilege {
    pub fn as_str(self) -> &'static str {
        match self {
            Privilege::Routine => "routine",
            Privilege::Elevated => "elevated",
            Privilege::BreakGlass => "break-glass",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "routine" => Some(Privilege::Routine),
            "elevated" => Some(Privilege::Elevated),
            "break-glass" | "break_glass" | "breakglass" => Some(Privilege::BreakGlass),
            _ => None,
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Completed,
    Killed,
    Interrupted,
    TargetLost,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Killed => "killed",
            Outcome::Interrupted => "interrupted",
            Outcome::TargetLost => "target_lost",
            Outcome::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "completed" => Some(Outcome::Completed),
            "killed" => Some(Outcome::Killed),
            "interrupted" => Some(Outcome::Interrupted),
            "target_lost" => Some(Outcome::TargetLost),
            "denied" => Some(Outcome::Denied),
            _ => None,
        }
    }
}

/// The facts fixed when a session starts (clause 4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub agent: String,
    pub target: String,
    pub protocol: Protocol,
    /// Database role or SSH login the agent asked for (before credentials are issued).
    pub login: String,
    pub privilege: Privilege,
    pub client_addr: String,
    /// Name of the grant that admitted the session; empty when none did.
    pub grant: String,
    pub proctor_version: String,
}

/// Output stream of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Which party a protocol-level problem came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Agent,
    Target,
    Proctor,
}

impl Party {
    pub fn as_str(self) -> &'static str {
        match self {
            Party::Agent => "agent",
            Party::Target => "target",
            Party::Proctor => "proctor",
        }
    }
}

/// Kind of an SSH channel (or the PostgreSQL connection, which has one implicit channel 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    Session,
    Shell,
    Exec,
    Sftp,
    Subsystem,
    DirectTcpip,
    ForwardedTcpip,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Session => "session",
            ChannelKind::Shell => "shell",
            ChannelKind::Exec => "exec",
            ChannelKind::Sftp => "sftp",
            ChannelKind::Subsystem => "subsystem",
            ChannelKind::DirectTcpip => "direct-tcpip",
            ChannelKind::ForwardedTcpip => "forwarded-tcpip",
        }
    }
}

/// Coarse class of a SQL statement, from the parser (never guessed from keywords alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatementClass {
    /// Empty query string.
    Empty,
    Tcl,
    Session,
    Read,
    Write,
    Admin,
    Ddl,
    Dcl,
    /// Could not be parsed, or parsed into something proctor cannot classify.
    Unknown,
}

impl StatementClass {
    pub fn as_str(self) -> &'static str {
        match self {
            StatementClass::Empty => "empty",
            StatementClass::Tcl => "tcl",
            StatementClass::Session => "session",
            StatementClass::Read => "read",
            StatementClass::Write => "write",
            StatementClass::Admin => "admin",
            StatementClass::Ddl => "ddl",
            StatementClass::Dcl => "dcl",
            StatementClass::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "empty" => StatementClass::Empty,
            "tcl" => StatementClass::Tcl,
            "session" => StatementClass::Session,
            "read" => StatementClass::Read,
            "write" => StatementClass::Write,
            "admin" => StatementClass::Admin,
            "ddl" => StatementClass::Ddl,
            "dcl" => StatementClass::Dcl,
            "unknown" => StatementClass::Unknown,
            _ => return None,
        })
    }

    /// Rank used to judge a multi-statement message by its most dangerous part.
    pub fn danger(self) -> u8 {
        match self {
            StatementClass::Empty => 0,
            StatementClass::Tcl => 1,
            StatementClass::Session => 2,
            StatementClass::Read => 3,
            StatementClass::Write => 4,
            StatementClass::Admin => 5,
            StatementClass::Ddl => 6,
            StatementClass::Dcl => 7,
            StatementClass::Unknown => 8,
        }
    }
}

/// A bound parameter as sent by the client: the raw bytes and their wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub binary: bool,
    /// `None` is SQL NULL.
    pub value: Option<Bytes>,
}

/// A SQL statement the agent asked the target to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Per-session statement number; results refer to it.
    pub id: u64,
    pub text: String,
    pub params: Vec<Param>,
    /// Prepared statement name (extended protocol); empty for the unnamed one or simple query.
    pub statement_name: String,
    pub portal: String,
    /// `true` for the extended protocol (Parse/Bind/Execute), `false` for a simple Query.
    pub extended: bool,
    pub class: StatementClass,
    /// Parser-level summary, e.g. `DELETE`, `CREATE TABLE`, `SELECT` or the first keyword when unparsed.
    pub command: String,
    pub tables: Vec<String>,
    /// The agent's stated reason, from a leading `/* reason: ... */` or `-- reason: ...` comment.
    pub reasoning: Option<String>,
    /// For SQL `EXECUTE name`: the text of the statement the server holds under that name (as
    /// its PREPARE was read). Policy judges it along with `text`, and approvers are shown it.
    /// Not part of the record's statement body: the record holds it in that PREPARE.
    pub runs: Option<String>,
}

/// Error reported by the target for a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub severity: String,
    pub code: String,
    pub message: String,
}

/// Outcome of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementResult {
    pub statement_id: u64,
    /// Command tag, e.g. `SELECT 3`, `UPDATE 1`; empty on error.
    pub tag: String,
    /// Rows returned (DataRows seen) or affected (from the tag).
    pub rows: u64,
    pub error: Option<SqlError>,
    pub duration_ns: u64,
    pub columns: Vec<String>,
    /// The first rows, each column rendered as text (binary columns as hex).
    pub sample_rows: Vec<Vec<Option<String>>>,
    /// SHA-256 over every DataRow message body in order (see FORMAT.md).
    pub digest: [u8; 32],
    /// `true` when the portal was suspended (row limit in Execute) rather than completed.
    pub suspended: bool,
}

/// Direction of a bulk transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Agent to target.
    Upload,
    /// Target to agent.
    Download,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }
}

/// Byte counts and digests of everything that crossed a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferSummary {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub digest_in: [u8; 32],
    pub digest_out: [u8; 32],
}

/// One SFTP operation (open, read/write totals, close, remove, rename, mkdir, setstat...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpOp {
    pub channel: u32,
    pub op: String,
    pub path: String,
    /// Second path (rename, symlink) or empty.
    pub target_path: String,
    /// Open flags, attributes or other detail as text.
    pub detail: String,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub digest_read: Option<[u8; 32]>,
    pub digest_written: Option<[u8; 32]>,
    /// SFTP status of the reply (`ok`, `no such file`...) or empty when none yet.
    pub status: String,
}

/// What was decided about an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictKind {
    Allow,
    Deny,
    Hold,
}

impl VerdictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Allow => "allow",
            VerdictKind::Deny => "deny",
            VerdictKind::Hold => "hold",
        }
    }
}

/// A policy decision, recorded before the action is forwarded or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictRecord {
    /// What was judged, e.g. `statement 12`, `exec channel 0`, `line channel 0`.
    pub subject: String,
    pub verdict: VerdictKind,
    pub rule: String,
    pub reason: String,
    /// Set when `verdict` is `Hold`.
    pub approval_id: String,
}

/// How a held action was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalOutcome {
    Approved,
    Denied,
    TimedOut,
    Cancelled,
}

impl ApprovalOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalOutcome::Approved => "approved",
            ApprovalOutcome::Denied => "denied",
            ApprovalOutcome::TimedOut => "timed_out",
            ApprovalOutcome::Cancelled => "cancelled",
        }
    }
}

/// A person's answer to a hold (or its expiry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    pub approval_id: String,
    pub outcome: ApprovalOutcome,
    /// Who decided; empty for a timeout or cancellation.
    pub approver: String,
    pub reason: String,
}

/// A real-time alert raised during the session (clause 4.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRecord {
    pub rule: String,
    pub severity: String,
    pub message: String,
}

/// A just-in-time credential issued to reach the target. Never holds the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    /// `postgres-role` or `ssh-certificate`.
    pub kind: String,
    /// Role name, or certificate key id.
    pub name: String,
    pub serial: u64,
    pub principals: Vec<String>,
    pub valid_after_ns: i64,
    pub valid_before_ns: i64,
    pub detail: String,
}

/// Everything that can appear in a session recording, apart from the recorder's own
/// checkpoints and seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    SessionStart(SessionInfo),
    SessionEnd {
        outcome: Outcome,
        reason: String,
    },
    /// PostgreSQL startup parameters, SSH env requests, client version strings.
    ClientParams {
        params: Vec<(String, String)>,
    },
    ChannelOpen {
        channel: u32,
        kind: ChannelKind,
        detail: String,
    },
    ChannelRequest {
        channel: u32,
        request: String,
        detail: String,
        accepted: bool,
    },
    Resize {
        channel: u32,
        cols: u32,
        rows: u32,
    },
    Input {
        channel: u32,
        data: Bytes,
    },
    Output {
        channel: u32,
        stream: OutputStream,
        data: Bytes,
    },
    Exec {
        channel: u32,
        command: String,
    },
    CommandLine {
        channel: u32,
        line: String,
    },
    ExitStatus {
        channel: u32,
        status: u32,
    },
    ExitSignal {
        channel: u32,
        signal: String,
        message: String,
    },
    ChannelClose {
        channel: u32,
        summary: TransferSummary,
    },
    Sftp(SftpOp),
    Statement(Statement),
    StatementResult(StatementResult),
    Copy {
        statement_id: u64,
        direction: Direction,
        bytes: u64,
        digest: [u8; 32],
    },
    /// Notices and asynchronous messages from the target (NoticeResponse, NotificationResponse,
    /// ParameterStatus).
    TargetMessage {
        kind: String,
        text: String,
    },
    Verdict(VerdictRecord),
    Approval(ApprovalRecord),
    Alert(AlertRecord),
    /// The agent's reasoning or decision trace (clause 4.6).
    Annotation {
        source: String,
        text: String,
    },
    CredentialIssued(CredentialRecord),
    CredentialRevoked {
        name: String,
        detail: String,
    },
    /// Malformed or refused input, unreachable targets and other faults, with whose fault it was.
    ProtocolError {
        party: Party,
        message: String,
    },
    /// How long the recording is kept (clause 4.4), fixed when the session ends.
    Retention {
        online_until_ns: i64,
        retain_until_ns: i64,
        policy: String,
    },
}

impl Event {
    /// Short stable name of the variant, used in exports and searches.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Event::SessionStart(_) => "session_start",
            Event::SessionEnd { .. } => "session_end",
            Event::ClientParams { .. } => "client_params",
            Event::ChannelOpen { .. } => "channel_open",
            Event::ChannelRequest { .. } => "channel_request",
            Event::Resize { .. } => "resize",
            Event::Input { .. } => "input",
            Event::Output { .. } => "output",
            Event::Exec { .. } => "exec",
            Event::CommandLine { .. } => "command_line",
            Event::ExitStatus { .. } => "exit_status",
            Event::ExitSignal { .. } => "exit_signal",
            Event::ChannelClose { .. } => "channel_close",
            Event::Sftp(_) => "sftp",
            Event::Statement(_) => "statement",
            Event::StatementResult(_) => "result",
            Event::Copy { .. } => "copy",
            Event::TargetMessage { .. } => "target_message",
            Event::Verdict(_) => "verdict",
            Event::Approval(_) => "approval",
            Event::Alert(_) => "alert",
            Event::Annotation { .. } => "annotation",
            Event::CredentialIssued(_) => "credential_issued",
            Event::CredentialRevoked { .. } => "credential_revoked",
            Event::ProtocolError { .. } => "protocol_error",
            Event::Retention { .. } => "retention",
        }
    }

    /// Approximate size in memory, used to bound the recorder's queue.
    pub fn weight(&self) -> usize {
        const BASE: usize = 64;
        BASE + match self {
            Event::Input { data, .. } | Event::Output { data, .. } => data.len(),
            Event::Statement(s) => {
                s.text.len()
                    + s.params
                        .iter()
                        .map(|p| p.value.as_ref().map_or(0, |v| v.len()) + 8)
                        .sum::<usize>()
            }
            Event::StatementResult(r) => {
                r.sample_rows
                    .iter()
                    .flatten()
                    .map(|c| c.as_ref().map_or(0, |v| v.len()) + 8)
                    .sum::<usize>()
                    + r.columns.iter().map(|c| c.len()).sum::<usize>()
            }
            Event::Exec { command, .. } => command.len(),
            Event::CommandLine { line, .. } => line.len(),
            Event::Annotation { text, .. } => text.len(),
            _ => 128,
        }
    }
}
