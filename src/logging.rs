//! Log output: env_logger's human format, or one JSON object per line (`--log-format json`).
//!
//! Both go to stderr and both obey RUST_LOG (default `info`). The JSON shape is the one log
//! collectors (Loki, Elasticsearch, Cloud Logging) parse without configuration:
//! `{"timestamp":"2026-01-02T03:04:05.678Z","level":"INFO","target":"ssed","message":"...","fields":{}}`
//! where `fields` holds the record's key-values (`log::info!(topic = name; "...")`).

use crate::config::LogFormat;
use std::fmt::Write as _;
use std::io::Write as _;

/// Installs the global logger. Call once, before anything logs.
pub fn init(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let timestamp = buf.timestamp_millis().to_string();
            let line = json_line(&timestamp, record);
            buf.write_all(line.as_bytes())
        });
    }
    builder.init();
}

/// Reports an error that stops the daemon before (or instead of) its normal logging, in the
/// chosen format: a collector that parses every line as JSON must not meet a plain one.
pub fn fatal(format: LogFormat, message: &str) {
    match format {
        LogFormat::Text => eprintln!("ssed: {message}"),
        // Through the logger, so that the line has the usual shape and timestamp; an error is
        // above any sensible RUST_LOG level.
        LogFormat::Json => log::error!(target: "ssed", "{message}"),
    }
}

/// One record as a JSON object and a newline.
fn json_line(timestamp: &str, record: &log::Record<'_>) -> String {
    let mut line = String::with_capacity(160);
    line.push_str("{\"timestamp\":");
    push_json_string(&mut line, timestamp);
    line.push_str(",\"level\":");
    push_json_string(&mut line, record.level().as_str());
    line.push_str(",\"target\":");
    push_json_string(&mut line, record.target());
    line.push_str(",\"message\":");
    push_json_string(&mut line, &record.args().to_string());
    line.push_str(",\"fields\":{");
    let mut fields = Fields {
        out: &mut line,
        first: true,
    };
    // A visitor that only appends to a String cannot fail.
    let _ = record.key_values().visit(&mut fields);
    line.push_str("}}\n");
    line
}

struct Fields<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        push_json_string(self.out, key.as_str());
        self.out.push(':');
        value.visit(FieldValue(self.out))
    }
}

/// Numbers and booleans stay JSON numbers and booleans (so that a collector can compare them);
/// anything else becomes its Display text.
struct FieldValue<'a>(&'a mut String);

impl<'v> log::kv::VisitValue<'v> for FieldValue<'_> {
    fn visit_any(&mut self, value: log::kv::Value<'_>) -> Result<(), log::kv::Error> {
        push_json_string(self.0, &value.to_string());
        Ok(())
    }

    fn visit_null(&mut self) -> Result<(), log::kv::Error> {
        self.0.push_str("null");
        Ok(())
    }

    fn visit_u64(&mut self, value: u64) -> Result<(), log::kv::Error> {
        let _ = write!(self.0, "{value}");
        Ok(())
    }

    fn visit_i64(&mut self, value: i64) -> Result<(), log::kv::Error> {
        let _ = write!(self.0, "{value}");
        Ok(())
    }

    fn visit_u128(&mut self, value: u128) -> Result<(), log::kv::Error> {
        let _ = write!(self.0, "{value}");
        Ok(())
    }

    fn visit_i128(&mut self, value: i128) -> Result<(), log::kv::Error> {
        let _ = write!(self.0, "{value}");
        Ok(())
    }

    fn visit_f64(&mut self, value: f64) -> Result<(), log::kv::Error> {
        // JSON has no NaN or infinity.
        if value.is_finite() {
            let _ = write!(self.0, "{value}");
        } else {
            push_json_string(self.0, &value.to_string());
        }
        Ok(())
    }

    fn visit_bool(&mut self, value: bool) -> Result<(), log::kv::Error> {
        self.0.push_str(if value { "true" } else { "false" });
        Ok(())
    }

    fn visit_str(&mut self, value: &str) -> Result<(), log::kv::Error> {
        push_json_string(self.0, value);
        Ok(())
    }
}

/// Appends `text` as a JSON string (RFC 8259 §7). Non-ASCII stays as UTF-8, which JSON allows;
/// only quotes, backslashes and control characters need escapes.
pub fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < '\u{20}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            // Not required by JSON, but a raw U+2028/U+2029 breaks consumers that treat the
            // line as JavaScript, and DEL confuses terminals tailing the log.
            '\u{7f}' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(text: &str) -> String {
        let mut out = String::new();
        push_json_string(&mut out, text);
        out
    }

    #[test]
    fn strings_are_escaped_as_json_requires() {
        assert_eq!(quoted("plain"), r#""plain""#);
        assert_eq!(quoted(r#"say "hi""#), r#""say \"hi\"""#);
        assert_eq!(quoted(r"C:\tmp\"), r#""C:\\tmp\\""#);
        assert_eq!(quoted("a\nb\rc\td"), r#""a\nb\rc\td""#);
        assert_eq!(quoted("\u{8}\u{c}"), r#""\b\f""#);
        assert_eq!(
            quoted("\0\u{1}\u{1b}[31m\u{1f}"),
            r#""\u0000\u0001\u001b[31m\u001f""#
        );
        assert_eq!(quoted("\u{7f}\u{2028}\u{2029}"), r#""\u007f\u2028\u2029""#);
        assert_eq!(quoted("café ☕ 𝄞"), "\"café ☕ 𝄞\"");
        assert_eq!(quoted(""), r#""""#);
    }

    #[test]
    fn every_string_survives_a_round_trip_through_a_json_parser() {
        let mut nasty = String::new();
        for c in (0u32..0x300).chain([0x2028, 0x2029, 0xfeff, 0x1f600]) {
            nasty.push(char::from_u32(c).unwrap());
        }
        let parsed: String = serde_json::from_str(&quoted(&nasty)).unwrap();
        assert_eq!(parsed, nasty);
    }

    #[test]
    fn a_record_becomes_one_json_object_with_its_key_values_as_fields() {
        let topic = "news/\"eu\"";
        let kvs: [(&str, log::kv::Value); 4] = [
            ("topic", log::kv::Value::from(topic)),
            ("subscribers", log::kv::Value::from(42u64)),
            ("lag", log::kv::Value::from(-1.5f64)),
            ("redis", log::kv::Value::from(true)),
        ];
        let record = log::Record::builder()
            .level(log::Level::Warn)
            .target("ssed::test")
            .args(format_args!("line one\nline two"))
            .key_values(&kvs)
            .build();
        let line = json_line("2026-01-02T03:04:05.678Z", &record);
        assert!(line.ends_with("}\n") && !line.trim_end().contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "timestamp": "2026-01-02T03:04:05.678Z",
                "level": "WARN",
                "target": "ssed::test",
                "message": "line one\nline two",
                "fields": {"topic": topic, "subscribers": 42, "lag": -1.5, "redis": true},
            })
        );

        let bare = log::Record::builder()
            .level(log::Level::Info)
            .args(format_args!("no fields"))
            .build();
        let value: serde_json::Value =
            serde_json::from_str(&json_line("2026-01-02T03:04:05.678Z", &bare)).unwrap();
        assert_eq!(value["fields"], serde_json::json!({}));
    }
}
