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
    #[arg(long, default_value_t = 3, value_name = "N")]
    passages: usize,
    /// Use a question whose passage the search ranks among its first N
    /// (default: --passages); ranked below --passages, the passage takes
    /// the last place in the prompt.
    #[arg(long, value_name = "N")]
    within: Option<usize>,
    /// The most sentences in a training answer.
    #[arg(long, default_value_t = 2, value_name = "N")]
    sentences: usize,
    /// Training questions used at most (held-out ones: a quarter of it).
    #[arg(long, default_value_t = 64, value_name = "N")]
    max_examples: usize,
    /// Examples longer than this (prompt and answer, in tokens) are left out.
    #[arg(long, default_value_t = 1024, value_name = "TOKENS")]
    max_tokens: usize,
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    /// The adapters' rank.
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// The adapters' scale is alpha / rank.
    #[arg(long, default_value_t = 16.0)]
    alpha: f32,
    /// Adapted blocks, counted from the top (0: all). The blocks below run
    /// once per example.
    #[arg(long, default_value_t = 8, value_name = "N")]
    layers: usize,
    #[arg(long, default_value_t = 5e-4, value_name = "LR")]
    learning_rate: f64,
    /// Examples per optimiser step.
    #[arg(long, default_value_t = 4, value_name = "N")]
    accumulate: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Leave the feedback log's up-rated answers out.
    #[arg(long)]
    no_feedback: bool,
    /// Install it even if the held-out answer loss did not fall.
    #[arg(long)]
    force: bool,
    /// Uninstall the collection's generator adapter.
    #[arg(long, conflicts_with_all = ["data", "force"])]
    remove: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[cfg(not(all(feature = "train", feature = "llama")))]
pub fn run(_cfg: &Config, _a: GeneratorArgs) -> Result<()> {
    anyhow::bail!("this cairn was built without training the generator (cargo features `train` and `llama`): rebuild with `cargo build -p cairn --features train`")
}

#[cfg(all(feature = "train", feature = "llama"))]
pub fn run(cfg: &Config, a: GeneratorArgs) -> Result<()> {
    use crate::progress::Bars;
    use anyhow::{bail, Context};
    use cairn_core::Progress;
    use cairn_engine::{CitedExample, NotCited as Skipped};
    use cairn_generate::Generator;
    use cairn_train::{GenExample, LlamaLora, LoraOptions, TARGETS};
    use serde_json::json;

    if cfg.generate.url.is_some() {
        bail!("`cairn train generator` fine-tunes the embedded GGUF model; this configuration generates through a server (generate.url)");
    }
    let bars = Bars::new(a.json);
    let engine = crate::open::reader(cfg, &bars)?;
    let dir = engine.dir().join("generator");
    if a.remove {
        return crate::train::uninstall(&dir, "generator adapter", &cfg.collection, a.json);
    }
    for (field, v) in [
        ("--passages", a.passages),
        ("--sentences", a.sentences),
        ("--max-examples", a.max_examples),
        ("--rank", a.rank),
    ] {
        if v == 0 {
            bail!("{field}: must be 1 or more");
        }
    }
    let data = a.data.clone().expect("clap requires --data");
    let gen = cairn_engine::load_llama(cfg)?;
    if !gen.has_chat_template() {
        bail!(
            "{}: the model has no chat template (tokenizer.chat_template), so there is no turn format to train answers in; use an instruction-tuned model",
            gen.path().display()
        );
    }
    let answer_tokens = cfg.generate.max_tokens as usize;
    let within = a.within.unwrap_or(a.passages).max(a.passages);
    let cited = cairn_engine::CitedOptions {
        passages: a.passages,
        within,
        answer_tokens,
        sentences: a.sentences,
    };

    // The examples.
    let mut skipped = (0usize, 0usize);
    let mut build = |file: &str, limit: usize| -> Result<Vec<CitedExample>> {
        let path = data.join(file);
        let mut lines = crate::train::data_lines(&path)?;
        // A fixed-seed shuffle, so that --max-examples takes a sample.
        let mut rng = a.seed ^ 0x9E37_79B9_7F4A_7C15;
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
            match cairn_engine::synthetic_example(&engine, &gen, &l.query, l.chunk, &cited)? {
                Ok(e) => out.push(e),
                Err(Skipped::NotRetrieved) => skipped.0 += 1,
                Err(Skipped::NotVerified) => skipped.1 += 1,
            }
            bars.advance(1);
        }
        bars.end();
        Ok(out)
    };
    let mut train = build("train.jsonl", a.max_examples)?;
    let held = build("held_out.jsonl", a.max_examples.div_ceil(4))?;
    let (feedback, feedback_skipped) = if a.no_feedback {
        (vec![], 0)
    } else {
        cairn_engine::feedback_cited_examples(&engine, &gen, answer_tokens)?
    };
    let from_feedback = feedback.len();
    train.extend(feedback);
    let mut too_long = 0usize;
    let mut tokenize = |examples: &[CitedExample]| -> Result<Vec<GenExample>> {
        let mut out = Vec::new();
        for e in examples {
            let prompt = gen.render(&e.messages)?;
            let mut tokens = gen.token_ids(&prompt, true);
            let answer = tokens.len();
            tokens.extend(gen.token_ids(&e.answer, false));
            tokens.push(gen.end_of_turn());
            if tokens.len() > a.max_tokens {
                too_long += 1;
                continue;
            }
            out.push(GenExample { tokens, answer });
        }
        Ok(out)
    };
    let train_ex = tokenize(&train)?;
    let held_ex = tokenize(&held)?;
    if train_ex.len() < cairn_train::MIN_EXAMPLES {
        bail!(
            "too few training examples: {}, at least {} are needed; of the questions tried, {} had their passage outside the search's top {within} and {} their best sentence elsewhere, {} examples were too long; sample more questions (`cairn train data --per-doc`), or use questions ranked lower (--within)",
            train_ex.len(),
            cairn_train::MIN_EXAMPLES,
            skipped.0,
            skipped.1,
            too_long
        );
    }
    if held_ex.is_empty() {
        bail!(
            "no held-out example to check the adapter on, from {}: so far {} questions' passages were not in the search's top {within} and {} had their best sentence elsewhere, {} examples were too long; sample more questions (`cairn train data --per-doc`), or hold out more documents (--held-out)",
            data.join("held_out.jsonl").display(),
            skipped.0,
            skipped.1,
            too_long
        );
    }

    // Training.
    let model = LlamaLora::load(gen.path(), a.rank, a.alpha, &TARGETS, a.layers, a.seed)?;
    let figures = cairn_train::train_lora(
        &model,
        &train_ex,
        &held_ex,
        &LoraOptions {
            epochs: a.epochs,
            accumulate: a.accumulate,
            learning_rate: a.learning_rate,
            seed: a.seed,
            ..LoraOptions::default()
        },
        &bars,
    )?;
    let improved = figures.best_epoch > 0;
    let installed = improved || a.force;
    let path = dir.join("lora.gguf");
    let mut report = json!({
        "model": gen.model_name(),
        "examples": {
            "train": train_ex.len(),
            "held_out": held_ex.len(),
            "from_feedback": from_feedback,
            "feedback_left_out": feedback_skipped,
            "not_retrieved": skipped.0,
            "not_verified": skipped.1,
            "too_long": too_long,
        },
        "options": {
            "passages": a.passages, "within": within, "sentences": a.sentences, "rank": a.rank, "alpha": a.alpha,
            "layers": a.layers, "epochs": a.epochs, "learning_rate": a.learning_rate,
            "accumulate": a.accumulate, "seed": a.seed,
        },
        "figures": figures,
        "installed": installed,
        "improved": improved,
        "path": path.display().to_string(),
    });
    if installed {
        let tmp = engine
            .dir()
            .join(format!("generator.new-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        model.save_gguf(
            &tmp.join("lora.gguf"),
            &[
                ("cairn.base_model", gen.model_name().to_string()),
                ("cairn.collection", cfg.collection.clone()),
            ],
        )?;
        // A sample of what it learnt from, for the curious.
        let sample: Vec<_> = train
            .iter()
            .take(20)
            .map(|e| json!({"question": e.question, "answer": e.answer, "origin": e.origin, "doc": e.doc}))
            .collect();
        report["sample"] = json!(sample);
        std::fs::write(
            tmp.join("report.json"),
            serde_json::to_string_pretty(&report)?,
        )
        .with_context(|| format!("writing {}", tmp.join("report.json").display()))?;
        cairn_engine::swap_in(&tmp, &dir)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let f = &report["figures"];
    println!(
        "{} training and {} held-out examples ({} from feedback); left out: {} questions whose passage was not retrieved, {} whose best sentence was elsewhere, {} too long",
        train_ex.len(),
        held_ex.len(),
        from_feedback,
        skipped.0,
        skipped.1,
        too_long
    );
    println!(
        "trained a rank-{} adapter on the last {} blocks ({} parameters) in {:.0} s: {:.0} tokens/s; answer loss {}",
        a.rank,
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
        f["best_epoch"]
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
    } else {
        println!("rejected: the held-out answer loss did not fall; nothing installed (--force installs it anyway)");
    }
    Ok(())
}
