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
    /// Train a cross-encoder reranker, initialised from the collection's
    /// embedding model, on the training part of `cairn train data`'s
    /// output (each question's passage against its hard negatives), check
    /// it on the held-out part (the search's top --depth passages, in
    /// fused order and reranked), and install it in the collection
    /// (reranker/, used by --rerank from then on, a running server
    /// included) unless held-out hit@1 got worse. --remove uninstalls it.
    Reranker(RerankerArgs),
    /// Fine-tune the generator (the embedded GGUF model, Llama
    /// architecture) on cited answers: for each question of `cairn train
    /// data`'s output, the prompt `cairn ask` would build, and as answer
    /// the sentences of the question's own passage the critic ranks best,
    /// each ending with its source's marker ("… [2]."); plus answers users
    /// rated up. Trains a LoRA adapter in Rust (candle) on the last
    /// --layers blocks, keeps the epoch with the lowest answer loss on the
    /// held-out questions, and installs it in the collection
    /// (generator/lora.gguf, applied by llama.cpp to every answer from then
    /// on, a running server included) unless that loss did not fall.
    /// --remove uninstalls it.
    Generator(crate::train_generator::GeneratorArgs),
}

/// How a reranker is trained and checked (`cairn train reranker`, `cairn
/// improve`).
#[derive(clap::Args, Debug, Clone)]
pub struct RerankerOpts {
    /// Passes over the training pairs; with more than one, the epoch that
    /// ranks a fifth of the training documents (set apart) best is kept.
    #[arg(long, default_value_t = RerankerOpts::default().epochs)]
    pub epochs: usize,
    /// Pairs per training step.
    #[arg(long, default_value_t = RerankerOpts::default().batch_size)]
    pub batch_size: usize,
    /// AdamW's peak step size (linear warm-up over a tenth of the steps,
    /// then linear decay).
    #[arg(long, default_value_t = RerankerOpts::default().learning_rate)]
    pub learning_rate: f64,
    /// The most tokens of a (question, passage) pair in training; longer
    /// passages are cut.
    #[arg(long, default_value_t = RerankerOpts::default().max_tokens)]
    pub max_tokens: usize,
    /// The loss: `pointwise` (binary cross-entropy per pair, as
    /// sentence-transformers' CrossEncoder.fit) or `listwise` (each
    /// question's passages together: softmax over its positive and
    /// negatives).
    #[arg(long, default_value = "pointwise", value_parser = ["pointwise", "listwise"])]
    pub loss: String,
    /// Train on at most this many questions (0: all), for a quicker run.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_questions: usize,
    /// Held-out check: the search's top N passages are reranked.
    #[arg(long, default_value_t = RerankerOpts::default().depth, value_name = "N")]
    pub depth: usize,
    /// The BERT model to start from (a name in the models dir or a
    /// directory with config.json, tokenizer.json and model.safetensors);
    /// default: the collection's embedding model when it has safetensors
    /// weights, else all-MiniLM-L6-v2.
    #[arg(long, value_name = "MODEL")]
    pub base: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl Default for RerankerOpts {
    fn default() -> Self {
        RerankerOpts {
            epochs: 1,
            batch_size: 16,
            learning_rate: 2e-5,
            max_tokens: 256,
            loss: "pointwise".into(),
            max_questions: 0,
            depth: 20,
            base: None,
            seed: 0,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct RerankerArgs {
    /// The folder `cairn train data` wrote (train.jsonl, held_out.jsonl).
    #[arg(long, value_name = "DIR", required_unless_present = "remove")]
    data: Option<PathBuf>,
    #[command(flatten)]
    opts: RerankerOpts,
    /// Install it even if held-out hit@1 got worse.
    #[arg(long)]
    force: bool,
    /// Uninstall the collection's reranker.
    #[arg(long, conflicts_with_all = ["data", "force"])]
    remove: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// How a query adapter is trained (`cairn train adapter`, `cairn improve`).
#[derive(clap::Args, Debug, Clone)]
pub struct AdapterOpts {
    /// Rank of the map.
    #[arg(long, default_value_t = AdapterOpts::default().rank)]
    pub rank: usize,
    /// At most this many passes over the training examples; training stops
    /// when the loss on a fifth of the training documents, set apart, has
    /// not improved for --patience epochs, and keeps the best epoch.
    #[arg(long, default_value_t = AdapterOpts::default().epochs)]
    pub epochs: usize,
    #[arg(long, default_value_t = AdapterOpts::default().patience)]
    pub patience: usize,
    /// Adam's step size.
    #[arg(long, default_value_t = AdapterOpts::default().learning_rate)]
    pub learning_rate: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl Default for AdapterOpts {
    fn default() -> Self {
        AdapterOpts {
            rank: 16,
            epochs: 30,
            patience: 3,
            learning_rate: 2e-3,
            seed: 0,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct AdapterArgs {
    /// The folder `cairn train data` wrote (train.jsonl, held_out.jsonl).
    #[arg(long, value_name = "DIR", required_unless_present = "remove")]
    data: Option<PathBuf>,
    #[command(flatten)]
    opts: AdapterOpts,
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
        TrainCommand::Reranker(a) => reranker(cfg, a),
        TrainCommand::Generator(a) => crate::train_generator::run(cfg, a),
    }
}

pub(crate) fn write_lines(path: &Path, lines: &[serde_json::Value]) -> Result<()> {
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

/// Held-out examples as a question set for `cairn eval --qa`: each
/// question's gold is its passage's document; the kind says where it came
/// from (synthetic-heading, synthetic-generated, synthetic-feedback).
pub(crate) fn qa_lines(held: &[&SynthExample]) -> Vec<serde_json::Value> {
    held.iter()
        .enumerate()
        .map(|(i, e)| {
            json!({
                "id": format!("synth-{}", i + 1),
                "question": e.query,
                "gold": [e.doc],
                "kind": format!("synthetic-{}", serde_json::to_value(e.kind).unwrap().as_str().unwrap_or("")),
            })
        })
        .collect()
}

pub(crate) fn triple(e: &SynthExample) -> serde_json::Value {
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
    let qa = qa_lines(&held);
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

/// A line of a `cairn train data` file: its JSON, its question and its
/// positive's chunk id (both checked), and a maker of errors naming the
/// file and line.
pub(crate) struct DataLine<'a> {
    pub(crate) v: serde_json::Value,
    pub(crate) query: String,
    pub(crate) chunk: u64,
    path: &'a Path,
    line: usize,
}

impl DataLine<'_> {
    fn bad(&self, what: &str) -> anyhow::Error {
        anyhow::anyhow!("{}:{}: {what}", self.path.display(), self.line)
    }
}

/// The lines of a `cairn train data` file (blank ones skipped).
pub(crate) fn data_lines(path: &Path) -> Result<Vec<DataLine<'_>>> {
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
            .ok_or_else(|| bad("field `query` is missing or empty"))?
            .to_string();
        let chunk = v["chunk"]
            .as_u64()
            .ok_or_else(|| bad("field `chunk` (the positive's chunk id, as `cairn train data` writes it) is missing"))?;
        out.push(DataLine {
            v,
            query,
            chunk,
            path,
            line: i + 1,
        });
    }
    Ok(out)
}

fn read_examples(path: &Path) -> Result<Vec<Line>> {
    let mut out = Vec::new();
    for d in data_lines(path)? {
        let (v, bad) = (&d.v, |what: &str| d.bad(what));
        let (query, chunk) = (&d.query, d.chunk);
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

/// `--remove`: delete the collection's installed `what` (a file or a
/// folder) and say whether there was one.
pub(crate) fn uninstall(path: &Path, what: &str, collection: &str, json: bool) -> Result<()> {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    let existed = match removed {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    };
    if json {
        println!(
            "{}",
            json!({"removed": existed, "path": path.display().to_string()})
        );
    } else if existed {
        println!("removed the {what} {}", path.display());
    } else {
        println!("collection `{collection}` has no {what}");
    }
    Ok(())
}

/// A query adapter trained on a `cairn train data` folder, and its
/// held-out figures: passage hit@5 and MRR@10 of dense search without an
/// adapter, with the one installed now (if any), and with the new one.
pub(crate) struct AdapterCheck {
    pub adapter: cairn_engine::QueryAdapter,
    /// Hit@5 and MRR@10 with the adapter installed before (None: none was).
    pub installed: Option<(f64, f64)>,
    /// Epoch 0 kept: no epoch lowered the validation loss, and the adapter
    /// is the identity.
    pub untrained: bool,
    /// Examples whose passages are no longer in the collection.
    pub missing: usize,
}

impl AdapterCheck {
    pub fn worse(&self) -> bool {
        self.adapter.figures.adapted_hit5 < self.adapter.figures.baseline_hit5
    }

    /// The report `--json` prints (without the decision).
    pub fn report(&self) -> Result<serde_json::Value> {
        let mut v = serde_json::to_value(&self.adapter.figures)?;
        v["untrained"] = json!(self.untrained);
        v["skipped_missing_passages"] = json!(self.missing);
        if let Some((hit5, mrr10)) = self.installed {
            v["installed_hit5"] = json!(hit5);
            v["installed_mrr10"] = json!(mrr10);
        }
        Ok(v)
    }
}

pub(crate) fn check_adapter(
    engine: &cairn_engine::Engine,
    dir: &Path,
    o: &AdapterOpts,
    bars: &Bars,
) -> Result<AdapterCheck> {
    if o.rank == 0 || o.epochs == 0 || o.learning_rate.is_nan() || o.learning_rate <= 0.0 {
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
    let validation_docs = validation_documents(train_lines.iter().map(|l| &l.doc), o.seed);
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
        bail!("the examples' passages are no longer in collection `{}` (documents changed since `cairn train data`): write the data again", engine.config().collection);
    }
    let opts = cairn_engine::AdapterOptions {
        rank: o.rank,
        epochs: o.epochs,
        patience: o.patience,
        learning_rate: o.learning_rate,
        seed: o.seed,
        ..Default::default()
    };
    let mut trained = cairn_engine::train_adapter(
        &examples,
        &validation,
        embedder.dim(),
        embedder.model_id(),
        &opts,
    )?;
    let (baseline_hit5, baseline_mrr10) = dense_scores(engine, &held)?;
    // (One that does not load, e.g. for another model, counts as none.)
    let installed = match engine.query_adapter().ok().flatten() {
        Some(now) => {
            let mapped: Vec<(Vec<f32>, u64)> = held
                .iter()
                .map(|(q, c)| Ok((now.apply(q)?, *c)))
                .collect::<Result<_>>()?;
            Some(dense_scores(engine, &mapped)?)
        }
        None => None,
    };
    let adapted: Vec<(Vec<f32>, u64)> = held
        .iter()
        .map(|(q, c)| Ok((trained.apply(q)?, *c)))
        .collect::<Result<_>>()?;
    let (adapted_hit5, adapted_mrr10) = dense_scores(engine, &adapted)?;
    let f = &mut trained.figures;
    f.held_out_examples = held.len();
    f.baseline_hit5 = baseline_hit5;
    f.adapted_hit5 = adapted_hit5;
    f.baseline_mrr10 = baseline_mrr10;
    f.adapted_mrr10 = adapted_mrr10;
    let untrained = trained.figures.best_epoch == 0;
    Ok(AdapterCheck {
        adapter: trained,
        installed,
        untrained,
        missing,
    })
}

/// The training documents set apart to pick the epoch: a fifth of them,
/// by a hash of the seed and the name.
fn validation_documents<'a>(
    docs: impl Iterator<Item = &'a String>,
    seed: u64,
) -> std::collections::HashSet<String> {
    let set: std::collections::BTreeSet<&String> = docs.collect();
    let docs: Vec<String> = set.into_iter().cloned().collect();
    cairn_engine::held_out_documents(&docs, 0.2, seed)
}

fn adapter(cfg: &Config, a: AdapterArgs) -> Result<()> {
    let bars = Bars::new(a.json);
    let engine = crate::open::reader(cfg, &bars)?;
    let path = engine.dir().join(cairn_engine::ADAPTER_FILE);
    if a.remove {
        return uninstall(&path, "query adapter", &cfg.collection, a.json);
    }
    let dir = a.data.expect("clap requires --data");
    let check = check_adapter(&engine, &dir, &a.opts, &bars)?;
    let (worse, untrained) = (check.worse(), check.untrained);
    let installed = (!worse && !untrained) || a.force;
    if installed {
        check.adapter.save(engine.dir())?;
    }
    let f = &check.adapter.figures;
    if a.json {
        let mut v = check.report()?;
        v["installed"] = json!(installed);
        v["worse"] = json!(worse);
        v["path"] = json!(path.display().to_string());
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "trained on {} examples (rank {}; kept epoch {} of {} run): loss {:.3} → {:.3}; validation ({} examples) {:.3} → {:.3}",
        f.train_examples,
        a.opts.rank,
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
    if check.missing > 0 {
        println!(
            "{} examples skipped: their passages are no longer in the collection",
            check.missing
        );
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

#[cfg(not(feature = "train"))]
fn reranker(_cfg: &Config, _a: RerankerArgs) -> Result<()> {
    bail!("this cairn was built without training (cargo feature `train`): rebuild with `cargo build -p cairn --features train`")
}

/// A `cairn train data` line with its passages' texts.
#[cfg(feature = "train")]
struct TextLine {
    doc: String,
    chunk: u64,
    example: cairn_train::RerankExample,
}

#[cfg(feature = "train")]
fn read_text_examples(path: &Path) -> Result<Vec<TextLine>> {
    let mut out = Vec::new();
    for d in data_lines(path)? {
        let (v, bad) = (&d.v, |what: &str| d.bad(what));
        let (query, chunk) = (&d.query, d.chunk);
        let texts = |field: &str| -> Result<Vec<String>> {
            v[field]
                .as_array()
                .ok_or_else(|| bad(&format!("field `{field}` (a list of passages) is missing")))?
                .iter()
                .map(|t| {
                    t.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad(&format!("`{field}` holds a non-text")))
                })
                .collect()
        };
        let positives = texts("positive")?;
        if positives.is_empty() {
            return Err(bad("field `positive` is empty"));
        }
        out.push(TextLine {
            doc: v["doc"].as_str().unwrap_or_default().to_string(),
            chunk,
            example: cairn_train::RerankExample {
                query: query.to_string(),
                positives,
                negatives: texts("negatives")?,
            },
        });
    }
    Ok(out)
}

/// Passage ranks of a question set: hit@1, hit@5 and MRR@10.
#[cfg(feature = "train")]
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub(crate) struct RankTally {
    pub questions: usize,
    pub hit1: f64,
    pub hit5: f64,
    pub mrr10: f64,
}

#[cfg(feature = "train")]
impl RankTally {
    /// Count a question whose passage came at 0-based `rank` (`None`: not
    /// in the list).
    fn add(&mut self, rank: Option<usize>) {
        self.questions += 1;
        if let Some(r) = rank {
            if r == 0 {
                self.hit1 += 1.0;
            }
            if r < 5 {
                self.hit5 += 1.0;
            }
            if r < 10 {
                self.mrr10 += 1.0 / (r + 1) as f64;
            }
        }
    }
    fn mean(self) -> RankTally {
        let n = self.questions.max(1) as f64;
        RankTally {
            questions: self.questions,
            hit1: self.hit1 / n,
            hit5: self.hit5 / n,
            mrr10: self.mrr10 / n,
        }
    }
}

/// A reranker trained on a `cairn train data` folder, and its held-out
/// figures: the passage ranks of the search's top `depth` in fused order,
/// reranked by the reranker installed now (if any), and by the new one.
#[cfg(feature = "train")]
pub(crate) struct RerankerCheck {
    pub trained: cairn_train::TrainedReranker,
    pub fused: RankTally,
    pub installed: Option<RankTally>,
    pub reranked: RankTally,
    pub validation_questions: usize,
    pub depth: usize,
}

#[cfg(feature = "train")]
impl RerankerCheck {
    pub fn worse(&self) -> bool {
        self.reranked.hit1 < self.fused.hit1
    }

    /// The report `--json` prints (without the decision).
    pub fn report(&self) -> Result<serde_json::Value> {
        let mut report = serde_json::to_value(&self.trained.figures)?;
        report["held_out"] =
            json!({"depth": self.depth, "fused": self.fused, "reranked": self.reranked});
        if let Some(i) = self.installed {
            report["held_out"]["installed"] = json!(i);
        }
        report["validation_questions"] = json!(self.validation_questions);
        Ok(report)
    }

    /// Write it into `dir` (a new folder), with the report as
    /// training.json.
    pub fn save(&self, dir: &Path, report: &serde_json::Value) -> Result<()> {
        let _ = std::fs::remove_dir_all(dir);
        self.trained.save(dir)?;
        std::fs::write(
            dir.join("training.json"),
            serde_json::to_vec_pretty(report)?,
        )
        .with_context(|| format!("writing {}", dir.join("training.json").display()))
    }
}

/// `engine` must search without reranking (`search.rerank = false`): its
/// order is the fused one the reranker is judged against.
#[cfg(feature = "train")]
pub(crate) fn check_reranker(
    engine: &cairn_engine::Engine,
    dir: &Path,
    o: &RerankerOpts,
    bars: &Bars,
) -> Result<RerankerCheck> {
    use cairn_core::Progress;
    let cfg = engine.config();
    if o.depth == 0 {
        bail!("--depth must be at least 1");
    }
    let mut train_lines = read_text_examples(&dir.join("train.jsonl"))?;
    let held_lines = read_text_examples(&dir.join("held_out.jsonl"))?;
    if train_lines.is_empty() {
        bail!(
            "{}: no training examples (write them with `cairn train data`)",
            dir.join("train.jsonl").display()
        );
    }
    if held_lines.is_empty() {
        bail!(
            "{}: no held-out examples to check the reranker on (cairn train data --held-out)",
            dir.join("held_out.jsonl").display()
        );
    }
    if o.max_questions > 0 && train_lines.len() > o.max_questions {
        // A sample that follows from --seed: by a hash of each question.
        let key = |l: &TextLine| {
            let mut h = 0xcbf2_9ce4_8422_2325u64 ^ o.seed;
            for b in l.example.query.bytes() {
                h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
            }
            h
        };
        train_lines.sort_by_key(key);
        train_lines.truncate(o.max_questions);
    }
    // A fifth of the training documents is set apart to pick the epoch, so
    // that the held-out part only judges the result.
    let (mut train, mut validation) = (Vec::new(), Vec::new());
    let validation_docs = if o.epochs > 1 {
        validation_documents(train_lines.iter().map(|l| &l.doc), o.seed)
    } else {
        Default::default()
    };
    for l in &train_lines {
        if validation_docs.contains(&l.doc) {
            validation.push(l.example.clone());
        } else {
            train.push(l.example.clone());
        }
    }
    let base = match &o.base {
        Some(b) => cairn_models::registry::resolve(b, &cfg.models_dir())?,
        None => {
            let own = cairn_models::registry::resolve(&cfg.embed.model, &cfg.models_dir())?;
            if own.join("model.safetensors").is_file() {
                own
            } else {
                // (e.g. the int8 ONNX encoder: no weights to train from)
                cairn_models::registry::resolve("all-MiniLM-L6-v2", &cfg.models_dir())?
            }
        }
    };
    let opts = cairn_train::RerankOptions {
        epochs: o.epochs,
        batch_size: o.batch_size,
        learning_rate: o.learning_rate,
        max_tokens: o.max_tokens,
        seed: o.seed,
        loss: o
            .loss
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--loss {e}"))?,
        ..Default::default()
    };
    let trained = cairn_train::train_reranker(&base, &train, &validation, &opts, bars)?;

    bars.begin("reranking the held-out questions", held_lines.len() as u64);
    let scorer = trained.scorer(32);
    // (One that does not load counts as none.)
    let now = engine.installed_reranker().ok().flatten();
    let (mut fused, mut reranked) = (RankTally::default(), RankTally::default());
    let mut installed = now.as_ref().map(|_| RankTally::default());
    let rank_of = |scores: &[f32], hits: &[cairn_core::Hit], chunk: u64| {
        let mut order: Vec<usize> = (0..hits.len()).collect();
        order.sort_by(|&i, &j| scores[j].total_cmp(&scores[i]).then(i.cmp(&j)));
        order.iter().position(|&i| hits[i].chunk == chunk)
    };
    for l in &held_lines {
        let hits = engine.search(&l.example.query, o.depth, SearchMode::Hybrid)?;
        fused.add(hits.iter().position(|h| h.chunk == l.chunk));
        let pairs: Vec<(&str, &str)> = hits
            .iter()
            .map(|h| (l.example.query.as_str(), h.text.as_str()))
            .collect();
        reranked.add(rank_of(&scorer.scores(&pairs)?, &hits, l.chunk));
        if let (Some(now), Some(tally)) = (&now, installed.as_mut()) {
            let scores = now
                .score(cairn_core::Judgement::Relevance, &pairs)
                .map_err(|e| anyhow::anyhow!("the installed reranker: {e}"))?;
            tally.add(rank_of(&scores, &hits, l.chunk));
        }
        bars.advance(1);
    }
    bars.end();
    Ok(RerankerCheck {
        trained,
        fused: fused.mean(),
        installed: installed.map(RankTally::mean),
        reranked: reranked.mean(),
        validation_questions: validation.len(),
        depth: o.depth,
    })
}

#[cfg(feature = "train")]
fn reranker(cfg: &Config, a: RerankerArgs) -> Result<()> {
    // The held-out check compares the search's own order with the new
    // reranker's, so the search itself does not rerank.
    let mut cfg = cfg.clone();
    cfg.search.rerank = false;
    let bars = Bars::new(a.json);
    let engine = crate::open::reader(&cfg, &bars)?;
    let path = engine.dir().join(cairn_engine::RERANKER_DIR);
    if a.remove {
        return uninstall(&path, "reranker", &cfg.collection, a.json);
    }
    let dir = a.data.expect("clap requires --data");
    let check = check_reranker(&engine, &dir, &a.opts, &bars)?;
    let worse = check.worse();
    let installed = !worse || a.force;
    let (fused, reranked) = (check.fused, check.reranked);
    let f = &check.trained.figures;
    let mut report = check.report()?;
    report["installed"] = json!(installed);
    report["worse"] = json!(worse);
    report["path"] = json!(path.display().to_string());
    if installed {
        // Written beside and swapped in: an interrupted run leaves the
        // installed reranker as it was.
        let tmp = engine.dir().join(format!(
            "{}.new-{}",
            cairn_engine::RERANKER_DIR,
            std::process::id()
        ));
        check.save(&tmp, &report)?;
        cairn_engine::swap_in(&tmp, &path)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "trained on {} pairs ({} questions; {} epoch(s), kept {}) in {:.0} s: {:.1} pairs/s on {} threads, {:.0} tokens per pair; loss {}",
        f.train_pairs,
        f.train_questions,
        f.epochs_run,
        f.best_epoch,
        f.tokenize_seconds + f.train_seconds,
        f.pairs_per_second,
        f.threads,
        f.mean_tokens,
        f.epoch_loss
            .iter()
            .map(|l| format!("{l:.3}"))
            .collect::<Vec<_>>()
            .join(" → ")
    );
    if let (Some(first), Some(last)) = (f.validation.first(), f.validation.get(f.best_epoch)) {
        println!(
            "validation ({} questions, passage against its negatives): hit@1 {:.3} → {:.3}, MRR {:.3} → {:.3}",
            first.questions, first.hit1, last.hit1, first.mrr, last.mrr
        );
    }
    println!(
        "held out ({} questions, top {} of hybrid search): hit@1 {:.3} → {:.3}, hit@5 {:.3} → {:.3}, MRR@10 {:.3} → {:.3}",
        fused.questions,
        check.depth,
        fused.hit1,
        reranked.hit1,
        fused.hit5,
        reranked.hit5,
        fused.mrr10,
        reranked.mrr10
    );
    if installed {
        println!(
            "installed {}{}: `--rerank` uses it",
            path.display(),
            if worse {
                " (--force: held-out hit@1 got worse)"
            } else {
                ""
            }
        );
    } else {
        println!(
            "rejected: held-out hit@1 got worse; nothing installed (--force installs it anyway)"
        );
    }
    Ok(())
}
