//! Answering: retrieve → judge what was retrieved → build the prompt →
//! generate → resolve citations → check every sentence against the sources.
//! The generator is passed in, so the same pipeline runs on the embedded
//! GGUF engine and on any OpenAI-compatible server; the critic is the
//! engine's (the configuration's `[critic]`).
//!
//! - The **relevance gate**: without corrective retrieval, the best passage's
//!   cosine similarity must reach `generate.min_relevance`; with it (CRAG),
//!   the critic grades the passages: correct → refine, ambiguous → widen
//!   and refine, incorrect → retry with the question's keywords, then say
//!   that the documents do not cover the question.
//! - The **check** (Self-RAG): each sentence of the answer is scored against
//!   every source; markers are corrected; when a sentence is unsupported the
//!   answer is generated once more under stricter instructions, and what is
//!   still unsupported is flagged. When nothing is supported and the
//!   fallback is `extractive`, the answer is the sources' best sentences.
//! - **Extractive** answers: the sources' best sentences, verbatim, with
//!   their spans; no generator.

use crate::{Engine, Result};
use cairn_core::{Critic, Hit, Judgement, SearchMode};
use cairn_critic::crag::{self, Grade, Thresholds};
use cairn_critic::extract::{self, ExtractOptions};
use cairn_critic::support::{self, SentenceSupport};
use cairn_generate::citations::{self, Citation};
use cairn_generate::prompt::{self, Instructions, Source};
use cairn_generate::{ChatMessage, Finish, Generator, Sampling, TokenSink};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The longest question accepted, in characters.
pub const MAX_QUESTION_CHARS: usize = 4000;

/// How to answer.
#[derive(Debug, Clone)]
pub struct AskOptions {
    /// Passages to retrieve.
    pub k: usize,
    pub mode: SearchMode,
    /// Without corrective retrieval: below this cosine similarity between
    /// the question and the best passage, the answer is "the documents do
    /// not cover this".
    pub min_relevance: f32,
    pub sampling: Sampling,
    /// Check each generated sentence against the sources, regenerate once
    /// when one is unsupported.
    pub check: bool,
    /// Corrective retrieval (grade, widen or retry, refine).
    pub crag: bool,
    /// Answer with the sources' best sentences instead of generating.
    pub extractive: bool,
    /// Answer extractively when no generated sentence is supported.
    pub fallback_extractive: bool,
    /// Sentences in an extractive answer.
    pub extract_sentences: usize,
    /// The strict attempt follows [`prompt::citation_grammar`] when the
    /// generator enforces grammars.
    pub grammar: bool,
    /// A sentence is supported at this support probability.
    pub support_threshold: f32,
    /// Corrective retrieval's grades (relevance probabilities).
    pub grades: Thresholds,
    /// Refinement keeps sentences at this relevance probability.
    pub keep: f32,
    /// The grade's model (features → probability that the documents answer).
    pub grade_model: cairn_core::config::GradeModel,
}

impl AskOptions {
    /// The options the configuration gives (`generate.*`, `critic.*`,
    /// `search.mode`).
    pub fn from_config(cfg: &cairn_core::config::Config) -> AskOptions {
        let g = &cfg.generate;
        let c = &cfg.critic;
        AskOptions {
            k: g.top_k,
            mode: cfg.search.mode,
            min_relevance: g.min_relevance,
            sampling: Sampling {
                temperature: g.temperature,
                top_p: g.top_p,
                seed: g.seed,
                max_tokens: g.max_tokens,
                stop: vec![],
                repeat_penalty: g.repeat_penalty,
                grammar: None,
                adapter: None,
            },
            check: g.check,
            crag: g.crag,
            extractive: g.extractive,
            fallback_extractive: g.fallback == "extractive",
            extract_sentences: g.extract_sentences,
            grammar: g.grammar,
            support_threshold: c.support_threshold,
            grades: Thresholds {
                upper: c.correct,
                lower: c.incorrect,
            },
            keep: c.keep,
            grade_model: c.grade,
        }
    }
}

/// Milliseconds per stage.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Timings {
    pub embed: f64,
    pub search: f64,
    /// The critic: grading, refining, checking and extracting, together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critic: Option<f64>,
    /// From the start of generation to its first token; `None` when nothing
    /// was generated.
    pub first_token: Option<f64>,
    /// Generation, all attempts together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generate: Option<f64>,
    pub total: f64,
}

/// How the answer was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Generated once.
    Generated,
    /// Generated a second time under stricter instructions after the check.
    Regenerated,
    /// The sources' best sentences (asked for).
    Extractive,
    /// The sources' best sentences, because nothing generated was supported.
    FallbackExtractive,
    /// Not answered: no passage was relevant enough.
    NotCovered,
}

/// A sentence of an extractive answer: verbatim from the document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extracted {
    /// The source number it is cited as.
    pub n: usize,
    pub doc: String,
    pub chunk: u64,
    /// Character offsets into the document's text; `text` is that slice.
    pub start: u64,
    pub end: u64,
    pub text: String,
    pub score: f32,
    /// The sentence's own relevance probability, its passage's, and the
    /// share of the question's keywords it contains.
    pub sentence: f32,
    pub passage: f32,
    pub keywords: f32,
}

/// A grounded answer: the same type from a local collection, a cluster
/// (the generation replica sends it whole) and the APIs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub answer: String,
    /// False when no retrieved passage was relevant enough to answer from
    /// (or the model said the sources do not cover the question); `answer`
    /// then says so and `retrieved` holds the closest passages.
    pub answered: bool,
    pub citations: Vec<Citation>,
    /// `[n]` markers in the generated text that pointed to no source; they
    /// were removed from `answer`.
    pub dropped_citations: Vec<usize>,
    pub retrieved: Vec<Hit>,
    /// Cosine similarity of the question to each retrieved passage, in order.
    pub relevance: Vec<f32>,
    pub timings_ms: Timings,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub model: String,
    pub finish: Option<Finish>,
    /// Passages retrieved but left out of the prompt for lack of room.
    pub omitted_sources: usize,
    pub strategy: Strategy,
    /// The critic that judged the answer (`None`: nothing was judged).
    pub critic: Option<String>,
    /// The answer was generated under the citation grammar (the strict
    /// attempt of the embedded engine).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grammar: bool,
    /// Corrective retrieval's grade, when it ran, and the probability that
    /// the documents answer the question it was decided from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grade: Option<Grade>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grade_probability: Option<f32>,
    /// The query of corrective retrieval's retry or widening, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewritten_query: Option<String>,
    /// The critic's relevance probability for each retrieved passage, when
    /// it judged them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relevance_probability: Vec<f32>,
    /// Each sentence of the answer with the sources that support it (empty
    /// when the answer was not checked).
    pub sentences: Vec<SentenceSupport>,
    /// The sentences of an extractive answer, with their spans.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extracts: Vec<Extracted>,
    /// Where a cluster's answer came from; absent for a local collection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterAnswer>,
    /// The generator's LoRA adapter the answer was generated with (the
    /// collection's, from `cairn train generator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
}

/// How a cluster answered: which shards were searched and which
/// generation replica wrote the answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterAnswer {
    pub shards_ok: u32,
    pub shards_total: u32,
    /// The replica that generated, if one did.
    pub node: Option<String>,
    /// Replicas that failed mid-answer before one finished (the answer was
    /// started again on another, once).
    pub failed_replicas: Vec<String>,
}

impl Answer {
    /// Sentences that state something no source supports.
    pub fn unsupported(&self) -> usize {
        support::unsupported(&self.sentences)
    }
}

/// The sentence given when the documents do not cover a question.
pub const NOT_COVERED: &str = "The documents in this collection do not cover that question.";

/// Whether the model itself said that the sources do not answer.
fn is_refusal(text: &str) -> bool {
    let t = text.to_lowercase();
    [
        "do not cover",
        "does not cover",
        "don't cover",
        "doesn't cover",
    ]
    .iter()
    .any(|p| t.contains(p))
        && t.split_whitespace().count() <= 40
}

/// Check a question: not empty, not too long.
pub fn check_question(question: &str) -> Result<&str> {
    let q = question.trim();
    let bad = crate::EngineError::Question;
    if q.is_empty() {
        return Err(bad("is empty".into()));
    }
    let n = q.chars().count();
    if n > MAX_QUESTION_CHARS {
        return Err(bad(format!(
            "is {n} characters long; the most is {MAX_QUESTION_CHARS}"
        )));
    }
    Ok(q)
}

impl Engine {
    /// Answer `question` from the collection, streaming the answer into
    /// `sink`. `history` holds earlier turns of a conversation (questions and
    /// answers, oldest first); retrieval uses the question together with the
    /// previous one, so that follow-ups ("and its default?") find passages.
    /// With `opts.extractive` the generator is not used.
    pub fn ask(
        &self,
        question: &str,
        history: &[ChatMessage],
        generator: &dyn Generator,
        opts: &AskOptions,
        sink: &mut dyn TokenSink,
    ) -> Result<Answer> {
        let question = check_question(question)?;
        let retrieved = self.retrieve_for(question, history, opts)?;
        if opts.extractive {
            return extractive_from_passages(question, retrieved, self.critic(), opts);
        }
        let adapted;
        let opts = match self.generator_adapter(generator.model_name()) {
            Some(path) => {
                adapted = AskOptions {
                    sampling: Sampling {
                        adapter: Some(path),
                        ..opts.sampling.clone()
                    },
                    ..opts.clone()
                };
                &adapted
            }
            None => opts,
        };
        answer_from_passages(
            question,
            history,
            retrieved,
            generator,
            Some(self.critic()),
            opts,
            sink,
        )
    }

    /// An extractive answer: no generator.
    pub fn ask_extractive(
        &self,
        question: &str,
        history: &[ChatMessage],
        opts: &AskOptions,
    ) -> Result<Answer> {
        let question = check_question(question)?;
        let retrieved = self.retrieve_for(question, history, opts)?;
        extractive_from_passages(question, retrieved, self.critic(), opts)
    }

    /// Retrieval for an answer (`question` already checked), with
    /// corrective retrieval when asked.
    fn retrieve_for(
        &self,
        question: &str,
        history: &[ChatMessage],
        opts: &AskOptions,
    ) -> Result<Retrieved> {
        let start = Instant::now();
        let retrieval_query = retrieval_query(question, history);
        let t = Instant::now();
        // Ranked with the query adapter's vector (when one is installed);
        // the relevance gate is calibrated on the embedder's own cosines.
        let raw = self.embedder.embed_query(&retrieval_query)?;
        let q = self.adapt_query(&raw)?;
        let embed_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let ranked = self.rank_embedded(&retrieval_query, Some(&q), opts.k, opts.mode)?;
        let hits = self.hits(&ranked)?;
        let search_ms = t.elapsed().as_secs_f64() * 1000.0;
        let relevance =
            self.similarities(&raw, &hits.iter().map(|h| h.chunk).collect::<Vec<_>>())?;
        let mut r = Retrieved {
            hits,
            relevance,
            embed_ms,
            search_ms,
            started: start,
            judged: None,
        };
        if opts.crag {
            self.correct(question, &retrieval_query, &q, opts, &mut r)?;
        }
        Ok(r)
    }

    /// Corrective retrieval: grade the passages; when ambiguous, widen (more
    /// candidates, and the question's keywords as a second query); when
    /// incorrect, retry once with the keywords.
    /// `query_vector` is `retrieval_query`'s, embedded once by the caller.
    fn correct(
        &self,
        question: &str,
        retrieval_query: &str,
        query_vector: &[f32],
        opts: &AskOptions,
        r: &mut Retrieved,
    ) -> Result<()> {
        let t = Instant::now();
        let critic = self.critic();
        let grade_of = |hits: &[Hit]| -> Result<(f32, Grade)> {
            let texts: Vec<&str> = hits.iter().map(|h| h.text.as_str()).collect();
            let f = crag::features(question, &texts, critic)?;
            let p = opts.grade_model.probability(f.sentence, f.coverage);
            Ok((p, crag::grade_of(p, opts.grades)))
        };
        let (probability, grade) = grade_of(&r.hits)?;
        let mut judged = Judged {
            critic: critic.name().to_string(),
            grade,
            probability,
            probs: relevance_probs(critic, question, &r.hits)?,
            rewritten: None,
            critic_ms: 0.0,
        };
        if grade != Grade::Correct {
            let rewritten = crag::keywords(retrieval_query);
            let widen = if grade == Grade::Ambiguous { 2 } else { 1 };
            let mut pool: Vec<Hit> = Vec::new();
            let mut add = |hits: Vec<Hit>| {
                for h in hits {
                    if !pool.iter().any(|p| p.chunk == h.chunk) {
                        pool.push(h);
                    }
                }
            };
            if grade == Grade::Ambiguous {
                let ranked = self.rank_embedded(
                    retrieval_query,
                    Some(query_vector),
                    opts.k * widen,
                    opts.mode,
                )?;
                add(self.hits(&ranked)?);
            } else {
                add(r.hits.clone());
            }
            if !rewritten.is_empty() && rewritten != retrieval_query {
                add(self.search(&rewritten, opts.k * widen, opts.mode)?);
            }
            let probs = relevance_probs(critic, question, &pool)?;
            let mut order: Vec<usize> = (0..pool.len()).collect();
            order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
            order.truncate(opts.k);
            let hits: Vec<Hit> = order
                .iter()
                .enumerate()
                .map(|(i, &j)| Hit {
                    rank: i + 1,
                    ..pool[j].clone()
                })
                .collect();
            let (p2, g2) = grade_of(&hits)?;
            judged.rewritten = Some(rewritten);
            // The retry or widening stands only if it grades no worse.
            if p2 >= probability {
                let ids: Vec<u64> = hits.iter().map(|h| h.chunk).collect();
                r.relevance = self.similarities(query_vector, &ids)?;
                judged.probs = order.iter().map(|&j| probs[j]).collect();
                judged.grade = g2;
                judged.probability = p2;
                r.hits = hits;
            }
        }
        judged.critic_ms = t.elapsed().as_secs_f64() * 1000.0;
        r.judged = Some(judged);
        Ok(())
    }
}

fn relevance_probs(critic: &dyn Critic, question: &str, hits: &[Hit]) -> Result<Vec<f32>> {
    let pairs: Vec<(&str, &str)> = hits.iter().map(|h| (question, h.text.as_str())).collect();
    Ok(critic
        .score(Judgement::Relevance, &pairs)
        .map_err(cairn_critic::CriticError::from)?)
}

/// Passages already retrieved for a question, with their cosine similarity
/// to it: the input of the answering half of [`Engine::ask`], which a
/// cluster's generation replica runs on passages gathered from shards.
#[derive(Debug, Clone)]
pub struct Retrieved {
    pub hits: Vec<Hit>,
    pub relevance: Vec<f32>,
    pub embed_ms: f64,
    pub search_ms: f64,
    /// When answering began (timings are measured from it).
    pub started: Instant,
    /// Corrective retrieval's judgement, when it ran.
    pub judged: Option<Judged>,
}

/// What corrective retrieval decided.
#[derive(Debug, Clone)]
pub struct Judged {
    pub critic: String,
    pub grade: Grade,
    /// The grade model's probability that the documents answer.
    pub probability: f32,
    /// Relevance probability of each hit, in order.
    pub probs: Vec<f32>,
    pub rewritten: Option<String>,
    pub critic_ms: f64,
}

/// True when at least one passage reaches the relevance bar, i.e. when
/// [`answer_from_passages`] would generate (without corrective retrieval).
pub fn would_generate(relevance: &[f32], min_relevance: f32) -> bool {
    relevance.iter().any(|&r| r >= min_relevance)
}

/// A new answer with the retrieval filled in.
fn blank(retrieved: &Retrieved, model: &str) -> Answer {
    let judged = retrieved.judged.as_ref();
    Answer {
        answer: String::new(),
        answered: false,
        citations: vec![],
        dropped_citations: vec![],
        retrieved: retrieved.hits.clone(),
        relevance: retrieved.relevance.clone(),
        timings_ms: Timings {
            embed: retrieved.embed_ms,
            search: retrieved.search_ms,
            critic: judged.map(|j| j.critic_ms),
            first_token: None,
            generate: None,
            total: 0.0,
        },
        prompt_tokens: 0,
        completion_tokens: 0,
        model: model.to_string(),
        finish: None,
        omitted_sources: 0,
        strategy: Strategy::NotCovered,
        critic: judged.map(|j| j.critic.clone()),
        grammar: false,
        grade: judged.map(|j| j.grade),
        grade_probability: judged.map(|j| j.probability),
        rewritten_query: judged.and_then(|j| j.rewritten.clone()),
        relevance_probability: judged.map(|j| j.probs.clone()).unwrap_or_default(),
        sentences: vec![],
        extracts: vec![],
        cluster: None,
        adapter: None,
    }
}

/// The answer when no passage may be answered from: "the documents do not
/// cover that", with the closest passages.
pub fn not_covered(retrieved: &Retrieved, model: &str) -> Answer {
    let mut a = blank(retrieved, model);
    a.answer = NOT_COVERED.to_string();
    a.timings_ms.total = ms_since(retrieved.started);
    a
}

/// What retrieval searches for in a conversation: the question together
/// with the previous user turn, so that follow-ups ("and its default?")
/// find passages.
pub fn retrieval_query(question: &str, history: &[ChatMessage]) -> String {
    match history
        .iter()
        .rev()
        .find(|m| m.role == cairn_generate::Role::User)
    {
        Some(prev) => format!("{} {}", prev.content.trim(), question),
        None => question.to_string(),
    }
}

/// The passages that may be answered from: those the gate lets through
/// (all of them at a correct or ambiguous grade; above `min_relevance`
/// without corrective retrieval). Empty: the documents do not cover it.
fn supporting(retrieved: &Retrieved, opts: &AskOptions) -> Vec<(Hit, Option<f32>)> {
    match &retrieved.judged {
        Some(j) if j.grade == Grade::Incorrect => vec![],
        Some(j) => retrieved
            .hits
            .iter()
            .cloned()
            .zip(j.probs.iter().map(|&p| Some(p)))
            .collect(),
        None => {
            if !would_generate(&retrieved.relevance, opts.min_relevance) {
                return vec![];
            }
            retrieved
                .hits
                .iter()
                .zip(&retrieved.relevance)
                .filter(|(_, &r)| r >= opts.min_relevance)
                .map(|(h, _)| (h.clone(), None))
                .collect()
        }
    }
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn add_ms(slot: &mut Option<f64>, ms: f64) {
    *slot = Some(slot.unwrap_or(0.0) + ms);
}

/// An extractive answer from passages already retrieved: the best sentences
/// of the passages the gate lets through, verbatim, with their spans.
pub fn extractive_from_passages(
    question: &str,
    retrieved: Retrieved,
    critic: &dyn Critic,
    opts: &AskOptions,
) -> Result<Answer> {
    let start = retrieved.started;
    let mut answer = blank(&retrieved, "extractive");
    answer.critic = Some(critic.name().to_string());
    let passages = supporting(&retrieved, opts);
    if passages.is_empty() {
        answer.answer = NOT_COVERED.to_string();
        answer.timings_ms.total = ms_since(start);
        return Ok(answer);
    }
    let t = Instant::now();
    match extractive(question, &passages, critic, opts)? {
        Some(e) => e.into(&mut answer),
        None => answer.answer = NOT_COVERED.to_string(),
    }
    add_ms(&mut answer.timings_ms.critic, ms_since(t));
    answer.strategy = Strategy::Extractive;
    answer.timings_ms.total = ms_since(start);
    Ok(answer)
}

/// The parts of an extractive answer.
struct Extractive {
    answer: String,
    citations: Vec<Citation>,
    sentences: Vec<SentenceSupport>,
    extracts: Vec<Extracted>,
}

impl Extractive {
    /// Make `answer` this extractive answer.
    fn into(self, answer: &mut Answer) {
        answer.answer = self.answer;
        answer.answered = true;
        answer.citations = self.citations;
        answer.dropped_citations = vec![];
        answer.sentences = self.sentences;
        answer.extracts = self.extracts;
    }
}

/// The extractive answer from `passages`; `None` when no sentence qualifies.
fn extractive(
    question: &str,
    passages: &[(Hit, Option<f32>)],
    critic: &dyn Critic,
    opts: &AskOptions,
) -> Result<Option<Extractive>> {
    let texts: Vec<&str> = passages.iter().map(|(h, _)| h.text.as_str()).collect();
    let probs = match passages
        .iter()
        .map(|(_, p)| *p)
        .collect::<Option<Vec<f32>>>()
    {
        Some(p) => p,
        None => {
            let hits: Vec<Hit> = passages.iter().map(|(h, _)| h.clone()).collect();
            relevance_probs(critic, question, &hits)?
        }
    };
    let ex = extract::extract(
        question,
        &texts,
        &probs,
        critic,
        &ExtractOptions {
            max_sentences: opts.extract_sentences,
            ..ExtractOptions::default()
        },
    )?;
    // Number the sources in order of first use.
    let mut order: Vec<usize> = Vec::new();
    for e in &ex {
        if !order.contains(&e.source) {
            order.push(e.source);
        }
    }
    let number = |source: usize| order.iter().position(|&s| s == source).unwrap() + 1;
    let renumbered: Vec<extract::Extract> = ex
        .iter()
        .map(|e| extract::Extract {
            source: number(e.source),
            ..e.clone()
        })
        .collect();
    if ex.is_empty() {
        return Ok(None);
    }
    let extracts = ex
        .iter()
        .map(|e| {
            let h = &passages[e.source - 1].0;
            Extracted {
                n: number(e.source),
                doc: h.doc.clone(),
                chunk: h.chunk,
                start: h.start + e.start as u64,
                end: h.start + e.end as u64,
                text: e.text.clone(),
                score: e.score,
                sentence: e.sentence,
                passage: e.passage,
                keywords: e.keywords,
            }
        })
        .collect();
    let citations = order
        .iter()
        .map(|&s| {
            let h = &passages[s - 1].0;
            Citation {
                n: number(s),
                doc: h.doc.clone(),
                heading: h.heading.clone(),
                start: h.start,
                end: h.end,
                text: h.text.clone(),
                page: h.page,
            }
        })
        .collect();
    let sentences = renumbered
        .iter()
        .map(|e| SentenceSupport {
            text: format!(
                "{} [{}]",
                e.text.split_whitespace().collect::<Vec<_>>().join(" "),
                e.source
            ),
            citations: vec![e.source],
            support: 1.0,
            supported: true,
            claim: true,
            corrected: false,
        })
        .collect();
    Ok(Some(Extractive {
        answer: extract::render(&renumbered),
        citations,
        sentences,
        extracts,
    }))
}

/// Gate on relevance, build the prompt, generate into `sink`, resolve
/// citations and, with a critic and `opts.check`, check every sentence:
/// everything of [`Engine::ask`] after retrieval.
pub fn answer_from_passages(
    question: &str,
    history: &[ChatMessage],
    retrieved: Retrieved,
    generator: &dyn Generator,
    critic: Option<&dyn Critic>,
    opts: &AskOptions,
    sink: &mut dyn TokenSink,
) -> Result<Answer> {
    let question = question.trim();
    let start = retrieved.started;
    let mut answer = blank(&retrieved, generator.model_name());
    let passages = supporting(&retrieved, opts);
    if passages.is_empty() {
        tracing::info!(
            threshold = opts.min_relevance,
            grade = ?answer.grade,
            "no passage relevant enough"
        );
        answer.answer = NOT_COVERED.to_string();
        answer.timings_ms.total = ms_since(start);
        return Ok(answer);
    }

    // Passages below the relevance bar are shown to the user but not to
    // the model: they cannot support an answer and distract small models.
    let hits: Vec<Hit> = passages.iter().map(|(h, _)| h.clone()).collect();
    let mut sources = prompt::merge_overlapping(&hits);
    // Corrective retrieval gives the model only the relevant sentences.
    if let (Some(critic), Some(_)) = (critic, &retrieved.judged) {
        let t = Instant::now();
        let texts: Vec<&str> = sources.iter().map(|s| s.text.as_str()).collect();
        let refined = crag::refine(question, &texts, critic, opts.keep)?;
        for (s, r) in sources.iter_mut().zip(refined) {
            s.text = r.text;
        }
        add_ms(&mut answer.timings_ms.critic, ms_since(t));
    }
    let gen_start = Instant::now();
    let mut attempt = generate_once(
        generator,
        history,
        question,
        &sources,
        opts,
        Instructions::Normal,
        sink,
    )?;
    answer.timings_ms.first_token = attempt
        .first_token_ms
        .map(|ms| ms + (gen_start - start).as_secs_f64() * 1000.0);
    let mut generate_ms = ms_since(gen_start);
    let mut strategy = Strategy::Generated;
    let mut checked = None;
    if let (Some(critic), true) = (critic, opts.check) {
        answer.critic = Some(critic.name().to_string());
        let t = Instant::now();
        let mut c = check(critic, &attempt, opts)?;
        add_ms(&mut answer.timings_ms.critic, ms_since(t));
        let cancelled = attempt.finish == Finish::Cancelled;
        if !cancelled && !attempt.refusal && c.unsupported() > 0 {
            tracing::info!(
                unsupported = c.unsupported(),
                "sentences not supported by the sources; generating again, strictly"
            );
            sink.restart(
                "not supported by the sources; answering again with stricter instructions",
            );
            let t = Instant::now();
            let second = generate_once(
                generator,
                history,
                question,
                &sources,
                opts,
                Instructions::Strict,
                sink,
            )?;
            generate_ms += ms_since(t);
            let t = Instant::now();
            let c2 = check(critic, &second, opts)?;
            add_ms(&mut answer.timings_ms.critic, ms_since(t));
            // Keep the second attempt unless it is worse.
            if second.refusal || c2.supported_share() >= c.supported_share() {
                attempt = second;
                c = c2;
                strategy = Strategy::Regenerated;
            }
        }
        checked = Some(c);
    }
    answer.timings_ms.generate = Some(generate_ms);
    answer.adapter = opts
        .sampling
        .adapter
        .as_ref()
        .map(|p| p.display().to_string());
    answer.prompt_tokens = attempt.prompt.tokens;
    answer.completion_tokens = attempt.completion_tokens;
    answer.finish = Some(attempt.finish);
    answer.omitted_sources = attempt.prompt.omitted;
    let text = match &checked {
        Some(c) if !attempt.refusal => c.answer.clone(),
        _ => attempt.text.clone(),
    };
    let resolved = citations::resolve(&text, &attempt.prompt.sources);
    if !resolved.dropped.is_empty() {
        tracing::warn!(
            dropped = ?resolved.dropped,
            sources = attempt.prompt.sources.len(),
            "the answer cited sources that do not exist; markers removed"
        );
    }
    answer.answer = resolved.answer;
    answer.answered = !attempt.refusal;
    answer.citations = resolved.citations;
    answer.dropped_citations = resolved.dropped;
    answer.strategy = strategy;
    answer.grammar = attempt.grammar;
    if let Some(c) = checked.filter(|_| !attempt.refusal) {
        let nothing_supported = c.sentences.iter().all(|s| !s.claim || !s.supported);
        answer.sentences = c.sentences;
        if nothing_supported && opts.fallback_extractive {
            if let Some(critic) = critic {
                let t = Instant::now();
                let ex = extractive(question, &passages, critic, opts)?;
                add_ms(&mut answer.timings_ms.critic, ms_since(t));
                if let Some(e) = ex {
                    e.into(&mut answer);
                    answer.strategy = Strategy::FallbackExtractive;
                }
            }
        }
    } else if attempt.refusal {
        answer.strategy = Strategy::NotCovered;
    }
    answer.timings_ms.total = ms_since(start);
    Ok(answer)
}

/// One generation and what came of it.
struct Attempt {
    prompt: prompt::Prompt,
    text: String,
    finish: Finish,
    completion_tokens: usize,
    first_token_ms: Option<f64>,
    /// The model said the sources do not cover the question.
    refusal: bool,
    /// It was generated under the citation grammar.
    grammar: bool,
}

fn generate_once(
    generator: &dyn Generator,
    history: &[ChatMessage],
    question: &str,
    sources: &[Source],
    opts: &AskOptions,
    instructions: Instructions,
    sink: &mut dyn TokenSink,
) -> Result<Attempt> {
    let p = prompt::build_from(
        generator,
        history,
        question,
        sources,
        opts.sampling.max_tokens as usize,
        instructions,
    )?;
    let grammar =
        instructions == Instructions::Strict && opts.grammar && generator.supports_grammar();
    let g = if grammar {
        let sampling = Sampling {
            grammar: Some(prompt::citation_grammar(p.sources.len())),
            ..opts.sampling.clone()
        };
        generator.generate(&p.messages, &sampling, sink)?
    } else {
        generator.generate(&p.messages, &opts.sampling, sink)?
    };
    let text = g.text.trim().to_string();
    Ok(Attempt {
        grammar,
        refusal: is_refusal(&text),
        prompt: p,
        text,
        finish: g.finish,
        completion_tokens: g.completion_tokens,
        first_token_ms: g.first_token_ms,
    })
}

/// Check an attempt's sentences against the sources of its prompt.
fn check(critic: &dyn Critic, a: &Attempt, opts: &AskOptions) -> Result<support::Checked> {
    let texts: Vec<&str> = a.prompt.sources.iter().map(|s| s.text.as_str()).collect();
    Ok(support::check(
        &a.text,
        &texts,
        critic,
        opts.support_threshold,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_recognised() {
        assert!(is_refusal("The documents do not cover this."));
        assert!(is_refusal(
            "Sorry, the sources don't cover that question [1]."
        ));
        assert!(!is_refusal("Use venv [1]."));
    }

    fn hit(chunk: u64) -> Hit {
        Hit {
            rank: chunk as usize,
            score: 1.0,
            doc: "a.md".into(),
            chunk,
            heading: String::new(),
            start: 0,
            end: 1,
            text: "x".into(),
            page: None,
        }
    }

    fn retrieved(relevance: Vec<f32>, judged: Option<Grade>) -> Retrieved {
        Retrieved {
            hits: (1..=relevance.len() as u64).map(hit).collect(),
            judged: judged.map(|grade| Judged {
                critic: "test".into(),
                grade,
                probability: 0.5,
                probs: relevance.clone(),
                rewritten: None,
                critic_ms: 0.0,
            }),
            relevance,
            embed_ms: 0.0,
            search_ms: 0.0,
            started: Instant::now(),
        }
    }

    #[test]
    fn the_gate_lets_through_what_the_policy_says() {
        let opts = AskOptions::from_config(&cairn_core::config::Config::default());
        // Without a grade: the cosine bar, passage by passage.
        let r = retrieved(vec![0.5, 0.1, 0.4], None);
        let ids: Vec<u64> = supporting(&r, &opts).iter().map(|(h, _)| h.chunk).collect();
        assert_eq!(ids, [1, 3]);
        assert!(supporting(&retrieved(vec![0.1, 0.2], None), &opts).is_empty());
        // Graded incorrect: nothing, however close the cosines.
        assert!(supporting(&retrieved(vec![0.9], Some(Grade::Incorrect)), &opts).is_empty());
        // Graded correct or ambiguous: every passage, with its probability.
        let s = supporting(&retrieved(vec![0.9, 0.05], Some(Grade::Ambiguous)), &opts);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].1, Some(0.05));
    }

    #[test]
    fn questions_are_checked() {
        assert!(check_question("  ")
            .unwrap_err()
            .to_string()
            .contains("empty"));
        let long = "why ".repeat(MAX_QUESTION_CHARS);
        let e = check_question(&long).unwrap_err().to_string();
        assert!(
            e.contains("the question is 15999 characters long; the most is 4000"),
            "{e}"
        );
        assert_eq!(check_question(" ok? ").unwrap(), "ok?");
    }
}
