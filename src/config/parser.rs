//! Tokens → untyped syntax tree: server blocks, their directives (one per line, with
//! arguments to the end of the line) and at most one level of `{ }` option block per
//! directive. Braces must balance; an opening brace ends the line of its directive.
//! Meaning is given later, in `setup`.

use std::path::Path;

use super::error::ConfigError;
use super::lexer::{Token, TokenKind};
use super::types::Location;

/// `KEYS... { LINES }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlockSyntax {
    /// The block keys, e.g. `cluster.local:53`, not yet split on commas.
    pub keys: Vec<Token>,
    pub lines: Vec<LineSyntax>,
    /// Line of the first key.
    pub line: usize,
}

/// One directive or option: `NAME ARGS... [{ LINES }]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineSyntax {
    pub name: Token,
    pub args: Vec<Token>,
    /// The option block; options themselves never have one.
    pub block: Option<Vec<LineSyntax>>,
}

/// Directives may open a block, options may not: deeper nesting is refused, which also
/// bounds recursion whatever the input.
const NESTING_MAX: usize = 2;

struct Cursor<'a> {
    tokens: &'a [Token],
    pos: usize,
    file: &'a Path,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<&'a Token> {
        let token = self.tokens.get(self.pos);
        if token.is_some() {
            self.pos += 1;
        }
        token
    }

    fn error(&self, line: usize, token: &str, reason: String) -> ConfigError {
        ConfigError::Syntax {
            at: Location {
                file: self.file.to_path_buf(),
                line,
            },
            token: token.to_string(),
            reason,
        }
    }
}

/// Parses all server blocks; a file without any is an error.
pub(crate) fn parse_blocks(tokens: &[Token], file: &Path) -> Result<Vec<BlockSyntax>, ConfigError> {
    let mut cursor = Cursor {
        tokens,
        pos: 0,
        file,
    };
    let mut blocks = Vec::new();
    while cursor.peek().is_some() {
        blocks.push(parse_block(&mut cursor)?);
    }
    if blocks.is_empty() {
        return Err(cursor.error(
            1,
            "",
            "no server block (expected ZONE[:PORT] { ... })".into(),
        ));
    }
    Ok(blocks)
}

fn parse_block(cursor: &mut Cursor<'_>) -> Result<BlockSyntax, ConfigError> {
    let mut keys: Vec<Token> = Vec::new();
    loop {
        let Some(token) = cursor.next() else {
            let (line, text) = keys
                .last()
                .map_or((1, ""), |k| (k.end_line, k.text.as_str()));
            return Err(cursor.error(
                line,
                text,
                format!(
                    "expected \"{{\" after server block keys, found end of file after \"{text}\""
                ),
            ));
        };
        match token.kind {
            TokenKind::Open if keys.is_empty() => {
                return Err(cursor.error(
                    token.line,
                    "{",
                    "server block without zone keys before \"{\"".into(),
                ));
            }
            TokenKind::Open => break,
            TokenKind::Close => {
                return Err(cursor.error(
                    token.line,
                    "}",
                    "unexpected \"}\" without matching \"{\"".into(),
                ));
            }
            TokenKind::Word => {
                if let Some(prev) = keys.last() {
                    if token.line > prev.end_line && !prev.text.ends_with(',') {
                        return Err(cursor.error(
                            token.line,
                            &token.text,
                            format!(
                                "expected \"{{\" after server block keys, found \"{}\" on a new line",
                                token.text
                            ),
                        ));
                    }
                }
                keys.push(token.clone());
            }
        }
    }
    let line = keys.first().map_or(1, |k| k.line);
    let open_line = cursor
        .tokens
        .get(cursor.pos.saturating_sub(1))
        .map_or(line, |t| t.line);
    let lines = parse_lines(cursor, 1, open_line)?;
    Ok(BlockSyntax { keys, lines, line })
}

/// Lines up to and including the `}` that closes the block opened on `open_line`.
fn parse_lines(
    cursor: &mut Cursor<'_>,
    depth: usize,
    open_line: usize,
) -> Result<Vec<LineSyntax>, ConfigError> {
    let mut lines = Vec::new();
    loop {
        let Some(name) = cursor.next() else {
            return Err(cursor.error(
                open_line,
                "{",
                format!("unbalanced braces: \"{{\" opened at line {open_line} is never closed"),
            ));
        };
        match name.kind {
            TokenKind::Close => return Ok(lines),
            TokenKind::Open => {
                return Err(cursor.error(
                    name.line,
                    "{",
                    "unexpected \"{\": an opening brace must end the line of its directive".into(),
                ));
            }
            TokenKind::Word => lines.push(parse_line(cursor, name, depth)?),
        }
    }
}

fn parse_line(
    cursor: &mut Cursor<'_>,
    name: &Token,
    depth: usize,
) -> Result<LineSyntax, ConfigError> {
    let mut args = Vec::new();
    let mut last_line = name.end_line;
    let mut block = None;
    while let Some(token) = cursor.peek() {
        if token.line != last_line {
            break;
        }
        match token.kind {
            TokenKind::Word => {
                last_line = token.end_line;
                args.push(token.clone());
                cursor.next();
            }
            TokenKind::Close => break,
            TokenKind::Open => {
                if depth >= NESTING_MAX {
                    return Err(cursor.error(
                        token.line,
                        &name.text,
                        format!("\"{}\" cannot open a nested block", name.text),
                    ));
                }
                cursor.next();
                block = Some(parse_lines(cursor, depth + 1, token.line)?);
                break;
            }
        }
    }
    Ok(LineSyntax {
        name: name.clone(),
        args,
        block,
    })
}

#[cfg(test)]
mod tests {
    use super::super::lexer::tokenize;
    use super::*;

    fn parse(text: &str) -> Result<Vec<BlockSyntax>, ConfigError> {
        let file = Path::new("Corefile");
        let tokens = tokenize(text, file, &|_| None)?;
        parse_blocks(&tokens, file)
    }

    /// A compact rendering of the tree: `keys{name args{opt args;};}`.
    fn render(blocks: &[BlockSyntax]) -> String {
        fn lines(out: &mut String, list: &[LineSyntax]) {
            for l in list {
                out.push_str(&l.name.text);
                for a in &l.args {
                    out.push(' ');
                    out.push_str(&a.text);
                }
                if let Some(b) = &l.block {
                    out.push('{');
                    lines(out, b);
                    out.push('}');
                }
                out.push(';');
            }
        }
        let mut out = String::new();
        for b in blocks {
            let keys: Vec<&str> = b.keys.iter().map(|k| k.text.as_str()).collect();
            out.push_str(&keys.join(" "));
            out.push('{');
            lines(&mut out, &b.lines);
            out.push('}');
        }
        out
    }

    #[test]
    fn trees() {
        let cases: &[(&str, &str)] = &[
            (". {\n}", ".{}"),
            (". { }", ".{}"),
            (".:53 {\n errors\n cache 30\n}", ".:53{errors;cache 30;}"),
            ("a b,\n c {\n}", "a b, c{}"),
            ("a\n{\nlog\n}", "a{log;}"),
            (
                ". {\n forward . 1.1.1.1 {\n  force_tcp\n  policy random\n }\n errors\n}",
                ".{forward . 1.1.1.1{force_tcp;policy random;};errors;}",
            ),
            (
                ". { forward . x { force_tcp } }",
                ".{forward . x{force_tcp;};}",
            ),
            (". {\n errors }\na {\n}", ".{errors;}a{}"),
            (". {\n log \"{\" \"}\"\n}", ".{log { };}"),
        ];
        for (input, want) in cases {
            let got = parse(input).map(|b| render(&b));
            assert_eq!(got.as_deref().ok(), Some(*want), "input {input:?}: {got:?}");
        }
    }

    #[test]
    fn fails() {
        let cases: &[(&str, &str)] = &[
            ("", "Corefile:1: no server block"),
            ("# nothing\n", "Corefile:1: no server block"),
            (". {\n errors\n", "Corefile:1: unbalanced braces"),
            (
                ". {\n forward . x {\n force_tcp\n}\n",
                "Corefile:1: unbalanced braces",
            ),
            (
                ". {\n}\na {\n forward . x {\n force_tcp\n",
                "Corefile:4: unbalanced braces",
            ),
            (". {\n}\n}", "Corefile:3: unexpected \"}\""),
            (
                ".",
                "Corefile:1: expected \"{\" after server block keys, found end of file",
            ),
            (
                ".\nerrors\n",
                "Corefile:2: expected \"{\" after server block keys, found \"errors\"",
            ),
            ("{\n}", "Corefile:1: server block without zone keys"),
            (". {\n errors\n {\n }\n}", "Corefile:3: unexpected \"{\""),
            (
                ". {\n cache {\n success 1 {\n }\n }\n}",
                "Corefile:3: \"success\" cannot open a nested block",
            ),
        ];
        for (input, want) in cases {
            match parse(input) {
                Ok(b) => panic!("input {input:?} parsed: {}", render(&b)),
                Err(e) => assert!(
                    e.to_string().starts_with(want),
                    "input {input:?}: got {e}, want {want}"
                ),
            }
        }
    }
}
