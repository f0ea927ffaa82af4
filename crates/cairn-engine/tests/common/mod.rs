//! Shared by the engine's integration tests: one loaded model per test binary.
#![allow(dead_code)]

use cairn_models::{Device, SentenceEncoder};
use std::sync::{Arc, OnceLock};

/// The real all-MiniLM-L6-v2 on the default CPU backend (ONNX Runtime, the
/// fp32 graph Cairn writes from the safetensors), loaded once and shared by
/// every test in the binary. Its vectors are checked against
/// sentence-transformers' reference values and against candle in
/// cairn-models' tests.
pub fn embedder() -> Arc<dyn SentenceEncoder> {
    static MODEL: OnceLock<Arc<cairn_models::OnnxEmbedder>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = cairn_testkit::minilm_dir();
            let opts = cairn_models::OnnxOptions {
                onnx_file: Some(cairn_models::onnx_export::ensure_graph(&dir).unwrap()),
                dylib: Some(cairn_testkit::onnxruntime_lib()),
                threads: 0, // every core
                batch_size: 32,
            };
            Arc::new(cairn_models::OnnxEmbedder::load(&dir, Device::Cpu, &opts).unwrap())
        })
        .clone()
}

/// The model the retrieval tests embed many pages with: the default one
/// (fp32 on ONNX Runtime is faster than the int8 graph on CPUs without VNNI).
pub fn fast_embedder() -> Arc<dyn SentenceEncoder> {
    embedder()
}
