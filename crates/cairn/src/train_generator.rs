//! `cairn train generator`: a LoRA adapter for the embedded generator,
//! trained on cited answers built from the collection (and up-rated
//! feedback), installed in the collection's `generator/`.

use anyhow::Result;
use cairn_core::config::Config;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct GeneratorArgs {
    /// The folder `cairn train data` wrote (train.jsonl, held_out.jsonl).
    #[arg(long, value_name = "DIR", required_unless_present = "remove")]
    data: Option<PathBuf>,
    /// Passages retrieved for each training prompt (fewer than `cairn
    /// ask`'s top_k keeps the prompts short: training time grows with
    /// their length).
    #[arg(long, default_value_t = GeneratorOpts::default().passages, value_name = "N")]
    passages: usize,
    /// Use a question whose passage the search ranks among its first N
    /// (default: --passages); ranked below --passages, the passage takes
    /// the last place in the prompt.
    #[arg(long, value_name = "N")]
    within: Option<usize>,
    /// The most sentences in a training answer.
    #[arg(long, default_value_t = GeneratorOpts::default().sentences, value_name = "N")]
    sentences: usize,
    /// Training questions used at most (held-out ones: a quarter of it).
    #[arg(long, default_value_t = GeneratorOpts::default().max_examples, value_name = "N")]
    max_examples: usize,
    /// Examples longer than this (prompt and answer, in tokens) are left out.
    #[arg(long, default_value_t = GeneratorOpts::default().max_tokens, value_name = "TOKENS")]
    max_tokens: usize,
    #[arg(long, default_value_t = GeneratorOpts::default().epochs)]
    epochs: usize,
    /// The adapters' rank.
    #[arg(long, default_value_t = GeneratorOpts::default().rank)]
    rank: usize,
    /// The adapters' scale is alpha / rank.
    #[arg(long, default_value_t = GeneratorOpts::default().alpha)]
    alpha: f32,
    /// Adapted blocks, counted from the top (0: all). The blocks below run
    /// once per example.
    #[arg(long, default_value_t = GeneratorOpts::default().layers, value_name = "N")]
    layers: usize,
    #[arg(long, default_value_t = GeneratorOpts::default().learning_rate, value_name = "LR")]
    learning_rate: f64,
    /// Examples per optimiser step.
    #[arg(long, default_value_t = GeneratorOpts::default().accumulate, value_name = "N")]
    accumulate: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Leave the feedback log's up-rated answers out.
    #[arg(long)]
    no_feedback: bool,
    /// Install it even if the held-out answer loss did not fall.
    #[arg(long)]
    force: bool,
    /// Write the examples (training and held-out) to FILE as JSON lines
    /// (`prompt`/`completion` text as TRL reads it, and the token ids with
    /// where the answer starts) and stop without training.
    #[arg(long, value_name = "FILE", conflicts_with = "force")]
    export: Option<PathBuf>,
    /// Train and report, but install nothing.
    #[arg(long, conflicts_with = "force")]
    dry_run: bool,
    /// Uninstall the collection's generator adapter.
    #[arg(long, conflicts_with_all = ["data", "force", "export", "dry_run"])]
    remove: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[cfg(not(all(feature = "train", feature = "llama")))]
pub fn run(_cfg: &Config, _a: GeneratorArgs) -> Result<()> {
    anyhow::bail!("this cairn was built without training the generator (cargo features `train` and `llama`): rebuild with `cargo build -p cairn --features train`")
}

/// What `train generator` and `improve --generator` train with.
#[derive(Debug, Clone)]
#[cfg_attr(not(all(feature = "train", feature = "llama")), allow(dead_code))]
pub(crate) struct GeneratorOpts {
    pub passages: usize,
    pub within: Option<usize>,
    pub sentences: usize,
    pub max_examples: usize,
    pub max_tokens: usize,
    pub epochs: usize,
    pub rank: usize,
    pub alpha: f32,
    pub layers: usize,
    pub learning_rate: f64,
    pub accumulate: usize,
    pub seed: u64,
    pub no_feedback: bool,
}

impl Default for GeneratorOpts {
    fn default() -> Self {
        GeneratorOpts {
            passages: 3,
            within: None,
            sentences: 2,
            max_examples: 64,
            max_tokens: 1024,
            epochs: 2,
            rank: 8,
            alpha: 16.0,
            layers: 8,
            learning_rate: 5e-4,
            accumulate: 4,
            seed: 0,
            no_feedback: false,
        }
    }
}

impl GeneratorArgs {
    #[cfg_attr(not(all(feature = "train", feature = "llama")), allow(dead_code))]
    fn opts(&self) -> GeneratorOpts {
        GeneratorOpts {
            passages: self.passages,
            within: self.within,
            sentences: self.sentences,
            max_examples: self.max_examples,
            max_tokens: self.max_tokens,
            epochs: self.epochs,
            rank: self.rank,
            alpha: self.alpha,
            layers: self.layers,
            learning_rate: self.learning_rate,
            accumulate: self.accumulate,
            seed: self.seed,
            no_feedback: self.no_feedback,
        }
    }
}

#[cfg(all(feature = "train", feature = "llama"))]
pub(crate) use trainer::*;

#[cfg(all(feature = "train", feature = "llama"))]
mod trainer {
    use super::GeneratorOpts;
    use crate::progress::Bars;
    use anyhow::{bail, Context, Result};
    use cairn_core::config::Config;
    use cairn_core::Progress;
    use cairn_engine::{CitedExample, Engine, NotCited as Skipped};
    use cairn_generate::llama::LlamaGenerator;
    use cairn_generate::Generator;
    use cairn_train::{GenExample, LlamaLora, LoraFigures, LoraOptions, TARGETS};
    use serde_json::json;
    use std::path::Path;

    /// The embedded generator, when it can be fine-tuned.
    pub(crate) fn generator(cfg: &Config) -> Result<LlamaGenerator> {
        if cfg.generate.url.is_some() {
            bail!("training the generator fine-tunes the embedded GGUF model; this configuration generates through a server (generate.url)");
        }
        let gen = cairn_engine::load_llama(cfg)?;
        if !gen.has_chat_template() {
            bail!(
                "{}: the model has no chat template (tokenizer.chat_template), so there is no turn format to train answers in; use an instruction-tuned model",
                gen.path().display()
            );
        }
        Ok(gen)
    }

    /// The examples: cited answers to the data's questions and up-rated
    /// feedback, tokenised.
    pub(crate) struct Examples {
        pub train: Vec<CitedExample>,
        /// The held-out examples kept (not too long), in `held_ex`'s order.
        pub held: Vec<CitedExample>,
        pub train_ex: Vec<GenExample>,
        pub held_ex: Vec<GenExample>,
        pub within: usize,
        pub not_retrieved: usize,
        pub not_verified: usize,
        pub too_long: usize,
        pub from_feedback: usize,
        pub feedback_left_out: usize,
    }

    impl Examples {
        pub(crate) fn counts(&self) -> serde_json::Value {
            json!({
                "train": self.train_ex.len(),
                "held_out": self.held_ex.len(),
                "from_feedback": self.from_feedback,
                "feedback_left_out": self.feedback_left_out,
                "not_retrieved": self.not_retrieved,
                "not_verified": self.not_verified,
                "too_long": self.too_long,
            })
        }
    }

    /// Builds the examples from `data` (`cairn train data`'s folder): too
    /// few to train on, or none held out, is an error saying why.
    pub(crate) fn examples(
        engine: &Engine,
        cfg: &Config,
        gen: &LlamaGenerator,
        data: &Path,
        o: &GeneratorOpts,
        bars: &Bars,
    ) -> Result<Examples> {
        for (field, v) in [
            ("--passages", o.passages),
            ("--sentences", o.sentences),
            ("--max-examples", o.max_examples),
            ("--rank", o.rank),
        ] {
            if v == 0 {
                bail!("{field}: must be 1 or more");
            }
        }
        let answer_tokens = cfg.generate.max_tokens as usize;
        let within = o.within.unwrap_or(o.passages).max(o.passages);
        let cited = cairn_engine::CitedOptions {
            passages: o.passages,
            within,
            answer_tokens,
            sentences: o.sentences,
        };
        let mut skipped = (0usize, 0usize);
        let mut build = |file: &str, limit: usize| -> Result<Vec<CitedExample>> {
            let path = data.join(file);
            let mut lines = crate::train::data_lines(&path)?;
            // A fixed-seed shuffle, so that --max-examples takes a sample.
            let mut rng = o.seed ^ 0x9E37_79B9_7F4A_7C15;
            for i in (1..lines.len()).rev() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                lines.swap(i, (rng % (i as u64 + 1)) as usize);
            }
            let mut out = Vec::new();
            bars.begin(
                &format!("cited answers from {file}"),
                lines.len().min(limit * 2) as u64,
            );
            for l in &lines {
                if out.len() >= limit {
                    break;
                }
                match cairn_engine::synthetic_example(engine, gen, &l.query, l.chunk, &cited)? {
                    Ok(e) => out.push(e),
                    Err(Skipped::NotRetrieved) => skipped.0 += 1,
                    Err(Skipped::NotVerified) => skipped.1 += 1,
                }
                bars.advance(1);
            }
            bars.end();
            Ok(out)
        };
        let mut train = build("train.jsonl", o.max_examples)?;
        let held = build("held_out.jsonl", o.max_examples.div_ceil(4))?;
        let (feedback, feedback_left_out) = if o.no_feedback {
            (vec![], 0)
        } else {
            cairn_engine::feedback_cited_examples(engine, gen, answer_tokens)?
        };
        let from_feedback = feedback.len();
        train.extend(feedback);
        let mut too_long = 0usize;
        let mut tokenize =
            |examples: Vec<CitedExample>| -> Result<(Vec<CitedExample>, Vec<GenExample>)> {
                let mut kept = Vec::new();
                let mut out = Vec::new();
                for e in examples {
                    let prompt = gen.render(&e.messages)?;
                    let mut tokens = gen.token_ids(&prompt, true);
                    let answer = tokens.len();
                    tokens.extend(gen.token_ids(&e.answer, false));
                    tokens.push(gen.end_of_turn());
                    if tokens.len() > o.max_tokens {
                        too_long += 1;
                        continue;
                    }
                    out.push(GenExample { tokens, answer });
                    kept.push(e);
                }
                Ok((kept, out))
            };
        let (train, train_ex) = tokenize(train)?;
        let (held, held_ex) = tokenize(held)?;
        let (not_retrieved, not_verified) = skipped;
        if train_ex.len() < cairn_train::MIN_EXAMPLES {
            bail!(
                "too few training examples: {}, at least {} are needed; of the questions tried, {not_retrieved} had their passage outside the search's top {within} and {not_verified} their best sentence elsewhere, {too_long} examples were too long; sample more questions (`cairn train data --per-doc`), or use questions ranked lower (--within)",
                train_ex.len(),
                cairn_train::MIN_EXAMPLES,
            );
        }
        if held_ex.is_empty() {
            bail!(
                "no held-out example to check the adapter on, from {}: {not_retrieved} questions' passages were not in the search's top {within} and {not_verified} had their best sentence elsewhere, {too_long} examples were too long; sample more questions (`cairn train data --per-doc`), or hold out more documents (--held-out)",
                data.join("held_out.jsonl").display(),
            );
        }
        Ok(Examples {
            train,
            held,
            train_ex,
            held_ex,
            within,
            not_retrieved,
            not_verified,
            too_long,
            from_feedback,
            feedback_left_out,
        })
    }

    /// Trains a LoRA on the examples (the epoch with the lowest held-out
    /// answer loss kept).
    pub(crate) fn train(
        gen: &LlamaGenerator,
        ex: &Examples,
        o: &GeneratorOpts,
        bars: &Bars,
    ) -> Result<(LlamaLora, LoraFigures)> {
        let model = LlamaLora::load(gen.path(), o.rank, o.alpha, &TARGETS, o.layers, o.seed)?;
        let figures = cairn_train::train_lora(
            &model,
            &ex.train_ex,
            &ex.held_ex,
            &LoraOptions {
                epochs: o.epochs,
                accumulate: o.accumulate,
                learning_rate: o.learning_rate,
                seed: o.seed,
                ..LoraOptions::default()
            },
            bars,
        )?;
        Ok((model, figures))
    }

    /// The options in a report.
    pub(crate) fn options(o: &GeneratorOpts, within: usize) -> serde_json::Value {
        json!({
            "passages": o.passages, "within": within, "sentences": o.sentences, "rank": o.rank, "alpha": o.alpha,
            "layers": o.layers, "epochs": o.epochs, "learning_rate": o.learning_rate,
            "accumulate": o.accumulate, "seed": o.seed, "max_examples": o.max_examples,
            "max_tokens": o.max_tokens,
        })
    }

    /// Writes the adapter (`lora.gguf`) and `report.json`, with a sample of
    /// the training examples, into the folder `dir` (created).
    pub(crate) fn save(
        dir: &Path,
        model: &LlamaLora,
        gen: &LlamaGenerator,
        collection: &str,
        ex: &Examples,
        report: &mut serde_json::Value,
    ) -> Result<()> {
        save_adapter(dir, model, gen, collection)?;
        write_report(dir, ex, report)
    }

    /// Writes the adapter, `lora.gguf`, into the folder `dir` (created).
    pub(crate) fn save_adapter(
        dir: &Path,
        model: &LlamaLora,
        gen: &LlamaGenerator,
        collection: &str,
    ) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        model.save_gguf(
            &dir.join("lora.gguf"),
            &[
                ("cairn.base_model", gen.model_name().to_string()),
                ("cairn.collection", collection.to_string()),
            ],
        )?;
        Ok(())
    }

    /// Adds a sample of the training examples to `report` and writes it to
    /// `dir/report.json`.
    pub(crate) fn write_report(
        dir: &Path,
        ex: &Examples,
        report: &mut serde_json::Value,
    ) -> Result<()> {
        // A sample of what it learnt from, for the curious.
        let sample: Vec<_> = ex
            .train
            .iter()
            .take(20)
            .map(|e| json!({"question": e.question, "answer": e.answer, "origin": e.origin, "doc": e.doc}))
            .collect();
        report["sample"] = json!(sample);
        let file = dir.join("report.json");
        std::fs::write(&file, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("writing {}", file.display()))?;
        Ok(())
    }
}

#[cfg(all(feature = "train", feature = "llama"))]
pub fn run(cfg: &Config, a: GeneratorArgs) -> Result<()> {
    use crate::progress::Bars;
    use cairn_generate::Generator;
    use serde_json::json;

    let bars = Bars::new(a.json);
    let engine = crate::open::reader(cfg, &bars)?;
    let dir = engine.dir().join(cairn_engine::GENERATOR_DIR);
    if a.remove {
        return crate::train::uninstall(&dir, "generator adapter", &cfg.collection, a.json);
    }
    let o = a.opts();
    let data = a.data.clone().expect("clap requires --data");
    let gen = generator(cfg)?;
    let ex = examples(&engine, cfg, &gen, &data, &o, &bars)?;
    if let Some(out) = &a.export {
        let lines = write_examples(
            out,
            &gen,
            &[("train", &ex.train_ex), ("held_out", &ex.held_ex)],
        )?;
        if a.json {
            let mut report = ex.counts();
            report["path"] = json!(out.display().to_string());
            report["model"] = json!(gen.model_name());
            report["model_path"] = json!(gen.path().display().to_string());
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!(
                "wrote {lines} examples ({} training, {} held-out) to {}",
                ex.train_ex.len(),
                ex.held_ex.len(),
                out.display()
            );
        }
        return Ok(());
    }

    let (model, figures) = train(&gen, &ex, &o, &bars)?;
    let improved = figures.best_epoch > 0;
    let installed = (improved || a.force) && !a.dry_run;
    let path = dir.join("lora.gguf");
    let mut report = json!({
        "model": gen.model_name(),
        "examples": ex.counts(),
        "options": options(&o, ex.within),
        "figures": figures,
        "installed": installed,
        "improved": improved,
        "dry_run": a.dry_run,
        "path": path.display().to_string(),
    });
    if installed {
        let tmp = engine
            .dir()
            .join(format!("generator.new-{}", std::process::id()));
        save(&tmp, &model, &gen, &cfg.collection, &ex, &mut report)?;
        cairn_engine::swap_in(&tmp, &dir)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} training and {} held-out examples ({} from feedback); left out: {} questions whose passage was not retrieved, {} whose best sentence was elsewhere, {} too long",
        ex.train_ex.len(),
        ex.held_ex.len(),
        ex.from_feedback,
        ex.not_retrieved,
        ex.not_verified,
        ex.too_long
    );
    println!(
        "trained a rank-{} adapter on the last {} blocks ({} parameters) in {:.0} s: {:.0} tokens/s; answer loss {}",
        o.rank,
        model.shape.layers - figures.frozen_blocks,
        figures.trainable_parameters,
        figures.train_seconds + figures.prefix_seconds,
        figures.tokens_per_second,
        figures
            .epoch_loss
            .iter()
            .map(|l| format!("{l:.3}"))
            .collect::<Vec<_>>()
            .join(" → ")
    );
    println!(
        "held-out answer loss: {} (kept epoch {})",
        figures
            .validation_loss
            .iter()
            .map(|l| format!("{l:.3}"))
            .collect::<Vec<_>>()
            .join(" → "),
        figures.best_epoch
    );
    if installed {
        println!(
            "installed {}{}: answers in collection `{}` use it",
            path.display(),
            if improved {
                ""
            } else {
                " (--force: the held-out loss did not fall)"
            },
            cfg.collection
        );
    } else if a.dry_run {
        println!("--dry-run: nothing installed");
    } else {
        println!("rejected: the held-out answer loss did not fall; nothing installed (--force installs it anyway)");
    }
    Ok(())
}

/// Writes the examples as JSON lines: `split`, `prompt` and `completion`
/// (the text, as TRL's prompt-completion datasets have it), `input_ids`
/// (prompt and answer, ending with the end-of-turn token) and
/// `answer_start` (the index in `input_ids` where the loss starts).
#[cfg(all(feature = "train", feature = "llama"))]
fn write_examples(
    path: &std::path::Path,
    gen: &cairn_generate::llama::LlamaGenerator,
    splits: &[(&str, &[cairn_train::GenExample])],
) -> Result<usize> {
    use anyhow::Context;
    use std::io::Write;
    let write = || -> std::io::Result<usize> {
        let tmp = path.with_extension("partial");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let mut n = 0;
        for (split, examples) in splits {
            for e in examples.iter() {
                let line = serde_json::json!({
                    "split": split,
                    "prompt": gen.detokenize(&e.tokens[..e.answer]),
                    "completion": gen.detokenize(&e.tokens[e.answer..]),
                    "input_ids": e.tokens,
                    "answer_start": e.answer,
                });
                writeln!(f, "{line}")?;
                n += 1;
            }
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(n)
    };
    write().with_context(|| format!("writing the examples to {}", path.display()))
}
