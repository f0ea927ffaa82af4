//! Prometheus metrics: request counts and latencies per route, ingest and
//! embedding throughput, index sizes and the generator queue.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the server exports, registered in one registry.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub ingest_documents: IntCounter,
    pub ingest_chunks: IntCounter,
    pub ingest_seconds: prometheus::Counter,
    pub embed_texts: IntCounter,
    pub embed_seconds: prometheus::Counter,
    pub index_documents: IntGaugeVec,
    pub index_chunks: IntGaugeVec,
    pub index_vectors: IntGaugeVec,
    pub queue_depth: IntGauge,
    pub generating: IntGauge,
    pub rejected: IntCounter,
    pub generation_seconds: Histogram,
    pub generated_tokens: IntCounter,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    r.expect("metric definitions are static and valid")
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = must(Registry::new_custom(Some("cairn".into()), None));
        let requests = must(IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        ));
        let latency = must(HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to the response head, by route",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0,
            ]),
            &["route", "method"],
        ));
        let ingest_documents = must(IntCounter::new(
            "ingest_documents_total",
            "Documents added or updated by ingestion jobs",
        ));
        let ingest_chunks = must(IntCounter::new(
            "ingest_chunks_total",
            "Chunks embedded and stored by ingestion jobs",
        ));
        let ingest_seconds = must(prometheus::Counter::new(
            "ingest_seconds_total",
            "Seconds spent in ingestion jobs (chunks_total / seconds_total = throughput)",
        ));
        let embed_texts = must(IntCounter::new(
            "embed_texts_total",
            "Texts embedded for /v1/embeddings",
        ));
        let embed_seconds = must(prometheus::Counter::new(
            "embed_seconds_total",
            "Seconds spent embedding for /v1/embeddings",
        ));
        let index_documents = must(IntGaugeVec::new(
            Opts::new("index_documents", "Documents in a collection"),
            &["collection"],
        ));
        let index_chunks = must(IntGaugeVec::new(
            Opts::new("index_chunks", "Chunks in a collection's catalog"),
            &["collection"],
        ));
        let index_vectors = must(IntGaugeVec::new(
            Opts::new("index_vectors", "Vectors in a collection's HNSW graph"),
            &["collection"],
        ));
        let queue_depth = must(IntGauge::new(
            "generator_queue_depth",
            "Answers waiting for the generator",
        ));
        let generating = must(IntGauge::new(
            "generator_busy",
            "Answers being generated now",
        ));
        let rejected = must(IntCounter::new(
            "generator_rejected_total",
            "Answers refused with 503 because the queue was full",
        ));
        let generation_seconds = must(Histogram::with_opts(
            HistogramOpts::new("generation_seconds", "Time to generate one answer")
                .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
        ));
        let generated_tokens = must(IntCounter::new(
            "generated_tokens_total",
            "Completion tokens generated",
        ));
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(ingest_documents.clone()),
            Box::new(ingest_chunks.clone()),
            Box::new(ingest_seconds.clone()),
            Box::new(embed_texts.clone()),
            Box::new(embed_seconds.clone()),
            Box::new(index_documents.clone()),
            Box::new(index_chunks.clone()),
            Box::new(index_vectors.clone()),
            Box::new(queue_depth.clone()),
            Box::new(generating.clone()),
            Box::new(rejected.clone()),
            Box::new(generation_seconds.clone()),
            Box::new(generated_tokens.clone()),
        ] {
            must(registry.register(c));
        }
        Metrics {
            registry,
            requests,
            latency,
            ingest_documents,
            ingest_chunks,
            ingest_seconds,
            embed_texts,
            embed_seconds,
            index_documents,
            index_chunks,
            index_vectors,
            queue_depth,
            generating,
            rejected,
            generation_seconds,
            generated_tokens,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        must(TextEncoder::new().encode(&self.registry.gather(), &mut buf));
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
