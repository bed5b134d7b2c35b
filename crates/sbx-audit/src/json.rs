//! The writer's serializer: appends an [`Event`] as compact JSON to a byte buffer, byte for byte what
//! `serde_json::to_writer` produces for the derived `Serialize` (tests prove it for every action kind and for
//! arbitrary strings), without serde's per-field dispatch, `io::Write` calls or allocation.
//!
//! Reading still goes through serde; this only exists because serialization runs once per recorded event on the
//! caller's thread and was the largest cost of [`crate::AuditHandle::record`].

use crate::event::{Action, Event, MountMode};

/// Appends `event` without its chain fields (`seq`, `prev_hash`): the body the writer thread chains.
pub(crate) fn write_body(event: &Event, out: &mut Vec<u8>) {
    write_fields(event, out);
    out.push(b'}');
}

/// Appends `event` with every field serde would write, chain fields included when set.
#[cfg(test)]
pub(crate) fn write_event(event: &Event, out: &mut Vec<u8>) {
    write_fields(event, out);
    if let Some(seq) = event.seq {
        out.extend_from_slice(b",\"seq\":");
        write_u64(out, seq);
    }
    if let Some(prev) = &event.prev_hash {
        out.extend_from_slice(b",\"prev_hash\":");
        write_str(out, prev);
    }
    out.push(b'}');
}

/// Everything up to, not including, the closing brace and the chain fields.
fn write_fields(event: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"schema_version\":");
    write_u64(out, u64::from(event.schema_version));
    out.extend_from_slice(b",\"id\":\"");
    out.extend_from_slice(&event.id.encode());
    out.extend_from_slice(b"\",\"timestamp\":\"");
    out.extend_from_slice(&event.timestamp.encode());
    out.push(b'"');
    opt_str(out, b",\"sandbox\":", event.sandbox.as_deref());
    out.extend_from_slice(b",\"category\":\"");
    out.extend_from_slice(event.category.as_str().as_bytes());
    out.push(b'"');
    if let Some(decision) = event.decision {
        out.extend_from_slice(b",\"decision\":\"");
        out.extend_from_slice(decision.as_str().as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b",\"action\":");
    write_action(&event.action, out);
    opt_str(out, b",\"rule\":", event.rule.as_deref());
    opt_str(out, b",\"layer\":", event.layer.as_deref());
    opt_str(out, b",\"reason\":", event.reason.as_deref());
    opt_str(out, b",\"agent\":", event.agent.as_deref());
    opt_str(out, b",\"user\":", event.user.as_deref());
    out.extend_from_slice(b",\"hostname\":");
    write_str(out, &event.hostname);
}

/// The internally tagged form: `{"type":"<kind>", <the variant's fields in declaration order>}`.
fn write_action(action: &Action, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(action.kind().as_bytes());
    out.push(b'"');
    match action {
        Action::NetworkEgress { host, port, proxy } => {
            str_field(out, b",\"host\":", host);
            num_field(out, b",\"port\":", u64::from(*port));
            out.extend_from_slice(b",\"proxy\":\"");
            out.extend_from_slice(proxy.as_str().as_bytes());
            out.push(b'"');
        }
        Action::HttpRequest {
            method,
            host,
            port,
            path,
            status,
            bytes_up,
            bytes_down,
            duration_ms,
        } => {
            str_field(out, b",\"method\":", method);
            str_field(out, b",\"host\":", host);
            num_field(out, b",\"port\":", u64::from(*port));
            str_field(out, b",\"path\":", path);
            if let Some(status) = status {
                num_field(out, b",\"status\":", u64::from(*status));
            }
            num_field(out, b",\"bytes_up\":", *bytes_up);
            num_field(out, b",\"bytes_down\":", *bytes_down);
            num_field(out, b",\"duration_ms\":", *duration_ms);
        }
        Action::SecretInjected { service, host } | Action::PlaceholderBlocked { service, host } => {
            str_field(out, b",\"service\":", service);
            str_field(out, b",\"host\":", host);
        }
        Action::SandboxCreated
        | Action::SandboxStarted
        | Action::SandboxStopped
        | Action::SandboxRemoved => {}
        Action::Exec { argv } => {
            out.extend_from_slice(b",\"argv\":[");
            for (i, arg) in argv.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, arg);
            }
            out.push(b']');
        }
        Action::Mount { path, mode } => {
            str_field(out, b",\"path\":", path);
            out.extend_from_slice(match mode {
                MountMode::ReadOnly => b",\"mode\":\"ro\"",
                MountMode::ReadWrite => b",\"mode\":\"rw\"",
            });
        }
        Action::AuditDropped { count } => num_field(out, b",\"count\":", *count),
    }
    out.push(b'}');
}

fn opt_str(out: &mut Vec<u8>, key: &[u8], value: Option<&str>) {
    if let Some(value) = value {
        str_field(out, key, value);
    }
}

fn str_field(out: &mut Vec<u8>, key: &[u8], value: &str) {
    out.extend_from_slice(key);
    write_str(out, value);
}

fn num_field(out: &mut Vec<u8>, key: &[u8], value: u64) {
    out.extend_from_slice(key);
    write_u64(out, value);
}

/// Decimal digits of `n`.
pub(crate) fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut pos = digits.len();
    loop {
        pos -= 1;
        digits[pos] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[pos..]);
}

const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of the 8 in `word` is a control character, `"` or `\` — the bytes JSON strings escape.
/// Exact for "any" (the classic has-less/has-zero bit tricks can misflag bytes only above a true hit).
fn word_needs_escape(word: u64) -> bool {
    let control = word.wrapping_sub(LOW_BITS * 0x20) & !word;
    let quote = (word ^ (LOW_BITS * u64::from(b'"'))).wrapping_sub(LOW_BITS)
        & !(word ^ (LOW_BITS * u64::from(b'"')));
    let backslash = (word ^ (LOW_BITS * u64::from(b'\\'))).wrapping_sub(LOW_BITS)
        & !(word ^ (LOW_BITS * u64::from(b'\\')));
    (control | quote | backslash) & HIGH_BITS != 0
}

/// The escape serde_json writes for `byte`, or `None` when it is written as is.
fn escape_of(byte: u8) -> Option<&'static [u8]> {
    Some(match byte {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        b'\x08' => b"\\b",
        b'\x0c' => b"\\f",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0x00..=0x1f => return Some(&CONTROL_ESCAPES[usize::from(byte)]),
        _ => return None,
    })
}

/// `\u00XX` (lower-case hex, as serde_json writes it) for every control character.
const CONTROL_ESCAPES: [[u8; 6]; 32] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 6]; 32];
    let mut i = 0;
    while i < 32 {
        table[i] = [b'\\', b'u', b'0', b'0', HEX[i >> 4], HEX[i & 15]];
        i += 1;
    }
    table
};

/// A JSON string: quoted, with `"`, `\` and control characters escaped exactly as serde_json does; other
/// characters (including all non-ASCII, which is already valid UTF-8) are copied.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Clean runs are copied whole; 8 bytes are checked at a time.
    let mut clean_from = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8)
            && let Ok(word) = <[u8; 8]>::try_from(chunk)
            && !word_needs_escape(u64::from_le_bytes(word))
        {
            i += 8;
            continue;
        }
        let end = (i + 8).min(bytes.len());
        for (j, &byte) in bytes.iter().enumerate().take(end).skip(i) {
            if let Some(escape) = escape_of(byte) {
                out.extend_from_slice(&bytes[clean_from..j]);
                out.extend_from_slice(escape);
                clean_from = j + 1;
            }
        }
        i = end;
    }
    out.extend_from_slice(&bytes[clean_from..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Category, Decision, Proxy};
    use crate::time::Timestamp;
    use proptest::prelude::*;

    fn serde_form(event: &Event) -> String {
        serde_json::to_string(event).unwrap()
    }

    fn ours(event: &Event) -> String {
        let mut out = Vec::new();
        write_event(event, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn every_kind(s: &str) -> Vec<Event> {
        vec![
            Event::network(s, s, 443, Proxy::Forward, Decision::Allow).explained(
                Some(s),
                Some(s),
                s,
            ),
            Event::network(s, s, 0, Proxy::Transparent, Decision::Deny),
            Event::network(s, s, 65535, Proxy::Raw, Decision::Deny),
            Event::http(s, s, s, 8080, s, Decision::Allow).http_result(Some(200), u64::MAX, 0, 17),
            Event::http(s, s, s, 1, s, Decision::Deny).http_result(None, 1, 2, 3),
            Event::secret_injected(s, s, s).user(s),
            Event::placeholder_blocked(s, s, s).agent(s),
            Event::lifecycle(s, Action::SandboxCreated),
            Event::lifecycle(s, Action::SandboxStarted),
            Event::lifecycle(s, Action::SandboxStopped),
            Event::lifecycle(s, Action::SandboxRemoved).category(Category::Policy),
            Event::exec(s, &[s, "", s]),
            Event::exec::<&str>(s, &[]),
            Event::mount(s, s, MountMode::ReadOnly, Decision::Allow),
            Event::mount(s, s, MountMode::ReadWrite, Decision::Deny),
            Event::audit_dropped(u64::MAX).hostname(s),
        ]
    }

    #[test]
    fn equals_serde_for_every_action_kind_and_awkward_strings() {
        let awkward = [
            "",
            "plain",
            "quote \" backslash \\ slash /",
            "\u{0}\u{1}\u{7}\u{8}\t\n\u{b}\u{c}\r\u{1b}\u{1f} \u{7f}",
            "exactly8",
            "seven7\"",
            "sixteen-bytes-\\x",
            "ünïcödé — 日本語 🦀 \u{2028}\u{2029}\u{fffd}",
            "\"\"\"\"\"\"\"\"\"",
        ];
        for s in awkward {
            for mut event in every_kind(s) {
                assert_eq!(ours(&event), serde_form(&event), "{s:?}");
                event.seq = Some(u64::MAX);
                event.prev_hash = Some(s.to_owned());
                assert_eq!(ours(&event), serde_form(&event), "{s:?}");
            }
        }
    }

    #[test]
    fn the_body_is_the_event_without_chain_fields() {
        let mut event = Event::exec("s", &["x"]);
        event.seq = Some(3);
        event.prev_hash = Some("ab".into());
        let mut body = Vec::new();
        write_body(&event, &mut body);
        event.seq = None;
        event.prev_hash = None;
        assert_eq!(String::from_utf8(body).unwrap(), serde_form(&event));
    }

    #[test]
    fn numbers_are_plain_decimal() {
        for n in [0, 1, 9, 10, 99, 100, 12_345, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    #[test]
    fn the_word_check_flags_exactly_the_words_that_need_escaping() {
        // Every byte value at every position of a word otherwise made of harmless bytes (and of bytes that sit
        // next to the flagged ranges, where borrow tricks go wrong).
        for filler in [b'a', b' ', 0x7f, 0xff, b'!', b'#', b'[', b']'] {
            for pos in 0..8 {
                for byte in 0..=255u8 {
                    let mut word = [filler; 8];
                    word[pos] = byte;
                    let want = word.iter().any(|&b| escape_of(b).is_some());
                    assert_eq!(
                        word_needs_escape(u64::from_le_bytes(word)),
                        want,
                        "{word:?}"
                    );
                }
            }
        }
    }

    fn any_event() -> impl Strategy<Value = Event> {
        let text = || any::<String>();
        let opt = || proptest::option::of(any::<String>());
        (
            (text(), text(), text(), text()),
            (opt(), opt(), opt(), opt(), opt(), opt()),
            (any::<u16>(), any::<u64>(), any::<u64>(), any::<i64>()),
            (0usize..16, proptest::collection::vec(text(), 0..4)),
            (proptest::option::of(any::<u64>()), any::<bool>()),
        )
            .prop_map(
                |((a, b, c, d), (sandbox, rule, layer, reason, agent, user), nums, pick, chain)| {
                    let (port, n1, n2, micros) = nums;
                    let (kind, argv) = pick;
                    let mut event = match kind {
                        0 => Event::new(Action::NetworkEgress {
                            host: a,
                            port,
                            proxy: Proxy::Raw,
                        }),
                        1 => Event::new(Action::HttpRequest {
                            method: a,
                            host: b,
                            port,
                            path: c,
                            status: (n1 % 2 == 0).then_some(port),
                            bytes_up: n1,
                            bytes_down: n2,
                            duration_ms: n1 ^ n2,
                        }),
                        2 => Event::new(Action::SecretInjected {
                            service: a,
                            host: b,
                        }),
                        3 => Event::new(Action::PlaceholderBlocked {
                            service: a,
                            host: b,
                        }),
                        4 => Event::new(Action::SandboxCreated),
                        5 => Event::new(Action::SandboxStarted),
                        6 => Event::new(Action::SandboxStopped),
                        7 => Event::new(Action::SandboxRemoved),
                        8 | 9 => Event::new(Action::Exec { argv }),
                        10 => Event::new(Action::Mount {
                            path: a,
                            mode: MountMode::ReadOnly,
                        }),
                        11 => Event::new(Action::Mount {
                            path: a,
                            mode: MountMode::ReadWrite,
                        }),
                        _ => Event::new(Action::AuditDropped { count: n1 }),
                    }
                    .at(Timestamp::from_unix_micros(micros))
                    .hostname(&d);
                    event.sandbox = sandbox;
                    event.rule = rule;
                    event.layer = layer;
                    event.reason = reason;
                    event.agent = agent;
                    event.user = user;
                    event.decision =
                        [None, Some(Decision::Allow), Some(Decision::Deny)][(n2 % 3) as usize];
                    event.schema_version = (n2 >> 8) as u32;
                    if chain.1 {
                        event.seq = chain.0;
                        event.prev_hash = Some(d);
                    }
                    event
                },
            )
    }

    proptest! {
        #[test]
        fn equals_serde_for_arbitrary_events(event in any_event()) {
            prop_assert_eq!(ours(&event), serde_form(&event));
        }

        #[test]
        fn strings_equal_serde_and_read_back(s in any::<String>()) {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            prop_assert_eq!(&out, &serde_json::to_vec(&s).unwrap());
            prop_assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), s);
        }

        #[test]
        fn control_heavy_strings_equal_serde(bytes in proptest::collection::vec(
            prop_oneof![0u8..0x20, Just(b'"'), Just(b'\\'), 0x20u8..0x80], 0..64)) {
            let s = String::from_utf8(bytes).unwrap();
            let mut out = Vec::new();
            write_str(&mut out, &s);
            prop_assert_eq!(out, serde_json::to_vec(&s).unwrap());
        }
    }
}
