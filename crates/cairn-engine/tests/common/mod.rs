//! Shared by the engine's integration tests: one loaded model per test binary.
#![allow(dead_code)]

use cairn_models::{BertEmbedder, Device, SentenceEncoder};
use std::sync::{Arc, OnceLock};

/// The real all-MiniLM-L6-v2, loaded once and shared by every test in the binary.
pub fn embedder() -> Arc<BertEmbedder> {
    static MODEL: OnceLock<Arc<BertEmbedder>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            Arc::new(BertEmbedder::load(&cairn_testkit::minilm_dir(), Device::Cpu, 32).unwrap())
        })
        .clone()
}

/// The same all-MiniLM-L6-v2 as its int8 ONNX graph on ONNX Runtime, loaded
/// once per test binary, for the tests that embed many pages to measure
/// retrieval rather than candle's arithmetic (candle's vectors are checked
/// against the reference in cairn-models' tests, and the other engine tests
/// run on candle): it embeds them about twice as fast on two cores. Without
/// the `ort` feature, the candle model.
pub fn fast_embedder() -> Arc<dyn SentenceEncoder> {
    #[cfg(feature = "ort")]
    {
        static MODEL: OnceLock<Arc<cairn_models::OnnxEmbedder>> = OnceLock::new();
        MODEL
            .get_or_init(|| {
                let opts = cairn_models::OnnxOptions {
                    onnx_file: None,
                    dylib: Some(cairn_testkit::onnxruntime_lib()),
                    threads: 0, // every core
                    batch_size: 32,
                };
                let dir = cairn_testkit::minilm_int8_dir();
                Arc::new(cairn_models::OnnxEmbedder::load(&dir, Device::Cpu, &opts).unwrap())
            })
            .clone()
    }
    #[cfg(not(feature = "ort"))]
    {
        embedder()
    }
}
