//! `cairn doctor`: what this binary can run and where each stage would run,
//! without loading a model: the compiled backends, the devices found, the
//! device map, the models and tools the configuration needs, and in a
//! cluster, each node's placement.

use anyhow::Result;
use cairn_core::config::Config;
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Cpu {
    model: String,
    logical_cores: usize,
    /// The SIMD extensions the kernels use, where present.
    simd: Vec<&'static str>,
    memory_gib: Option<f64>,
}

#[derive(Serialize)]
struct Check {
    what: String,
    ok: bool,
    detail: String,
}

#[derive(Serialize)]
struct Background {
    /// `ingest.background_nice`.
    nice: u8,
    /// Whether this platform lowers a single thread (Linux).
    per_thread_priority: bool,
}

#[derive(Serialize)]
struct Report {
    version: &'static str,
    /// Devices and runtimes compiled into this binary.
    compiled: Vec<&'static str>,
    cpu: Cpu,
    /// GPUs and accelerators: what was looked for and what was found.
    accelerators: Vec<Check>,
    stages: Vec<cairn_engine::StagePlan>,
    background_ingestion: Background,
    checks: Vec<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<serde_json::Value>,
    problems: Vec<String>,
}

fn cpu() -> Cpu {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let model = field("model name")
        .or_else(|| field("Model"))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    #[allow(unused_mut)]
    let mut simd = vec![];
    #[cfg(target_arch = "x86_64")]
    {
        for (name, on) in [
            ("sse4.2", std::arch::is_x86_feature_detected!("sse4.2")),
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
            (
                "avx512vnni",
                std::arch::is_x86_feature_detected!("avx512vnni"),
            ),
        ] {
            if on {
                simd.push(name);
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        simd.push("neon");
    }
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0);
    Cpu {
        model,
        logical_cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        simd,
        memory_gib,
    }
}

fn accelerators() -> Vec<Check> {
    let mut v = vec![];
    let nvidia =
        Path::new("/proc/driver/nvidia/version").exists() || Path::new("/dev/nvidia0").exists();
    v.push(Check {
        what: "cuda".into(),
        ok: nvidia && cfg!(feature = "cuda"),
        detail: match (nvidia, cfg!(feature = "cuda")) {
            (true, true) => "NVIDIA driver found; CUDA compiled in".into(),
            (true, false) => {
                "NVIDIA driver found, but this build has no CUDA: rebuild with --features cuda"
                    .into()
            }
            (false, true) => "CUDA compiled in, but no NVIDIA driver found".into(),
            (false, false) => "no NVIDIA driver; not compiled in".into(),
        },
    });
    let apple = cfg!(target_os = "macos");
    v.push(Check {
        what: "metal".into(),
        ok: apple && cfg!(feature = "metal"),
        detail: match (apple, cfg!(feature = "metal")) {
            (true, true) => "Apple GPU; Metal compiled in".into(),
            (true, false) => {
                "Apple GPU, but this build has no Metal: rebuild with --features metal".into()
            }
            (false, _) => "not macOS".into(),
        },
    });
    v.push(Check {
        what: "coreml".into(),
        ok: apple && cfg!(feature = "coreml"),
        detail: match (apple, cfg!(feature = "coreml")) {
            (true, true) => "Apple Neural Engine through Core ML; compiled in".into(),
            (true, false) => "Apple Neural Engine present, but this build has no Core ML: rebuild with --features coreml".into(),
            (false, _) => "not macOS".into(),
        },
    });
    v
}

/// `program` on PATH (or as a path).
fn which(program: &str) -> Option<std::path::PathBuf> {
    let p = Path::new(program);
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|f| f.is_file())
    })
}

fn checks(cfg: &Config, stages: &[cairn_engine::StagePlan]) -> Vec<Check> {
    let mut v = vec![];
    let models = cfg.models_dir();
    let model = |what: &str, spec: &str| match cairn_models::registry::resolve(spec, &models) {
        Ok(p) => Check {
            what: what.into(),
            ok: true,
            detail: p.display().to_string(),
        },
        Err(e) => Check {
            what: what.into(),
            ok: false,
            detail: format!("{e} (`cairn models fetch` installs the defaults)"),
        },
    };
    v.push(model("embedding model", &cfg.embed.model));
    if cfg.generate.url.is_none() {
        v.push(model("generator", &cfg.generate.model));
    }
    if cfg.critic.kind == "cross-encoder" {
        v.push(model(
            "critic model",
            cfg.critic.model.as_deref().unwrap_or_default(),
        ));
    }
    let onnx = stages
        .iter()
        .any(|p| p.backend == "onnxruntime" && p.problem.is_none());
    if onnx {
        // The library the embedder would load, else where `cairn models
        // fetch onnxruntime` puts it.
        let lib = cairn_engine::onnxruntime_dylib(cfg)
            .unwrap_or_else(|| models.join("onnxruntime").join("libonnxruntime.so"));
        v.push(Check {
            what: "ONNX Runtime library".into(),
            ok: lib.is_file(),
            detail: if lib.is_file() {
                lib.display().to_string()
            } else {
                format!(
                    "{} is missing: `cairn models fetch onnxruntime`",
                    lib.display()
                )
            },
        });
    }
    let data = cfg.data_dir();
    let writable = std::fs::create_dir_all(&data).is_ok() && {
        let probe = data.join(format!(".cairn-doctor-{}", std::process::id()));
        let ok = std::fs::write(&probe, b"").is_ok();
        let _ = std::fs::remove_file(&probe);
        ok
    };
    v.push(Check {
        what: "data dir".into(),
        ok: writable,
        detail: format!(
            "{}{}",
            data.display(),
            if writable { "" } else { " is not writable" }
        ),
    });
    if cfg.ingest.ocr {
        for (what, program, package) in [
            (
                "OCR (tesseract)",
                &cfg.ingest.ocr_tesseract,
                "tesseract-ocr",
            ),
            (
                "PDF rendering for OCR (pdftoppm)",
                &cfg.ingest.ocr_pdftoppm,
                "poppler-utils",
            ),
        ] {
            let found = which(program);
            v.push(Check {
                what: what.into(),
                ok: found.is_some(),
                detail: match found {
                    Some(p) => p.display().to_string(),
                    None => format!("`{program}` not found (apt install {package}); images and scanned pages are skipped with that reason"),
                },
            });
        }
    }
    v
}

pub fn doctor(cfg: &Config, url: Option<&str>, args: &DoctorArgs) -> Result<ExitCode> {
    let stages = cairn_engine::plan_stages(cfg);
    let checks = checks(cfg, &stages);
    let mut problems: Vec<String> = stages
        .iter()
        .filter_map(|p| p.problem.as_ref().map(|e| format!("{}: {e}", p.stage)))
        .collect();
    // A missing tool for OCR is a warning: ingest skips those files and says why.
    problems.extend(
        checks
            .iter()
            .filter(|c| !c.ok && !c.what.contains("OCR"))
            .map(|c| format!("{}: {}", c.what, c.detail)),
    );
    let cluster = match url {
        Some(u) => {
            let rt = crate::target::runtime()?;
            let c = rt.block_on(cairn_cluster::Cluster::connect(u))?;
            let st = rt.block_on(c.status())?;
            Some(serde_json::json!({
                "nats_servers": st.nats_servers,
                "nodes": st.nodes.iter().map(|n| serde_json::json!({
                    "name": n.name,
                    "version": n.version,
                    "devices": n.devices,
                    "placement": n.placement,
                    "llm": n.llm,
                })).collect::<Vec<_>>(),
            }))
        }
        None => None,
    };
    let report = Report {
        version: env!("CARGO_PKG_VERSION"),
        compiled: cairn_models::compiled_backends()
            .into_iter()
            .chain(cfg!(feature = "llama").then_some("llama.cpp"))
            .collect(),
        cpu: cpu(),
        accelerators: accelerators(),
        stages,
        background_ingestion: Background {
            nice: cfg.ingest.background_nice,
            per_thread_priority: cfg!(target_os = "linux"),
        },
        checks,
        cluster,
        problems,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print(r: &Report) {
    println!("cairn {}", r.version);
    println!("compiled in: {}", r.compiled.join(", "));
    let c = &r.cpu;
    println!(
        "cpu: {} ({} logical cores{}; {})",
        c.model,
        c.logical_cores,
        c.memory_gib
            .map(|g| format!(", {g} GiB"))
            .unwrap_or_default(),
        if c.simd.is_empty() {
            "no SIMD extensions detected".to_string()
        } else {
            c.simd.join(" ")
        }
    );
    for a in &r.accelerators {
        println!(
            "{:<7} {:<3} {}",
            a.what,
            if a.ok { "yes" } else { "no" },
            a.detail
        );
    }
    println!("stages:");
    for s in &r.stages {
        println!(
            "  {:<9} {:<14} {:<20} threads {:<4} ({}){}",
            s.stage,
            s.runs_on,
            s.backend,
            s.threads,
            s.configured,
            s.problem
                .as_ref()
                .map(|p| format!("\n            PROBLEM: {p}"))
                .unwrap_or_default()
        );
    }
    println!(
        "background ingestion (serve uploads, --watch): nice {}{}",
        r.background_ingestion.nice,
        if r.background_ingestion.per_thread_priority {
            ""
        } else {
            " (not supported on this platform: runs at normal priority)"
        }
    );
    println!("checks:");
    for c in &r.checks {
        println!(
            "  {:<4} {:<34} {}",
            if c.ok { "ok" } else { "MISSING" },
            c.what,
            c.detail
        );
    }
    if let Some(cl) = &r.cluster {
        println!("cluster ({} NATS servers):", cl["nats_servers"]);
        for n in cl["nodes"].as_array().into_iter().flatten() {
            let placement: Vec<String> = n["placement"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            println!(
                "  {:<12} devices [{}]  {}",
                n["name"].as_str().unwrap_or_default(),
                n["devices"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                placement.join("  ")
            );
        }
    }
    if r.problems.is_empty() {
        println!("no problems found");
    } else {
        println!("problems:");
        for p in &r.problems {
            println!("  {p}");
        }
    }
}
