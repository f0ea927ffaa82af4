//! `cairn eval`: flags → question set → run (resumable) → table or JSON.

use crate::progress::Bars;
use anyhow::{Context, Result};
use cairn_core::config::Config;
use cairn_core::SearchMode;
use cairn_engine::{AskOptions, IngestOptions};
use cairn_eval::run::{self, QuestionResult, RunLog, RunSettings, Summary};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// `cairn eval`'s flags.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// A QA set: JSONL of {"id","question","answers":[..],"gold":[doc paths]}.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "beir",
        required_unless_present = "beir"
    )]
    pub qa: Option<PathBuf>,
    /// A BEIR dataset directory (corpus.jsonl, queries.jsonl, qrels/*.tsv); its
    /// corpus is ingested into the collection `beir-<dir name>` first.
    #[arg(long, value_name = "DIR")]
    pub beir: Option<PathBuf>,
    /// The BEIR qrels split (default: test).
    #[arg(long)]
    pub split: Option<String>,
    /// Documents considered for recall.
    #[arg(short = 'k', default_value_t = 10)]
    pub k: usize,
    /// dense, bm25 or hybrid (default: the configured mode).
    #[arg(long)]
    pub mode: Option<SearchMode>,
    /// Also generate answers: accuracy, citation precision, no-answer rate, latency.
    #[arg(long)]
    pub answers: bool,
    /// The embedded GGUF model for --answers.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// An OpenAI-compatible server for --answers.
    #[arg(long, value_name = "URL")]
    pub llm_url: Option<String>,
    #[arg(long, value_name = "NAME")]
    pub llm_model: Option<String>,
    /// The run log (resumable); default: <data-dir>/eval/<set>-<mode>[-answers].jsonl.
    #[arg(long, value_name = "FILE")]
    pub run: Option<PathBuf>,
    /// Start over instead of resuming the run log.
    #[arg(long)]
    pub fresh: bool,
    /// Questions the corpus does not answer (`"kind": "out-of-corpus"`, no
    /// gold), run with the set: their right answer is a refusal.
    #[arg(long, value_name = "FILE")]
    pub out_of_corpus: Option<PathBuf>,
    /// Answer extractively (the sources' best sentences; no generator):
    /// implies --answers.
    #[arg(long)]
    pub extractive: bool,
    /// Corrective retrieval for the answers (`generate.crag`).
    #[arg(long)]
    pub crag: bool,
    /// Do not check answers sentence by sentence (`generate.check = false`).
    #[arg(long)]
    pub no_check: bool,
    /// What to answer when nothing generated is supported: none or extractive.
    #[arg(long, value_name = "POLICY")]
    pub fallback: Option<String>,
    /// The strict second attempt writes freely (`generate.grammar = false`).
    #[arg(long)]
    pub no_grammar: bool,
    #[command(flatten)]
    pub critic: crate::CriticArgs,
    /// Fit the critic's calibration and thresholds on the set (even-numbered
    /// questions; the odd ones are held out and reported) and print the
    /// `[critic]` table for a configuration file.
    #[arg(long, conflicts_with_all = ["answers", "extractive", "beir"])]
    pub calibrate: bool,
    /// With --calibrate: another set's `--calibrate --json` output, whose
    /// questions are fitted into the retrieval grade with this set's
    /// (repeatable; same embedding model).
    #[arg(long, value_name = "FILE", requires = "calibrate")]
    pub pool: Vec<PathBuf>,
    /// Also write a TREC run file (qid Q0 doc rank score tag) for BEIR sets.
    #[arg(long, value_name = "FILE")]
    pub trec_run: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

fn print_table(results: &[QuestionResult], summary: &Summary, answers: bool) {
    println!(
        "{:<14} {:<13} {:>5} {:>5} {:>6} {:>7}  {}",
        "id",
        "kind",
        "hit@1",
        "hit@5",
        "mrr@10",
        "ndcg@10",
        if answers { "answer" } else { "top document" }
    );
    for r in results {
        let last = if answers {
            match (r.no_answer, r.answer_correct) {
                (Some(true), _) => "no answer".to_string(),
                (_, Some(true)) => "correct".to_string(),
                _ => "wrong".to_string(),
            }
        } else {
            r.docs.first().cloned().unwrap_or_default()
        };
        println!(
            "{:<14} {:<13} {:>5} {:>5} {:>6.3} {:>7.3}  {}",
            r.id,
            r.kind.as_deref().unwrap_or("-"),
            r.scores.hit1,
            r.scores.hit5,
            r.scores.mrr10,
            r.scores.ndcg10,
            last
        );
    }
    println!();
    println!(
        "documents: n={}  hit@1={:.3}  hit@5={:.3}  hit@10={:.3}  mrr@10={:.3}  ndcg@10={:.3}  recall={:.3}",
        summary.n,
        summary.hit1,
        summary.hit5,
        summary.hit10,
        summary.mrr10,
        summary.ndcg10,
        summary.recall
    );
    if let (Some(p1), Some(p5), Some(p10)) = (summary.p_hit1, summary.p_hit5, summary.p_hit10) {
        println!(
            "passages (as `search -k` returns them): hit@1={p1:.3}  hit@5={p5:.3}  hit@10={p10:.3}  answer in top 5={}",
            summary.answer5.map_or("n/a".into(), |a| format!("{a:.3}"))
        );
    }
    for (label, key) in [
        (
            "kind",
            (|r| r.kind.as_deref()) as fn(&QuestionResult) -> Option<&str>,
        ),
        ("style", |r| r.style.as_deref()),
    ] {
        let gs = groups(results, key);
        if !gs.is_empty() {
            println!("by {label}:");
        }
        for (name, s) in gs {
            println!(
                "  {name:<14} n={:<3} doc hit@1={:.3} hit@5={:.3}  passage hit@1={} hit@5={}",
                s.n,
                s.hit1,
                s.hit5,
                s.p_hit1.map_or("n/a".into(), |v| format!("{v:.3}")),
                s.p_hit5.map_or("n/a".into(), |v| format!("{v:.3}")),
            );
        }
    }
    let opt = |v: Option<f64>| v.map_or("n/a".into(), |c| format!("{c:.3}"));
    if let Some(a) = summary.answer_accuracy {
        println!(
            "answer accuracy={:.3}  cited={}  citation precision={}  sentences supported={}  no-answer rate={:.3}",
            a,
            opt(summary.cited_rate),
            opt(summary.citation_precision),
            opt(summary.sentence_support),
            summary.no_answer_rate.unwrap_or(0.0)
        );
    }
    if summary.out_of_corpus > 0 {
        println!(
            "out-of-corpus questions: {}  refused={}  in-corpus answered={}",
            summary.out_of_corpus,
            opt(summary.refused_out_of_corpus),
            opt(summary.answered_in_corpus)
        );
    }
    let ms: Vec<String> = summary
        .mean_ms
        .iter()
        .map(|(k, v)| format!("{k} {v:.1} ms"))
        .collect();
    println!("mean latency: {}", ms.join(", "));
}

/// The results split by a label (kind, style), each group summarised.
fn groups(
    results: &[QuestionResult],
    key: fn(&QuestionResult) -> Option<&str>,
) -> Vec<(&str, Summary)> {
    let mut names: Vec<&str> = results.iter().filter_map(key).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let rs: Vec<QuestionResult> = results
                .iter()
                .filter(|r| key(r) == Some(name))
                .cloned()
                .collect();
            (name, Summary::of(&rs))
        })
        .collect()
}

fn grouped(
    results: &[QuestionResult],
    key: fn(&QuestionResult) -> Option<&str>,
) -> serde_json::Value {
    let m: serde_json::Map<String, serde_json::Value> = groups(results, key)
        .into_iter()
        .map(|(name, s)| (name.to_string(), serde_json::to_value(s).unwrap()))
        .collect();
    m.into()
}

fn summary_json(
    s: &Summary,
    results: &[QuestionResult],
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut v = serde_json::to_value(s).expect("summary serialises");
    v["by_kind"] = grouped(results, |r| r.kind.as_deref());
    v["by_style"] = grouped(results, |r| r.style.as_deref());
    v["questions"] = serde_json::to_value(results).unwrap();
    if let serde_json::Value::Object(m) = extra {
        for (k, x) in m {
            v[k] = x;
        }
    }
    v
}

/// `cairn eval`'s flags over the configuration: the critic's, and the
/// generator's for `--answers`.
pub fn apply(cfg: &mut Config, a: &EvalArgs) {
    a.critic.apply(cfg);
    if let Some(m) = &a.model {
        cfg.generate.model = m.clone();
        cfg.generate.url = None;
    }
    if let Some(u) = &a.llm_url {
        cfg.generate.url = Some(u.clone());
    }
    if let Some(m) = &a.llm_model {
        cfg.generate.llm_model = m.clone();
    }
    if a.crag {
        cfg.generate.crag = true;
    }
    if a.no_check {
        cfg.generate.check = false;
    }
    if a.extractive {
        cfg.generate.extractive = true;
    }
    if let Some(f) = &a.fallback {
        cfg.generate.fallback = f.clone();
    }
    if a.no_grammar {
        cfg.generate.grammar = false;
    }
}

/// `cairn eval`; with `cluster`, retrieval over a cluster's collection.
pub fn eval(mut cfg: Config, a: EvalArgs, cluster: Option<&str>) -> Result<ExitCode> {
    anyhow::ensure!(a.k >= 1, "-k must be at least 1");
    if cluster.is_some() {
        anyhow::ensure!(
            a.beir.is_none() && !a.calibrate && !a.crag,
            "with --cluster, `cairn eval` runs a QA set (--qa, with --answers or --extractive); --beir, --calibrate and --crag need a local collection"
        );
        anyhow::ensure!(
            a.critic.critic.as_deref() != Some("llm"),
            "--critic llm is not supported with --cluster: its generators run on the nodes (rerank with the embedding or a cross-encoder critic)"
        );
    }
    let mode = a.mode.unwrap_or(cfg.search.mode);
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\nstopping after this question (Ctrl-C again to quit now); the run resumes where it stopped");
        });
    }
    let stopped = || stop.load(Ordering::SeqCst);

    if let Some(dir) = &a.beir {
        let set = cairn_eval::load_beir(dir, a.split.as_deref())?;
        cfg.collection = format!("beir-{}", run::stem(dir));
        let docs = cfg
            .data_dir()
            .join("eval")
            .join(&cfg.collection)
            .join("docs");
        run::materialise_beir(&set, &docs)?;
        let bars = Bars::new(a.json);
        let engine = crate::ask::with_critic(crate::open::writer(&cfg, &bars)?, &cfg, None)?;
        let report = engine.ingest(
            std::slice::from_ref(&docs),
            &IngestOptions {
                prune: true,
                ..Default::default()
            },
            &bars,
        )?;
        if !a.json {
            eprintln!(
                "corpus: {} documents ({} new or changed) in collection `{}`",
                set.corpus.len(),
                report.added + report.updated,
                cfg.collection
            );
        }
        let settings = RunSettings {
            mode,
            k: a.k,
            answers: false,
            model: None,
            search: Some(cfg.search.clone()),
            catalog_seq: Some(engine.status()?.seq),
            policy: None,
            learned: engine.learned()?,
        };
        let (results, trec) = run::run_beir(&engine, &set, &settings, &bars)?;
        if let Some(p) = &a.trec_run {
            std::fs::write(p, trec.join("\n") + "\n")
                .with_context(|| format!("writing {}", p.display()))?;
        }
        let s = Summary::of(&results);
        if a.json {
            let v = summary_json(
                &s,
                &results,
                serde_json::json!({"answer_accuracy": null, "citation_precision": null, "split": set.split, "mode": mode}),
            );
            println!("{v}");
        } else {
            print_table(&results, &s, false);
        }
        return Ok(ExitCode::SUCCESS);
    }

    let qa_path =
        a.qa.clone()
            .context("--qa FILE or --beir DIR is required")?;
    let items = cairn_eval::load_qa_sets(&qa_path, a.out_of_corpus.as_deref())?;
    let gen_cfg = cfg.clone();
    let extractive = gen_cfg.generate.extractive && (a.answers || a.extractive);
    let answers = a.answers || extractive;
    let bars = Bars::new(a.json);
    let opts = AskOptions {
        mode,
        ..AskOptions::from_config(&gen_cfg)
    };
    if let Some(url) = cluster {
        let t = crate::target::Target::cluster(&gen_cfg, url, false)?;
        let g = &gen_cfg.generate;
        let settings = RunSettings {
            mode,
            k: a.k,
            answers,
            model: (answers && !extractive)
                .then(|| t.collection.generator_name())
                .flatten(),
            search: Some(cfg.search.clone()),
            catalog_seq: None,
            learned: None,
            policy: Some(format!(
                "cluster {url}, embedder {}{}",
                cfg.embed.model,
                if !answers {
                    String::new()
                } else if extractive {
                    format!(", extractive sentences={}", g.extract_sentences)
                } else {
                    format!(
                        ", check={} fallback={} grammar={}, the replicas' critic",
                        g.check, g.fallback, g.grammar
                    )
                }
            )),
        };
        let set = QaSet {
            cfg: &cfg,
            args: &a,
            qa_path: &qa_path,
            items: &items,
            cluster: true,
        };
        return set.run(t.collection.as_ref(), settings, &opts, &bars, &stopped);
    }
    let engine = crate::open::reader(&cfg, &bars)?;
    if a.calibrate {
        let engine = crate::ask::with_critic(engine, &cfg, None)?;
        let mut pooled = Vec::new();
        for p in &a.pool {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: not a `cairn eval --calibrate --json` output",
                    p.display()
                )
            })?;
            let qs: Vec<cairn_eval::calibrate::QuestionFeatures> =
                serde_json::from_value(v["questions"].clone()).with_context(|| {
                    format!(
                        "{}: no `questions` of a `cairn eval --calibrate --json` output",
                        p.display()
                    )
                })?;
            pooled.extend(qs);
        }
        let label = format!(
            "cairn eval --calibrate --qa {}{}{} ({} questions{}, {} mode; odd-numbered half held out), {}",
            qa_path.display(),
            a.out_of_corpus
                .as_ref()
                .map(|p| format!(" --out-of-corpus {}", p.display()))
                .unwrap_or_default(),
            a.pool
                .iter()
                .map(|p| format!(" --pool {}", p.display()))
                .collect::<String>(),
            items.len(),
            if pooled.is_empty() {
                String::new()
            } else {
                format!(" + {} pooled for the grade", pooled.len())
            },
            mode,
            engine.embedder().model_id()
        );
        let r = cairn_eval::calibrate::calibrate(
            &engine,
            &items,
            mode,
            cfg.generate.top_k,
            &label,
            &pooled,
            &bars,
        )?;
        if a.json {
            let mut v = serde_json::to_value(&r)?;
            v["toml"] = r.toml().into();
            println!("{v}");
        } else {
            for (name, j) in [("relevance", &r.relevance), ("support", &r.support)] {
                println!(
                    "{name}: a={:.4} b={:.4} threshold={:.3}  fit: n={} ({} positive) log loss={:.3} AUC={:.3}  held out: n={} log loss={:.3} brier={:.3} AUC={:.3} balanced accuracy={:.3}",
                    j.fit.calibration.a, j.fit.calibration.b, j.threshold,
                    j.fit.samples, j.fit.positives, j.fit.log_loss, j.fit.auc,
                    j.held_out.samples, j.held_out.log_loss, j.held_out.brier, j.held_out.auc, j.held_out.balanced_accuracy
                );
            }
            match &r.grade {
                Some(g) => println!(
                    "grades: incorrect below {:.3}, correct from {:.3}; held out: out-of-corpus refused {:.3}, in-corpus answered {:.3} ({} in, {} out)",
                    g.incorrect, g.correct, g.held_out_refused_out_of_corpus, g.held_out_answered_in_corpus,
                    g.held_out_questions.0, g.held_out_questions.1
                ),
                None => println!("grades: not calibrated (give --out-of-corpus FILE)"),
            }
            println!("\n{}", r.toml());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let generator = if answers && !extractive {
        Some(cairn_engine::load_generator(&gen_cfg)?)
    } else {
        None
    };
    // `critic.kind = "llm"` judges with the generator (loaded for it when
    // the run answers nothing or answers extractively).
    let engine = match &generator {
        Some(_) => engine,
        None => crate::ask::with_critic(engine, &gen_cfg, None)?,
    };
    let g = &gen_cfg.generate;
    let settings = RunSettings {
        mode,
        k: a.k,
        answers,
        model: generator.as_ref().map(|g| g.model_name().to_string()),
        search: Some(cfg.search.clone()),
        catalog_seq: Some(engine.status()?.seq),
        learned: engine.learned()?,
        policy: answers.then(|| {
            if extractive {
                format!("extractive sentences={}", g.extract_sentences)
            } else {
                format!(
                    "check={} crag={} fallback={} grammar={} critic={:?}",
                    g.check, g.crag, g.fallback, g.grammar, gen_cfg.critic
                )
            }
        }),
    };
    let local = cairn_engine::LocalCollection::new(engine, generator);
    let set = QaSet {
        cfg: &cfg,
        args: &a,
        qa_path: &qa_path,
        items: &items,
        cluster: false,
    };
    set.run(&local, settings, &opts, &bars, &stopped)
}

/// A QA set to run on a collection, local or a cluster's.
struct QaSet<'a> {
    cfg: &'a Config,
    args: &'a EvalArgs,
    qa_path: &'a std::path::Path,
    items: &'a [cairn_eval::QaItem],
    cluster: bool,
}

impl QaSet<'_> {
    /// Run it (its log resumed, at `--run` or the default place), then
    /// report.
    fn run(
        &self,
        collection: &dyn cairn_engine::Collection,
        settings: RunSettings,
        opts: &AskOptions,
        bars: &Bars,
        stopped: &dyn Fn() -> bool,
    ) -> Result<ExitCode> {
        let path = self.args.run.clone().unwrap_or_else(|| {
            run::default_run_path(
                &self.cfg.data_dir(),
                &self.cfg.collection,
                self.qa_path,
                &settings,
                opts.extractive,
                self.cluster,
            )
        });
        let json = self.args.json;
        let total = self.items.len();
        let on_resume = |done: usize| {
            if !json {
                eprintln!(
                    "resuming {}: {done} of {total} questions already done",
                    path.display()
                );
            }
        };
        let at = run::LogAt {
            path: &path,
            fresh: self.args.fresh,
            on_resume: &on_resume,
        };
        let answering = settings.answers.then_some(opts);
        let log = run::run_logged(
            collection, self.items, &settings, answering, at, bars, stopped,
        )?;
        report(
            self.items,
            &log,
            &path,
            settings.mode,
            settings.answers,
            json,
        )
    }
}

/// Print a QA run's figures (its questions in the set's order); 130 when
/// it was interrupted before every question was done.
fn report(
    items: &[cairn_eval::QaItem],
    log: &RunLog,
    run_path: &std::path::Path,
    mode: cairn_core::SearchMode,
    answers: bool,
    json: bool,
) -> Result<ExitCode> {
    let order: std::collections::HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .map(|(i, q)| (q.id.as_str(), i))
        .collect();
    let mut results: Vec<QuestionResult> = log
        .done
        .iter()
        .filter(|r| order.contains_key(r.id.as_str()))
        .cloned()
        .collect();
    results.sort_by_key(|r| order[r.id.as_str()]);
    let s = Summary::of(&results);
    if json {
        let v = summary_json(
            &s,
            &results,
            serde_json::json!({"mode": mode, "run": run_path, "complete": results.len() == items.len()}),
        );
        println!("{v}");
    } else {
        print_table(&results, &s, answers);
        println!("run log: {}", run_path.display());
    }
    if results.len() < items.len() {
        eprintln!(
            "interrupted after {} of {} questions; run the same command again to resume",
            results.len(),
            items.len()
        );
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}
