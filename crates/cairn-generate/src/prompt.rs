//! Prompt building: retrieved passages become numbered sources [1]..[k]
//! under a token budget, best first, with overlapping passages of one
//! document merged so the model never reads the same sentence twice.

use crate::{ChatMessage, GenerateError, Generator, Result, Role};
use cairn_core::{ChunkId, Hit};
use serde::Serialize;

/// The instructions every answer is generated under.
pub const SYSTEM_PROMPT: &str =
    "You answer questions using only the numbered sources given with each question. \
After the answer, name the source it comes from by its number in square brackets, like [1]. \
If the sources do not contain the answer, say that the documents do not cover it. \
Be brief and do not invent facts.";

/// A worked example shown to the model before the real question: small
/// models follow a demonstrated citation format far more reliably than an
/// instruction alone. Its content is deliberately unrelated to any corpus.
const EXAMPLE_QUESTION: &str = "Sources:\n\n[1] pets.md — Cats\nOur cat Tom is nine years old and sleeps in the kitchen.\n\n[2] garden.md — Plants\nThe roses flower in June.\n\nQuestion: How old is Tom?";
const EXAMPLE_ANSWER: &str = "Tom is nine years old [1].";

/// The instructions of a second attempt, after a check found sentences that
/// no source supports: shorter answers, facts copied, a marker on every
/// sentence.
pub const STRICT_SYSTEM_PROMPT: &str =
    "You answer questions using only the numbered sources given with each question. \
Answer in one to three short sentences. Copy the facts from the sources, word for word where you can. \
End every sentence with the number of the source it comes from in square brackets, like [1]. \
If the sources do not contain the answer, reply exactly: The documents do not cover this.";

/// The refusal [`STRICT_SYSTEM_PROMPT`] asks for, word for word.
pub const STRICT_REFUSAL: &str = "The documents do not cover this.";

/// A GBNF grammar (llama.cpp's) for a strict answer over `sources`
/// numbered sources: one or more sentences, each ending with a marker
/// `[n]` (n in 1..=sources) just before or just after its full stop, or
/// exactly
/// [`STRICT_REFUSAL`]. A sentence may hold dots that do not end it: in a
/// number (`3.11`) or before a lower-case letter (`os.path`, `e.g`); any
/// other dot would end a sentence without its marker, so the grammar has
/// none. No newlines: a strict answer is one paragraph.
pub fn citation_grammar(sources: usize) -> String {
    let n: Vec<String> = (1..=sources.max(1)).map(|i| format!("\"{i}\"")).collect();
    format!(
        r#"root ::= refusal | sentence (" " sentence)*
refusal ::= "{STRICT_REFUSAL}"
sentence ::= body (" [" n "]" [.!?] | [.!?] " [" n "]")
body ::= first (plain | number | inner)*
first ::= [^ \[\]\n.!?0-9] | number
plain ::= [^\[\]\n.!?0-9]
number ::= [0-9]+ ("." [0-9]+)*
inner ::= [.!?] [a-z_(]
n ::= {}
"#,
        n.join(" | ")
    )
}

/// How strictly the model is instructed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Instructions {
    /// [`SYSTEM_PROMPT`].
    #[default]
    Normal,
    /// [`STRICT_SYSTEM_PROMPT`], for a second attempt.
    Strict,
}

/// One numbered source: one passage, or several overlapping passages of one
/// document merged into one span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    /// The number the model cites, from 1.
    pub n: usize,
    pub doc: String,
    pub heading: String,
    /// Character offsets into the document text.
    pub start: u64,
    pub end: u64,
    pub text: String,
    /// The catalog chunks this source is made of.
    pub chunks: Vec<ChunkId>,
    /// The best retrieval score among its chunks.
    pub score: f32,
    /// The PDF page the source starts on (`Hit::page`); absent for other formats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

/// A prompt ready for a [`Generator`].
#[derive(Debug, Clone)]
pub struct Prompt {
    pub messages: Vec<ChatMessage>,
    pub sources: Vec<Source>,
    /// Tokens of the whole prompt as counted by the generator.
    pub tokens: usize,
    /// Sources left out because the budget was spent.
    pub omitted: usize,
    /// Whether the last included source was shortened to fit.
    pub truncated: bool,
}

/// Merge hits of one document whose character spans overlap or touch. The
/// merged source takes the place of its best-ranked member, so the order of
/// `hits` (best first) is kept.
pub fn merge_overlapping(hits: &[Hit]) -> Vec<Source> {
    let mut out: Vec<Source> = Vec::new();
    for h in hits {
        let mut s = Source {
            n: 0,
            doc: h.doc.clone(),
            heading: h.heading.clone(),
            start: h.start,
            end: h.end,
            text: h.text.clone(),
            chunks: vec![h.chunk],
            score: h.score,
            page: h.page,
        };
        // A new passage may bridge two earlier sources: merge until no source
        // overlaps, then put the result where its best member was.
        let mut at: Option<usize> = None;
        while let Some(i) = out
            .iter()
            .position(|o| o.doc == s.doc && s.start <= o.end && o.start <= s.end)
        {
            let o = out.remove(i);
            at = Some(at.map_or(i, |p| p.min(i)));
            s = union(o, s);
        }
        match at {
            Some(p) => out.insert(p, s),
            None => out.push(s),
        }
    }
    for (i, s) in out.iter_mut().enumerate() {
        s.n = i + 1;
    }
    out
}

/// Union of two overlapping or touching spans of one document, `a` ranked
/// better than `b`.
fn union(a: Source, b: Source) -> Source {
    let (first, second) = if a.start <= b.start {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let mut text = first.text.clone();
    let end = first.end.max(second.end);
    if second.end > first.end {
        // Characters of `second` beyond `first`'s end.
        let skip = (first.end - second.start) as usize;
        text.extend(second.text.chars().skip(skip));
    }
    let mut chunks = a.chunks.clone();
    chunks.extend(b.chunks.iter().copied());
    Source {
        n: 0,
        doc: a.doc.clone(),
        heading: first.heading.clone(),
        start: first.start,
        end,
        text,
        chunks,
        score: a.score.max(b.score),
        page: first.page,
    }
}

/// How a source is shown to the model.
pub fn render_source(s: &Source) -> String {
    let title = if s.heading.is_empty() {
        s.doc.clone()
    } else {
        format!("{} — {}", s.doc, s.heading)
    };
    format!("[{}] {}\n{}\n", s.n, title, s.text.trim())
}

fn user_message(sources: &[Source], question: &str) -> String {
    let mut m = String::from("Sources:\n\n");
    for s in sources {
        m.push_str(&render_source(s));
        m.push('\n');
    }
    m.push_str("Question: ");
    m.push_str(question.trim());
    m
}

/// Build the prompt: the system instructions, earlier turns of the
/// conversation (`history`, oldest first), then the sources and the question.
/// Sources are added best first while they fit in
/// `context_window - answer_tokens`; the first source that does not fit is
/// shortened when nothing else fits. Earlier turns are dropped, oldest first,
/// before the question is refused as too long.
pub fn build(
    generator: &dyn Generator,
    history: &[ChatMessage],
    question: &str,
    hits: &[Hit],
    answer_tokens: usize,
) -> Result<Prompt> {
    build_from(
        generator,
        history,
        question,
        &merge_overlapping(hits),
        answer_tokens,
        Instructions::Normal,
    )
}

/// [`build`] from sources already merged (and perhaps refined: reduced to
/// their relevant sentences), under the given instructions.
pub fn build_from(
    generator: &dyn Generator,
    history: &[ChatMessage],
    question: &str,
    sources: &[Source],
    answer_tokens: usize,
    instructions: Instructions,
) -> Result<Prompt> {
    let window = generator.context_window();
    let budget = window.saturating_sub(answer_tokens);
    let system = match instructions {
        Instructions::Normal => SYSTEM_PROMPT,
        Instructions::Strict => STRICT_SYSTEM_PROMPT,
    };
    let mut history: Vec<ChatMessage> = history
        .iter()
        .filter(|m| m.role != Role::System)
        .cloned()
        .collect();

    // Chat templates add a few tokens per message; count the messages as the
    // template would see them plus a margin.
    let count = |msgs: &[ChatMessage]| -> Result<usize> {
        let mut n = 0;
        for m in msgs {
            n += generator.count_tokens(&m.content)? + 8;
        }
        Ok(n + 8)
    };
    let assemble = |history: &[ChatMessage], srcs: &[Source]| {
        let mut msgs = vec![
            ChatMessage::system(system),
            ChatMessage::user(EXAMPLE_QUESTION),
            ChatMessage::assistant(EXAMPLE_ANSWER),
        ];
        msgs.extend(history.iter().cloned());
        msgs.push(ChatMessage::user(user_message(srcs, question)));
        msgs
    };

    // The frame without sources must fit, dropping old turns if needed.
    let mut frame = count(&assemble(&history, &[]))?;
    while frame > budget && !history.is_empty() {
        history.drain(..history.len().min(2));
        frame = count(&assemble(&history, &[]))?;
    }
    if frame > budget {
        return Err(GenerateError::PromptTooLong {
            prompt: frame,
            window,
            reserved: answer_tokens,
        });
    }

    let mut chosen: Vec<Source> = Vec::new();
    let mut used = frame;
    let mut truncated = false;
    for s in sources {
        let mut s = s.clone();
        s.n = chosen.len() + 1;
        let cost = generator.count_tokens(&render_source(&s))? + 2;
        if used + cost <= budget {
            used += cost;
            chosen.push(s);
            continue;
        }
        if chosen.is_empty() {
            // Shorten the best source to what is left rather than answer blind.
            let room = budget - used;
            let chars: Vec<char> = s.text.chars().collect();
            let mut keep = chars.len() * room / cost.max(1);
            while keep > 0 {
                let mut t = s.clone();
                t.text = chars[..keep].iter().collect();
                t.end = t.start + keep as u64;
                let c = generator.count_tokens(&render_source(&t))? + 2;
                if used + c <= budget {
                    chosen.push(t);
                    truncated = true;
                    break;
                }
                keep = keep * 9 / 10;
            }
        }
        break;
    }
    let omitted = sources.len() - chosen.len();
    let messages = assemble(&history, &chosen);
    let tokens = count(&messages)?;
    Ok(Prompt {
        messages,
        sources: chosen,
        tokens,
        omitted,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_citation_grammar_lists_every_source_number() {
        let g = citation_grammar(3);
        assert!(g.contains(r#"n ::= "1" | "2" | "3""#), "{g}");
        assert!(g.contains(STRICT_REFUSAL));
        assert!(g.starts_with("root ::= "));
        assert!(citation_grammar(0).contains(r#"n ::= "1""#));
        assert!(citation_grammar(12).contains(r#""11" | "12""#));
    }
    use crate::{Generation, Sampling, TokenSink};

    /// Counts whitespace-separated words as tokens: enough to test budgets.
    struct Words(usize);
    impl Generator for Words {
        fn model_name(&self) -> &str {
            "words"
        }
        fn context_window(&self) -> usize {
            self.0
        }
        fn count_tokens(&self, text: &str) -> Result<usize> {
            Ok(text.split_whitespace().count())
        }
        fn generate(
            &self,
            _: &[ChatMessage],
            _: &Sampling,
            _: &mut dyn TokenSink,
        ) -> Result<Generation> {
            unreachable!("prompt tests never generate")
        }
    }

    fn hit(doc: &str, start: u64, text: &str, score: f32, chunk: u64) -> Hit {
        Hit {
            rank: 0,
            score,
            doc: doc.into(),
            chunk,
            heading: "H".into(),
            start,
            end: start + text.chars().count() as u64,
            text: text.into(),
            page: None,
        }
    }

    #[test]
    fn overlapping_chunks_of_one_document_are_merged_in_place() {
        let doc = "abcdefghijklmnopqrstuvwxyz";
        let hits = vec![
            hit("a.md", 10, &doc[10..20], 0.9, 1),
            hit("b.md", 0, "other", 0.8, 2),
            hit("a.md", 0, &doc[0..12], 0.7, 3),
            hit("a.md", 18, &doc[18..26], 0.6, 4),
        ];
        let s = merge_overlapping(&hits);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].doc, "a.md");
        assert_eq!(s[0].text, doc);
        assert_eq!((s[0].start, s[0].end), (0, 26));
        assert_eq!(s[0].chunks, vec![1, 3, 4]);
        assert_eq!(s[0].n, 1);
        assert_eq!(s[1].doc, "b.md");
        assert_eq!(s[1].n, 2);
    }

    #[test]
    fn disjoint_chunks_stay_separate_and_numbered_in_rank_order() {
        let hits = vec![
            hit("a.md", 0, "one two", 0.9, 1),
            hit("a.md", 100, "three four", 0.8, 2),
        ];
        let s = merge_overlapping(&hits);
        assert_eq!(s.iter().map(|s| s.n).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(s[1].start, 100);
    }

    #[test]
    fn budget_keeps_best_sources_and_renumbers() {
        let words = |n: usize| vec!["w"; n].join(" ");
        let hits = vec![
            hit("a.md", 0, &words(50), 0.9, 1),
            hit("b.md", 0, &words(50), 0.8, 2),
            hit("c.md", 0, &words(50), 0.7, 3),
        ];
        // Room for the frame, the answer and exactly two sources.
        let frame = build(&Words(10_000), &[], "what is it?", &[], 100)
            .unwrap()
            .tokens;
        let one = Words(0)
            .count_tokens(&render_source(&merge_overlapping(&hits)[0]))
            .unwrap()
            + 2;
        let g = Words(frame + 100 + 2 * one + one / 2);
        let p = build(&g, &[], "what is it?", &hits, 100).unwrap();
        assert_eq!(p.sources.len(), 2, "only two sources fit");
        assert_eq!(p.omitted, 1);
        assert!(p.tokens <= g.0 - 100);
        let user = &p.messages.last().unwrap().content;
        assert!(user.contains("[1] a.md — H"));
        assert!(user.contains("[2] b.md — H"));
        assert!(!user.contains("c.md"));
        assert!(user.contains("Question: what is it?"));
        assert_eq!(p.messages[0].role, Role::System);
    }

    #[test]
    fn a_best_source_too_large_is_shortened_not_dropped() {
        let text = vec!["w"; 500].join(" ");
        let hits = vec![hit("a.md", 0, &text, 0.9, 1)];
        let p = build(&Words(400), &[], "q?", &hits, 100).unwrap();
        assert_eq!(p.sources.len(), 1);
        assert!(p.truncated);
        assert!(p.tokens <= 300, "{}", p.tokens);
    }

    #[test]
    fn question_longer_than_the_window_is_an_error() {
        let q = vec!["word"; 400].join(" ");
        let err = build(&Words(400), &[], &q, &[], 100).unwrap_err();
        assert!(matches!(err, GenerateError::PromptTooLong { .. }), "{err}");
    }

    #[test]
    fn old_turns_are_dropped_before_the_question_is_refused() {
        let long = vec!["w"; 120].join(" ");
        let history = vec![
            ChatMessage::user(long.clone()),
            ChatMessage::assistant(long.clone()),
            ChatMessage::user("short"),
            ChatMessage::assistant("short"),
        ];
        let p = build(&Words(400), &history, "q?", &[], 100).unwrap();
        assert_eq!(
            p.messages.len(),
            6,
            "system + example pair + last two turns + question"
        );
    }
}
