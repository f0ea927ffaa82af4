//! Where each stage runs: the device map (`embed.device`, `critic.device`,
//! `generate.device`) resolved against the backends this binary was built
//! with, without loading a model. `cairn doctor` prints it, and a cluster
//! node publishes it (`cairn cluster status`).

use cairn_core::config::Config;
use cairn_models::Device;
use serde::Serialize;

/// One stage of the pipeline and where it would run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StagePlan {
    /// `embed`, `critic` or `generate`.
    pub stage: &'static str,
    /// What the configuration asks for (the config key and its value).
    pub configured: String,
    /// Where it runs: `cpu`, `cuda:N`, `metal:N`, `coreml`, `remote URL`, or
    /// `with embed` / `with generate` for a critic sharing that stage's model.
    pub runs_on: String,
    /// The runtime: `onnxruntime`, `candle`, `llama.cpp`, `openai-compatible`,
    /// or `shared` for a critic that runs another stage's model.
    pub backend: String,
    /// CPU threads it may use (`all` when not limited).
    pub threads: String,
    /// Why it cannot run as configured, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

fn threads(n: Option<usize>) -> String {
    match n {
        Some(n) if n > 0 => n.to_string(),
        _ => "all".into(),
    }
}

/// `auto` resolved the way the loaders resolve it.
fn auto_device(backend: &str) -> String {
    if backend == "candle" {
        if cfg!(feature = "cuda") {
            return "cuda:0 (when present, else cpu)".into();
        }
        if cfg!(feature = "metal") {
            return "metal:0 (when present, else cpu)".into();
        }
    }
    "cpu".into()
}

fn embed_plan(cfg: &Config) -> StagePlan {
    let mut p = StagePlan {
        stage: "embed",
        configured: format!(
            "embed.device = {:?}, embed.backend = {:?}",
            cfg.embed.device, cfg.embed.backend
        ),
        runs_on: String::new(),
        backend: String::new(),
        threads: threads(Some(cfg.embed.threads)),
        problem: None,
    };
    let device: Device = match cfg.embed.device.parse() {
        Ok(d) => d,
        Err(e) => {
            p.problem = Some(format!("embed.device: {e}"));
            return p;
        }
    };
    let backend = match cfg.embed.backend.as_str() {
        "auto" => crate::auto_backend(device),
        other => other,
    };
    p.backend = match backend {
        "onnx" => "onnxruntime".into(),
        other => other.into(),
    };
    match backend {
        "onnx" => {
            if !cfg!(feature = "ort") {
                p.problem =
                    Some("the onnx backend is not compiled in (cargo feature `ort`)".into());
            }
            match device {
                Device::Cpu | Device::Auto => p.runs_on = "cpu".into(),
                Device::CoreMl => {
                    p.runs_on = "coreml".into();
                    if !cfg!(feature = "coreml") {
                        p.problem = Some(
                            "Core ML is not compiled in (cargo feature `coreml`, macOS)".into(),
                        );
                    }
                }
                other => {
                    p.runs_on = other.to_string();
                    p.problem = Some(format!(
                        "ONNX Runtime runs on cpu or coreml, not {other}; use embed.backend = \"candle\" for GPUs"
                    ));
                }
            }
        }
        "candle" => {
            if !cfg!(feature = "candle") {
                p.problem = Some(
                    "the candle backend is not compiled in (cargo feature `candle`, `cuda` or `metal`)"
                        .into(),
                );
            }
            p.runs_on = match device {
                Device::Auto => auto_device("candle"),
                Device::Cuda(i) => {
                    if !cfg!(feature = "cuda") {
                        p.problem = Some("CUDA is not compiled in (cargo feature `cuda`)".into());
                    }
                    format!("cuda:{i}")
                }
                Device::Metal(i) => {
                    if !cfg!(feature = "metal") {
                        p.problem = Some("Metal is not compiled in (cargo feature `metal`)".into());
                    }
                    format!("metal:{i}")
                }
                Device::CoreMl => {
                    p.problem = Some(
                        "candle has no Core ML backend; use embed.backend = \"onnx\" for coreml"
                            .into(),
                    );
                    "coreml".into()
                }
                Device::Cpu => "cpu".into(),
            };
        }
        other => {
            p.problem = Some(format!(
                "embed.backend: `{other}` (expected auto, onnx or candle)"
            ))
        }
    }
    p
}

fn generate_plan(cfg: &Config) -> StagePlan {
    let g = &cfg.generate;
    if let Some(url) = &g.url {
        return StagePlan {
            stage: "generate",
            configured: format!("generate.url = {url:?}"),
            runs_on: format!("remote {url}"),
            backend: "openai-compatible".into(),
            threads: "-".into(),
            problem: None,
        };
    }
    let mut p = StagePlan {
        stage: "generate",
        configured: format!("generate.device = {:?}", g.device),
        runs_on: String::new(),
        backend: "llama.cpp".into(),
        threads: threads(g.threads),
        problem: None,
    };
    if !cfg!(feature = "llama") {
        p.problem = Some(
            "the embedded generator is not compiled in (cargo feature `llama`); set generate.url"
                .into(),
        );
    }
    match g.device.parse::<Device>() {
        Ok(Device::Cpu) => p.runs_on = "cpu".into(),
        Ok(Device::Auto) => {
            p.runs_on = if cfg!(feature = "cuda") {
                "cuda:0".into()
            } else if cfg!(feature = "metal") {
                "metal".into()
            } else {
                "cpu".into()
            }
        }
        Ok(Device::Cuda(i)) => {
            p.runs_on = format!("cuda:{i}");
            if !cfg!(feature = "cuda") {
                p.problem = Some("CUDA is not compiled in (cargo feature `cuda`)".into());
            }
        }
        Ok(Device::Metal(i)) => {
            p.runs_on = format!("metal:{i}");
            if !cfg!(feature = "metal") {
                p.problem = Some("Metal is not compiled in (cargo feature `metal`)".into());
            }
        }
        Ok(Device::CoreMl) => {
            p.runs_on = "coreml".into();
            p.problem = Some(
                "generate.device: Core ML runs embedding models only; generate on cpu, metal or cuda"
                    .into(),
            );
        }
        Err(e) => p.problem = Some(format!("generate.device: {e}")),
    }
    if let (Some(layers), true) = (g.gpu_layers, p.runs_on != "cpu") {
        p.runs_on = format!("{} ({layers} layers offloaded)", p.runs_on);
    }
    p
}

fn critic_plan(cfg: &Config) -> StagePlan {
    let c = &cfg.critic;
    match c.kind.as_str() {
        "cross-encoder" => {
            let mut p = StagePlan {
                stage: "critic",
                configured: format!(
                    "critic.kind = \"cross-encoder\", critic.device = {:?}",
                    c.device
                ),
                runs_on: String::new(),
                backend: "onnxruntime".into(),
                threads: threads(Some(cfg.embed.threads)),
                problem: None,
            };
            if !cfg!(feature = "ort") {
                p.problem =
                    Some("the cross-encoder needs ONNX Runtime (cargo feature `ort`)".into());
            }
            match c.device.parse::<Device>() {
                Ok(Device::Cpu | Device::Auto) => p.runs_on = "cpu".into(),
                Ok(Device::CoreMl) => {
                    p.runs_on = "coreml".into();
                    if !cfg!(feature = "coreml") {
                        p.problem = Some(
                            "Core ML is not compiled in (cargo feature `coreml`, macOS)".into(),
                        );
                    }
                }
                Ok(other) => {
                    p.runs_on = other.to_string();
                    p.problem = Some(format!(
                        "critic.device: the cross-encoder runs on ONNX Runtime (cpu or coreml), not {other}"
                    ));
                }
                Err(e) => p.problem = Some(format!("critic.device: {e}")),
            }
            p
        }
        kind => {
            let with = if kind == "llm" { "generate" } else { "embed" };
            let mut problem = None;
            if kind == "late-interaction" {
                let embed = embed_plan(cfg);
                if !embed.backend.is_empty() && embed.backend != "onnxruntime" {
                    problem = Some(format!(
                        "late interaction needs the onnx backend (the embedding model runs on {}; set embed.backend = \"onnx\")",
                        embed.backend
                    ));
                }
            }
            StagePlan {
                stage: "critic",
                configured: format!("critic.kind = {kind:?}"),
                runs_on: format!("with {with}"),
                // It runs that stage's model.
                backend: "shared".into(),
                threads: "-".into(),
                problem,
            }
        }
    }
}

/// Where `embed`, `critic` and `generate` would run with `cfg`.
pub fn plan_stages(cfg: &Config) -> Vec<StagePlan> {
    vec![embed_plan(cfg), critic_plan(cfg), generate_plan(cfg)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(cfg: &Config, stage: &str) -> StagePlan {
        plan_stages(cfg)
            .into_iter()
            .find(|p| p.stage == stage)
            .unwrap()
    }

    #[test]
    fn the_defaults_run_on_the_cpu_and_the_critic_with_the_embedder() {
        let cfg = Config::default();
        let e = plan(&cfg, "embed");
        assert_eq!(e.runs_on, "cpu");
        if cfg!(feature = "ort") {
            assert_eq!((e.backend.as_str(), e.problem), ("onnxruntime", None));
        } else {
            // Without ONNX Runtime, `auto` means candle, which a CPU build
            // may lack too: said, not hidden.
            assert_eq!(e.backend, "candle");
        }
        assert_eq!(plan(&cfg, "critic").runs_on, "with embed");
        let g = plan(&cfg, "generate");
        assert_eq!(
            (g.runs_on.as_str(), g.backend.as_str()),
            ("cpu", "llama.cpp")
        );
    }

    #[test]
    fn each_stage_takes_its_own_device_and_names_what_is_missing() {
        let mut cfg = Config::default();
        cfg.embed.device = "coreml".into();
        cfg.critic.kind = "cross-encoder".into();
        cfg.critic.device = "cuda:1".into();
        cfg.generate.device = "metal".into();
        let e = plan(&cfg, "embed");
        assert_eq!(e.runs_on, "coreml");
        if cfg!(feature = "ort") && !cfg!(feature = "coreml") {
            assert!(e.problem.unwrap().contains("`coreml`"));
        }
        let c = plan(&cfg, "critic");
        assert_eq!(c.runs_on, "cuda:1");
        assert!(c.problem.unwrap().contains("critic.device"));
        let g = plan(&cfg, "generate");
        assert_eq!(g.runs_on, "metal:0");
        if !cfg!(feature = "metal") {
            assert!(g.problem.unwrap().contains("`metal`"));
        }
        cfg.generate.url = Some("http://gpu-box:8000".into());
        assert_eq!(plan(&cfg, "generate").runs_on, "remote http://gpu-box:8000");
        cfg.embed.device = "tpu".into();
        assert!(plan(&cfg, "embed")
            .problem
            .unwrap()
            .contains("embed.device"));
        cfg.critic.kind = "llm".into();
        assert_eq!(plan(&cfg, "critic").runs_on, "with generate");
    }

    #[test]
    fn late_interaction_runs_with_embed_and_needs_the_onnx_backend() {
        let mut cfg = Config::default();
        cfg.critic.set_kind("late-interaction");
        cfg.embed.backend = "onnx".into();
        let c = plan(&cfg, "critic");
        assert_eq!(c.runs_on, "with embed");
        assert_eq!(c.problem, None);
        cfg.embed.backend = "candle".into();
        let problem = plan(&cfg, "critic").problem.unwrap();
        assert!(
            problem.contains("late interaction needs the onnx backend"),
            "{problem}"
        );
    }
}
