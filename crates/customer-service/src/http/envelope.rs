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
    pub message: &'static str,
    pub status_code: u16,
    pub timestamp: String,
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
