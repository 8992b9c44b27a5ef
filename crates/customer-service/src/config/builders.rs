//! The sections built from the settings' values, with the checks that span several
//! variables.

use super::*;

/// `SSE_MAX_CLIENTS`, below `HTTP_MAX_CONNECTIONS` (else streams could hold every
/// connection); half of it when unset.
pub(super) fn sse_max_clients(s: &Settings) -> Result<usize, ConfigError> {
    let connections = s.http_max_connections.0;
    match s.sse_max_clients {
        None => Ok((connections / 2).max(1)),
        Some(Positive(n)) if n < connections => Ok(n),
        Some(Positive(n)) => Err(invalid(
            "SSE_MAX_CLIENTS",
            &format!(
                "must be below HTTP_MAX_CONNECTIONS ({connections}), so that event streams never \
                 hold every connection (got {n})"
            ),
        )),
    }
}

pub(super) fn read_replica_url(s: &Settings) -> Result<Option<String>, ConfigError> {
    let Some(url) = &s.database_read_url else {
        return Ok(None);
    };
    let engine = |u: &str| {
        if u.starts_with("postgres://") || u.starts_with("postgresql://") {
            Some("postgres")
        } else if u.starts_with("mysql://") {
            Some("mysql")
        } else {
            None
        }
    };
    if engine(&url.0).is_none() || engine(&url.0) != engine(&s.database_url.0) {
        return Err(invalid(
            "DATABASE_READ_URL",
            "must be a PostgreSQL replica of a PostgreSQL DATABASE_URL, or a MySQL / MariaDB \
             replica of a MySQL DATABASE_URL",
        ));
    }
    Ok(Some(url.0.clone()))
}

pub(super) fn nats_config(s: &Settings) -> Result<Option<NatsConfig>, ConfigError> {
    let Some(url) = &s.nats_url else {
        return Ok(None);
    };
    let duplicate_window = s.nats_duplicate_window.0;
    if duplicate_window < MIN_NATS_DUPLICATE_WINDOW {
        return Err(invalid(
            "NATS_DUPLICATE_WINDOW",
            "must be at least 1m: it has to outlast the relay's longest retry of a batch, or \
             a repeated publish is stored twice",
        ));
    }
    if s.nats_stream.is_empty() || s.nats_stream.contains(['.', '*', '>', ' ']) {
        return Err(invalid(
            "NATS_STREAM",
            "must be a stream name without '.', '*', '>' or spaces",
        ));
    }
    let prefix = s.nats_subject_prefix.trim_matches('.');
    if prefix.is_empty() || prefix.contains(['*', '>', ' ']) || prefix.contains("..") {
        return Err(invalid(
            "NATS_SUBJECT_PREFIX",
            "must be subject tokens separated by dots, without wildcards or spaces",
        ));
    }
    Ok(Some(NatsConfig {
        url: url.0.clone(),
        creds_file: s.nats_creds_file.clone(),
        ca_file: s.nats_ca_file.clone(),
        subject_prefix: prefix.to_owned(),
        stream: s.nats_stream.clone(),
        replicas: s.nats_stream_replicas.0,
        max_age: s.nats_stream_max_age.0,
        duplicate_window,
    }))
}

pub(super) fn erasure_config(
    s: &Settings,
    broker: bool,
) -> Result<Option<ErasureConfig>, ConfigError> {
    let Some(Participants(participants)) = &s.erasure_participants else {
        return Ok(None);
    };
    if participants.is_empty() {
        return Ok(None);
    }
    if !broker {
        return Err(invalid(
            "ERASURE_PARTICIPANTS",
            "needs a message broker: participants get their erasure requests with the \
             events and answer on <EVENT_STREAM>:erasure-replies (Redis) or \
             <NATS_SUBJECT_PREFIX>.erasure-replies (NATS). Set REDIS_URL (or REDIS_HOST) or \
             NATS_URL, or unset ERASURE_PARTICIPANTS",
        ));
    }
    Ok(Some(ErasureConfig {
        participants: participants.clone(),
        deadline: s.erasure_deadline.0,
        retry_after: s.erasure_retry_after.0,
    }))
}

pub(super) fn redis_config(s: &Settings) -> Result<Option<RedisConfig>, ConfigError> {
    let auth = || {
        s.redis_password
            .as_ref()
            .map_or_else(String::new, |p| format!(":{}@", percent_encode(&p.0)))
    };
    let cluster_nodes: Vec<String> = match &s.redis_cluster_nodes {
        None => Vec::new(),
        Some(_) if s.redis_url.is_some() || s.redis_host.is_some() => {
            return Err(invalid(
                "REDIS_CLUSTER_NODES",
                "and REDIS_URL (or REDIS_HOST) cannot both be set: a cluster or one server",
            ))
        }
        Some(nodes) => nodes
            .split(',')
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .map(|node| {
                if node.starts_with("redis://") || node.starts_with("rediss://") {
                    node.to_owned()
                } else {
                    format!("redis://{}{node}", auth())
                }
            })
            .collect(),
    };
    let url = match (&s.redis_url, &s.redis_host, cluster_nodes.first()) {
        (_, _, Some(first)) => first.clone(),
        (Some(url), _, None) => url.0.clone(),
        (None, Some(host), None) => format!("redis://{}{host}:{}", auth(), s.redis_port.0),
        (None, None, None) => return Ok(None),
    };
    Ok(Some(RedisConfig {
        url,
        key_prefix: s.redis_key_prefix.clone(),
        channel: s.event_channel.clone(),
        stream: s.event_stream.clone(),
        ttl_secs: s.event_ttl_seconds.0,
        stream_max_len: s.event_stream_maxlen.0,
        ca_file: s.redis_ca_file.clone(),
        cluster_nodes,
        min_replicas: s.redis_min_replicas,
    }))
}

/// Percent-encodes everything but RFC 3986's unreserved characters (for a URL password).
pub(super) fn percent_encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The shortest HS256 secret accepted: 256 bits, the size of the hash (RFC 7518 §3.2).
pub(super) const MIN_SECRET_BYTES: usize = 32;

pub(super) fn auth_config(s: &Settings) -> Result<AuthConfig, ConfigError> {
    let key = match (&s.auth_jwt_secret, &s.auth_jwt_public_key_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "AUTH_JWT_SECRET",
                "and AUTH_JWT_PUBLIC_KEY_FILE cannot both be set: choose one",
            ))
        }
        (Some(secret), None) if secret.0.len() < MIN_SECRET_BYTES => {
            return Err(invalid(
                "AUTH_JWT_SECRET",
                &format!(
                    "must be at least {MIN_SECRET_BYTES} bytes (HS256 is only as strong as its \
                     secret), got {} bytes",
                    secret.0.len()
                ),
            ))
        }
        (Some(secret), None) => Some(JwtKeySource::Secret(secret.0.clone())),
        (None, Some(path)) => Some(JwtKeySource::PublicKeyFile(path.clone())),
        (None, None) => None,
    };
    Ok(AuthConfig {
        key,
        issuer: s.auth_jwt_issuer.clone(),
        audience: s.auth_jwt_audience.clone(),
        protect_reads: s.auth_protect_reads,
    })
}

pub(super) fn otlp_config(s: &Settings) -> Result<Option<OtlpConfig>, ConfigError> {
    if s.otel_sdk_disabled {
        return Ok(None);
    }
    let protocol = s.otel_traces_protocol.unwrap_or(s.otel_protocol);
    let (name, url, own_path) = match (&s.otel_traces_endpoint, &s.otel_endpoint) {
        (Some(url), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url, true),
        (None, Some(url)) => ("OTEL_EXPORTER_OTLP_ENDPOINT", url, false),
        (None, None) => return Ok(None),
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            invalid(
                name,
                "must be an http:// or https:// URL (not shown: it may hold credentials)",
            )
        })?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(invalid(name, "must name a host (without credentials)"));
    }
    let url = url.trim_end_matches('/');
    let endpoint = if own_path || protocol == OtlpProtocol::Grpc {
        url.to_owned()
    } else {
        format!("{url}/v1/traces")
    };
    let headers = match &s.otel_headers {
        None => Vec::new(),
        Some(Secret(list)) => key_values(list, true).ok_or_else(|| {
            invalid(
                "OTEL_EXPORTER_OTLP_HEADERS",
                "must be key=value pairs separated by commas (values percent-encoded)",
            )
        })?,
    };
    let resource_attributes = match &s.otel_resource_attributes {
        None => Vec::new(),
        Some(list) => key_values(list, false).ok_or_else(|| {
            invalid(
                "OTEL_RESOURCE_ATTRIBUTES",
                &format!("must be key=value pairs separated by commas, got '{list}'"),
            )
        })?,
    };
    let ratio = s.otel_sampler_arg.0;
    let (parent_based, ratio) = match s.otel_sampler.as_deref() {
        None | Some("parentbased_always_on") => (true, 1.0),
        Some("parentbased_always_off") => (true, 0.0),
        Some("parentbased_traceidratio") => (true, ratio),
        Some("always_on") => (false, 1.0),
        Some("always_off") => (false, 0.0),
        Some("traceidratio") => (false, ratio),
        Some(other) => {
            return Err(invalid(
                "OTEL_TRACES_SAMPLER",
                &format!(
                    "must be always_on, always_off, traceidratio or their parentbased_ forms, \
                     got '{other}'"
                ),
            ))
        }
    };
    Ok(Some(OtlpConfig {
        endpoint,
        protocol,
        headers,
        service_name: s.otel_service_name.clone(),
        resource_attributes,
        sampler: Sampler {
            parent_based,
            ratio,
        },
    }))
}

/// `key=value,…` with percent-decoded values; `None` if malformed. `header`: keys and values
/// must also be valid in an HTTP header.
pub(super) fn key_values(list: &str, header: bool) -> Option<Vec<(String, String)>> {
    list.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let key = key.trim();
            let value = percent_decode(value.trim())?;
            let valid = !key.is_empty()
                && (!header
                    || (key.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                        && value
                            .bytes()
                            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))));
            valid.then(|| (key.to_owned(), value))
        })
        .collect()
}

/// `%XX` escapes decoded; `None` for a malformed escape or non-UTF-8 result.
pub(super) fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
