//! Calibrating the critic on a QA set (`cairn eval --calibrate`): labelled
//! (text, passage) pairs from the set's questions and what retrieval returns
//! for them, split in two by question (even positions fit, odd positions are
//! held out and only reported), a logistic fit per judgement, and the
//! decision thresholds.
//!
//! Labels:
//! - **relevance** of a retrieved passage to a question: positive when the
//!   passage is from a gold document and contains a gold answer; negative
//!   when it is from another document (or the question is out of corpus);
//!   a gold document's passage without the answer is left out (unsure).
//! - **support** of a claim by a passage: the claim is the question followed
//!   by its first gold answer (a statement of the fact); labels as above.
//! - the **grade** (corrective retrieval): a question's best relevance
//!   probability over its top `k` passages; positive for in-corpus
//!   questions, negative for out-of-corpus ones.

use crate::metrics::{answer_matches, ends_with_path};
use crate::sets::QaItem;
use crate::Result;
use cairn_core::{Judgement, SearchMode};
use cairn_critic::calibration::{self, Fit};
use cairn_engine::Engine;
use serde::Serialize;

/// One judgement's fit and how it does on the held-out half.
#[derive(Debug, Clone, Serialize)]
pub struct JudgementReport {
    pub fit: Fit,
    pub held_out: HeldOut,
    /// The probability cut with the best balanced accuracy on the fit half.
    pub threshold: f32,
}

/// Figures on the held-out half.
#[derive(Debug, Clone, Serialize)]
pub struct HeldOut {
    pub samples: usize,
    pub positives: usize,
    pub log_loss: f64,
    pub brier: f64,
    pub auc: f64,
    /// Balanced accuracy at the threshold.
    pub balanced_accuracy: f64,
}

/// Corrective retrieval's grade model, thresholds and the refusals they give.
#[derive(Debug, Clone, Serialize)]
pub struct GradeReport {
    pub model: cairn_core::config::GradeModel,
    pub incorrect: f32,
    pub correct: f32,
    /// Out-of-corpus questions refused and in-corpus questions answered at
    /// `incorrect`, on the fit half and on the held-out half.
    pub fit_refused_out_of_corpus: f64,
    pub fit_answered_in_corpus: f64,
    pub held_out_refused_out_of_corpus: f64,
    pub held_out_answered_in_corpus: f64,
    pub held_out_questions: (usize, usize),
}

/// What the grade sees of one question (`--json` writes them; `--pool`
/// reads them back to fit the grade on several sets).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct QuestionFeatures {
    pub id: String,
    pub held_out: bool,
    pub covered: bool,
    /// A passage of the top k is from a gold document and holds the answer.
    pub relevant_in_top_k: bool,
    /// The best raw relevance (passage) in the top k.
    pub passage: f32,
    /// The best raw support of the question by a sentence of the top k.
    pub sentence: f32,
    /// The share of the question's keywords found in the top k passages.
    pub coverage: f32,
}

/// Everything `cairn eval --calibrate` finds.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationReport {
    pub critic: String,
    pub relevance: JudgementReport,
    pub support: JudgementReport,
    /// Present when the set has out-of-corpus questions.
    pub grade: Option<GradeReport>,
    pub calibrated_on: String,
    pub questions: Vec<QuestionFeatures>,
}

impl CalibrationReport {
    /// The `[critic]` table to put in a configuration file. Without
    /// out-of-corpus questions the grade thresholds are left out.
    pub fn toml(&self) -> String {
        let r = &self.relevance.fit.calibration;
        let s = &self.support.fit.calibration;
        let mut t = format!(
            "[critic]\nkind = \"{}\"\nrelevance = {{ a = {:.4}, b = {:.4} }}\nsupport = {{ a = {:.4}, b = {:.4} }}\nsupport_threshold = {:.3}\nkeep = {:.3}\n",
            self.critic, r.a, r.b, s.a, s.b, self.support.threshold, self.relevance.threshold
        );
        if let Some(g) = &self.grade {
            t.push_str(&format!(
                "grade = {{ sentence = {:.4}, coverage = {:.4}, bias = {:.4} }}\ncorrect = {:.3}\nincorrect = {:.3}\n",
                g.model.sentence, g.model.coverage, g.model.bias, g.correct, g.incorrect
            ));
        }
        t.push_str(&format!("calibrated_on = {:?}\n", self.calibrated_on));
        t
    }
}

fn held_out(fit: &Fit, threshold: f32, samples: &[(f32, bool)]) -> HeldOut {
    let (log_loss, brier) = calibration::losses(&fit.calibration, samples);
    let pos = samples.iter().filter(|s| s.1).count();
    let neg = samples.len() - pos;
    let tp = samples
        .iter()
        .filter(|s| s.1 && fit.calibration.apply(s.0) >= threshold)
        .count();
    let tn = samples
        .iter()
        .filter(|s| !s.1 && fit.calibration.apply(s.0) < threshold)
        .count();
    HeldOut {
        samples: samples.len(),
        positives: pos,
        log_loss,
        brier,
        auc: calibration::auc(samples),
        balanced_accuracy: (tp as f64 / pos.max(1) as f64 + tn as f64 / neg.max(1) as f64) / 2.0,
    }
}

fn report(
    judgement: Judgement,
    fit_s: &[(f32, bool)],
    held: &[(f32, bool)],
) -> Result<JudgementReport> {
    let fit = calibration::fit(fit_s).map_err(|e| {
        let e = match e {
            cairn_critic::CriticError::Calibration(m) => m,
            other => other.to_string(),
        };
        cairn_engine::EngineError::from(cairn_critic::CriticError::Calibration(format!(
            "{judgement}: {e}; the labelled pairs come from each question's top 10 passages (a gold page's passage holding the answer is positive, another page's negative), so add questions whose passages span several documents"
        )))
    })?;
    let threshold = calibration::best_threshold(&fit.calibration, fit_s);
    Ok(JudgementReport {
        held_out: held_out(&fit, threshold, held),
        fit,
        threshold,
    })
}

/// The critic's raw scores, its error as the engine's.
fn raw_scores(
    critic: &dyn cairn_core::Critic,
    judgement: Judgement,
    pairs: &[(&str, &str)],
) -> Result<Vec<f32>> {
    critic
        .raw(judgement, pairs)
        .map_err(|e| cairn_engine::EngineError::from(cairn_critic::CriticError::from(e)).into())
}

/// Collect the pairs, fit, and choose the thresholds. `k` is the number of
/// passages an answer reads (`generate.top_k`); `label` says where the
/// figures come from (it goes into `calibrated_on`).
/// `pooled` holds other sets' question features (from their own
/// calibration runs with the same critic), fitted into the grade together
/// with this set's; each keeps its fit or held-out half.
pub fn calibrate(
    engine: &Engine,
    items: &[QaItem],
    mode: SearchMode,
    k: usize,
    label: &str,
    pooled: &[QuestionFeatures],
    progress: &dyn cairn_core::Progress,
) -> Result<CalibrationReport> {
    let critic = engine.critic();
    // [fit, held out] per judgement.
    let mut rel: [Vec<(f32, bool)>; 2] = [vec![], vec![]];
    let mut sup: [Vec<(f32, bool)>; 2] = [vec![], vec![]];
    let (mut n_in, mut n_out) = (0usize, 0usize);
    let mut features = Vec::new();
    progress.begin("questions", items.len() as u64);
    for q in items {
        // Alternate within each group, so both halves get both groups.
        let ooc = q.is_out_of_corpus();
        let half = if ooc {
            n_out += 1;
            (n_out - 1) % 2
        } else {
            n_in += 1;
            (n_in - 1) % 2
        };
        let hits = engine.search(&q.question, 10, mode)?;
        let labels: Vec<Option<bool>> = hits
            .iter()
            .map(|h| {
                if ooc {
                    return Some(false);
                }
                let gold = q.gold.iter().any(|g| ends_with_path(&h.doc, g));
                match (gold, answer_matches(&h.text, &q.answers)) {
                    (true, true) => Some(true),
                    (false, _) => Some(false),
                    (true, false) => None,
                }
            })
            .collect();
        // Passages as a rerank shows them to this critic.
        let passages: Vec<std::borrow::Cow<'_, str>> = hits
            .iter()
            .map(|h| cairn_engine::critic_text(critic, h))
            .collect();
        let pairs: Vec<(&str, &str)> = passages
            .iter()
            .map(|p| (q.question.as_str(), p.as_ref()))
            .collect();
        let raw = raw_scores(critic, Judgement::Relevance, &pairs)?;
        for (r, l) in raw.iter().zip(&labels) {
            if let Some(l) = l {
                rel[half].push((*r, *l));
            }
        }
        let top = raw
            .iter()
            .take(k)
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        if !hits.is_empty() {
            let relevant = labels.iter().take(k).any(|l| *l == Some(true));
            let texts: Vec<&str> = hits.iter().take(k).map(|h| h.text.as_str()).collect();
            // The same features the engine grades a retrieval by.
            let f = cairn_critic::crag::features(&q.question, &texts, critic)
                .map_err(cairn_engine::EngineError::from)?;
            features.push(QuestionFeatures {
                id: q.id.clone(),
                held_out: half == 1,
                covered: !ooc,
                relevant_in_top_k: relevant,
                passage: top,
                sentence: f.sentence,
                coverage: f.coverage,
            });
        }
        if let Some(answer) = q.answers.first() {
            let claim = format!("{} {}", q.question.trim(), answer);
            let pairs: Vec<(&str, &str)> = hits
                .iter()
                .map(|h| (claim.as_str(), h.text.as_str()))
                .collect();
            let raw = raw_scores(critic, Judgement::Support, &pairs)?;
            for (r, l) in raw.iter().zip(&labels) {
                if let Some(l) = l {
                    sup[half].push((*r, *l));
                }
            }
        }
        progress.advance(1);
    }
    progress.end();
    let relevance = report(Judgement::Relevance, &rel[0], &rel[1])?;
    let support = report(Judgement::Support, &sup[0], &sup[1])?;
    let mut all = features.clone();
    all.extend(pooled.iter().cloned());
    let grade = if all.iter().filter(|f| !f.covered).count() >= 2 && n_in >= 2 {
        Some(fit_grade(&all)?)
    } else {
        None
    };
    Ok(CalibrationReport {
        critic: critic.name().to_string(),
        relevance,
        support,
        grade,
        calibrated_on: label.to_string(),
        questions: features,
    })
}

/// Fit the grade model on the fit half's questions (covered or not, from the
/// sentence and coverage features), then its thresholds: `incorrect` at the
/// best balanced accuracy between in-corpus and out-of-corpus questions;
/// `correct` at the lowest probability above which 90% of the in-corpus
/// questions have a relevant passage in their top k.
fn fit_grade(features: &[QuestionFeatures]) -> Result<GradeReport> {
    let fit: Vec<&QuestionFeatures> = features.iter().filter(|f| !f.held_out).collect();
    let held: Vec<&QuestionFeatures> = features.iter().filter(|f| f.held_out).collect();
    let xs: Vec<Vec<f32>> = fit.iter().map(|f| vec![f.sentence, f.coverage]).collect();
    let ys: Vec<bool> = fit.iter().map(|f| f.covered).collect();
    let (w, bias) = cairn_critic::calibration::fit_logistic(&xs, &ys)
        .map_err(cairn_engine::EngineError::from)?;
    let model = cairn_core::config::GradeModel {
        sentence: w[0],
        coverage: w[1],
        bias,
    };
    let p = |f: &QuestionFeatures| model.probability(f.sentence, f.coverage);
    let covered: Vec<(f32, bool)> = fit.iter().map(|f| (p(f), f.covered)).collect();
    let incorrect = calibration::balanced_threshold(&covered);
    let mut cuts: Vec<f32> = fit
        .iter()
        .filter(|f| f.covered && p(f) >= incorrect)
        .map(|f| p(f))
        .collect();
    cuts.sort_by(f32::total_cmp);
    let correct = cuts
        .iter()
        .copied()
        .find(|&t| {
            let above: Vec<_> = fit.iter().filter(|f| f.covered && p(f) >= t).collect();
            !above.is_empty()
                && above.iter().filter(|f| f.relevant_in_top_k).count() as f64 / above.len() as f64
                    >= 0.90
        })
        .unwrap_or(1.0)
        .max(incorrect);
    let rates = |b: &[&QuestionFeatures]| {
        let outs: Vec<_> = b.iter().filter(|f| !f.covered).collect();
        let ins: Vec<_> = b.iter().filter(|f| f.covered).collect();
        (
            outs.iter().filter(|f| p(f) < incorrect).count() as f64 / outs.len().max(1) as f64,
            ins.iter().filter(|f| p(f) >= incorrect).count() as f64 / ins.len().max(1) as f64,
            (ins.len(), outs.len()),
        )
    };
    let (fr, fa, _) = rates(&fit);
    let (hr, ha, hn) = rates(&held);
    Ok(GradeReport {
        model,
        incorrect,
        correct,
        fit_refused_out_of_corpus: fr,
        fit_answered_in_corpus: fa,
        held_out_refused_out_of_corpus: hr,
        held_out_answered_in_corpus: ha,
        held_out_questions: hn,
    })
}
