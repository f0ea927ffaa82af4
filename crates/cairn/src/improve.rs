//! `cairn improve`: one round of export → train → check on held-out data
//! → promote or reject, recorded; `history` lists the rounds, `rollback`
//! puts back what a round replaced. The record and the promotions are
//! `cairn_engine::Improvements`; the training is `cairn train`'s.

use crate::progress::Bars;
use crate::train::{self, AdapterOpts, RerankerOpts};
use crate::train_generator::GeneratorOpts;
use anyhow::{bail, Context, Result};
use cairn_core::config::Config;
use cairn_engine::{Artefact, Decision, Event, Improvements, Skipped, Split, SynthOptions};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Run one round, or (with a subcommand) read the record.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ImproveArgs {
    #[command(subcommand)]
    command: Option<ImproveCommand>,
    #[command(flatten)]
    round: RoundArgs,
}

#[derive(clap::Subcommand, Debug)]
enum ImproveCommand {
    /// The rounds, oldest first: data sizes, each artefact's held-out
    /// metric before and after, the decision, and rollbacks.
    History {
        #[arg(long)]
        json: bool,
    },
    /// Put back what a round promoted had replaced (the newest round whose
    /// promotions stand, unless --round names it), as it was before.
    Rollback {
        #[arg(long, value_name = "N", conflicts_with = "learned")]
        round: Option<u32>,
        /// On a cluster: the learned version to undo (see `improve
        /// history`); default the newest that stands.
        #[arg(long, value_name = "V")]
        learned: Option<u32>,
        #[arg(long)]
        json: bool,
    },
}

/// A round's options; on a cluster they travel to the node that trains.
#[derive(clap::Args, Debug, Clone, Serialize, Deserialize)]
struct RoundArgs {
    /// Train only this (adapter, reranker or generator); default: the
    /// adapter and the reranker (the reranker and the generator need a
    /// cairn built with the `train` feature).
    #[arg(long, value_name = "ARTEFACT")]
    only: Option<Artefact>,
    /// Also train the generator's LoRA adapter (about 20 minutes more on 2
    /// cores), promoted when its answers to the held-out questions cite
    /// their passage more often.
    #[arg(long, conflicts_with = "only")]
    generator: bool,
    /// Passages sampled per document for synthetic questions.
    #[arg(long, default_value_t = 2, value_name = "N")]
    per_doc: usize,
    /// Share of the documents held out: they are never trained on, and the
    /// decision is taken on their questions.
    #[arg(long, default_value_t = 0.2, value_name = "SHARE")]
    held_out: f64,
    /// Heading questions only: no generator is loaded.
    #[arg(long)]
    no_generate: bool,
    /// Leave the feedback log's up-rated answers out of the data.
    #[arg(long)]
    no_feedback: bool,
    /// Promote an artefact only when its held-out metric (the adapter's
    /// dense passage hit@5, the reranker's hit@1) gains at least this much
    /// over what is installed now (negative: accept a loss up to that
    /// much, ties included). With 0 (the default) it must do better: a
    /// higher metric, or the same and a higher MRR@10.
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "GAIN",
        allow_negative_numbers = true
    )]
    min_gain: f64,
    /// Passes over the reranker's training pairs.
    #[arg(long, default_value_t = RerankerOpts::default().epochs)]
    reranker_epochs: usize,
    /// Train the reranker on at most this many questions (0: all).
    #[arg(long, default_value_t = 0, value_name = "N")]
    reranker_questions: usize,
    /// The most tokens of a reranker training pair.
    #[arg(long, default_value_t = RerankerOpts::default().max_tokens)]
    reranker_max_tokens: usize,
    /// Questions the generator's LoRA trains on at most (held-out ones: a
    /// quarter of it).
    #[arg(long, default_value_t = GeneratorOpts::default().max_examples, value_name = "N")]
    generator_examples: usize,
    /// Use a question for the generator when its passage is among the
    /// search's first N (default: the 3 passages of a training prompt).
    #[arg(long, value_name = "N")]
    generator_within: Option<usize>,
    /// Passes over the generator's training examples.
    #[arg(long, default_value_t = GeneratorOpts::default().epochs, value_name = "N")]
    generator_epochs: usize,
    /// The generator's blocks adapted, counted from the top (0: all).
    #[arg(long, default_value_t = GeneratorOpts::default().layers, value_name = "N")]
    generator_layers: usize,
    #[arg(long, default_value_t = GeneratorOpts::default().learning_rate, value_name = "LR")]
    generator_learning_rate: f64,
    /// Sampling, the held-out split and training follow from it; the same
    /// seed keeps the same documents held out from round to round.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train even when the data and options are those of the last round
    /// (which is otherwise recorded as having nothing new to learn from).
    #[arg(long)]
    again: bool,
    /// Print the round's record as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cfg: &Config, args: ImproveArgs) -> Result<()> {
    match args.command {
        Some(ImproveCommand::History { json }) => history(cfg, json),
        Some(ImproveCommand::Rollback {
            learned: Some(_), ..
        }) => bail!("--learned names a cluster's learned version: pass --cluster URL"),
        Some(ImproveCommand::Rollback { round, json, .. }) => rollback(cfg, round, json),
        None => {
            let json = args.round.json;
            let event = round(cfg, args.round)?;
            report_event(&event, json)
        }
    }
}

/// A cluster node's trainer: one round on its copy of a shard
/// (`cfg.collection`), with the options a `cairn --cluster URL improve`
/// sent; the round's record.
pub fn on_node(cfg: &Config, options: &serde_json::Value) -> Result<serde_json::Value> {
    let mut a: RoundArgs = serde_json::from_value(options.clone())
        .context("the improve round's options (client and node of different versions?)")?;
    a.json = true;
    Ok(serde_json::to_value(round(cfg, a)?)?)
}

/// `cairn --cluster URL improve`: the round runs on the node that trains
/// (the most free memory among those serving a shard of the collection),
/// on its copy of a shard; what it promotes is published and every node
/// installs it. `history` and `rollback` read and extend the collection's
/// learned log.
pub fn run_cluster(cfg: &Config, url: &str, args: ImproveArgs) -> Result<()> {
    let rt = crate::target::runtime()?;
    let cluster = crate::cluster::connect(&rt, cfg, url)?;
    let coll = cfg.collection.as_str();
    match args.command {
        Some(ImproveCommand::History { json }) => {
            let log = rt.block_on(cluster.learned(coll))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&log)?);
            } else if log.versions.is_empty() {
                println!("collection `{coll}` has learned nothing on the cluster yet");
            } else {
                for v in &log.versions {
                    print_learned(v);
                }
            }
            Ok(())
        }
        Some(ImproveCommand::Rollback {
            round: Some(_), ..
        }) => bail!(
            "on a cluster, name the learned version to undo with --learned V (`improve history` lists them)"
        ),
        Some(ImproveCommand::Rollback { learned, json, .. }) => {
            let v = rt.block_on(cluster.rollback_learned(coll, learned))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_learned(&v);
                println!("every node installs it within seconds");
            }
            Ok(())
        }
        None => {
            let mut a = args.round;
            if !(0.0..1.0).contains(&a.held_out) || a.held_out == 0.0 {
                bail!("--held-out must be above 0 and below 1: a round judges on held-out documents");
            }
            // On a cluster the adapter by default: the reranker (the
            // longest to train, used only by --rerank searches) and the
            // generator when asked for.
            if a.only.is_none() && !a.generator {
                a.only = Some(Artefact::Adapter);
            }
            let json = a.json;
            let options = serde_json::to_value(&a)?;
            let done = rt.block_on(cluster.improve(coll, options, |ev| {
                if json {
                    return;
                }
                if let cairn_cluster::wire::ImproveEvent::Start { node, shard } = ev {
                    eprintln!("training on node {node}, on its copy of shard {shard} of `{coll}`");
                }
            }))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&done)?);
                return Ok(());
            }
            let free: Vec<String> = done
                .free_memory
                .iter()
                .map(|(n, m)| match m {
                    Some(b) => format!("{n} {:.1} GiB", *b as f64 / (1u64 << 30) as f64),
                    None => format!("{n} unknown"),
                })
                .collect();
            println!(
                "node {} trained (free memory: {}), on shard {}",
                done.node,
                free.join(", "),
                done.shard
            );
            match serde_json::from_value::<Event>(done.record.clone()) {
                Ok(e) => print_event(&e, true),
                Err(_) => println!("{}", serde_json::to_string_pretty(&done.record)?),
            }
            match done.version {
                Some(v) => println!(
                    "published as learned version {v}: every node installs it within seconds"
                ),
                None => println!("nothing promoted: nothing published"),
            }
            Ok(())
        }
    }
}

fn print_learned(v: &cairn_cluster::learned::Learned) {
    let files: Vec<&str> = v.files.keys().map(String::as_str).collect();
    let what = if files.is_empty() {
        "nothing learned".to_string()
    } else {
        files.join(", ")
    };
    if v.is_baseline() {
        println!(
            "version {}: the baseline, what node {}'s copy had installed before the first round ({}): {what}",
            v.version,
            v.node,
            fmt_ms(v.at_ms)
        );
        return;
    }
    match v.undoes {
        Some(u) => println!(
            "version {}: rolls back version {u} ({}): {what}",
            v.version,
            fmt_ms(v.at_ms)
        ),
        None => println!(
            "version {}: round {} on node {}, shard {} ({}): {what}",
            v.version,
            v.round.map_or("?".into(), |r| r.to_string()),
            v.node,
            v.shard.map_or("?".into(), |s| s.to_string()),
            fmt_ms(v.at_ms)
        ),
    }
}

fn fmt_ms(ms: u64) -> String {
    cairn_core::time::rfc3339(ms / 1000)
}

/// The record of the configured collection (which must exist).
fn improvements(cfg: &Config) -> Result<Improvements> {
    let dir = cairn_engine::collection_dir(&cfg.data_dir(), &cfg.collection);
    if !dir.is_dir() {
        bail!(cairn_engine::EngineError::NoCollection(
            cfg.collection.clone()
        ));
    }
    Ok(Improvements::new(&dir))
}

fn round(cfg: &Config, a: RoundArgs) -> Result<Event> {
    if !(0.0..1.0).contains(&a.held_out) || a.held_out == 0.0 {
        bail!("--held-out must be above 0 and below 1: a round judges on held-out documents");
    }
    if !(-1.0..=1.0).contains(&a.min_gain) {
        bail!("--min-gain must be between -1 and 1, not {}", a.min_gain);
    }
    let opts = SynthOptions {
        per_document: a.per_doc,
        held_out: a.held_out,
        seed: a.seed,
        ..SynthOptions::default()
    };
    opts.check()?;
    // Checks compare the search's own order with a reranker's: the search
    // itself does not rerank.
    let mut cfg = cfg.clone();
    cfg.search.rerank = false;
    let bars = Bars::new(a.json);
    let engine = crate::open::reader(&cfg, &bars)?;
    let imp = Improvements::new(engine.dir());
    let round = imp.begin()?;
    let wanted: Vec<Artefact> = match a.only {
        Some(x) => vec![x],
        None if a.generator => Artefact::ALL.to_vec(),
        None => Artefact::DEFAULT.to_vec(),
    };
    if !a.json {
        eprintln!("round {}: writing training data", round.number);
    }

    // 1. The data: synthetic questions and up-rated answers, split by
    // document.
    let data = (|| -> Result<serde_json::Value> {
        let generator = if a.no_generate {
            None
        } else {
            Some(cairn_engine::load_generator(&cfg)?)
        };
        let (mut examples, report) =
            cairn_engine::synthesize(&engine, generator.as_deref(), &opts, &bars)?;
        let feedback = if a.no_feedback {
            vec![]
        } else {
            cairn_engine::feedback_examples(&engine, opts.held_out, opts.seed)?
        };
        let feedback_count = feedback.len();
        examples.extend(feedback);
        let (train_ex, held_ex): (Vec<_>, Vec<_>) =
            examples.iter().partition(|e| e.split == Split::Train);
        let dir = round.data_dir();
        train::write_lines(
            &dir.join("train.jsonl"),
            &train_ex
                .iter()
                .map(|e| train::triple(e))
                .collect::<Vec<_>>(),
        )?;
        train::write_lines(
            &dir.join("held_out.jsonl"),
            &held_ex.iter().map(|e| train::triple(e)).collect::<Vec<_>>(),
        )?;
        train::write_lines(&dir.join("held_out.qa.jsonl"), &train::qa_lines(&held_ex))?;
        // What the round learns from: its data, its options and the
        // embedding model; the same as the last round's means nothing new.
        let mut h = blake3::Hasher::new();
        for f in ["train.jsonl", "held_out.jsonl"] {
            let p = dir.join(f);
            h.update(&std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?);
        }
        h.update(
            format!(
                "{:?} {} {} {} {} {} {:?} {} {} {} {} {}",
                wanted,
                a.min_gain,
                a.reranker_epochs,
                a.reranker_questions,
                a.reranker_max_tokens,
                a.generator_examples,
                a.generator_within,
                a.generator_epochs,
                a.generator_layers,
                a.generator_learning_rate,
                engine.embedder().model_id(),
                cfg.generate.model
            )
            .as_bytes(),
        );
        Ok(json!({
            "digest": h.finalize().to_hex().to_string(),
            "documents": report.documents,
            "held_out_documents": report.held_out_documents,
            "synthetic": report.kept,
            "feedback": feedback_count,
            "train": train_ex.len(),
            "held_out": held_ex.len(),
            "generator": report.generator,
        }))
    })();
    let data = match data {
        Ok(d) => d,
        Err(e) => {
            // Recorded, so that history shows the round and why it did
            // nothing.
            let skipped = wanted
                .iter()
                .map(|&artefact| Skipped {
                    artefact,
                    reason: format!("no training data: {e:#}"),
                })
                .collect();
            round.finish(json!({"error": format!("{e:#}")}), vec![], skipped)?;
            return Err(e.context("writing the round's training data"));
        }
    };

    // Nothing new since the last round (and no rollback since): recorded,
    // nothing trained.
    if !a.again {
        if let Some(Event::Round {
            round: last,
            data: last_data,
            ..
        }) = imp.events()?.last()
        {
            if last_data.get("digest").is_some() && last_data["digest"] == data["digest"] {
                let reason = format!("nothing new since round {last}: the same training data and options (--again trains anyway)");
                let skipped = wanted
                    .iter()
                    .map(|&artefact| Skipped {
                        artefact,
                        reason: reason.clone(),
                    })
                    .collect();
                return Ok(round.finish(data, vec![], skipped)?);
            }
        }
    }

    let mut decisions = Vec::new();
    let mut skipped = Vec::new();
    let dir = round.data_dir();
    for artefact in wanted {
        if !a.json {
            eprintln!("round {}: training the {}", round.number, artefact.name());
        }
        let outcome = match artefact {
            Artefact::Adapter => adapter_candidate(&engine, &round, &dir, &a, &bars),
            Artefact::Reranker => reranker_candidate(&engine, &round, &dir, &a, &bars),
            Artefact::Generator => generator_candidate(&engine, &cfg, &round, &dir, &a, &bars),
        };
        cairn_core::failpoint::reach("improve.trained");
        match outcome {
            Ok(c) => {
                let gain = c.after - c.before;
                let tie_gain = c.tie_after - c.tie_before;
                let figures = format!(
                    "{} {:+.3}, {} {:+.3}",
                    c.metric, gain, c.tie_metric, tie_gain
                );
                let (promoted, reason) = match c.blocked {
                    Some(why) => (false, why),
                    None if gain < a.min_gain => (
                        false,
                        format!("{figures}: below the minimum gain {:+.3}", a.min_gain),
                    ),
                    // With no minimum gain, the candidate must do better:
                    // on a tie on the metric, a higher second metric.
                    // (Replacing what is there by its equal, or installing
                    // what changes no held-out rank, is churn without
                    // evidence.)
                    None if a.min_gain == 0.0 && gain == 0.0 && tie_gain <= 0.0 => (
                        false,
                        format!(
                            "{figures}: no better (a tie on {}, and not higher on {})",
                            c.metric, c.tie_metric
                        ),
                    ),
                    None => (
                        true,
                        format!("{figures}: at least the minimum gain {:+.3}", a.min_gain),
                    ),
                };
                if promoted {
                    round.promote(artefact)?;
                }
                decisions.push(Decision {
                    artefact,
                    promoted,
                    reason,
                    metric: c.metric.to_string(),
                    before: c.before,
                    after: c.after,
                    report: c.report,
                });
            }
            Err(e) => skipped.push(Skipped {
                artefact,
                reason: format!("{e:#}"),
            }),
        }
    }
    Ok(round.finish(data, decisions, skipped)?)
}

fn report_event(event: &Event, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(event)?);
    } else {
        print_event(event, true);
    }
    Ok(())
}

/// A trained candidate's held-out figures against what is installed now
/// (or nothing): `metric` decides, `tie_metric` breaks a tie; `blocked`
/// says why it cannot be promoted whatever the figures. It is written where
/// the round promotes it from.
struct Candidate {
    metric: &'static str,
    before: f64,
    after: f64,
    tie_metric: &'static str,
    tie_before: f64,
    tie_after: f64,
    blocked: Option<String>,
    report: serde_json::Value,
}

fn adapter_candidate(
    engine: &cairn_engine::Engine,
    round: &cairn_engine::Round,
    dir: &std::path::Path,
    a: &RoundArgs,
    bars: &Bars,
) -> Result<Candidate> {
    let opts = AdapterOpts {
        seed: a.seed,
        ..AdapterOpts::default()
    };
    let check = train::check_adapter(engine, dir, &opts, bars)?;
    let f = &check.adapter.figures;
    let (before, tie_before) = check
        .installed
        .unwrap_or((f.baseline_hit5, f.baseline_mrr10));
    let (after, tie_after) = (f.adapted_hit5, f.adapted_mrr10);
    let path = round.candidate(Artefact::Adapter)?;
    check
        .adapter
        .save(path.parent().expect("a candidate has a folder"))?;
    let blocked = check.untrained.then(|| {
        "no epoch lowered the validation loss: the adapter would change nothing".to_string()
    });
    Ok(Candidate {
        metric: "hit5",
        before,
        after,
        tie_metric: "mrr10",
        tie_before,
        tie_after,
        blocked,
        report: check.report()?,
    })
}

#[cfg(feature = "train")]
fn reranker_candidate(
    engine: &cairn_engine::Engine,
    round: &cairn_engine::Round,
    dir: &std::path::Path,
    a: &RoundArgs,
    bars: &Bars,
) -> Result<Candidate> {
    let opts = RerankerOpts {
        epochs: a.reranker_epochs,
        max_questions: a.reranker_questions,
        max_tokens: a.reranker_max_tokens,
        seed: a.seed,
        ..RerankerOpts::default()
    };
    let check = train::check_reranker(engine, dir, &opts, bars)?;
    let report = check.report()?;
    check.save(&round.candidate(Artefact::Reranker)?, &report)?;
    let before = check.installed.unwrap_or(check.fused);
    Ok(Candidate {
        metric: "hit1",
        before: before.hit1,
        after: check.reranked.hit1,
        tie_metric: "mrr10",
        tie_before: before.mrr10,
        tie_after: check.reranked.mrr10,
        blocked: None,
        report,
    })
}

#[cfg(not(feature = "train"))]
fn reranker_candidate(
    _engine: &cairn_engine::Engine,
    _round: &cairn_engine::Round,
    _dir: &std::path::Path,
    _a: &RoundArgs,
    _bars: &Bars,
) -> Result<Candidate> {
    bail!("this cairn was built without training (cargo feature `train`): rebuild with `cargo build -p cairn --features train` to train the reranker")
}

#[cfg(all(feature = "train", feature = "llama"))]
fn generator_candidate(
    engine: &cairn_engine::Engine,
    cfg: &Config,
    round: &cairn_engine::Round,
    dir: &std::path::Path,
    a: &RoundArgs,
    bars: &Bars,
) -> Result<Candidate> {
    use crate::train_generator as tg;
    use cairn_core::Progress;
    use cairn_generate::{Generator, Sampling};
    let o = GeneratorOpts {
        max_examples: a.generator_examples,
        within: a.generator_within,
        epochs: a.generator_epochs,
        layers: a.generator_layers,
        learning_rate: a.generator_learning_rate,
        seed: a.seed,
        no_feedback: a.no_feedback,
        ..GeneratorOpts::default()
    };
    let gen = tg::generator(cfg)?;
    let ex = tg::examples(engine, cfg, &gen, dir, &o, bars)?;
    // The held-out questions answered as `cairn ask` answers them (the
    // configured sampling), with what is installed now and with the
    // candidate.
    let sampling = cairn_engine::AskOptions::from_config(cfg).sampling;
    let installed = engine.generator_adapter(gen.model_name());
    let answer = |what: &str, adapter: Option<std::path::PathBuf>| {
        bars.begin(
            &format!("answering the held-out questions {what}"),
            ex.held.len() as u64,
        );
        let s = cairn_engine::score_answers(
            &gen,
            &ex.held,
            &Sampling {
                adapter,
                ..sampling.clone()
            },
            bars,
        );
        bars.end();
        s
    };
    let before = answer(
        if installed.is_some() {
            "with the installed adapter"
        } else {
            "without an adapter"
        },
        installed.clone(),
    )?;
    let (model, figures) = tg::train(&gen, &ex, &o, bars)?;
    let path = round.candidate(Artefact::Generator)?;
    let mut report = json!({
        "model": gen.model_name(),
        "examples": ex.counts(),
        "options": tg::options(&o, ex.within),
        "figures": figures,
    });
    tg::save_adapter(&path, &model, &gen, &cfg.collection)?;
    let after = answer("with the candidate", Some(path.join("lora.gguf")))?;
    report["installed_adapter"] = json!(installed.map(|p| p.display().to_string()));
    report["held_out_answers"] = json!({
        "questions": ex.held.iter().map(|e| &e.question).collect::<Vec<_>>(),
        "before": before,
        "after": after,
    });
    tg::write_report(&path, &ex, &mut report)?;
    report.as_object_mut().expect("an object").remove("sample");
    let blocked = (figures.best_epoch == 0).then(|| {
        let v = &figures.validation_loss;
        format!(
            "the held-out answer loss did not fall ({:.3} untrained, {:.3} at best after training): the adapter learnt nothing useful",
            v[0],
            v[1..].iter().copied().fold(f64::INFINITY, f64::min)
        )
    });
    Ok(Candidate {
        metric: "cited",
        before: before.cited,
        after: after.cited,
        tie_metric: "f1",
        tie_before: before.f1,
        tie_after: after.f1,
        blocked,
        report,
    })
}

#[cfg(not(all(feature = "train", feature = "llama")))]
fn generator_candidate(
    _engine: &cairn_engine::Engine,
    _cfg: &Config,
    _round: &cairn_engine::Round,
    _dir: &std::path::Path,
    _a: &RoundArgs,
    _bars: &Bars,
) -> Result<Candidate> {
    bail!("this cairn was built without training the generator (cargo features `train` and `llama`): rebuild with `cargo build -p cairn --features train`")
}

/// An event in words; `full` adds the reasons of a round's decisions.
fn print_event(e: &Event, full: bool) {
    match e {
        Event::Round {
            round,
            started_at,
            seconds,
            data,
            decisions,
            skipped,
            ..
        } => {
            let sizes = if data.get("error").is_some() {
                format!("no data: {}", data["error"].as_str().unwrap_or_default())
            } else {
                format!(
                    "{} training and {} held-out questions ({} from feedback)",
                    data["train"], data["held_out"], data["feedback"]
                )
            };
            println!("round {round} ({started_at}, {seconds:.0} s): {sizes}");
            for d in decisions {
                println!(
                    "  {:<9} held-out {} {:.3} → {:.3}: {}{}",
                    d.artefact.name(),
                    d.metric,
                    d.before,
                    d.after,
                    if d.promoted { "promoted" } else { "rejected" },
                    if full || !d.promoted {
                        format!(" ({})", d.reason)
                    } else {
                        String::new()
                    }
                );
            }
            for s in skipped {
                println!("  {:<9} not trained: {}", s.artefact.name(), s.reason);
            }
        }
        Event::Interrupted {
            round,
            found_at,
            backed_up,
        } => {
            print!("round {round}: interrupted (found {found_at})");
            if backed_up.is_empty() {
                println!();
            } else {
                let names: Vec<&str> = backed_up.iter().map(|a| a.name()).collect();
                println!(
                    "; it may have promoted: {} (a rollback restores what was before)",
                    names.join(", ")
                );
            }
        }
        Event::Rollback {
            round,
            at,
            restored,
        } => {
            let names: Vec<&str> = restored.iter().map(|a| a.name()).collect();
            println!(
                "rollback of round {round} ({at}): {} restored as before the round",
                names.join(", ")
            );
        }
    }
}

fn history(cfg: &Config, json: bool) -> Result<()> {
    let imp = improvements(cfg)?;
    let (events, unrecorded) = imp.history()?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"events": events, "unrecorded": unrecorded}))?
        );
        return Ok(());
    }
    if events.is_empty() && unrecorded.is_empty() {
        println!(
            "collection `{}` has had no `cairn improve` round",
            cfg.collection
        );
        return Ok(());
    }
    for e in &events {
        print_event(e, false);
    }
    for u in &unrecorded {
        println!(
            "round {}: {}",
            u.round,
            if u.running {
                "running now"
            } else {
                "interrupted (the next round records it)"
            }
        );
    }
    if let Some((round, artefacts)) = imp.rollback_target()? {
        let names: Vec<&str> = artefacts.iter().map(|a| a.name()).collect();
        println!(
            "`cairn improve rollback` would undo round {round} ({})",
            names.join(", ")
        );
    }
    Ok(())
}

fn rollback(cfg: &Config, round: Option<u32>, json: bool) -> Result<()> {
    let imp = improvements(cfg)?;
    report_event(&imp.rollback(round)?, json)
}
