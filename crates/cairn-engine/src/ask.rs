//! Answering: retrieve → gate on relevance → build the prompt → generate →
//! resolve citations. The generator is passed in, so the same pipeline runs
//! on the embedded GGUF engine and on any OpenAI-compatible server.

use crate::{Engine, Result};
use cairn_core::{Hit, SearchMode};
use cairn_generate::citations::{self, Citation};
use cairn_generate::prompt;
use cairn_generate::{ChatMessage, Finish, Generator, Sampling, TokenSink};
use serde::Serialize;
use std::time::Instant;

/// How to answer.
#[derive(Debug, Clone)]
pub struct AskOptions {
    /// Passages to retrieve.
    pub k: usize,
    pub mode: SearchMode,
    /// Below this cosine similarity between the question and the best
    /// passage, the answer is "the documents do not cover this".
    pub min_relevance: f32,
    pub sampling: Sampling,
}

impl AskOptions {
    /// The options the configuration gives (`generate.*`, `search.mode`).
    pub fn from_config(cfg: &cairn_core::config::Config) -> AskOptions {
        let g = &cfg.generate;
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
            },
        }
    }
}

/// Milliseconds per stage.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Timings {
    pub embed: f64,
    pub search: f64,
    /// From the start of generation to its first token; `None` when nothing
    /// was generated.
    pub first_token: Option<f64>,
    pub total: f64,
}

/// A grounded answer.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub answer: String,
    /// False when no retrieved passage was relevant enough to answer from;
    /// `answer` then says so and `retrieved` holds the closest passages.
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
}

/// The sentence given when the documents do not cover a question.
pub const NOT_COVERED: &str = "The documents in this collection do not cover that question.";

impl Engine {
    /// Answer `question` from the collection, streaming the answer into
    /// `sink`. `history` holds earlier turns of a conversation (questions and
    /// answers, oldest first); retrieval uses the question together with the
    /// previous one, so that follow-ups ("and its default?") find passages.
    pub fn ask(
        &self,
        question: &str,
        history: &[ChatMessage],
        generator: &dyn Generator,
        opts: &AskOptions,
        sink: &mut dyn TokenSink,
    ) -> Result<Answer> {
        let start = Instant::now();
        let question = question.trim();
        if question.is_empty() {
            return Err(cairn_generate::GenerateError::Invalid {
                field: "question",
                reason: "is empty".into(),
            }
            .into());
        }
        let retrieval_query = match history
            .iter()
            .rev()
            .find(|m| m.role == cairn_generate::Role::User)
        {
            Some(prev) => format!("{} {}", prev.content.trim(), question),
            None => question.to_string(),
        };
        let t = Instant::now();
        let q = self.embedder.embed_query(&retrieval_query)?;
        let embed_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let ranked = self.rank_embedded(&retrieval_query, Some(&q), opts.k, opts.mode)?;
        let hits = self.hits(&ranked)?;
        let search_ms = t.elapsed().as_secs_f64() * 1000.0;
        let relevance = self.similarities(&q, &hits.iter().map(|h| h.chunk).collect::<Vec<_>>())?;
        answer_from_passages(
            question,
            history,
            Retrieved {
                hits,
                relevance,
                embed_ms,
                search_ms,
                started: start,
            },
            generator,
            opts,
            sink,
        )
    }
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
}

/// True when at least one passage reaches the relevance bar, i.e. when
/// [`answer_from_passages`] would generate.
pub fn would_generate(relevance: &[f32], min_relevance: f32) -> bool {
    relevance.iter().any(|&r| r >= min_relevance)
}

/// Gate on relevance, build the prompt, generate into `sink` and resolve
/// citations: everything of [`Engine::ask`] after retrieval.
pub fn answer_from_passages(
    question: &str,
    history: &[ChatMessage],
    retrieved: Retrieved,
    generator: &dyn Generator,
    opts: &AskOptions,
    sink: &mut dyn TokenSink,
) -> Result<Answer> {
    let question = question.trim();
    let start = retrieved.started;
    let best = retrieved
        .relevance
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let mut answer = Answer {
        answer: String::new(),
        answered: false,
        citations: vec![],
        dropped_citations: vec![],
        retrieved: retrieved.hits,
        relevance: retrieved.relevance,
        timings_ms: Timings {
            embed: retrieved.embed_ms,
            search: retrieved.search_ms,
            first_token: None,
            total: 0.0,
        },
        prompt_tokens: 0,
        completion_tokens: 0,
        model: generator.model_name().to_string(),
        finish: None,
        omitted_sources: 0,
    };
    if answer.retrieved.is_empty() || best < opts.min_relevance {
        tracing::info!(
            best,
            threshold = opts.min_relevance,
            "no passage relevant enough"
        );
        answer.answer = NOT_COVERED.to_string();
        answer.timings_ms.total = start.elapsed().as_secs_f64() * 1000.0;
        return Ok(answer);
    }

    // Passages below the relevance bar are shown to the user but not to
    // the model: they cannot support an answer and distract small models.
    let supporting: Vec<Hit> = answer
        .retrieved
        .iter()
        .zip(&answer.relevance)
        .filter(|(_, &r)| r >= opts.min_relevance)
        .map(|(h, _)| h.clone())
        .collect();
    let p = prompt::build(
        generator,
        history,
        question,
        &supporting,
        opts.sampling.max_tokens as usize,
    )?;
    let gen_start = Instant::now();
    let g = generator.generate(&p.messages, &opts.sampling, sink)?;
    let resolved = citations::resolve(g.text.trim(), &p.sources);
    if !resolved.dropped.is_empty() {
        tracing::warn!(
            dropped = ?resolved.dropped,
            sources = p.sources.len(),
            "the answer cited sources that do not exist; markers removed"
        );
    }
    answer.answer = resolved.answer;
    answer.answered = true;
    answer.citations = resolved.citations;
    answer.dropped_citations = resolved.dropped;
    answer.prompt_tokens = g.prompt_tokens;
    answer.completion_tokens = g.completion_tokens;
    answer.finish = Some(g.finish);
    answer.omitted_sources = p.omitted;
    answer.timings_ms.first_token = g
        .first_token_ms
        .map(|ms| ms + (gen_start - start).as_secs_f64() * 1000.0);
    answer.timings_ms.total = start.elapsed().as_secs_f64() * 1000.0;
    Ok(answer)
}
