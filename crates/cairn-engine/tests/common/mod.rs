//! Shared by the engine's integration tests: one loaded model per test binary.

use cairn_models::{BertEmbedder, Device};
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
