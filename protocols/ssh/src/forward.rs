//! `direct-tcpip` (the agent's `ssh -L`): only where the grant allows forwarding, judged like
//! any other channel, relayed and recorded like one (bytes, digests in the close summary).

use proctor_gate::{Action, ChannelKind, Decision, Event, Party, Resolution};
use russh::{ChannelOpenFailure, server};

use crate::channel::{ChanCtx, relay_raw};
use crate::session::wait_some;

pub(crate) struct ForwardRequest {
    pub host: String,
    pub port: u32,
    pub originator_address: String,
    pub originator_port: u32,
}

pub(crate) async fn direct_tcpip(
    ctx: ChanCtx,
    channel: russh::Channel<server::Msg>,
    reply: server::ChannelOpenHandle,
    req: ForwardRequest,
) {
    let gate = ctx.sess.gate.clone();
    let num = ctx.id.number();
    let dest = format!("{}:{}", req.host, req.port);
    if !ctx.sess.target.allow_port_forwarding {
        let _ = gate
            .record(Event::ChannelOpen {
                channel: num,
                kind: ChannelKind::DirectTcpip,
                detail: format!("{dest} refused: port forwarding is not granted"),
            })
            .await;
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        return;
    }
    let mut stop = ctx.sess.stop.clone();
    let decision = gate
        .decide(Action::Channel {
            channel: num,
            kind: ChannelKind::DirectTcpip,
            detail: dest.clone(),
        })
        .await;
    let allowed = match decision {
        Ok(Decision::Allow) => true,
        Ok(Decision::Deny { .. }) | Err(_) => false,
        Ok(Decision::Held(hold)) => tokio::select! {
            r = hold.outcome => r == Resolution::Allow,
            _ = wait_some(&mut stop) => false,
        },
    };
    if !allowed {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        return;
    }
    let opened = ctx
        .sess
        .conn
        .handle
        .channel_open_direct_tcpip(
            req.host.clone(),
            req.port,
            req.originator_address.clone(),
            req.originator_port,
        )
        .await;
    match opened {
        Ok(target) => {
            reply.accept().await;
            relay_raw(ctx, channel, target).await;
        }
        Err(e) => {
            let _ = gate
                .record(Event::ProtocolError {
                    party: Party::Target,
                    message: format!("direct-tcpip to {dest} failed on the target: {e}"),
                })
                .await;
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
        }
    }
}
