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
