//! The one error type of every handler, and the one place it becomes each protocol's error shape:
//! Ollama's `{"error": "..."}`, OpenAI's `{"error": {"message", "type", …}}` and Anthropic's
//! `{"type": "error", "error": {"type", "message"}, "request_id"}`.
//!
//! Handlers return `Result<_, ApiError>` and never choose a shape: an `ApiError` becomes a
//! response in Ollama's shape that carries the error itself as an extension, and each route
//! group's [`shape_errors`] layer (set once per group in the route table) renders it again in its
//! protocol's shape. Errors that end a stream after it started take the same bodies
//! ([`ApiError::body`]), written by each protocol's stream encoder.
//!
//! Architecture invariant: a fault (an I/O error, a failed task, a runner failure nobody
//! expected) is logged with its cause under a request id when it is made, and the client gets a
//! generic message with that id, never the cause: causes carry file paths and internal state.
//! Server-side failures with a message meant for the user (the runner stopped, a load failed, a
//! registry refused) keep their message, as Ollama's do.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use corral_store::{CreateError, ModelError, StoreError};
use corral_types::api::ErrorResponse;
use corral_types::runner::ErrorKind;
use serde_json::{json, Value};

use crate::runner::RunnerError;
use crate::sched::SchedError;

/// An error with the HTTP status it should be answered with.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// What the client is told.
    pub message: String,
    /// The id a fault's cause was logged under.
    pub request_id: Option<String>,
}

/// The protocol whose error shape an answer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Native,
    OpenAi,
    Anthropic,
}

/// `bytes` random bytes in hex: the random part of ids.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    let _ = getrandom::getrandom(&mut b);
    hex::encode(b)
}

impl ApiError {
    /// An error whose message is for the client.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), request_id: None }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// A server-side failure whose message is meant for the user (a 500).
    pub fn server(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    /// A fault: `cause` is logged under a new request id, and the client gets only that id.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let id = format!("req_{}", random_hex(12));
        tracing::error!(request_id = %id, "internal error: {cause}");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("internal server error (request id {id}; the server log has the cause)"),
            request_id: Some(id),
        }
    }

    /// The error body in `protocol`'s shape: the body of an error response, and what a stream
    /// that fails after it started sends last.
    pub fn body(&self, protocol: Protocol) -> Value {
        match protocol {
            Protocol::Native => json!(ErrorResponse { error: self.message.clone() }),
            Protocol::OpenAi => {
                json!({"error": {"message": self.message, "type": self.openai_type(), "param": null, "code": null}})
            }
            Protocol::Anthropic => {
                let id = self.request_id.clone().unwrap_or_else(|| format!("req_{}", random_hex(12)));
                json!({"type": "error", "error": {"type": self.anthropic_type(), "message": self.message}, "request_id": id})
            }
        }
    }

    /// The response in `protocol`'s error shape.
    fn respond(&self, protocol: Protocol) -> Response {
        (self.status, Json(self.body(protocol))).into_response()
    }

    /// OpenAI's error `type`.
    pub fn openai_type(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::PAYLOAD_TOO_LARGE => {
                "invalid_request_error"
            }
            StatusCode::NOT_FOUND => "not_found_error",
            _ => "api_error",
        }
    }

    /// Anthropic's error `type`.
    pub fn anthropic_type(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "invalid_request_error",
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            StatusCode::SERVICE_UNAVAILABLE => "overloaded_error",
            _ => "api_error",
        }
    }
}

impl IntoResponse for ApiError {
    /// Ollama's shape, with the error attached for the route group's [`shape_errors`].
    fn into_response(self) -> Response {
        // A fault was logged with its cause when it was made; other server errors are logged here.
        if self.status.is_server_error() && self.request_id.is_none() {
            tracing::error!(status = %self.status, "{}", self.message);
        }
        let mut response = self.respond(Protocol::Native);
        response.extensions_mut().insert(self);
        response
    }
}

/// The layer of a route group (`map_response_with_state`): an error answered by any handler,
/// extractor or middleware inside the group is rendered in the group's protocol. The response's
/// other headers (`WWW-Authenticate` of a 401, say) are kept.
pub async fn shape_errors(State(protocol): State<Protocol>, mut response: Response) -> Response {
    let Some(error) = response.extensions_mut().remove::<ApiError>() else { return response };
    if protocol == Protocol::Native {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let (shaped, body) = error.respond(protocol).into_parts();
    parts.status = shaped.status;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(shaped.headers);
    Response::from_parts(parts, body)
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ModelNotFound(_) => ApiError::not_found(e.to_string()),
            StoreError::BlobNotFound(_) => ApiError::not_found(e.to_string()),
            StoreError::DigestMismatch { .. } => ApiError::bad_request(e.to_string()),
            // A full disk is the user's to fix: say so (the path stays in the log).
            ref e if e.is_disk_full() => {
                tracing::error!("{e}");
                ApiError::server("no space left on device")
            }
            _ => ApiError::internal(e),
        }
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Store(e) => e.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::BaseNotFound(_) => ApiError::not_found(e.to_string()),
            CreateError::Store(e) => e.into(),
            _ => ApiError::bad_request(e.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(format!("internal task failed: {e}"))
    }
}

impl From<RunnerError> for ApiError {
    fn from(e: RunnerError) -> Self {
        match e {
            RunnerError::Request { kind: ErrorKind::Invalid | ErrorKind::ContextLength, message } => {
                ApiError::bad_request(message)
            }
            RunnerError::Request { kind: ErrorKind::Internal, message } => ApiError::internal(message),
            // A load failure says why (a bad file, too little memory), as Ollama's does.
            RunnerError::Load(message) => ApiError::server(message),
            e @ (RunnerError::Stopped | RunnerError::Request { kind: ErrorKind::Stopped, .. }) => {
                ApiError::server(e.to_string())
            }
        }
    }
}

impl From<SchedError> for ApiError {
    fn from(e: SchedError) -> Self {
        match e {
            SchedError::Busy | SchedError::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            SchedError::Runner(e) => e.into(),
        }
    }
}

impl From<corral_registry::RegistryError> for ApiError {
    fn from(e: corral_registry::RegistryError) -> Self {
        use corral_registry::RegistryError;
        let status = match e {
            // A fault of the store is logged (a full disk says so); what the registry sent that
            // did not verify is a 500 with its message, as Ollama's.
            RegistryError::Store(e @ StoreError::Io { .. }) => return e.into(),
            RegistryError::Store(StoreError::ModelNotFound(_)) => StatusCode::NOT_FOUND,
            RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
            RegistryError::Insecure(_) => StatusCode::BAD_REQUEST,
            RegistryError::Status { status: 401 | 403, .. } | RegistryError::Auth { .. } => StatusCode::UNAUTHORIZED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}
