//! Text formats users see in Ollama's output and that Corral reproduces: human byte sizes and
//! parameter counts, relative times, and Go's `%v` / `%#v` rendering of parameter values (used by
//! `show --parameters` and generated Modelfiles).

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The `PROCESSOR` column of `ollama ps`: where a loaded model's memory is, from its `size` and
/// `size_vram`. The CPU share is rounded; the GPU share is the rest.
pub fn processor(size: u64, size_vram: u64) -> String {
    if size_vram == 0 {
        return "100% CPU".into();
    }
    if size_vram == size {
        return "100% GPU".into();
    }
    if size_vram > size || size == 0 {
        return "Unknown".into();
    }
    let cpu = ((size - size_vram) as f64 / size as f64 * 100.0).round() as u64;
    format!("{cpu}%/{}% CPU/GPU", 100 - cpu)
}

/// The `PROCESSOR` column for a model some of whose memory is on other hosts (Corral's RPC split):
/// the shares of the CPU, of this host's GPUs and of each other host, in Ollama's `a%/b% X/Y` form,
/// leaving out places that hold nothing. Without remote devices it is [`processor`].
pub fn processor_by_host(size: u64, size_vram: u64, devices: &[crate::runner::DeviceUse]) -> String {
    if size == 0 || size_vram > size || devices.iter().all(|d| d.host.is_none()) {
        return processor(size, size_vram);
    }
    let mut places: Vec<(String, u64)> = vec![("CPU".into(), size - size_vram)];
    for d in devices {
        let place = d.host.clone().unwrap_or_else(|| "GPU".into());
        match places.iter_mut().find(|(p, _)| *p == place) {
            Some((_, bytes)) => *bytes += d.bytes,
            None => places.push((place, d.bytes)),
        }
    }
    places.retain(|(_, bytes)| *bytes > 0);
    // Each share rounded; the last is what is left, so that they add up to 100.
    let mut left = 100u64;
    let shares: Vec<String> = places
        .iter()
        .enumerate()
        .map(|(i, (_, bytes))| {
            let share = match i + 1 == places.len() {
                true => left,
                false => ((*bytes as f64 / size as f64 * 100.0).round() as u64).min(left),
            };
            left -= share;
            format!("{share}%")
        })
        .collect();
    let names: Vec<&str> = places.iter().map(|(p, _)| p.as_str()).collect();
    format!("{} {}", shares.join("/"), names.join("/"))
}

/// `format.HumanBytes`: decimal units, no decimals from 10 up, one decimal below when fractional.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [(u64, &str); 4] =
        [(1_000_000_000_000, "TB"), (1_000_000_000, "GB"), (1_000_000, "MB"), (1_000, "KB")];
    let Some((scale, unit)) = UNITS.iter().find(|(scale, _)| b >= *scale) else {
        return format!("{b} B");
    };
    let value = b as f64 / *scale as f64;
    if value >= 10.0 || value == value.trunc() {
        format!("{} {unit}", value as u64)
    } else {
        format!("{value:.1} {unit}")
    }
}

/// `format.HumanNumber`: parameter counts such as `134.52M`, `3.2B`, `8B`.
pub fn human_number(n: u64) -> String {
    let f = n as f64;
    if n >= 1_000_000_000 {
        let v = f / 1e9;
        if v == v.floor() {
            format!("{v:.0}B")
        } else {
            format!("{v:.1}B")
        }
    } else if n >= 1_000_000 {
        let v = f / 1e6;
        if v == v.floor() {
            format!("{v:.0}M")
        } else {
            format!("{v:.2}M")
        }
    } else if n >= 1_000 {
        format!("{:.0}K", f / 1e3)
    } else {
        n.to_string()
    }
}

fn human_duration(seconds: f64) -> String {
    let secs = seconds as i64;
    match secs {
        i64::MIN..=0 => return "Less than a second".into(),
        1 => return "1 second".into(),
        2..=59 => return format!("{secs} seconds"),
        _ => {}
    }
    let minutes = secs / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (seconds / 3600.0).round() as i64;
    match hours {
        1 => "About an hour".into(),
        h if h < 48 => format!("{h} hours"),
        h if h < 24 * 7 * 2 => format!("{} days", h / 24),
        h if h < 24 * 30 * 2 => format!("{} weeks", h / 24 / 7),
        h if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", (seconds / 3600.0 / 24.0 / 365.0) as i64),
    }
}

/// `format.HumanTime`: `2 days ago`, `4 minutes from now`, `Forever` beyond 20 years ahead.
pub fn human_time(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let delta = (now - t).num_milliseconds() as f64 / 1000.0;
    if delta / 3600.0 / 24.0 / 365.0 < -20.0 {
        "Forever".into()
    } else if delta < 0.0 {
        format!("{} from now", human_duration(-delta))
    } else {
        format!("{} ago", human_duration(delta))
    }
}

/// Go's `%v` for a float64: shortest round-trip digits, exponent form below 1e-4 or from 1e21
/// up... except that Go switches at 1e6 for shortest formatting, which is what users see.
pub fn go_float(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    // `{:e}` gives the shortest round-trip mantissa and exponent, e.g. "1.5e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("exponent is an integer");
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    // Plain notation with exactly the shortest digits.
    format!("{f}")
}

/// Go's `time.Duration.String()`: `1.5s`, `123.456ms`, `2m3.5s`, `12µs`.
pub fn go_duration(nanos: u64) -> String {
    fn trim(f: String) -> String {
        if f.contains('.') {
            f.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            f
        }
    }
    match nanos {
        0 => "0s".into(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{}µs", trim(format!("{:.3}", n as f64 / 1e3))),
        n if n < 1_000_000_000 => format!("{}ms", trim(format!("{:.6}", n as f64 / 1e6))),
        n => {
            let h = n / 3_600_000_000_000;
            let m = n / 60_000_000_000 % 60;
            let s = trim(format!("{:.9}", (n % 60_000_000_000) as f64 / 1e9));
            match (h, m) {
                (0, 0) => format!("{s}s"),
                (0, m) => format!("{m}m{s}s"),
                (h, m) => format!("{h}h{m}m{s}s"),
            }
        }
    }
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0b' => out.push_str("\\v"),
            '\x0c' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%v` of a decoded JSON scalar (numbers are float64 after decoding, as in Ollama).
/// The JSON type of a value, for error messages (`invalid type … : array`).
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => go_float(n.as_f64().unwrap_or(0.0)),
        Value::Bool(b) => b.to_string(),
        Value::Null => "<nil>".into(),
        other => other.to_string(),
    }
}

/// Go's `%#v` of a decoded JSON scalar: like [`go_value`] but strings are quoted.
pub fn go_value_sharp(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        other => go_value(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1000), "1 KB");
        assert_eq!(human_bytes(1500), "1.5 KB");
        assert_eq!(human_bytes(98_362_432), "98 MB");
        assert_eq!(human_bytes(2_019_377_376), "2.0 GB");
        assert_eq!(human_bytes(2_000_000_000), "2 GB");
        assert_eq!(human_bytes(12_345_678_901_234), "12 TB");
    }

    #[test]
    fn numbers() {
        assert_eq!(human_number(134_515_008), "134.52M");
        assert_eq!(human_number(3_212_749_888), "3.2B");
        assert_eq!(human_number(8_000_000_000), "8B");
        assert_eq!(human_number(7_000_000), "7M");
        assert_eq!(human_number(27_432), "27K");
        assert_eq!(human_number(999), "999");
    }

    #[test]
    fn times() {
        let now = Utc::now();
        let ago = |d: Duration| human_time(now - d, now);
        assert_eq!(ago(Duration::milliseconds(10)), "Less than a second ago");
        assert_eq!(ago(Duration::seconds(1)), "1 second ago");
        assert_eq!(ago(Duration::seconds(30)), "30 seconds ago");
        assert_eq!(ago(Duration::seconds(90)), "About a minute ago");
        assert_eq!(ago(Duration::minutes(5)), "5 minutes ago");
        assert_eq!(ago(Duration::minutes(61)), "About an hour ago");
        assert_eq!(ago(Duration::hours(5)), "5 hours ago");
        assert_eq!(ago(Duration::days(3)), "3 days ago");
        assert_eq!(ago(Duration::days(20)), "2 weeks ago");
        assert_eq!(ago(Duration::days(90)), "3 months ago");
        assert_eq!(ago(Duration::days(800)), "2 years ago");
        assert_eq!(human_time(now + Duration::minutes(4) + Duration::seconds(30), now), "4 minutes from now");
        assert_eq!(human_time(now + Duration::days(365 * 30), now), "Forever");
    }

    #[test]
    fn go_formats() {
        assert_eq!(go_float(4096.0), "4096");
        assert_eq!(go_float(0.7), "0.7");
        assert_eq!(go_float(-1.0), "-1");
        assert_eq!(go_float(131072.0), "131072");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(1e-5), "1e-05");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(123_456_789), "123.456789ms");
        assert_eq!(go_duration(12_000), "12µs");
        assert_eq!(go_duration(123_500_000_000), "2m3.5s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_quote("<|im_end|>"), "\"<|im_end|>\"");
        assert_eq!(go_quote("a\"b\\c\nd\x01"), "\"a\\\"b\\\\c\\nd\\x01\"");
        assert_eq!(go_value_sharp(&Value::from("x")), "\"x\"");
        assert_eq!(go_value_sharp(&Value::from(true)), "true");
    }

    #[test]
    fn processor_column() {
        assert_eq!(processor(1000, 0), "100% CPU");
        assert_eq!(processor(0, 0), "100% CPU");
        assert_eq!(processor(1000, 1000), "100% GPU");
        assert_eq!(processor(1000, 1001), "Unknown");
        assert_eq!(processor(1000, 770), "23%/77% CPU/GPU");
        assert_eq!(processor(1000, 995), "1%/99% CPU/GPU", "rounded, not truncated");
        assert_eq!(processor(3, 1), "67%/33% CPU/GPU");
    }

    #[test]
    fn issue_31_processor_column_names_the_hosts_a_model_is_split_over() {
        use crate::runner::DeviceUse;
        let on = |host: Option<&str>, bytes| DeviceUse {
            id: "x".into(),
            bytes,
            host: host.map(String::from),
            host_device: 0,
        };
        let local = [on(None, 770)];
        assert_eq!(processor_by_host(1000, 770, &local), "23%/77% CPU/GPU", "no remote device: Ollama's form");
        let two = [on(Some("10.0.0.2:50052"), 400), on(Some("10.0.0.3:50052"), 600)];
        assert_eq!(processor_by_host(1000, 1000, &two), "40%/60% 10.0.0.2:50052/10.0.0.3:50052");
        let mixed = [on(None, 300), on(Some("h:1"), 333), on(Some("h:1"), 1)];
        assert_eq!(processor_by_host(1000, 634, &mixed), "37%/30%/33% CPU/GPU/h:1");
        assert_eq!(processor_by_host(1000, 1001, &two), "Unknown");
    }
}
