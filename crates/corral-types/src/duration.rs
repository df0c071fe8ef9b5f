//! Durations as Ollama accepts them: `keep_alive` is a number of seconds or a Go duration string
//! (`"5m"`, `"1h30m"`, `"-1"`…), and any negative value means "forever".

use std::time::Duration;

use serde_json::Value;

/// How long a model stays loaded after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    For(Duration),
    Forever,
}

/// Parses Go's `time.ParseDuration` syntax into signed nanoseconds.
///
/// Hand-written on purpose: `keep_alive` must accept exactly what Ollama (Go) accepts and give
/// Go's error text, and no Rust duration crate reads that grammar (`humantime` takes spaces and
/// days, and refuses `1.5h` and a sign).
pub fn parse_go_duration(s: &str) -> Result<i128, String> {
    let err = || format!("time: invalid duration {s:?}");
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            other => return Err(format!("time: unknown unit {other:?} in duration {s:?}")),
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    let n = total as i128;
    Ok(if neg { -n } else { n })
}

fn from_nanos(n: i128) -> KeepAlive {
    if n < 0 {
        KeepAlive::Forever
    } else {
        KeepAlive::For(Duration::from_nanos(n.min(u64::MAX as i128) as u64))
    }
}

impl KeepAlive {
    /// From a request's `keep_alive`: a number of seconds or a duration string.
    pub fn from_json(v: &Value) -> Result<Self, String> {
        match v {
            Value::Number(n) => {
                let secs = n.as_f64().ok_or("keep_alive is not a number")?;
                Ok(from_nanos((secs * 1e9) as i128))
            }
            Value::String(s) => parse_go_duration(s.trim()).map(from_nanos),
            other => Err(format!("Unsupported type: '{}'", crate::format::json_type(other))),
        }
    }

    /// From `OLLAMA_KEEP_ALIVE`: a duration string, or a bare number of seconds.
    pub fn from_env(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s.parse::<i64>() {
            Ok(secs) => Ok(from_nanos(i128::from(secs) * 1_000_000_000)),
            Err(_) => parse_go_duration(s).map(from_nanos),
        }
    }

    pub fn is_zero(self) -> bool {
        self == KeepAlive::For(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("5m"), Ok(300_000_000_000));
        assert_eq!(parse_go_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_go_duration("-1m"), Ok(-60_000_000_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("250ms"), Ok(250_000_000));
        assert!(parse_go_duration("3600").unwrap_err().contains("missing unit"));
        assert!(parse_go_duration("5y").is_err());
        assert!(parse_go_duration("").is_err());
    }

    #[test]
    fn keep_alive_forms() {
        let s = |secs| KeepAlive::For(Duration::from_secs(secs));
        assert_eq!(KeepAlive::from_json(&json!(3600)), Ok(s(3600)));
        assert_eq!(KeepAlive::from_json(&json!(0)), Ok(s(0)));
        assert_eq!(KeepAlive::from_json(&json!("10m")), Ok(s(600)));
        assert_eq!(KeepAlive::from_json(&json!(-1)), Ok(KeepAlive::Forever));
        assert_eq!(KeepAlive::from_json(&json!("-1m")), Ok(KeepAlive::Forever));
        assert_eq!(KeepAlive::from_json(&json!(true)), Err("Unsupported type: 'bool'".into()));
        assert_eq!(KeepAlive::from_env("300"), Ok(s(300)));
        assert_eq!(KeepAlive::from_env("5m"), Ok(s(300)));
    }
}
