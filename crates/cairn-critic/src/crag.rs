//! Corrective retrieval (CRAG): grade what was retrieved, then act on it.
//!
//! - **Correct** (the best passage's relevance probability reaches `upper`):
//!   refine: keep only the sentences of each passage that the critic scores
//!   as relevant, so a small model reads less and better.
//! - **Ambiguous** (between `lower` and `upper`): refine, and widen the search
//!   (more candidates, and the question rewritten as its keywords).
//! - **Incorrect** (below `lower`): retry once with the rewritten question;
//!   if that is still incorrect, the documents do not cover the question.

use crate::sentences;
use crate::Result;
use cairn_core::{Critic, Judgement};
use serde::{Deserialize, Serialize};

/// The grade of a set of retrieved passages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grade {
    Correct,
    Ambiguous,
    Incorrect,
}

/// Relevance probabilities that separate the grades.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub upper: f32,
    pub lower: f32,
}

/// What a retrieval is graded on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Features {
    /// The critic's best raw support of the question by a sentence of the
    /// passages (a question is "supported" by the sentence that answers it).
    pub sentence: f32,
    /// The share of the question's keywords the passages contain.
    pub coverage: f32,
}

/// The grade's features for `question` over `passages` (the top k).
pub fn features(question: &str, passages: &[&str], critic: &dyn Critic) -> Result<Features> {
    let pairs: Vec<(&str, &str)> = passages.iter().map(|p| (question, *p)).collect();
    let sentence = critic
        .raw(Judgement::Support, &pairs)?
        .into_iter()
        .fold(f32::NEG_INFINITY, f32::max);
    Ok(Features {
        sentence: if passages.is_empty() { -1.0 } else { sentence },
        coverage: coverage(question, passages),
    })
}

/// Grade by a probability that the documents answer the question (the
/// grade model's, or the best passage's relevance).
pub fn grade_of(p: f32, t: Thresholds) -> Grade {
    grade(&[p], t)
}

/// Grade by the best of the given probabilities.
pub fn grade(relevance: &[f32], t: Thresholds) -> Grade {
    let best = relevance.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if best >= t.upper {
        Grade::Correct
    } else if best >= t.lower {
        Grade::Ambiguous
    } else {
        Grade::Incorrect
    }
}

/// Words that carry no topic in a question.
const QUESTION_WORDS: &[&str] = &[
    "a", "about", "an", "and", "are", "as", "at", "be", "by", "can", "could", "do", "does", "did",
    "for", "from", "get", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "of",
    "on", "or", "should", "so", "than", "that", "the", "their", "then", "there", "these", "this",
    "to", "use", "using", "was", "what", "when", "where", "which", "who", "why", "will", "with",
    "would", "you", "your", "we", "our", "there", "any", "some", "way", "tell", "happens",
    "happen", "give", "gives", "want", "need", "thing", "things",
];

/// The question rewritten as its keywords: question words and function
/// words dropped, identifiers (`os.path.join`, `--flag`) kept whole.
pub fn keywords(question: &str) -> String {
    question
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !(c.is_alphanumeric() || "_-.()".contains(c))))
        .map(|w| w.trim_end_matches(['.', '?']))
        .filter(|w| !w.is_empty() && !QUESTION_WORDS.contains(&w.to_lowercase().as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The share of the question's keywords (lower case, three letters or
/// more) that occur in at least one of `passages`: a question about
/// something the documents never name scores low, however close its
/// embedding is to theirs.
pub fn coverage(question: &str, passages: &[&str]) -> f32 {
    share_found(&keyword_set(question), passages)
}

/// The question's keywords, lower case, three letters or more.
pub fn keyword_set(question: &str) -> Vec<String> {
    keywords(question)
        .split_whitespace()
        .map(|w| w.to_lowercase())
        .filter(|w| w.chars().count() >= 3)
        .collect()
}

/// The share of `keywords` that occur (as substrings, case-insensitively)
/// in at least one of `texts`; 1 when there are no keywords.
pub fn share_found(keywords: &[String], texts: &[&str]) -> f32 {
    if keywords.is_empty() {
        return 1.0;
    }
    let text: Vec<String> = texts.iter().map(|p| p.to_lowercase()).collect();
    let found = keywords
        .iter()
        .filter(|w| text.iter().any(|t| t.contains(w.as_str())))
        .count();
    found as f32 / keywords.len() as f32
}

/// A passage reduced to its relevant sentences.
#[derive(Debug, Clone, PartialEq)]
pub struct Refined {
    /// The kept sentences in passage order, joined by " … " where sentences
    /// were left out between them.
    pub text: String,
    /// Sentences kept and in all.
    pub kept: usize,
    pub total: usize,
}

/// Keep the sentences of each passage whose relevance probability to
/// `question` reaches `keep` (each passage keeps at least its best
/// sentence, and a passage of one sentence is kept whole).
pub fn refine(
    question: &str,
    passages: &[&str],
    critic: &dyn Critic,
    keep: f32,
) -> Result<Vec<Refined>> {
    let split: Vec<Vec<std::ops::Range<usize>>> =
        passages.iter().map(|p| sentences::split(p)).collect();
    let pairs: Vec<(&str, &str)> = passages
        .iter()
        .zip(&split)
        .flat_map(|(p, rs)| rs.iter().map(move |r| (question, &p[r.clone()])))
        .collect();
    let probs = critic.score(Judgement::Relevance, &pairs)?;
    let mut at = 0;
    let mut out = Vec::with_capacity(passages.len());
    for (p, rs) in passages.iter().zip(&split) {
        let ps = &probs[at..at + rs.len()];
        at += rs.len();
        if rs.len() <= 1 {
            out.push(Refined {
                text: p.trim().to_string(),
                kept: rs.len(),
                total: rs.len(),
            });
            continue;
        }
        let best = ps
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap_or(0);
        let kept: Vec<usize> = (0..rs.len())
            .filter(|&i| i == best || ps[i] >= keep)
            .collect();
        let mut text = String::new();
        let mut prev: Option<usize> = None;
        for &i in &kept {
            if let Some(j) = prev {
                text.push_str(if i == j + 1 { " " } else { " … " });
            } else if i > 0 {
                text.push_str("… ");
            }
            text.push_str(&p[rs[i].clone()]);
            prev = Some(i);
        }
        if prev.is_some_and(|j| j + 1 < rs.len()) {
            text.push_str(" …");
        }
        out.push(Refined {
            text,
            kept: kept.len(),
            total: rs.len(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::WordOverlap;
    use cairn_core::Calibration;

    #[test]
    fn grades_by_the_best_passage() {
        let t = Thresholds {
            upper: 0.7,
            lower: 0.3,
        };
        assert_eq!(grade(&[0.2, 0.8], t), Grade::Correct);
        assert_eq!(grade(&[0.5, 0.1], t), Grade::Ambiguous);
        assert_eq!(grade(&[0.1], t), Grade::Incorrect);
        assert_eq!(grade(&[], t), Grade::Incorrect);
    }

    #[test]
    fn keywords_keep_identifiers() {
        assert_eq!(
            keywords("What does os.path.join() do when an argument is absolute?"),
            "os.path.join() argument absolute"
        );
        assert_eq!(
            keywords("How do I use --upgrade-deps with venv?"),
            "--upgrade-deps venv"
        );
    }

    const OVERLAP: WordOverlap = WordOverlap(Calibration { a: 10.0, b: -5.0 });

    #[test]
    fn refine_keeps_relevant_sentences_in_order() {
        let p =
            "Intro here. The venv module creates environments. More venv details. Unrelated end.";
        let r = refine("about venv", &[p, "Single sentence only"], &OVERLAP, 0.5).unwrap();
        assert_eq!(
            r[0].text,
            "… The venv module creates environments. More venv details. …"
        );
        assert_eq!((r[0].kept, r[0].total), (2, 4));
        // One sentence: kept whole, even when irrelevant.
        assert_eq!(r[1].text, "Single sentence only");
    }
}
