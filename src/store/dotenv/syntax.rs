//! The `.env` value syntax: parsing an assignment, and encoding a value
//! in a quoting style that holds it.

use zeroize::Zeroizing;

use super::{Quote, valid_key};
use crate::credential::Secret;

pub(super) struct Parsed {
    pub(super) end: usize,
    pub(super) key: String,
    pub(super) prefix: String,
    pub(super) suffix: String,
    pub(super) quote: Quote,
    pub(super) value: Secret,
}

/// Parse the assignment starting at physical line `i`. Errors never quote
/// the line (it may hold a secret).
pub(super) fn parse_assignment(
    lines: &[Zeroizing<String>],
    i: usize,
) -> Result<Parsed, &'static str> {
    let line = lines[i].as_str();
    let indent = line.len() - line.trim_start().len();
    let mut rest = &line[indent..];
    if let Some(after) = rest.strip_prefix("export")
        && after.starts_with([' ', '\t'])
    {
        rest = after.trim_start();
    }
    let key_len = rest.find(['=', ' ', '\t']).unwrap_or(rest.len());
    let key = &rest[..key_len];
    if key.is_empty() {
        return Err("not a KEY=VALUE line");
    }
    if !valid_key(key) {
        return Err("not a KEY=VALUE line (invalid key name)");
    }
    let after_key = rest[key_len..].trim_start_matches([' ', '\t']);
    let Some(after_eq) = after_key.strip_prefix('=') else {
        return Err("not a KEY=VALUE line (no '=')");
    };
    let value_text = after_eq.trim_start_matches([' ', '\t']);
    let prefix_len = line.len() - value_text.len();
    let prefix = line[..prefix_len].to_string();

    if let Some(body) = value_text.strip_prefix("$'") {
        return parse_ansi_c(body, i, key, prefix);
    }
    let (quote, opening) = match value_text.chars().next() {
        Some('"') => (Quote::Double, '"'),
        Some('\'') => (Quote::Single, '\''),
        _ => {
            let cut = inline_comment_start(value_text).unwrap_or(value_text.len());
            let value = value_text[..cut].trim_end();
            return Ok(Parsed {
                end: i + 1,
                key: key.to_string(),
                prefix,
                suffix: value_text[value.len()..].to_string(),
                quote: Quote::None,
                value: Secret::new(value),
            });
        }
    };

    // A quoted value may continue over following lines until its closing quote.
    let mut value = Zeroizing::new(String::new());
    let mut text: &str = &value_text[1..];
    let mut line_no = i;
    loop {
        let mut chars = text.char_indices();
        let mut closed_at = None;
        while let Some((pos, c)) = chars.next() {
            if c == opening {
                closed_at = Some(pos);
                break;
            }
            if c == '\\' && quote == Quote::Double {
                match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 'r')) => value.push('\r'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, e @ ('"' | '\\' | '\''))) => value.push(e),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => value.push('\\'),
                }
                continue;
            }
            value.push(c);
        }
        if let Some(pos) = closed_at {
            // `'\''` inside single quotes: close, an escaped quote, reopen
            // (how a shell, and credshift, write a quote in a quoted value).
            if quote == Quote::Single && text[pos + 1..].starts_with("\\''") {
                value.push('\'');
                text = &text[pos + 4..];
                continue;
            }
            let suffix = &text[pos + 1..];
            let after = suffix.trim_start_matches([' ', '\t']);
            if !after.is_empty() && !after.starts_with('#') {
                return Err("unexpected text after the closing quote");
            }
            return Ok(Parsed {
                end: line_no + 1,
                key: key.to_string(),
                prefix,
                suffix: suffix.to_string(),
                quote,
                value: Secret::new(value.as_str()),
            });
        }
        line_no += 1;
        if line_no >= lines.len() {
            return Err(if quote == Quote::Double {
                "unclosed double quote"
            } else {
                "unclosed single quote"
            });
        }
        value.push('\n');
        text = lines[line_no].as_str();
    }
}

/// Byte offset of an inline comment in an unquoted value: a `#` preceded by
/// a space or tab.
pub(super) fn inline_comment_start(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (1..b.len()).find(|&i| b[i] == b'#' && (b[i - 1] == b' ' || b[i - 1] == b'\t'))
}

/// The style an encoded value was written in.
pub(super) fn quote_of(encoded: &str) -> Quote {
    match encoded.chars().next() {
        Some('\'') => Quote::Single,
        Some('"') => Quote::Double,
        _ => Quote::None,
    }
}

pub(super) fn plain_ok(v: &str) -> bool {
    !v.is_empty()
        && !v.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '#' | '\\' | '$' | '`')
        })
}

/// Why no quoting can carry `v` exactly, when none can.
pub(super) fn unwritable(v: &str) -> Option<&'static str> {
    v.contains('\0')
        .then_some("the value holds a NUL byte, which no .env quoting can carry")
}

/// A shell's `$'...'` (ANSI-C quoting) on one line: `\\ \' \" \n \r \t
/// \xHH`; any other escape is kept as written, as a shell does.
pub(super) fn parse_ansi_c(
    body: &str,
    i: usize,
    key: &str,
    prefix: String,
) -> Result<Parsed, &'static str> {
    let mut value = Zeroizing::new(String::new());
    let mut chars = body.char_indices().peekable();
    while let Some((pos, c)) = chars.next() {
        match c {
            '\'' => {
                let suffix = &body[pos + 1..];
                let after = suffix.trim_start_matches([' ', '\t']);
                if !after.is_empty() && !after.starts_with('#') {
                    return Err("unexpected text after the closing quote");
                }
                return Ok(Parsed {
                    end: i + 1,
                    key: key.to_string(),
                    prefix,
                    suffix: suffix.to_string(),
                    quote: Quote::Single,
                    value: Secret::new(value.as_str()),
                });
            }
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, 'r')) => value.push('\r'),
                Some((_, 't')) => value.push('\t'),
                Some((_, e @ ('\\' | '\'' | '"'))) => value.push(e),
                Some((_, 'x')) => {
                    let mut n = 0u32;
                    let mut digits = 0;
                    while digits < 2
                        && let Some(d) = chars.peek().and_then(|(_, d)| d.to_digit(16))
                    {
                        n = n * 16 + d;
                        digits += 1;
                        chars.next();
                    }
                    match char::from_u32(n) {
                        Some(ch) if digits > 0 && n < 0x80 => value.push(ch),
                        _ => return Err("unsupported \\x escape in $'...'"),
                    }
                }
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => return Err("unclosed $'...' quote"),
            },
            c => value.push(c),
        }
    }
    Err("unclosed $'...' quote")
}

/// The value as it goes into the file. Every form here reads back as the
/// exact value when the file is `source`d by a shell (nothing expands,
/// nothing runs) and when credshift reads it; the first three also read
/// back exactly in python-dotenv and Node's dotenv:
///
/// 1. bare, for values of plain characters (kept in double quotes when the
///    existing line had them);
/// 2. single quotes, for any value without a `'` (no reader expands or
///    unescapes inside them; newlines stay literal);
/// 3. double quotes, for a value with a `'` but no `"`, `$`, backquote or
///    backslash (nothing in it is special to any reader);
/// 4. a value with a carriage return: a shell's `$'...'` with escapes (a
///    file's line ends would swallow a literal one);
/// 5. otherwise single quotes with `'\''` for each quote, the shell's own
///    way. python-dotenv and Node's dotenv have no form in common with a
///    shell for such values (Node's reads no escapes at all).
///
/// Callers check [`unwritable`] first.
pub(super) fn encode_value(v: &str, preferred: Quote) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(v.len() + 8));
    if v.contains('\r') {
        out.push_str("$'");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c == '\x7f' => {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                }
                c => out.push(c),
            }
        }
        out.push('\'');
    } else if plain_ok(v) {
        match preferred {
            Quote::None => out.push_str(v),
            Quote::Single => {
                out.push('\'');
                out.push_str(v);
                out.push('\'');
            }
            Quote::Double => {
                out.push('"');
                out.push_str(v);
                out.push('"');
            }
        }
    } else if !v.contains('\'') {
        out.push('\'');
        out.push_str(v);
        out.push('\'');
    } else if !v.contains(['"', '$', '`', '\\']) {
        out.push('"');
        out.push_str(v);
        out.push('"');
    } else {
        out.push('\'');
        for c in v.chars() {
            if c == '\'' {
                out.push_str("'\\''");
            } else {
                out.push(c);
            }
        }
        out.push('\'');
    }
    out
}
