//! A critic for the unit tests: a real function of the texts (the share of
//! the first text's words, four letters or more, that the second contains),
//! so the tests exercise the logic, not a table of answers.

use cairn_core::{Calibration, Critic, CriticError, Judgement};

pub struct WordOverlap(pub Calibration);

impl Critic for WordOverlap {
    fn name(&self) -> &str {
        "word-overlap"
    }

    fn raw(&self, _: Judgement, pairs: &[(&str, &str)]) -> Result<Vec<f32>, CriticError> {
        Ok(pairs
            .iter()
            .map(|(a, b)| {
                let b = b.to_lowercase();
                let words: Vec<String> = a
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| w.len() > 3)
                    .map(str::to_lowercase)
                    .collect();
                words.iter().filter(|w| b.contains(w.as_str())).count() as f32
                    / words.len().max(1) as f32
            })
            .collect())
    }

    fn calibration(&self, _: Judgement) -> Calibration {
        self.0
    }
}
