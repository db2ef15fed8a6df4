//! The HTTP API (`listen.api`): one door per role, with separation of duties enforced here and
//! in the approvals core. Operators see and kill live sessions, approvers decide holds, auditors
//! read, verify and export recordings (and every such read is itself journaled), agent tokens
//! may only annotate their own agent's live sessions. No route modifies or deletes a recording.
//!
//! The route table below is the single source of both the router and the OpenAPI test's list
//! of routes, so the published description cannot silently drift from what is served.

pub mod annotations;
pub mod approvals;
pub mod auth;
pub mod client;
pub mod console;
pub mod events;
pub mod evidence;
pub mod metrics;
pub mod openapi;
mod search_lane;
pub mod server;
pub mod sessions;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::handler::Handler;
use axum::http::{StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use serde::de::DeserializeOwned;
use serde_json::json;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::ops::OpsError;
use crate::service::{Service, ServiceError};
use crate::session::Core;

pub use auth::{Principal, Role, Tokens};

/// Request bodies are small JSON documents (reasons, annotations); anything larger is refused
/// before it is buffered.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct ApiState {
    pub core: Arc<Core>,
    /// What the handlers ask of the running proctor (they translate HTTP to it and back).
    pub service: Service,
    pub tokens: Arc<Tokens>,
    /// Ends long-lived responses (the event stream) when proctor stops.
    pub shutdown: watch::Receiver<bool>,
}

/// Every error leaves as `{"error": "..."}` with a status that says whose fault it is.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    /// The recorder cannot write: reads that must be journaled and writes fail closed.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    /// A framework rejection (oversized body, wrong content type...) keeps its own status.
    #[error("{message}")]
    Status { status: StatusCode, message: String },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Status { status, .. } => *status,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %proctor_gate::inert::LineOf(&self), "API request failed");
        }
        let body = axum::Json(json!({ "error": self.to_string() }));
        if status == StatusCode::UNAUTHORIZED {
            return (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response();
        }
        (status, body).into_response()
    }
}

impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> Self {
        match e {
            OpsError::NoSuchSession(_) => ApiError::NotFound(e.to_string()),
            OpsError::Ambiguous { .. } | OpsError::Invalid(_) => {
                ApiError::BadRequest(e.to_string())
            }
            OpsError::Failed(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        match e {
            ServiceError::NotFound(_) => ApiError::NotFound(message),
            ServiceError::Ambiguous { .. } | ServiceError::BadRequest(_) => {
                ApiError::BadRequest(message)
            }
            ServiceError::Forbidden(_) => ApiError::Forbidden(message),
            ServiceError::Conflict(_) => ApiError::Conflict(message),
            ServiceError::Unavailable(_) => ApiError::Unavailable(message),
            ServiceError::Failed(_) => ApiError::Internal(message),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::Internal(format!("background task failed: {e}"))
    }
}

/// `Query` whose rejection is a JSON 400.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| ApiError::BadRequest(e.body_text()))
    }
}

/// `Path` whose rejection is JSON.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| ApiError::Status {
                status: e.status(),
                message: e.body_text(),
            })
    }
}

/// `Json` whose rejection (malformed, wrong type, too large: 413) is JSON.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|j| ApiJson(j.0))
            .map_err(|e: JsonRejection| ApiError::Status {
                status: e.status(),
                message: e.body_text(),
            })
    }
}

/// Who may call a route; the OpenAPI document states the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Any valid token (the handler narrows what each role sees).
    AnyToken,
    Roles(&'static [Role]),
}

pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    router: MethodRouter<ApiState>,
}

fn route<H, T>(method: &'static str, path: &'static str, access: Access, handler: H) -> Route
where
    H: Handler<T, ApiState>,
    T: 'static,
{
    let filter = if method == "POST" {
        MethodFilter::POST
    } else {
        MethodFilter::GET
    };
    Route {
        method,
        path,
        access,
        router: on(filter, handler),
    }
}

const AUDITOR: Access = Access::Roles(&[Role::Auditor]);
const OPERATOR: Access = Access::Roles(&[Role::Operator]);
const APPROVER: Access = Access::Roles(&[Role::Approver]);
/// `/metrics`: no session content, so whoever watches proctor's health (either role).
const MONITOR: Access = Access::Roles(&[Role::Operator, Role::Auditor]);
/// Annotations are the agent's reasoning (clause 4.6): only agent tokens write them. An
/// operator's words in that stream would sit in front of approvers as if the agent had said them.
const ANNOTATOR: Access = Access::Roles(&[Role::Agent]);

/// Every route the API serves.
pub fn routes() -> Vec<Route> {
    vec![
        route("GET", "/api/health", Access::Public, health),
        route("GET", "/api/openapi.json", Access::Public, openapi::serve),
        route("GET", "/api/sessions", AUDITOR, sessions::list),
        route("GET", "/api/sessions/{id}", AUDITOR, sessions::show),
        route(
            "GET",
            "/api/sessions/{id}/events",
            AUDITOR,
            sessions::events,
        ),
        route(
            "GET",
            "/api/sessions/{id}/verify",
            AUDITOR,
            evidence::verify_session,
        ),
        route(
            "GET",
            "/api/sessions/{id}/export",
            AUDITOR,
            evidence::export,
        ),
        route(
            "POST",
            "/api/sessions/{id}/annotations",
            ANNOTATOR,
            annotations::create,
        ),
        route("POST", "/api/sessions/{id}/kill", OPERATOR, sessions::kill),
        route("GET", "/api/live", OPERATOR, sessions::live),
        route("GET", "/api/approvals", APPROVER, approvals::list),
        route(
            "POST",
            "/api/approvals/{id}/approve",
            APPROVER,
            approvals::approve,
        ),
        route(
            "POST",
            "/api/approvals/{id}/deny",
            APPROVER,
            approvals::deny,
        ),
        route(
            "POST",
            "/api/approvals/{id}/reveal",
            APPROVER,
            approvals::reveal,
        ),
        route("GET", "/api/verify", AUDITOR, evidence::verify_store),
        route("GET", "/api/events", Access::AnyToken, events::stream),
        route("GET", "/metrics", MONITOR, metrics::serve),
    ]
}

/// `(method, path)` of every route, for the OpenAPI completeness test.
pub fn route_list() -> Vec<(&'static str, &'static str, Access)> {
    routes()
        .into_iter()
        .map(|r| (r.method, r.path, r.access))
        .collect()
}

/// Unknown `/api/...` paths are JSON 404s; every other path belongs to the web console.
async fn fallback(
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Response {
    let path = uri.path();
    if path == "/api" || path.starts_with("/api/") {
        return ApiError::NotFound("no such API route (see /api/openapi.json)".into())
            .into_response();
    }
    console::serve(method, uri, headers).await
}

async fn method_not_allowed() -> ApiError {
    ApiError::Status {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "method not allowed on this route (see /api/openapi.json)".into(),
    }
}

/// The API router with its state; a web console may merge its own routes beside it.
pub fn router(service: Service, shutdown: watch::Receiver<bool>) -> Router {
    let core = service.core().clone();
    let tokens = Arc::new(Tokens::from_config(&core.config.api.tokens));
    let state = ApiState {
        core,
        service,
        tokens,
        shutdown,
    };
    let mut r = Router::new();
    for rt in routes() {
        let router = match rt.access {
            // The role is checked before any extractor runs, so a caller without it learns
            // nothing from the route: not the body's schema, not whether the id exists.
            Access::Roles(roles) => {
                let what = format!("call {} {}", rt.method, rt.path);
                rt.router.route_layer(middleware::from_fn_with_state(
                    state.clone(),
                    move |st: State<ApiState>, req: Request, next: Next| {
                        require_role(st, roles, what.clone(), req, next)
                    },
                ))
            }
            Access::Public | Access::AnyToken => rt.router,
        };
        r = r.route(rt.path, router);
    }
    r.fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The route table's `Access::Roles`, enforced from the request head alone.
async fn require_role(
    State(st): State<ApiState>,
    roles: &'static [Role],
    what: String,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let checked = match Principal::from_request_parts(&mut parts, &st).await {
        Ok(p) => p.require(roles, &what),
        Err(e) => Err(e),
    };
    match checked {
        Ok(()) => next.run(Request::from_parts(parts, body)).await,
        Err(e) => e.into_response(),
    }
}

/// Serves until the shutdown watch flips, with header and body timeouts and a bound on
/// connections per source (`server`).
pub async fn serve(listener: TcpListener, app: Router, shutdown: watch::Receiver<bool>) {
    server::serve(listener, app, shutdown).await;
}

/// Liveness for load balancers: no token, and nothing about sessions.
async fn health(State(st): State<ApiState>) -> Response {
    let failure = st.core.recorder.failure();
    let status = if failure.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({
            "ok": failure.is_none(),
            "recorder_failure": failure,
            "version": env!("CARGO_PKG_VERSION"),
        })),
    )
        .into_response()
}

/// Runs blocking store work (sled, segment files) off the async workers.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}
