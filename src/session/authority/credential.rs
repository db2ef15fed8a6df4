//! The target's side of an admission: where and how to connect (its endpoint), and the
//! just-in-time credential issued for one session with what revokes it at the end.

use proctor_gate::{
    Credential, PostgresTarget, Protocol, SessionRequest, ShellMode, SshTarget, TargetEndpoint,
    TargetTls,
};
use zeroize::Zeroizing;

use super::CoreAuthority;
use crate::config::{Grant, Target, TargetTlsMode};
use crate::credentials::pg_roles::AdminTarget;
use crate::credentials::ssh_ca::CertRequest;
use crate::session::gate::Revocation;

pub fn admin_target(target: &Target) -> Result<AdminTarget, String> {
    let dsn = match (&target.admin_dsn, &target.admin_dsn_file) {
        (Some(d), _) => d.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read {}: {e}", f.display()))?
            .trim()
            .to_string(),
        (None, None) => return Err("no admin_dsn configured".into()),
    };
    Ok(AdminTarget {
        name: target.name.clone(),
        dsn: Zeroizing::new(dsn),
    })
}

pub(super) fn endpoint(target: &Target, grant: &Grant) -> Result<TargetEndpoint, String> {
    match target.protocol() {
        Some(Protocol::Postgres) => {
            let tls = match target.tls {
                Some(TargetTlsMode::VerifyFull) => {
                    let path = target.tls_ca_file.as_ref().ok_or("tls_ca_file missing")?;
                    let ca_pem = std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    TargetTls::VerifyFull { ca_pem }
                }
                _ => TargetTls::Disable,
            };
            Ok(TargetEndpoint::Postgres(PostgresTarget {
                host: target.host.clone(),
                port: target.port,
                dbname: target.dbname.clone().unwrap_or_else(|| target.name.clone()),
                tls,
                connect_timeout: target.connect_timeout,
                copy_record_limit: grant
                    .copy_record_limit
                    .unwrap_or(proctor_gate::DEFAULT_COPY_RECORD_LIMIT),
            }))
        }
        Some(Protocol::Ssh) => Ok(TargetEndpoint::Ssh(SshTarget {
            host: target.host.clone(),
            port: target.port,
            host_keys: target.host_keys.clone(),
            host_cas: target.host_cas.clone(),
            connect_timeout: target.connect_timeout,
            allow_port_forwarding: grant.port_forwarding,
            allow_pty: grant.pty && grant.shell_mode() != ShellMode::Deny,
            shell: grant.shell_mode(),
        })),
        None => Err(format!("target {} has an unknown kind", target.name)),
    }
}

impl CoreAuthority {
    /// The just-in-time credential for the target, what revokes it, and its record.
    pub(super) async fn issue_credential(
        &self,
        target: &Target,
        grant: &Grant,
        req: &SessionRequest,
        id: &str,
        login: &str,
    ) -> Result<(Credential, Revocation, proctor_gate::CredentialRecord), String> {
        if target.protocol() == Some(Protocol::Postgres) {
            let admin = admin_target(target)?;
            let member_of = grant.role.clone().unwrap_or_default();
            let issued = self
                .core
                .pg_roles
                .issue(
                    &admin,
                    &req.agent,
                    id,
                    &member_of,
                    grant.max_session,
                    grant.connection_limit,
                    &target.dbname.clone().unwrap_or_else(|| target.name.clone()),
                )
                .await
                .map_err(|e| e.to_string())?;
            return Ok((
                Credential::PostgresRole {
                    user: issued.user.clone(),
                    password: issued.password,
                    builtins_overloaded: issued.builtins_overloaded,
                },
                Revocation::PostgresRole {
                    target: admin,
                    user: issued.user,
                    member_of,
                },
                issued.record,
            ));
        }
        let cfg = &self.core.config.ssh;
        let source_address = match &cfg.certificate_source_address {
            Some(a) => a.clone(),
            None => crate::credentials::ssh_ca::source_address_toward(&target.host, target.port)
                .await
                .map_err(|e| e.to_string())?,
        };
        let issued = self
            .core
            .ssh_ca
            .issue(&CertRequest {
                login,
                session_id: id,
                agent: &req.agent,
                validity: cfg.certificate_validity,
                source_address: &source_address,
                // No terminal on the target when the grant denies shells.
                permit_pty: grant.pty && grant.shell_mode() != ShellMode::Deny,
                permit_port_forwarding: grant.port_forwarding,
            })
            .map_err(|e| e.to_string())?;
        Ok((
            Credential::SshCertificate {
                login: login.to_string(),
                private_key_openssh: issued.private_key_openssh,
                certificate_openssh: issued.certificate_openssh,
            },
            Revocation::SshCertificate {
                name: issued.record.name.clone(),
                valid_before_ns: issued.record.valid_before_ns,
            },
            issued.record,
        ))
    }
}
