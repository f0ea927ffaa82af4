//! Source code: the text as is, one section; the chunker splits it along the
//! syntax tree and names chunks after the definition they fall in.

use crate::text::{decode, single_section};
use cairn_core::{CodeLang, Document, Format};

/// Load a source file.
pub(crate) fn load(bytes: &[u8], lang: CodeLang) -> Document {
    let mut warnings = Vec::new();
    let text = decode(bytes, &mut warnings);
    single_section(Format::Code(lang), text, warnings)
}

/// Words that may precede a definition keyword on its line.
const MODIFIERS: &[&str] = &[
    "pub",
    "pub(crate)",
    "pub(super)",
    "pub(self)",
    "export",
    "default",
    "async",
    "unsafe",
    "extern",
    "static",
    "abstract",
    "final",
    "public",
    "private",
    "protected",
    "internal",
    "override",
    "declare",
    "sealed",
    "open",
    "data",
    "inline",
];

/// Keywords that open a definition.
const KEYWORDS: &[&str] = &[
    "fn",
    "def",
    "class",
    "struct",
    "enum",
    "trait",
    "impl",
    "func",
    "function",
    "interface",
    "type",
    "mod",
];

/// If `line` opens a definition (`fn`, `def`, `class`, `impl`, …, possibly
/// after modifiers such as `pub` or `export`), the trimmed line cut to at most
/// 80 characters.
pub(crate) fn definition_heading(line: &str) -> Option<String> {
    let trimmed = line.trim();
    let mut words = trimmed.split_whitespace().peekable();
    while let Some(w) = words.peek() {
        let is_modifier =
            MODIFIERS.contains(w) || w.starts_with("pub(in") || w.starts_with("extern\"");
        // `const fn` is a definition; `const x = 1` is not.
        if is_modifier || *w == "const" {
            words.next();
        } else {
            break;
        }
    }
    let word = words.next()?;
    let keyword_ok = KEYWORDS.iter().any(|k| {
        word == *k
            || word
                .strip_prefix(k)
                .and_then(|rest| rest.chars().next())
                .is_some_and(|c| matches!(c, '<' | '(' | '*'))
    });
    if !keyword_ok {
        return None;
    }
    // A definition names something: `type = 3` or `class:` are not definitions.
    if KEYWORDS.contains(&word) {
        let next = words.next()?;
        if next.starts_with(['=', '.', ':', ',', ';', ')']) {
            return None;
        }
    }
    Some(
        trimmed
            .chars()
            .take(80)
            .collect::<String>()
            .trim_end()
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_definitions() {
        for line in [
            "fn main() {",
            "    pub fn new(x: u32) -> Self {",
            "pub(crate) async fn go() {}",
            "impl<T> Foo for Bar<T> {",
            "def f(x):",
            "async def g():",
            "class A(B):",
            "func (s *S) Run() error {",
            "export default function App() {",
            "interface Shape {",
            "type Id = u64;",
            "pub const fn zero() -> u32 { 0 }",
            "mod tests {",
        ] {
            assert!(definition_heading(line).is_some(), "{line}");
        }
        for line in [
            "let x = 1;",
            "// fn commented()",
            "type = 3",
            "const x = 1;",
            "return def_value",
            "functional()",
            "",
        ] {
            assert!(definition_heading(line).is_none(), "{line}");
        }
        let long = format!("fn {}() {{", "a".repeat(200));
        assert_eq!(definition_heading(&long).unwrap().chars().count(), 80);
    }

    #[test]
    fn loads_code_as_one_section() {
        let doc = load(b"fn main() {}\r\n", CodeLang::Rust);
        assert_eq!(doc.format, Format::Code(CodeLang::Rust));
        assert_eq!(doc.text, "fn main() {}\n");
        assert_eq!(doc.sections.len(), 1);
    }
}
