#![no_main]
//! The chunker (text-splitter with the embedding model's own tokenizer)
//! over a loaded Markdown document: every chunk is the slice of the text
//! its character offsets name, in order.
use cairn_ingest::Chunker;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn chunker() -> &'static Chunker {
    static CHUNKER: OnceLock<Chunker> = OnceLock::new();
    CHUNKER.get_or_init(|| {
        let dir = std::env::var_os("CAIRN_MODELS_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(cairn_core::config::default_models_dir);
        let path = dir.join("all-MiniLM-L6-v2/tokenizer.json");
        let tok = tokenizers::Tokenizer::from_file(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run `cairn models fetch`)", path.display()));
        // Small chunks: more boundaries per input.
        Chunker::new(tok, 32, 8).unwrap()
    })
}

fuzz_target!(init: { cairn_fuzz::init(); chunker(); }, |data: &[u8]| {
    let Some(doc) = cairn_fuzz::load("input.md", data) else {
        return;
    };
    let chars: Vec<char> = doc.text.chars().collect();
    let mut last_ord = None;
    for c in chunker().chunk(&doc) {
        assert!(c.start < c.end && c.end as usize <= chars.len(), "{}..{} of {}", c.start, c.end, chars.len());
        let slice: String = chars[c.start as usize..c.end as usize].iter().collect();
        assert_eq!(slice, c.text, "chunk {} is not the text at its offsets", c.ord);
        assert!(last_ord.is_none_or(|o| c.ord == o + 1), "ords out of order");
        last_ord = Some(c.ord);
    }
});
