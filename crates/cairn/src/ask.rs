//! `cairn ask` and `cairn chat`: flags → configuration → generator, then
//! stream the engine's answer to the terminal.

use crate::progress::Bars;
use crate::{snippet, GenArgs};
use anyhow::{Context, Result};
use cairn_core::config::Config;
use cairn_engine::{Answer, AskOptions, Engine};
use cairn_generate::openai::{OpenAiConfig, OpenAiGenerator};
use cairn_generate::{ChatMessage, Flow, Generator};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Flags win over the environment and the file.
pub fn apply(cfg: &mut Config, a: &GenArgs) -> Result<()> {
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
    cfg.validate()?;
    Ok(())
}

/// The generator the configuration names: an OpenAI-compatible server when
/// `generate.url` is set, else the embedded GGUF engine.
pub fn generator(cfg: &Config) -> Result<Box<dyn Generator>> {
    let g = &cfg.generate;
    if let Some(url) = &g.url {
        let gen = OpenAiGenerator::new(OpenAiConfig {
            base_url: url.clone(),
            model: g.llm_model.clone(),
            api_key: std::env::var("CAIRN_LLM_API_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
            context_window: g.context,
            connect_timeout: Duration::from_secs(g.connect_timeout_secs),
            read_timeout: Duration::from_secs(g.read_timeout_secs),
            max_retries: g.retries,
            ..OpenAiConfig::default()
        })?;
        return Ok(Box::new(gen));
    }
    embedded(cfg)
}

#[cfg(feature = "llama")]
fn embedded(cfg: &Config) -> Result<Box<dyn Generator>> {
    use cairn_generate::llama::{LlamaGenerator, LlamaOptions, Offload};
    use cairn_models::registry;
    let g = &cfg.generate;
    let path = registry::resolve(&g.model, &cfg.models_dir())?;
    let file = registry::gguf_file(&path)?;
    let gen = LlamaGenerator::load(
        &file,
        &LlamaOptions {
            offload: Offload::parse(&g.device)?,
            gpu_layers: g.gpu_layers,
            threads: g.threads,
            context: g.context,
            ..LlamaOptions::default()
        },
    )?;
    Ok(Box::new(gen))
}

#[cfg(not(feature = "llama"))]
fn embedded(_cfg: &Config) -> Result<Box<dyn Generator>> {
    Err(cairn_generate::GenerateError::NotCompiled(
        "the embedded GGUF generator is not available; use --llm-url".into(),
        "llama",
    )
    .into())
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
                let heading = if c.heading.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", c.heading)
                };
                println!("  [{}] {}{}", c.n, c.doc, heading);
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
                println!("  {:.2}  {} — {}", r, h.doc, h.heading);
                println!("        {}", snippet(&h.text, 160));
            }
        }
    }
}

fn answer_json(a: &Answer) -> serde_json::Value {
    serde_json::json!({
        "answer": a.answer,
        "answered": a.answered,
        "citations": a.citations,
        "dropped_citations": a.dropped_citations,
        "retrieved": a.retrieved,
        "relevance": a.relevance,
        "timings_ms": a.timings_ms,
        "prompt_tokens": a.prompt_tokens,
        "completion_tokens": a.completion_tokens,
        "model": a.model,
        "finish": a.finish,
    })
}

/// One answer, streamed as it is generated (unless `json`).
#[allow(clippy::too_many_arguments)] // one turn of `ask`/`chat`: the loop's whole state
fn one(
    engine: &Engine,
    gen: &dyn Generator,
    opts: &AskOptions,
    question: &str,
    history: &[ChatMessage],
    json: bool,
    quiet: bool,
    interrupt: &Interrupt,
) -> Result<Answer> {
    let mut out = std::io::stdout();
    let answer = interrupt.run(|stopped| {
        let mut sink = |piece: &str| {
            if !json {
                let _ = out.write_all(piece.as_bytes());
                let _ = out.flush();
            }
            if stopped() {
                Flow::Stop
            } else {
                Flow::Continue
            }
        };
        engine.ask(question, history, gen, opts, &mut sink)
    })?;
    if json {
        println!("{}", answer_json(&answer));
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
        print_sources(&answer);
    }
    Ok(answer)
}

pub fn ask(
    mut cfg: Config,
    question: &str,
    args: &GenArgs,
    json: bool,
    quiet: bool,
) -> Result<ExitCode> {
    apply(&mut cfg, args)?;
    let interrupt = Interrupt::install();
    let engine = Engine::open_with(&cfg, &Bars::new(json || quiet))?;
    let gen = generator(&cfg)?;
    let opts = options(&cfg, args.mode, &args.stop);
    let a = one(
        &engine,
        gen.as_ref(),
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

pub fn chat(mut cfg: Config, args: &GenArgs, json: bool) -> Result<ExitCode> {
    apply(&mut cfg, args)?;
    let interrupt = Interrupt::install();
    let engine = Engine::open_with(&cfg, &Bars::new(json))?;
    let gen = generator(&cfg)?;
    let opts = options(&cfg, args.mode, &args.stop);
    let tty = std::io::stdin().is_terminal();
    if tty && !json {
        eprintln!(
            "cairn chat — collection `{}`, model {} (/reset forgets the conversation, /exit quits)",
            cfg.collection,
            gen.model_name()
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
        match one(
            &engine,
            gen.as_ref(),
            &opts,
            q,
            &history,
            json,
            false,
            &interrupt,
        ) {
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
