//! Who asks the service to act, as the door they came through authenticated them: an API
//! token (by its configured name, with its one role), a local user the control socket's peer
//! credentials named, or an identity another cluster node authenticated. The free-text label a
//! person may type is carried beside the identity and recorded, never trusted.

use serde::Serialize;

use crate::approvals::Approver;

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Operator,
    Approver,
    Auditor,
    Agent,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "operator" => Some(Role::Operator),
            "approver" => Some(Role::Approver),
            "auditor" => Some(Role::Auditor),
            "agent" => Some(Role::Agent),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
            Role::Agent => "agent",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An API token: its configured name and role.
    Token { name: String, role: Role },
    /// A local OS user (the uid the kernel vouched for, by name), who may do what the socket
    /// allows: the socket is owner-only, so that user is proctor's operator.
    Local { user: String, label: Option<String> },
    /// An identity another cluster node authenticated (a token name or `os:USER`), relayed
    /// through the control plane; the issuing node checked its role.
    Relayed {
        identity: String,
        label: Option<String>,
        node: String,
    },
}

impl Actor {
    pub fn may(&self, role: Role) -> bool {
        match self {
            Actor::Token { role: r, .. } => *r == role,
            Actor::Local { .. } | Actor::Relayed { .. } => true,
        }
    }

    /// The identity that decides a hold (only it counts towards `min_approvals`).
    pub fn approver(&self) -> Approver {
        match self {
            Actor::Token { name, .. } => Approver::token(name),
            Actor::Local { user, label } => Approver::os_user(user, label.as_deref()),
            Actor::Relayed {
                identity,
                label,
                node,
            } => Approver::relayed(identity, label.as_deref(), node),
        }
    }

    /// The actor as a record names it (identity, quoted label, relaying node).
    pub fn shown(&self) -> String {
        self.approver().shown()
    }

    /// The authenticated identity and the label, as another node is told who asks.
    pub fn issuer(&self) -> (String, Option<String>) {
        let a = self.approver();
        (a.identity().to_string(), a.label().map(str::to_string))
    }
}
