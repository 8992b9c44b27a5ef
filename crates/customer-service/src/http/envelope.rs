//! The success envelope around every 2xx body except 204:
//! `{"data", "message", "statusCode", "timestamp", "success": true}`.

use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::Timestamp;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<T> {
    pub data: T,
    /// "Success", "Created successfully" or "Updated successfully".
    #[schema(example = "Success")]
    pub message: &'static str,
    /// The HTTP status again.
    #[schema(example = 200)]
    pub status_code: u16,
    /// When the answer was made (UTC, milliseconds).
    #[schema(example = "2026-11-30T09:15:27.403Z")]
    pub timestamp: String,
    #[schema(example = true)]
    pub success: bool,
}

pub(crate) fn now_iso() -> String {
    Timestamp::from_datetime(chrono::Utc::now()).to_iso()
}

fn wrap<T>(
    status: StatusCode,
    message: &'static str,
    success: bool,
    data: T,
) -> (StatusCode, Json<Envelope<T>>) {
    let envelope = Envelope {
        data,
        message,
        status_code: status.as_u16(),
        timestamp: now_iso(),
        success,
    };
    (status, Json(envelope))
}

/// 200 "Success".
pub fn ok<T>(data: T) -> (StatusCode, Json<Envelope<T>>) {
    wrap(StatusCode::OK, "Success", true, data)
}

/// 201 "Created successfully".
pub fn created<T>(data: T) -> (StatusCode, Json<Envelope<T>>) {
    wrap(StatusCode::CREATED, "Created successfully", true, data)
}

/// 200 "Updated successfully".
pub fn updated<T>(data: T) -> (StatusCode, Json<Envelope<T>>) {
    wrap(StatusCode::OK, "Updated successfully", true, data)
}

/// The envelope with `success: false`, for the health check's 503.
pub fn unhealthy<T>(data: T) -> (StatusCode, Json<Envelope<T>>) {
    wrap(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service Unavailable",
        false,
        data,
    )
}
