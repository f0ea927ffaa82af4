//! `cairn feedback`: rate a logged answer (`--last` after `cairn ask` or
//! `cairn chat`, or `--answer ID`), list and count the ratings, and export
//! them as training data (sft, dpo, kto, retrieval JSONL).

use anyhow::{bail, Context, Result};
use cairn_engine::{Collection, ExportFormat, Rating};
use std::io::Write;
use std::path::PathBuf;

/// Rate an answer, or (with a subcommand) read the log.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct FeedbackArgs {
    #[command(subcommand)]
    command: Option<FeedbackCommand>,
    #[command(flatten)]
    rate: RateArgs,
}

#[derive(clap::Args, Debug)]
struct RateArgs {
    /// Rate the newest answer logged in this collection.
    #[arg(long, conflicts_with = "answer")]
    last: bool,
    /// Rate the answer with this id (`answer_id` of `ask --json`, the API).
    #[arg(long, value_name = "ID")]
    answer: Option<String>,
    /// A good answer.
    #[arg(long, conflicts_with = "down")]
    up: bool,
    /// A bad answer.
    #[arg(long)]
    down: bool,
    /// Why.
    #[arg(long, value_name = "TEXT")]
    comment: Option<String>,
    /// The citation numbers that helped, comma-separated (e.g. 1,3).
    #[arg(long, value_name = "N,...", value_delimiter = ',')]
    helpful: Vec<usize>,
    /// Print the stored rating as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand, Debug)]
enum FeedbackCommand {
    /// Ratings, newest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Counts by rating, comments, helpful citations and model.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Write the rated answers as JSONL training data: sft
    /// {prompt, completion}, dpo {prompt, chosen, rejected}, kto {prompt,
    /// completion, label}, retrieval {query, positive, negatives}.
    Export {
        /// sft, dpo, kto or retrieval.
        #[arg(long, value_parser = ["sft", "dpo", "kto", "retrieval"])]
        format: String,
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

pub fn run(collection: &dyn Collection, args: FeedbackArgs) -> Result<()> {
    match args.command {
        Some(FeedbackCommand::List { limit, json }) => list(collection, limit, json),
        Some(FeedbackCommand::Stats { json }) => stats(collection, json),
        Some(FeedbackCommand::Export { format, out }) => export(collection, &format, out),
        None => rate(collection, args.rate),
    }
}

fn rate(collection: &dyn Collection, a: RateArgs) -> Result<()> {
    if !a.up && !a.down {
        bail!("say how the answer was: --up or --down (with --last or --answer ID), or use `cairn feedback list|stats|export`");
    }
    let answer = match (&a.answer, a.last) {
        (Some(id), _) => collection
            .answer(id)?
            .with_context(|| format!("no answer `{id}` is logged in collection `{}`", collection.name()))?,
        (None, true) => collection.last_answer()?.with_context(|| {
            format!(
                "no answer is logged in collection `{}` yet: ask one first (`cairn ask`, `cairn chat`, the API or the web UI)",
                collection.name()
            )
        })?,
        (None, false) => bail!("which answer? --last (the newest) or --answer ID"),
    };
    let mut numbers: Vec<usize> = answer.citations.iter().map(|(n, _)| *n).collect();
    numbers.sort_unstable();
    numbers.dedup();
    for n in &a.helpful {
        if !numbers.contains(n) {
            let have = if numbers.is_empty() {
                "it cites no source".to_string()
            } else {
                format!(
                    "its citations are {}",
                    numbers
                        .iter()
                        .map(|n| format!("[{n}]"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            bail!(
                "--helpful {n}: answer {} has no citation [{n}]; {have}",
                answer.id
            );
        }
    }
    let mut helpful = a.helpful.clone();
    helpful.sort_unstable();
    helpful.dedup();
    let rating = if a.up { Rating::Up } else { Rating::Down };
    let comment = a.comment.as_deref().filter(|c| !c.trim().is_empty());
    let id = collection.add_feedback(&answer.id, rating, comment, &helpful)?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "id": id,
                "answer_id": answer.id,
                "rating": rating,
                "comment": comment,
                "helpful_citations": helpful,
                "question": answer.question,
            })
        );
    } else {
        println!(
            "rated answer {} {} (feedback {id}): {}",
            answer.id,
            rating.as_str(),
            crate::snippet(&answer.question, 80)
        );
    }
    Ok(())
}

fn list(collection: &dyn Collection, limit: usize, json: bool) -> Result<()> {
    let records = collection.feedback(limit)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(());
    }
    if records.is_empty() {
        println!("no feedback in collection `{}` yet", collection.name());
    }
    for r in &records {
        let helpful = if r.helpful_citations.is_empty() {
            String::new()
        } else {
            format!(
                "  helpful: {}",
                r.helpful_citations
                    .iter()
                    .map(|n| format!("[{n}]"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        };
        println!(
            "{}  {:<4}  {}  {}  ({}){helpful}",
            r.created_at,
            r.rating.as_str(),
            r.answer_id,
            crate::snippet(&r.question, 70),
            r.model
        );
        if let Some(c) = &r.comment {
            println!("      “{}”", crate::snippet(c, 120));
        }
    }
    Ok(())
}

fn stats(collection: &dyn Collection, json: bool) -> Result<()> {
    let s = cairn_engine::feedback_stats(&collection.feedback(usize::MAX)?);
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!(
        "{} ratings of {} answers: {} up, {} down",
        s.ratings, s.answers_rated, s.up, s.down
    );
    println!(
        "with a comment: {} ({:.0}%); naming helpful citations: {} ({} citations)",
        s.with_comment,
        s.comment_share * 100.0,
        s.with_helpful,
        s.helpful_citations
    );
    for (model, m) in &s.per_model {
        println!("  {model}: {} up, {} down", m.up, m.down);
    }
    Ok(())
}

fn export(collection: &dyn Collection, format: &str, out: Option<PathBuf>) -> Result<()> {
    let format: ExportFormat = format.parse()?;
    let lines = cairn_engine::export_feedback(collection, format)?;
    let mut text = String::new();
    for l in &lines {
        text.push_str(&serde_json::to_string(l)?);
        text.push('\n');
    }
    match out {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote {} {} examples to {}",
                lines.len(),
                format.name(),
                path.display()
            );
        }
        None => {
            let mut o = std::io::stdout().lock();
            o.write_all(text.as_bytes())?;
            o.flush()?;
        }
    }
    Ok(())
}
