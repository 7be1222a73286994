//! Log records of admin and hosts: the filter they share, the line a host writes for each
//! record, and the line the admin writes to the system's one log sink.
//!
//! A system logs to one place, the admin's stderr (the client's stderr, or the file given
//! with `SystemConfig::log_file`). A host's stderr is a pipe to its admin
//! (`admin/logs.rs`), so everything a host writes there, records and raw text alike, reaches
//! that place through the admin, which adds who wrote it. For that the host's `tracing`
//! subscriber writes each record as exactly one line that the admin can tell from raw
//! output:
//!
//! ```text
//! host:  \x1e2026-11-25T10:00:00.123456Z  INFO my_app::worker: job done id=7
//! sink:  2026-11-25T10:00:00.123456Z  INFO my_app::worker: job done id=7 actor=@2 actor_type=my_app::Worker pid=4711 incarnation=1
//! ```
//!
//! The leading record separator (`\x1e`) marks a record; newlines inside one are escaped, so
//! a record never spans lines. Any other line (an `eprintln!`, Rust's own message before an
//! abort, a C library's output) is forwarded as a `WARN` record with target `stderr`.
//!
//! Filtering happens where a record is made: hosts and the admin use the same filter
//! (`GREENROOM_LOG`, which the client sets from `SystemConfig::log_level` unless the
//! environment already has it), so a host never writes a record below the level.

use std::{
    fmt::Write as _,
    io::{self, Write},
    str::FromStr,
};

use tracing::Level;
use tracing_subscriber::{
    filter::LevelFilter,
    fmt::{format::Writer, time::FormatTime, writer::BoxMakeWriter, MakeWriter},
    EnvFilter,
};

use crate::process_role::LOG_ENV;

/// The first byte of a record line written by a host (ASCII record separator).
pub const RECORD_MARK: u8 = 0x1e;

/// The target under which raw stderr output of a host appears in the sink.
pub const RAW_TARGET: &str = "stderr";

/// The filter admin and hosts apply when nobody asked for another.
pub const DEFAULT_FILTER: &str = "warn";

/// The filter spec for a new system: `GREENROOM_LOG` from the environment if it is set, else
/// the one the program configured, else none (the processes then use [`DEFAULT_FILTER`]).
pub(crate) fn effective_filter(configured: Option<&str>) -> Option<String> {
    match std::env::var(LOG_ENV) {
        Ok(spec) if !spec.is_empty() => Some(spec),
        _ => configured.map(str::to_owned),
    }
}

/// Checks a filter spec (`tracing-subscriber`'s `EnvFilter` syntax); the error says what is
/// wrong with it.
pub(crate) fn check_filter(spec: &str) -> Result<(), String> {
    if LevelFilter::from_str(spec).is_ok() {
        return Ok(());
    }
    EnvFilter::try_new(spec).map(|_| ()).map_err(|e| e.to_string())
}

/// Installs a host's subscriber: records at or above the filter, one line each, on stderr
/// (the admin's pipe). Called first thing in a host process.
pub fn init_host_logging() {
    install(BoxMakeWriter::new(|| RecordLine));
}

/// Installs the admin's subscriber: its own records, in the sink's layout, through `sink`.
pub(crate) fn init_admin_logging<W>(sink: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    install(BoxMakeWriter::new(sink));
}

/// Installs a plain-text subscriber writing through `writer`, filtered by `GREENROOM_LOG`.
/// One writer type for admin and hosts: the subscriber's code is generic over it, and one
/// copy of it in the executable instead of two keeps a host's start-up from touching more
/// pages.
fn install(writer: BoxMakeWriter) {
    let fmt = tracing_subscriber::fmt().with_ansi(false).with_writer(writer);
    let spec = std::env::var(LOG_ENV).unwrap_or_default();
    let spec = if spec.is_empty() { DEFAULT_FILTER } else { &spec };
    // Parsing an `EnvFilter` costs a noticeable part of a host's start-up, so a plain level
    // (the common case) is a `LevelFilter`.
    let _ = match LevelFilter::from_str(spec) {
        Ok(level) => fmt.with_max_level(level).try_init(),
        Err(_) => fmt.with_env_filter(EnvFilter::new(spec)).try_init(),
    };
}

/// A host's stderr as its subscriber sees it: each `write` is one whole formatted record (the
/// fmt layer writes an event with a single `write_all`), written as one marked line.
struct RecordLine;

impl Write for RecordLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        let mut line = Vec::with_capacity(body.len() + 8);
        line.push(RECORD_MARK);
        escape_newlines(body, &mut line);
        line.push(b'\n');
        // One write per record: up to the pipe's atomic size, lines of several threads of an
        // actor do not interleave.
        io::stderr().lock().write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Appends `text` with `\n` and `\r` written as `\\n` and `\\r`, so that a record stays one
/// line.
fn escape_newlines(text: &[u8], out: &mut Vec<u8>) {
    for &b in text {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// A record line from a host, taken apart.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    /// When the host made the record (RFC 3339, UTC).
    pub timestamp: &'a str,
    pub level: Level,
    /// Spans, target, message and fields, as the host formatted them.
    pub body: &'a str,
}

/// Parses one line (without its newline) as a host's record; `None` if it is raw output.
pub(crate) fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let text = std::str::from_utf8(line.strip_prefix(&[RECORD_MARK])?).ok()?;
    let (timestamp, rest) = text.split_once(' ')?;
    let (level, body) = rest.trim_start_matches(' ').split_once(' ')?;
    Some(Record {
        timestamp,
        level: Level::from_str(level).ok()?,
        body,
    })
}

/// Appends one sink line: `<timestamp> <LEVEL> <body><attribution>\n`, the layout of the
/// admin's own records (`tracing-subscriber`'s full format), so the sink reads as one log.
pub(crate) fn write_sink_line(out: &mut Vec<u8>, timestamp: &str, level: Level, body: &str, attribution: &str) {
    let mut line = String::with_capacity(timestamp.len() + body.len() + attribution.len() + 8);
    let _ = writeln!(line, "{timestamp} {level:>5} {body}{attribution}");
    out.extend_from_slice(line.as_bytes());
}

/// Appends a sink line for one line of a host's stderr: its record with `attribution`
/// added, or, for raw output, a `WARN` record with target [`RAW_TARGET`] stamped `now`.
pub(crate) fn write_host_line(out: &mut Vec<u8>, line: &[u8], attribution: &str, now: &mut Option<String>) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(record) = parse_record(line) {
        write_sink_line(out, record.timestamp, record.level, record.body, attribution);
        return;
    }
    let now = now.get_or_insert_with(timestamp_now);
    let body = format!("{RAW_TARGET}: {}", String::from_utf8_lossy(line));
    write_sink_line(out, now, Level::WARN, &body, attribution);
}

/// The current time as the records have it.
fn timestamp_now() -> String {
    let mut now = String::with_capacity(32);
    let _ = tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut now));
    now
}

/// Opens the file a system logs to for appending, creating it readable by this user only.
pub fn open_log_file(path: &std::path::Path) -> crate::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(crate::Error::io(format!("opening the log file {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_line(formatted: &str) -> Vec<u8> {
        let mut line = vec![RECORD_MARK];
        escape_newlines(formatted.trim_end_matches('\n').as_bytes(), &mut line);
        line
    }

    #[test]
    fn a_record_line_parses_back() {
        let line = host_line("2026-11-25T10:00:00.123456Z  INFO my_app::worker: job done id=7\n");
        assert_eq!(
            parse_record(&line),
            Some(Record {
                timestamp: "2026-11-25T10:00:00.123456Z",
                level: Level::INFO,
                body: "my_app::worker: job done id=7",
            })
        );
        let line = host_line("2026-11-25T10:00:00.123456Z DEBUG span{a=1}: t: m");
        assert_eq!(
            parse_record(&line).map(|r| (r.level, r.body)),
            Some((Level::DEBUG, "span{a=1}: t: m"))
        );
    }

    #[test]
    fn newlines_inside_a_record_are_escaped() {
        let line = host_line("2026-11-25T10:00:00Z ERROR t: two\nlines\r\n");
        assert!(!line.contains(&b'\n'));
        assert_eq!(parse_record(&line).map(|r| r.body), Some("t: two\\nlines\\r"));
    }

    #[test]
    fn anything_else_is_raw() {
        for raw in [
            &b"fatal runtime error: stack overflow"[..],
            b"",
            b"\x1e",
            b"\x1enot-a-time",
            b"\x1e2026-11-25T10:00:00Z NOTICE t: m",
            b"\x1e\xff\xfe INFO t: m",
        ] {
            assert_eq!(parse_record(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn sink_lines_carry_the_attribution() {
        let mut out = Vec::new();
        let mut now = None;
        let record = host_line("2026-11-25T10:00:00.123456Z  WARN a::b: hi x=1");
        write_host_line(&mut out, &record, " actor=@2 pid=9", &mut now);
        write_host_line(&mut out, b"plain text\r", " actor=@2 pid=9", &mut now);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "2026-11-25T10:00:00.123456Z  WARN a::b: hi x=1 actor=@2 pid=9"
        );
        assert!(
            lines[1].ends_with("  WARN stderr: plain text actor=@2 pid=9"),
            "{}",
            lines[1]
        );
        assert!(now.is_some(), "raw lines are stamped when the admin reads them");
    }

    #[test]
    fn filters_are_checked() {
        assert!(check_filter("info").is_ok());
        assert!(check_filter("greenroom=debug,my_app=trace").is_ok());
        assert!(check_filter("my_app=loud").is_err());
    }
}
