//! HNSW recall@10 against exact search on more than 20k real embeddings:
//! all-MiniLM-L6-v2 vectors of short passages (the opening words of every
//! sentence of the Python 3.11 library reference), queried with held-out
//! passages. Short passages keep the embedding cost of 20k vectors within a
//! CI budget on two cores; the vectors are the model's real output.

use cairn_core::Embedder;
use cairn_index::vector::{ExactIndex, HnswIndex, HnswParams};
use cairn_models::{Device, OnnxEmbedder, OnnxOptions};
use std::collections::HashSet;

fn passages(want: usize) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = vec![];
    for page in cairn_testkit::pages_under("library") {
        let path = cairn_testkit::python_docs().join(&page);
        let bytes = std::fs::read(&path).unwrap();
        let doc = cairn_ingest::load(&path, &bytes).unwrap();
        for sentence in doc.text.split(['.', '\n', ':', ';']) {
            let words: Vec<&str> = sentence.split_whitespace().take(5).collect();
            if words.len() < 3 {
                continue;
            }
            let p = words.join(" ");
            if seen.insert(p.to_lowercase()) {
                out.push(p);
                if out.len() == want {
                    return out;
                }
            }
        }
    }
    out
}

#[test]
fn hnsw_recall_at_10_is_at_least_095_on_20k_real_embeddings() {
    let n_index = 20_000;
    let n_query = 200;
    let texts = passages(n_index + n_query);
    assert_eq!(
        texts.len(),
        n_index + n_query,
        "the corpus has enough distinct passages"
    );
    let dir = cairn_testkit::minilm_dir();
    let opts = OnnxOptions {
        onnx_file: Some(cairn_models::onnx_export::ensure_graph(&dir).unwrap()),
        dylib: Some(cairn_testkit::onnxruntime_lib()),
        threads: 0,
        batch_size: 64,
    };
    let model = OnnxEmbedder::load(&dir, Device::Cpu, &opts).unwrap();
    let started = std::time::Instant::now();
    let vectors = model.embed_passages(&texts).unwrap();
    eprintln!(
        "embedded {} passages in {:.1}s",
        texts.len(),
        started.elapsed().as_secs_f64()
    );

    let (index_vecs, query_vecs) = vectors.split_at(n_index);
    let dir = tempfile::tempdir().unwrap();
    let params = HnswParams {
        dim: 384,
        quantization: "f32".into(),
        m: 16,
        ef_construction: 128,
        ef_search: 96,
    };
    let hnsw = HnswIndex::open(dir.path(), &params).unwrap();
    let items: Vec<(u64, Vec<f32>)> = index_vecs
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u64 + 1, v.clone()))
        .collect();
    hnsw.add_batch(&items).unwrap();
    let mut exact = ExactIndex::new(384);
    for (id, v) in &items {
        exact.push(*id, v).unwrap();
    }
    let k = 10;
    let recall = |h: &HnswIndex, ef: usize| -> f64 {
        let mut total = 0.0;
        for q in query_vecs {
            let truth: HashSet<u64> = exact.search(q, k).unwrap().iter().map(|s| s.id).collect();
            let got = h.search(q, k, Some(ef)).unwrap();
            assert_eq!(got.len(), k);
            total += got.iter().filter(|s| truth.contains(&s.id)).count() as f64 / k as f64;
        }
        total / query_vecs.len() as f64
    };
    let r = recall(&hnsw, params.ef_search);
    eprintln!(
        "HNSW (M=16, efC=128, ef=96) recall@10 = {r:.4} on {n_index} vectors, {n_query} queries"
    );
    assert!(r >= 0.95, "recall@10 {r}");
    // A narrower search loses recall: the measurement can fail.
    let narrow = recall(&hnsw, 10);
    eprintln!("with ef=10: recall@10 = {narrow:.4}");
    assert!(narrow <= r);

    // Quantised variants, built from the same vectors, stay close.
    for q in ["f16", "i8"] {
        let dir = tempfile::tempdir().unwrap();
        let h = HnswIndex::open(
            dir.path(),
            &HnswParams {
                quantization: q.into(),
                ..params.clone()
            },
        )
        .unwrap();
        h.add_batch(&items).unwrap();
        let rq = recall(&h, params.ef_search);
        eprintln!("{q}: recall@10 = {rq:.4}");
        assert!(rq >= 0.90, "{q} recall@10 {rq}");
    }
    // Persisted and reopened, the graph answers the same.
    hnsw.save(1).unwrap();
    let reopened = HnswIndex::open(dir.path(), &params).unwrap();
    assert_eq!(reopened.len(), n_index);
    assert!((recall(&reopened, params.ef_search) - r).abs() < 1e-9);
}
