//! `cairn train`: training data from the collection itself (`data`).

use crate::progress::Bars;
use anyhow::{bail, Context, Result};
use cairn_core::config::Config;
use cairn_core::SearchMode;
use cairn_engine::{Split, SynthExample, SynthOptions};
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum TrainCommand {
    /// Training data from the collection itself, before anyone has rated an
    /// answer: a question per sampled passage from its heading path, and
    /// one written by the generator (unless --no-generate); the passage is
    /// the positive, passages of other documents the search ranks high are
    /// the hard negatives. A question is kept only when the search finds
    /// its passage again (--within). Documents are split into training and
    /// held-out parts. Writes DIR/train.jsonl and DIR/held_out.jsonl
    /// ({query, positive, negatives, ...}) and DIR/held_out.qa.jsonl (a
    /// question set for `cairn eval --qa`).
    Data(DataArgs),
    /// Train a query adapter (a low-rank map on query embeddings) on the
    /// training part of `cairn train data`'s output, check it on the
    /// held-out part, and install it in the collection (adapter.json, read
    /// by every search from then on, a running server included) unless
    /// held-out hit@5 of dense search got worse. --remove uninstalls it.
    Adapter(AdapterArgs),
}

#[derive(clap::Args, Debug)]
pub struct AdapterArgs {
    /// The folder `cairn train data` wrote (train.jsonl, held_out.jsonl).
    #[arg(long, value_name = "DIR", required_unless_present = "remove")]
    data: Option<PathBuf>,
    /// Rank of the map.
    #[arg(long, default_value_t = 16)]
    rank: usize,
    /// At most this many passes over the training examples; training stops
    /// when the loss on a fifth of the training documents, set apart, has
    /// not improved for --patience epochs, and keeps the best epoch.
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    #[arg(long, default_value_t = 3)]
    patience: usize,
    /// Adam's step size.
    #[arg(long, default_value_t = 2e-3)]
    learning_rate: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Install it even if held-out hit@5 got worse.
    #[arg(long)]
    force: bool,
    /// Uninstall the collection's adapter.
    #[arg(long, conflicts_with_all = ["data", "force"])]
    remove: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct DataArgs {
    /// The folder to write into (created if missing; the three files in it
    /// are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Passages sampled per document.
    #[arg(long, default_value_t = 2, value_name = "N")]
    per_doc: usize,
    /// Share of the documents held out (0 to below 1).
    #[arg(long, default_value_t = 0.2, value_name = "SHARE")]
    held_out: f64,
    /// Hard negatives per question.
    #[arg(long, default_value_t = 4, value_name = "N")]
    negatives: usize,
    /// Keep a question only if its passage is among the search's top N.
    #[arg(long, default_value_t = 10, value_name = "N")]
    within: usize,
    /// The search that checks the round trip: dense, bm25 or hybrid.
    #[arg(long, default_value = "hybrid")]
    mode: SearchMode,
    /// Sampling, question templates and the split follow from it.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Heading questions only: no generator is loaded.
    #[arg(long)]
    no_generate: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cfg: &Config, command: TrainCommand) -> Result<()> {
    match command {
        TrainCommand::Data(a) => data(cfg, a),
        TrainCommand::Adapter(a) => adapter(cfg, a),
    }
}

fn write_lines(path: &Path, lines: &[serde_json::Value]) -> Result<()> {
    let mut text = String::new();
    for l in lines {
        text.push_str(&serde_json::to_string(l)?);
        text.push('\n');
    }
    // Written beside, then renamed: a failed run leaves the old file whole.
    let tmp = path.with_extension("jsonl.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn triple(e: &SynthExample) -> serde_json::Value {
    serde_json::to_value(e).expect("examples serialise")
}

fn data(cfg: &Config, a: DataArgs) -> Result<()> {
    let opts = SynthOptions {
        per_document: a.per_doc,
        held_out: a.held_out,
        negatives: a.negatives,
        within: a.within,
        mode: a.mode,
        seed: a.seed,
        ..SynthOptions::default()
    };
    opts.check()?;
    if a.out.exists() && !a.out.is_dir() {
        bail!("--out {}: is a file, not a folder", a.out.display());
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("--out {}: cannot create the folder", a.out.display()))?;
    let bars = Bars::new(a.json);
    let engine = crate::open::reader(cfg, &bars)?;
    let generator = if a.no_generate {
        None
    } else {
        Some(cairn_engine::load_generator(cfg)?)
    };
    let (examples, report) = cairn_engine::synthesize(&engine, generator.as_deref(), &opts, &bars)?;
    let (train, held): (Vec<&SynthExample>, Vec<&SynthExample>) =
        examples.iter().partition(|e| e.split == Split::Train);
    let qa: Vec<serde_json::Value> = held
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({
                "id": format!("synth-{}", i + 1),
                "question": e.query,
                "gold": [e.doc],
                "kind": format!("synthetic-{}", serde_json::to_value(e.kind).unwrap().as_str().unwrap_or("")),
            })
        })
        .collect();
    let files = [
        (
            "train.jsonl",
            train.iter().map(|e| triple(e)).collect::<Vec<_>>(),
        ),
        ("held_out.jsonl", held.iter().map(|e| triple(e)).collect()),
        ("held_out.qa.jsonl", qa),
    ];
    for (name, lines) in &files {
        write_lines(&a.out.join(name), lines)?;
    }
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["out"] = json!(a.out.display().to_string());
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{} documents ({} held out), {} passages sampled",
        report.documents, report.held_out_documents, report.sampled
    );
    println!(
        "questions: {} from headings, {} generated{} ({} unusable replies)",
        report.heading_questions,
        report.generated_questions,
        report
            .generator
            .as_ref()
            .map(|g| format!(" by {g}"))
            .unwrap_or_default(),
        report.generated_unusable
    );
    println!(
        "kept {} ({} heading, {} generated): {} train, {} held out; dropped {} not found again within the top {}, {} without a negative, {} duplicates",
        report.kept,
        report.kept_heading,
        report.kept_generated,
        report.train,
        report.held_out,
        report.not_found_again,
        a.within,
        report.no_negatives,
        report.duplicates
    );
    for (name, lines) in &files {
        println!(
            "wrote {} lines to {}",
            lines.len(),
            a.out.join(name).display()
        );
    }
    if report.kept == 0 {
        bail!("no question was kept: the collection is too small, or no passage was found again by its question (try a larger --within)");
    }
    Ok(())
}

/// A `cairn train data` line: the question and its passages' chunk ids.
struct Line {
    query: String,
    doc: String,
    chunk: u64,
    negatives: Vec<u64>,
}

fn read_examples(path: &Path) -> Result<Vec<Line>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "{}: cannot be read (written by `cairn train data`)",
            path.display()
        )
    })?;
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| anyhow::anyhow!("{}:{}: {what}", path.display(), i + 1);
        let v: serde_json::Value =
            serde_json::from_str(l).map_err(|e| bad(&format!("not JSON: {e}")))?;
        let query = v["query"]
            .as_str()
            .filter(|q| !q.trim().is_empty())
            .ok_or_else(|| bad("field `query` is missing or empty"))?;
        let chunk = v["chunk"]
            .as_u64()
            .ok_or_else(|| bad("field `chunk` (the positive's chunk id, as `cairn train data` writes it) is missing"))?;
        let negatives = v["negative_chunks"]
            .as_array()
            .ok_or_else(|| bad("field `negative_chunks` is missing"))?
            .iter()
            .map(|n| {
                n.as_u64()
                    .ok_or_else(|| bad("`negative_chunks` holds a non-id"))
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(Line {
            query: query.to_string(),
            doc: v["doc"].as_str().unwrap_or_default().to_string(),
            chunk,
            negatives,
        });
    }
    Ok(out)
}

/// Passage hit@5 and MRR@10 of dense search for `queries` (vectors, with
/// the positive's chunk id).
fn dense_scores(engine: &cairn_engine::Engine, queries: &[(Vec<f32>, u64)]) -> Result<(f64, f64)> {
    let (mut hit5, mut mrr) = (0.0, 0.0);
    for (q, chunk) in queries {
        let ranked = engine.dense_candidates(q, 10)?;
        if let Some(i) = ranked.iter().position(|s| s.id == *chunk) {
            mrr += 1.0 / (i + 1) as f64;
            if i < 5 {
                hit5 += 1.0;
            }
        }
    }
    let n = queries.len().max(1) as f64;
    Ok((hit5 / n, mrr / n))
}

fn adapter(cfg: &Config, a: AdapterArgs) -> Result<()> {
    let bars = Bars::new(a.json);
    let engine = crate::open::reader(cfg, &bars)?;
    let path = engine.dir().join(cairn_engine::ADAPTER_FILE);
    if a.remove {
        let existed = match std::fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        };
        if a.json {
            println!(
                "{}",
                json!({"removed": existed, "path": path.display().to_string()})
            );
        } else if existed {
            println!("removed the query adapter {}", path.display());
        } else {
            println!("collection `{}` has no query adapter", cfg.collection);
        }
        return Ok(());
    }
    let dir = a.data.expect("clap requires --data");
    if a.rank == 0 || a.epochs == 0 || a.learning_rate.is_nan() || a.learning_rate <= 0.0 {
        bail!("--rank, --epochs and --learning-rate must be above 0");
    }
    let train_lines = read_examples(&dir.join("train.jsonl"))?;
    let held_lines = read_examples(&dir.join("held_out.jsonl"))?;
    if train_lines.is_empty() {
        bail!(
            "{}: no training examples",
            dir.join("train.jsonl").display()
        );
    }
    if held_lines.is_empty() {
        bail!(
            "{}: no held-out examples to check the adapter on (cairn train data --held-out)",
            dir.join("held_out.jsonl").display()
        );
    }
    let mut ids: Vec<u64> = train_lines
        .iter()
        .chain(&held_lines)
        .flat_map(|l| std::iter::once(l.chunk).chain(l.negatives.iter().copied()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let vectors = engine.chunk_vectors(&ids)?;
    let embedder = engine.embedder().clone();
    use cairn_core::Progress;
    bars.begin(
        "embedding questions",
        (train_lines.len() + held_lines.len()) as u64,
    );
    let mut missing = 0usize;
    // A fifth of the training documents is set apart to pick the epoch
    // (early stopping), so that the held-out part only judges the result.
    let train_docs: Vec<String> = {
        let set: std::collections::BTreeSet<&String> = train_lines.iter().map(|l| &l.doc).collect();
        set.into_iter().cloned().collect()
    };
    let validation_docs = cairn_engine::held_out_documents(&train_docs, 0.2, a.seed);
    let mut examples = Vec::new();
    let mut validation = Vec::new();
    for l in &train_lines {
        let Some(positive) = vectors.get(&l.chunk) else {
            missing += 1;
            bars.advance(1);
            continue;
        };
        let e = cairn_engine::AdapterExample {
            query: embedder.embed_query(&l.query)?,
            positive: positive.clone(),
            negatives: l
                .negatives
                .iter()
                .filter_map(|n| vectors.get(n).cloned())
                .collect(),
        };
        if validation_docs.contains(&l.doc) {
            validation.push(e);
        } else {
            examples.push(e);
        }
        bars.advance(1);
    }
    let mut held = Vec::new();
    for l in &held_lines {
        if vectors.contains_key(&l.chunk) {
            held.push((embedder.embed_query(&l.query)?, l.chunk));
        } else {
            missing += 1;
        }
        bars.advance(1);
    }
    bars.end();
    if examples.is_empty() || held.is_empty() {
        bail!("the examples' passages are no longer in collection `{}` (documents changed since `cairn train data`): write the data again", cfg.collection);
    }
    let opts = cairn_engine::AdapterOptions {
        rank: a.rank,
        epochs: a.epochs,
        patience: a.patience,
        learning_rate: a.learning_rate,
        seed: a.seed,
        ..Default::default()
    };
    let mut trained = cairn_engine::train_adapter(
        &examples,
        &validation,
        embedder.dim(),
        embedder.model_id(),
        &opts,
    )?;
    let (baseline_hit5, baseline_mrr10) = dense_scores(&engine, &held)?;
    let adapted: Vec<(Vec<f32>, u64)> = held
        .iter()
        .map(|(q, c)| Ok((trained.apply(q)?, *c)))
        .collect::<Result<_>>()?;
    let (adapted_hit5, adapted_mrr10) = dense_scores(&engine, &adapted)?;
    let f = &mut trained.figures;
    f.held_out_examples = held.len();
    f.baseline_hit5 = baseline_hit5;
    f.adapted_hit5 = adapted_hit5;
    f.baseline_mrr10 = baseline_mrr10;
    f.adapted_mrr10 = adapted_mrr10;
    let worse = adapted_hit5 < baseline_hit5;
    // Epoch 0 kept: no epoch lowered the validation loss, and the adapter
    // is the identity; nothing worth installing.
    let untrained = trained.figures.best_epoch == 0;
    let installed = (!worse && !untrained) || a.force;
    if installed {
        trained.save(engine.dir())?;
    }
    let f = &trained.figures;
    if a.json {
        let mut v = serde_json::to_value(f)?;
        v["installed"] = json!(installed);
        v["worse"] = json!(worse);
        v["untrained"] = json!(untrained);
        v["skipped_missing_passages"] = json!(missing);
        v["path"] = json!(path.display().to_string());
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "trained on {} examples (rank {}; kept epoch {} of {} run): loss {:.3} → {:.3}; validation ({} examples) {:.3} → {:.3}",
        f.train_examples,
        a.rank,
        f.best_epoch,
        f.epochs_run,
        f.loss_start,
        f.loss_end,
        f.validation_examples,
        f.validation_loss_start,
        f.validation_loss_end
    );
    println!(
        "held out ({} questions), dense search: hit@5 {:.3} → {:.3}, MRR@10 {:.3} → {:.3}",
        f.held_out_examples, f.baseline_hit5, f.adapted_hit5, f.baseline_mrr10, f.adapted_mrr10
    );
    if missing > 0 {
        println!("{missing} examples skipped: their passages are no longer in the collection");
    }
    if installed {
        println!(
            "installed {}{}",
            path.display(),
            if worse {
                " (--force: held-out hit@5 got worse)"
            } else {
                ""
            }
        );
    } else if untrained {
        println!("rejected: no epoch lowered the validation loss, so the adapter would change nothing; nothing installed");
    } else {
        println!(
            "rejected: held-out hit@5 got worse; nothing installed (--force installs it anyway)"
        );
    }
    Ok(())
}
