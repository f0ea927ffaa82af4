//! The late-interaction critic on the real all-MiniLM-L6-v2 (its fp32 ONNX
//! graph): a passage that answers a question scores above one that does
//! not, for relevance and for support, and its probabilities follow the
//! raw MaxSim order under the kind's default calibration.

use cairn_core::config::CriticConfig;
use cairn_core::{Critic, Judgement};
use cairn_critic::LateInteractionCritic;
use cairn_models::{Device, OnnxEmbedder, OnnxOptions};
use std::sync::Arc;

fn critic() -> LateInteractionCritic {
    let dir = cairn_testkit::minilm_dir();
    let graph = cairn_models::onnx_export::ensure_graph(&dir).unwrap();
    let opts = OnnxOptions {
        onnx_file: Some(graph),
        dylib: Some(cairn_testkit::onnxruntime_lib()),
        threads: 2,
        batch_size: 8,
    };
    let m = OnnxEmbedder::load(&dir, Device::Cpu, &opts).expect("loads");
    let c = CriticConfig::for_kind("late-interaction");
    LateInteractionCritic::new(
        Arc::new(m),
        c.calibration(Judgement::Relevance),
        c.calibration(Judgement::Support),
    )
}

const VENV: &str =
    "12. Virtual Environments and Packages > 12.2. Creating Virtual Environments\n\n\
The module used to create and manage virtual environments is called venv. To create a virtual \
environment, decide upon a directory where you want to place it, and run the venv module as a \
script with the directory path: python -m venv tutorial-env";
const FLOAT: &str = "15. Floating Point Arithmetic: Issues and Limitations\n\n\
Floating-point numbers are represented in computer hardware as base 2 (binary) fractions. \
Unfortunately, most decimal fractions cannot be represented exactly as binary fractions.";
const BRIDGE: &str =
    "Kestrel Bridge > History\n\nThe Kestrel Bridge over the Varne estuary opened \
to traffic in 1987. It is 412 metres long and carries the coastal railway.";

#[test]
fn a_relevant_passage_scores_above_an_unrelated_one() {
    let c = critic();
    assert_eq!(c.name(), "late-interaction");
    let q = "How do I create a virtual environment?";
    let pairs = [(q, FLOAT), (q, VENV), (q, BRIDGE)];
    let raw = c.raw(Judgement::Relevance, &pairs).unwrap();
    assert!(raw[1] > raw[0] && raw[1] > raw[2], "{raw:?}");
    assert!(raw.iter().all(|r| (-1.0..=1.0).contains(r)), "{raw:?}");
    let p = c.score(Judgement::Relevance, &pairs).unwrap();
    assert!(p[1] > p[0] && p[1] > p[2], "{p:?}");
    assert!(p.iter().all(|p| (0.0..=1.0).contains(p)), "{p:?}");

    let claim = "The Kestrel Bridge opened in 1987.";
    let pairs = [(claim, VENV), (claim, BRIDGE), (claim, FLOAT)];
    let raw = c.raw(Judgement::Support, &pairs).unwrap();
    assert!(raw[1] > raw[0] && raw[1] > raw[2], "{raw:?}");
    let p = c.score(Judgement::Support, &pairs).unwrap();
    assert!(p[1] > p[0] && p[1] > p[2], "{p:?}");
}
