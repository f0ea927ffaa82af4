//! `cairn ask` and `cairn chat`: flags → configuration → the collection
//! (local with its generator, or a cluster's, whose generation replicas
//! answer), then stream its answer to the terminal.

use crate::progress::Bars;
use crate::{snippet, GenArgs};
use anyhow::{Context, Result};
use cairn_core::config::Config;
use cairn_engine::{Answer, AskOptions, Collection, Engine, Strategy};
use cairn_generate::{ChatMessage, Flow, Generator, TokenSink};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Flags win over the environment and the file (validated with the rest
/// of the configuration, once, in `main.rs`).
pub fn apply(cfg: &mut Config, a: &GenArgs) {
    let g = &mut cfg.generate;
    if let Some(v) = &a.model {
        g.model = v.clone();
        g.url = None;
    }
    if let Some(v) = &a.llm_url {
        g.url = Some(v.clone());
    }
    if let Some(v) = &a.llm_model {
        g.llm_model = v.clone();
    }
    if let Some(v) = &a.llm_device {
        g.device = v.clone();
    }
    if let Some(v) = a.gpu_layers {
        g.gpu_layers = Some(v);
    }
    if let Some(v) = a.threads {
        g.threads = Some(v);
    }
    if let Some(v) = a.context {
        g.context = v;
    }
    if let Some(v) = a.max_tokens {
        g.max_tokens = v;
    }
    if let Some(v) = a.temperature {
        g.temperature = v;
    }
    if let Some(v) = a.top_p {
        g.top_p = v;
    }
    if let Some(v) = a.seed {
        g.seed = v;
    }
    if let Some(v) = a.repeat_penalty {
        g.repeat_penalty = v;
    }
    if let Some(v) = a.top_k {
        g.top_k = v;
    }
    if let Some(v) = a.min_relevance {
        g.min_relevance = v;
    }
    if a.extractive {
        g.extractive = true;
    }
    if a.crag {
        g.crag = true;
    }
    if a.no_check {
        g.check = false;
    }
    if let Some(v) = &a.fallback {
        g.fallback = v.clone();
    }
    if a.no_grammar {
        g.grammar = false;
    }
    a.critic.apply(cfg);
}

/// The engine with its critic ready: `critic.kind = "llm"` judges with
/// `generator`, or, for a command that answers nothing (search, retrieval
/// eval, calibration), with the configured generator loaded here.
pub fn with_critic(
    engine: Engine,
    cfg: &Config,
    generator: Option<&Arc<dyn Generator>>,
) -> Result<Engine> {
    if cfg.critic.kind != "llm" {
        return Ok(engine);
    }
    let g = match generator {
        Some(g) => g.clone(),
        None => cairn_engine::load_generator(cfg)
            .context("loading the generator to judge with (critic.kind = \"llm\")")?,
    };
    Ok(engine.attach_generator(&g))
}

fn options(cfg: &Config, mode: Option<cairn_core::SearchMode>, stop: &[String]) -> AskOptions {
    let mut o = AskOptions::from_config(cfg);
    if let Some(m) = mode {
        o.mode = m;
    }
    o.sampling.stop = stop.to_vec();
    o
}

/// Ctrl-C while generating stops the answer; Ctrl-C otherwise (or twice)
/// exits.
struct Interrupt {
    generating: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Interrupt {
    fn install() -> Interrupt {
        let generating = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (generating.clone(), stop.clone());
        let _ = ctrlc::set_handler(move || {
            if g.load(Ordering::SeqCst) && !s.swap(true, Ordering::SeqCst) {
                return;
            }
            let _ = std::io::stdout().flush();
            eprintln!();
            std::process::exit(130);
        });
        Interrupt { generating, stop }
    }

    fn run<T>(&self, f: impl FnOnce(&dyn Fn() -> bool) -> T) -> T {
        self.stop.store(false, Ordering::SeqCst);
        self.generating.store(true, Ordering::SeqCst);
        let stopped = || self.stop.load(Ordering::SeqCst);
        let out = f(&stopped);
        self.generating.store(false, Ordering::SeqCst);
        out
    }
}

fn print_sources(a: &Answer) {
    if a.answered {
        if a.citations.is_empty() {
            println!("\n(no sources cited)");
        } else {
            println!("\nSources:");
            for c in &a.citations {
                println!(
                    "  [{}] {}",
                    c.n,
                    cairn_core::passage_label(&c.doc, &c.heading, c.page)
                );
            }
        }
        if !a.dropped_citations.is_empty() {
            eprintln!(
                "note: removed citation markers with no source: {:?}",
                a.dropped_citations
            );
        }
    } else {
        println!("{}", a.answer);
        if !a.retrieved.is_empty() {
            println!("Closest passages:");
            for (h, r) in a.retrieved.iter().zip(&a.relevance) {
                println!(
                    "  {:.2}  {}",
                    r,
                    cairn_core::passage_label(&h.doc, &h.heading, h.page)
                );
                println!("        {}", snippet(&h.text, 160));
            }
        }
    }
}

fn answer_json(a: &Answer) -> serde_json::Value {
    serde_json::to_value(a).expect("answers serialise")
}

/// After the streamed text: what the check found. Sentences no source
/// supports are marked; an answer whose markers were corrected, or that was
/// replaced by the sources' own sentences, is shown as it now stands.
fn print_check(a: &Answer) {
    if !a.answered || a.sentences.is_empty() {
        return;
    }
    if a.strategy == Strategy::FallbackExtractive {
        println!("\n(no generated sentence is supported by the sources; their own words instead:)");
        println!("{}", a.answer);
        return;
    }
    let unsupported = a.unsupported();
    let corrected = a.sentences.iter().any(|s| s.corrected);
    if unsupported == 0 && !corrected {
        return;
    }
    let claims = a.sentences.iter().filter(|s| s.claim).count();
    println!(
        "\nChecked against the sources ({} of {} sentences supported{}):",
        claims - unsupported,
        claims,
        if corrected {
            "; citations corrected"
        } else {
            ""
        }
    );
    for s in &a.sentences {
        let mark = if !s.claim {
            "   "
        } else if s.supported {
            " ✓ "
        } else {
            " ✗ "
        };
        let note = if s.claim && !s.supported {
            "   ← not supported by any source"
        } else {
            ""
        };
        println!("{mark}{}{note}", s.text);
    }
}

/// Streams pieces to the terminal; a restart (the check found the answer
/// unsupported and it is generated again) is announced.
struct Terminal<'a> {
    out: std::io::Stdout,
    json: bool,
    stopped: &'a dyn Fn() -> bool,
}

impl TokenSink for Terminal<'_> {
    fn piece(&mut self, piece: &str) -> Flow {
        if !self.json {
            let _ = self.out.write_all(piece.as_bytes());
            let _ = self.out.flush();
        }
        if (self.stopped)() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    fn restart(&mut self, why: &str) {
        if !self.json {
            let _ = writeln!(self.out);
            let _ = self.out.flush();
            eprintln!("\n[{why}]\n");
        }
    }
}

/// One answer, streamed as it is generated (unless `json`).
fn one(
    collection: &dyn Collection,
    opts: &AskOptions,
    question: &str,
    history: &[ChatMessage],
    json: bool,
    quiet: bool,
    interrupt: &Interrupt,
) -> Result<Answer> {
    let answer = interrupt.run(|stopped| {
        let mut sink = Terminal {
            out: std::io::stdout(),
            json,
            stopped,
        };
        let a = collection.ask(question, history, opts, &mut sink)?;
        // Extractive answers are not streamed: shown whole.
        if opts.extractive && !json && a.answered {
            print!("{}", a.answer);
        }
        anyhow::Ok(a)
    })?;
    // Logged for `cairn feedback --last` (the log is its own file, written
    // by readers too); a log that cannot be written costs only the rating.
    let answer_id = if answer.finish == Some(cairn_generate::Finish::Cancelled) {
        None
    } else {
        let id = cairn_engine::new_answer_id();
        match collection.record_answer(&id, question, &answer) {
            Ok(()) => Some(id),
            Err(e) => {
                eprintln!("warning: the answer was not logged for feedback: {e}");
                None
            }
        }
    };
    if json {
        let mut v = answer_json(&answer);
        v["answer_id"] = answer_id.clone().into();
        println!("{v}");
    } else if quiet {
        if answer.answered {
            println!();
        } else {
            println!("{}", answer.answer);
        }
    } else {
        if answer.answered {
            println!();
        }
        if answer.finish == Some(cairn_generate::Finish::Cancelled) {
            eprintln!("(stopped)");
        }
        print_check(&answer);
        print_sources(&answer);
        if let Some(id) = &answer_id {
            eprintln!("(answer {id}; rate it with `cairn feedback --last --up|--down`)");
        }
        if let Some(c) = &answer.cluster {
            eprintln!(
                "(shards {}/{}; generated on {})",
                c.shards_ok,
                c.shards_total,
                c.node.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(answer)
}

/// The collection to answer from: the local one, read-only, with the
/// configured generator (none for extractive answers), or a cluster's.
fn open_for_answers(
    cfg: &Config,
    cluster: Option<&str>,
    json: bool,
) -> Result<crate::target::Target> {
    if let Some(url) = cluster {
        if cfg.critic.kind == "llm" {
            anyhow::bail!("--critic llm is not supported with --cluster (the generation replica checks with its own configured critic; rerank with the embedding or a cross-encoder critic)");
        }
        return crate::target::Target::cluster(cfg, url, false);
    }
    let engine = crate::open::reader(cfg, &Bars::new(json))?;
    // An extractive answer needs no generator: none is loaded.
    let gen = (!cfg.generate.extractive)
        .then(|| cairn_engine::load_generator(cfg))
        .transpose()?;
    let engine = match &gen {
        Some(_) => engine,
        None => with_critic(engine, cfg, None)?,
    };
    Ok(crate::target::Target::local(engine, gen))
}

pub fn ask(
    cfg: Config,
    cluster: Option<&str>,
    question: &str,
    args: &GenArgs,
    json: bool,
    quiet: bool,
) -> Result<ExitCode> {
    let interrupt = Interrupt::install();
    let target = open_for_answers(&cfg, cluster, json || quiet)?;
    let opts = options(&cfg, args.mode, &args.stop);
    let a = one(
        target.collection.as_ref(),
        &opts,
        question,
        &[],
        json,
        quiet,
        &interrupt,
    )?;
    Ok(if a.finish == Some(cairn_generate::Finish::Cancelled) {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn chat(cfg: Config, cluster: Option<&str>, args: &GenArgs, json: bool) -> Result<ExitCode> {
    let interrupt = Interrupt::install();
    let target = open_for_answers(&cfg, cluster, json)?;
    let collection = target.collection.as_ref();
    let opts = options(&cfg, args.mode, &args.stop);
    let tty = std::io::stdin().is_terminal();
    if tty && !json {
        eprintln!(
            "cairn chat — collection `{}`{}, {} (/reset forgets the conversation, /exit quits)",
            cfg.collection,
            cluster.map(|u| format!(" on {u}")).unwrap_or_default(),
            match (opts.extractive, collection.generator_name()) {
                (false, Some(m)) => format!("model {m}"),
                _ => "extractive answers".to_string(),
            }
        );
    }
    let mut history: Vec<ChatMessage> = Vec::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if tty && !json {
            print!("\n> ");
            std::io::stdout().flush().ok();
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading the question from stdin")?;
        let q = line.trim();
        match q {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history.clear();
                if !json {
                    println!("(conversation forgotten)");
                }
                continue;
            }
            _ => {}
        }
        match one(collection, &opts, q, &history, json, false, &interrupt) {
            Ok(a) => {
                if a.answered {
                    history.push(ChatMessage::user(q));
                    history.push(ChatMessage::assistant(a.answer.clone()));
                }
            }
            // One failed turn (a server hiccup) does not end the conversation.
            Err(e) => {
                if json {
                    println!("{}", serde_json::json!({ "error": format!("{e:#}") }));
                } else {
                    eprintln!("error: {e:#}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
