//! Corefile lexer, after the Caddyfile lexer CoreDNS embeds: tokens are separated by
//! white space; `"` opens a quoted token only at the start of a token and `\"` escapes
//! a quote inside it (other backslashes stay literal); `#` starts a comment that runs to
//! the end of the line, even in the middle of a word. An unquoted `{` or `}` standing
//! alone is a brace, anything else is a word. `{$NAME}` inside a word is replaced by the
//! environment variable NAME (empty when unset); an unquoted word that becomes empty
//! disappears, so `bind {$LOCAL} {$EXTRA}` works with EXTRA unset.

use std::path::Path;

use super::error::ConfigError;
use super::types::Location;

/// What a token is; braces are told apart from words here so that a quoted `"{"` or a
/// variable that expands to `{` is never taken for structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    Word,
    Open,
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub text: String,
    /// Line of the first character (1-based).
    pub line: usize,
    /// Line of the last character: differs from `line` for a quoted token with newlines.
    pub end_line: usize,
}

/// Splits `text` into tokens, substituting `{$NAME}` through `env`.
pub(crate) fn tokenize(
    text: &str,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Token>, ConfigError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    while let Some(&ch) = chars.peek() {
        if ch == '\n' {
            line += 1;
            chars.next();
        } else if ch.is_whitespace() {
            chars.next();
        } else if ch == '#' {
            while chars.next_if(|&c| c != '\n').is_some() {}
        } else if ch == '"' {
            chars.next();
            let start = line;
            let mut val = String::new();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' if chars.peek() == Some(&'"') => {
                        val.push('"');
                        chars.next();
                    }
                    '\n' => {
                        line += 1;
                        val.push(c);
                    }
                    _ => val.push(c),
                }
            }
            if !closed {
                return Err(ConfigError::Syntax {
                    at: Location {
                        file: file.to_path_buf(),
                        line: start,
                    },
                    token: val,
                    reason: "unterminated quoted string".to_string(),
                });
            }
            tokens.push(Token {
                kind: TokenKind::Word,
                text: substitute_env(&val, env),
                line: start,
                end_line: line,
            });
        } else {
            let mut val = String::new();
            while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '#') {
                val.push(c);
            }
            let kind = match val.as_str() {
                "{" => TokenKind::Open,
                "}" => TokenKind::Close,
                _ => TokenKind::Word,
            };
            let text = match kind {
                TokenKind::Word => substitute_env(&val, env),
                _ => val,
            };
            if !text.is_empty() {
                tokens.push(Token {
                    kind,
                    text,
                    line,
                    end_line: line,
                });
            }
        }
    }
    Ok(tokens)
}

/// Replaces every `{$NAME}` in `word`; an unterminated `{$` stays literal.
fn substitute_env(word: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(start) = rest.find("{$") {
        let (before, after) = rest.split_at(start);
        out.push_str(before);
        let body = after.get(2..).unwrap_or("");
        match body.find('}') {
            Some(end) => {
                let name = body.get(..end).unwrap_or("");
                out.push_str(&env(name).unwrap_or_default());
                rest = body.get(end + 1..).unwrap_or("");
            }
            None => {
                out.push_str(after);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "IP" => Some("10.0.0.1".to_string()),
            "BRACE" => Some("{".to_string()),
            _ => None,
        }
    }

    type Lexed = (TokenKind, String, usize);

    fn lex(text: &str) -> Vec<Lexed> {
        tokenize(text, Path::new("Corefile"), &env)
            .expect("lexes")
            .into_iter()
            .map(|t| (t.kind, t.text, t.line))
            .collect()
    }

    fn w(text: &str, line: usize) -> Lexed {
        (TokenKind::Word, text.to_string(), line)
    }

    #[test]
    fn tokens() {
        use TokenKind::*;
        let cases: &[(&str, Vec<Lexed>)] = &[
            ("", vec![]),
            ("  # only a comment\n", vec![]),
            (
                ". {\n  errors\n}",
                vec![
                    w(".", 1),
                    (Open, "{".into(), 1),
                    w("errors", 2),
                    (Close, "}".into(), 3),
                ],
            ),
            ("a#comment b\nc", vec![w("a", 1), w("c", 2)]),
            ("\"a b\" c", vec![w("a b", 1), w("c", 1)]),
            ("\"{\"", vec![w("{", 1)]),
            ("\"say \\\"hi\\\" \\n\"", vec![w("say \"hi\" \\n", 1)]),
            ("a\"b\"", vec![w("a\"b\"", 1)]),
            (
                "\"two\nlines\" x\ny",
                vec![w("two\nlines", 1), w("x", 2), w("y", 3)],
            ),
            ("\r\na\r\nb", vec![w("a", 2), w("b", 3)]),
            ("{$IP}:53", vec![w("10.0.0.1:53", 1)]),
            ("x{$IP}y{$IP}", vec![w("x10.0.0.1y10.0.0.1", 1)]),
            ("bind {$IP} {$UNSET}", vec![w("bind", 1), w("10.0.0.1", 1)]),
            ("\"{$UNSET}\"", vec![w("", 1)]),
            ("{$BRACE}", vec![w("{", 1)]),
            ("{$IP", vec![w("{$IP", 1)]),
            ("{a}", vec![w("{a}", 1)]),
        ];
        for (input, want) in cases {
            assert_eq!(&lex(input), want, "input {input:?}");
        }
    }

    #[test]
    fn unterminated_quote() {
        let err = tokenize("a\n\"open", Path::new("Corefile"), &env).unwrap_err();
        assert!(
            err.to_string().starts_with("Corefile:2: unterminated"),
            "{err}"
        );
    }
}
