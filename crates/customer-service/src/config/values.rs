//! The value types of the settings table: how each is read and what a valid value is.

use super::*;

/// A type a setting can have: how to read it and what a valid value is.
pub(super) trait Value: Sized {
    /// Completes "<VAR> must be …".
    const EXPECTED: &'static str;
    /// Whether a rejected value may be shown in the error (not for URLs with passwords).
    const SHOW: bool = true;
    fn parse(raw: &str) -> Option<Self>;
    /// The value of an unset setting without a default: only `Option`s have one.
    fn unset() -> Option<Self> {
        None
    }
}

pub(super) fn value<T: Value>(
    var: &'static str,
    lookup: &dyn Fn(&str) -> Option<String>,
    default: Option<&str>,
) -> Result<T, ConfigError> {
    let given = lookup(var).filter(|v| !v.trim().is_empty());
    let Some(raw) = given.as_deref().or(default) else {
        return T::unset().ok_or_else(|| invalid(var, "must be set"));
    };
    T::parse(raw.trim()).ok_or_else(|| {
        let mut message = format!("{var} must be {}", T::EXPECTED);
        if T::SHOW {
            message.push_str(&format!(", got '{raw}'"));
        }
        ConfigError { var, message }
    })
}

impl<T: Value> Value for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    const SHOW: bool = T::SHOW;
    fn parse(raw: &str) -> Option<Self> {
        T::parse(raw).map(Some)
    }
    fn unset() -> Option<Self> {
        Some(None)
    }
}

impl Value for String {
    const EXPECTED: &'static str = "text";
    fn parse(raw: &str) -> Option<Self> {
        Some(raw.to_owned())
    }
}

/// Text that is never shown: passwords, secrets, header values.
#[derive(Clone)]
pub(super) struct Secret(pub(super) String);

impl Value for Secret {
    const EXPECTED: &'static str = "text";
    const SHOW: bool = false;
    fn parse(raw: &str) -> Option<Self> {
        Some(Secret(raw.to_owned()))
    }
}

impl Value for std::path::PathBuf {
    const EXPECTED: &'static str = "a file path";
    fn parse(raw: &str) -> Option<Self> {
        Some(raw.into())
    }
}

impl Value for bool {
    const EXPECTED: &'static str = "true or false";
    fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        }
    }
}

impl Value for IpAddr {
    const EXPECTED: &'static str = "an IP address such as 0.0.0.0, 127.0.0.1 or ::";
    fn parse(raw: &str) -> Option<Self> {
        raw.parse().ok()
    }
}

impl Value for u32 {
    const EXPECTED: &'static str = "a whole number (0 or more)";
    fn parse(raw: &str) -> Option<Self> {
        raw.parse().ok()
    }
}

/// A TCP port, 1 to 65535.
#[derive(Clone, Copy)]
pub(super) struct Port(pub(super) u16);

impl Value for Port {
    const EXPECTED: &'static str = "a port number between 1 and 65535";
    fn parse(raw: &str) -> Option<Self> {
        raw.parse().ok().filter(|port| *port > 0).map(Port)
    }
}

/// A whole number greater than zero.
#[derive(Clone, Copy)]
pub(super) struct Positive<T>(pub(super) T);

impl<T: std::str::FromStr + PartialOrd + Default> Value for Positive<T> {
    const EXPECTED: &'static str = "a whole number greater than zero";
    fn parse(raw: &str) -> Option<Self> {
        raw.parse().ok().filter(|n| *n > T::default()).map(Positive)
    }
}

/// A duration such as `720h`, `30s`, `15m` or `1h 30m` (humantime's syntax), above zero.
#[derive(Clone, Copy)]
pub(super) struct Span(pub(super) Duration);

impl Value for Span {
    const EXPECTED: &'static str = "a duration such as 720h, 30s or 1h 30m";
    fn parse(raw: &str) -> Option<Self> {
        humantime::parse_duration(raw)
            .ok()
            .filter(|d| !d.is_zero())
            .map(Span)
    }
}

/// `ERASURE_PARTICIPANTS`: comma-separated names of lower-case letters, digits, `-` and `_`
/// (they are stream consumer groups and parts of key names), each once.
pub(super) struct Participants(pub(super) Vec<String>);

impl Value for Participants {
    const EXPECTED: &'static str = "names of lower-case letters, digits, - and _ (at most 64 \
         characters each), separated by commas, each once";
    fn parse(raw: &str) -> Option<Self> {
        let names: Vec<String> = raw
            .split(',')
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .collect();
        let valid = names.iter().all(|name| {
            name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        });
        let unique = names
            .iter()
            .enumerate()
            .all(|(i, name)| !names[..i].contains(name));
        (valid && unique).then_some(Participants(names))
    }
}

/// A share, 0 to 1.
#[derive(Clone, Copy)]
pub(super) struct Ratio(pub(super) f64);

impl Value for Ratio {
    const EXPECTED: &'static str = "a number between 0 and 1";
    fn parse(raw: &str) -> Option<Self> {
        raw.parse()
            .ok()
            .filter(|r: &f64| (0.0..=1.0).contains(r))
            .map(Ratio)
    }
}

impl Value for LogFormat {
    const EXPECTED: &'static str = "pretty or json";
    fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "pretty" => Some(LogFormat::Pretty),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// `FRONTEND_URL`: comma-separated origins, a trailing slash dropped.
pub(super) struct Origins(pub(super) Vec<String>);

impl Value for Origins {
    const EXPECTED: &'static str = "origins such as https://admin.example.com, separated by commas";
    fn parse(raw: &str) -> Option<Self> {
        Some(Origins(
            raw.split(',')
                .map(|origin| origin.trim().trim_end_matches('/').to_owned())
                .filter(|origin| !origin.is_empty())
                .collect(),
        ))
    }
}

/// A URL whose scheme is one of a few; never shown (it may carry a password).
pub(super) struct Url<const KIND: u8>(pub(super) String);
pub(super) const DATABASE: u8 = 0;
pub(super) const REDIS: u8 = 1;
pub(super) const NATS: u8 = 2;

impl<const KIND: u8> Value for Url<KIND> {
    const EXPECTED: &'static str = match KIND {
        DATABASE => "a sqlite:, postgres:// or mysql:// URL",
        REDIS => "a redis:// or rediss:// URL",
        _ => "nats:// or tls:// URLs, separated by commas",
    };
    const SHOW: bool = false;
    fn parse(raw: &str) -> Option<Self> {
        let schemes: &[&str] = match KIND {
            DATABASE => &["sqlite:", "postgres://", "postgresql://", "mysql://"],
            REDIS => &["redis://", "rediss://"],
            _ => &["nats://", "tls://"],
        };
        let one = |url: &str| schemes.iter().any(|scheme| url.trim().starts_with(scheme));
        let valid = if KIND == NATS {
            raw.split(',').all(one)
        } else {
            one(raw)
        };
        valid.then(|| Url(raw.to_owned()))
    }
}
