// Shapes of the API's answers (see /api/openapi.json).

export interface LiveSession {
  id: string;
  agent: string;
  target: string;
  protocol: string;
  privilege: string;
  login: string;
  client_addr: string;
  started_ns: number;
  pending_holds: string[];
}

export interface PendingApproval {
  id: string;
  session_id: string;
  agent: string;
  target: string;
  protocol: string;
  privilege: string;
  kind: string;
  detail: string;
  class: string;
  tables: string[];
  rule: string;
  reason: string;
  reasoning: string[];
  created_ns: number;
  expires_ns: number;
  min_approvals: number;
  approvals: string[];
  /** Session settings that change what the action means (PostgreSQL: search_path, role). */
  settings: { name: string; value: string; note: string }[];
  severity: "low" | "medium" | "high" | "critical";
  /** Look-alike holds of one agent (literals, case and whitespace folded). */
  group: { id: string; normalised: string; count: number };
}

export interface TextMatch {
  seq: number;
  kind: "statement" | "exec" | "command_line";
  ts_ns: number;
  text: string;
}

export interface SessionMeta {
  id: string;
  agent: string;
  target: string;
  protocol: string;
  login: string;
  privilege: string;
  client_addr: string;
  grant: string;
  started_ns: number;
  ended_ns: number | null;
  outcome: string | null;
  end_reason: string;
  sealed: boolean;
  last_seq: number;
  events: number;
  record_bytes: number;
  statements: number;
  commands: number;
  holds: number;
  denies: number;
  alerts: number;
  ledger_index: number | null;
  archived?: string | null;
  purged?: boolean;
  matches?: TextMatch[];
}

/** One record: seq, ts, ts_ns, kind, hash and the event's own fields. */
export interface RecordJson {
  seq: number;
  ts: string;
  ts_ns: number;
  kind: string;
  [field: string]: unknown;
}

export interface EventsPage {
  session: string;
  events: RecordJson[];
  next_from: number | null;
}

export interface Verification {
  ok: boolean;
  key: string;
  report: {
    sessions: number;
    sealed: number;
    open: number;
    records: number;
    problems: Record<string, unknown>[];
    notes: string[];
  };
}
