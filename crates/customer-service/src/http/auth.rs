//! Bearer-token authentication (JWT), off unless a key is configured.
//!
//! With `AUTH_JWT_SECRET` (HS256) or `AUTH_JWT_PUBLIC_KEY_FILE` (a PEM RSA or EC public key:
//! RS256 or ES256), every write needs `Authorization: Bearer <token>` with a valid signature,
//! an `exp` in the future and, when configured, the issuer and audience; with
//! `AUTH_PROTECT_READS=true` reads too (and `/metrics` and the dashboard's feeds). Probes,
//! health, the API docs and the dashboard's page (which holds no data) stay open. A failure
//! is the contract's 401 body with `WWW-Authenticate`. The token's `sub` becomes the
//! [`Actor`] of the request, recorded in the events it causes: a token without one, with one
//! over 256 bytes, or with control or bidirectional characters in it is refused.

use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{AuthConfig, JwtKeySource};
use crate::domain::is_bidi_control;

use super::error::ApiError;

/// The authenticated subject of a request (the token's `sub`), in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

/// Checks tokens; built once from the configuration.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
    protect_reads: bool,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithms", &self.validation.algorithms)
            .field("protect_reads", &self.protect_reads)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// `None` when authentication is off (no key configured).
    pub fn from_config(config: &AuthConfig) -> anyhow::Result<Option<Authenticator>> {
        let (key, algorithm) = match &config.key {
            None => return Ok(None),
            Some(JwtKeySource::Secret(secret)) => (
                DecodingKey::from_secret(secret.as_bytes())
                    .context("AUTH_JWT_SECRET cannot be used as an HS256 key")?,
                Algorithm::HS256,
            ),
            Some(JwtKeySource::PublicKeyFile(path)) => {
                let pem = std::fs::read(path).with_context(|| {
                    format!("reading AUTH_JWT_PUBLIC_KEY_FILE {}", path.display())
                })?;
                match DecodingKey::from_rsa_pem(&pem) {
                    Ok(key) => (key, Algorithm::RS256),
                    Err(_) => (
                        DecodingKey::from_ec_pem(&pem).context(
                            "AUTH_JWT_PUBLIC_KEY_FILE holds neither an RSA nor an EC public key (PEM)",
                        )?,
                        Algorithm::ES256,
                    ),
                }
            }
        };
        let mut validation = Validation::new(algorithm);
        // A configured issuer or audience must be present, not only right when present.
        let mut required = vec!["exp"];
        required.extend(config.issuer.as_ref().map(|_| "iss"));
        required.extend(config.audience.as_ref().map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        // `nbf`, when present, with the same leeway as `exp`.
        validation.validate_nbf = true;
        validation.leeway = 5;
        match &config.issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match &config.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        Ok(Some(Authenticator {
            key,
            validation,
            protect_reads: config.protect_reads,
        }))
    }

    fn protects(&self, method: &Method, path: &str) -> bool {
        if method == Method::OPTIONS {
            return false; // CORS preflights carry no credentials
        }
        let read = method == Method::GET || method == Method::HEAD;
        if !read {
            return true;
        }
        self.protect_reads && !is_open_read(path)
    }

    fn verify(&self, token: &str) -> Result<Actor, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |error| {
                let why = match error.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::InvalidSignature => "the token's signature is not valid",
                    ErrorKind::InvalidAudience => "the token is for another audience",
                    ErrorKind::InvalidIssuer => "the token is from another issuer",
                    ErrorKind::InvalidAlgorithm => "the token is signed with another algorithm",
                    ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
                    ErrorKind::ImmatureSignature => "the token is not valid yet",
                    _ => "the token is malformed",
                };
                ApiError::Unauthorized {
                    message: format!("Invalid token: {why}"),
                    invalid_token: true,
                }
            },
        )?;
        let sub = data.claims.sub.unwrap_or_default();
        let why = if sub.is_empty() {
            Some("the token has no subject (sub)")
        } else if sub.len() > MAX_SUBJECT_BYTES {
            Some("the token's subject (sub) is longer than 256 bytes")
        } else if sub.chars().any(|c| c.is_control() || is_bidi_control(c)) {
            Some("the token's subject (sub) holds control or bidirectional characters")
        } else {
            None
        };
        match why {
            Some(why) => Err(ApiError::Unauthorized {
                message: format!("Invalid token: {why}"),
                invalid_token: true,
            }),
            None => Ok(Actor(sub)),
        }
    }
}

/// The longest `sub` accepted: it becomes `metadata.actor` of every event the request causes
/// (kept for ever), the rate limit's key and the idempotency keys' scope.
const MAX_SUBJECT_BYTES: usize = 256;

/// The middleware: lets open requests through, checks the token of protected ones.
pub(crate) async fn authenticate(
    State(authenticator): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    let bearer = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    let protected = authenticator.protects(request.method(), request.uri().path());
    let actor = match (bearer, protected) {
        (Some(token), _) => match authenticator.verify(&token) {
            Ok(actor) => Some(actor),
            // A bad token is refused even where none is needed: the client meant to use it.
            Err(error) => return error.into_response(),
        },
        (None, true) => {
            return ApiError::Unauthorized {
                message: "Authentication required: send Authorization: Bearer <token>".to_owned(),
                invalid_token: false,
            }
            .into_response()
        }
        (None, false) => None,
    };
    if let Some(actor) = actor {
        request.extensions_mut().insert(actor);
    }
    next.run(request).await
}

/// The reads that need no token even with `AUTH_PROTECT_READS=true`: the probes and health,
/// the documents, and the dashboard's page (which holds no data: its feeds are protected).
pub(crate) fn is_open_read(path: &str) -> bool {
    matches!(
        path,
        "/livez"
            | "/readyz"
            | "/api/v1/health"
            | "/api/v1/customers/health"
            | "/dashboard"
            | "/dashboard/app.css"
            | "/dashboard/app.js"
    ) || path.starts_with("/api/docs")
}
