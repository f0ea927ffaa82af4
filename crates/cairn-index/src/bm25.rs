//! Lexical (BM25) search over chunks, backed by tantivy.
//!
//! The index is derived from the catalog: it records the catalog sequence it
//! has applied as the payload of its last tantivy commit, and it can be
//! deleted and rebuilt at any time. [`Bm25Index::open_or_create`] returns
//! [`IndexError::Corrupt`] when an existing directory cannot be used, which
//! tells the caller to do exactly that.
//!
//! The analyzer is in [`crate::analyzer`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use cairn_core::{ChunkId, Scored, Seq};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STORED,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, TantivyError, Term};

pub use crate::analyzer::{analyze, Analyzer, IdentTokenStream, IdentTokenizer, TOKENIZER_NAME};
use crate::{IndexError, Result};

/// Memory budget of the (single-threaded) index writer.
const WRITER_MEMORY_BUDGET: usize = 50_000_000;
/// Default query-time weight of the title field relative to the body. A
/// document's title (its first chunk's heading path) is indexed once, with
/// that chunk: indexing every chunk's heading path lifted every chunk of a
/// page whose title shares a word with the query above the passage that
/// answers (3.4 and 18.2 points of passage hit@5 on the development sets;
/// ablation in EVALUATION.md), and not indexing titles at all lost finding a
/// page by its title.
pub const TITLE_BOOST: f32 = 1.0;
/// Default query-time weight of the document path field relative to the body.
pub const DOC_BOOST: f32 = 0.5;
/// At most this many distinct query terms are used (a pasted paragraph
/// should not build an unbounded query).
const MAX_QUERY_TERMS: usize = 256;

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    body: Field,
    title: Field,
    doc: Field,
}

impl Fields {
    /// The scored text fields, in the order of [`Bm25Stats`]' arrays.
    fn scored(&self) -> [Field; 3] {
        [self.body, self.title, self.doc]
    }
}

/// BM25 term statistics for one query: what scores depend on beyond the
/// matching chunk itself. A shard reports its own
/// ([`Bm25Index::query_stats`]); the coordinator adds every shard's up
/// ([`Bm25Stats::add`]) and each shard then scores with the sum
/// ([`Bm25Index::search_with`]), as one index of the whole collection would.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bm25Stats {
    /// Documents (chunks) counted by tantivy: committed, deleted included.
    pub docs: u64,
    /// Tokens per field: body, title, document path.
    pub tokens: [u64; 3],
    /// Per analyzed query term: in how many chunks it occurs, per field
    /// (body, title, document path).
    pub terms: std::collections::BTreeMap<String, [u64; 3]>,
}

impl Bm25Stats {
    /// Add another shard's statistics for the same query.
    pub fn add(&mut self, other: &Bm25Stats) {
        self.docs += other.docs;
        for i in 0..3 {
            self.tokens[i] += other.tokens[i];
        }
        for (term, df) in &other.terms {
            let mine = self.terms.entry(term.clone()).or_default();
            for i in 0..3 {
                mine[i] += df[i];
            }
        }
    }
}

/// Tantivy's view of [`Bm25Stats`]. A term the statistics lack counts as
/// absent, and no frequency exceeds the document count (tantivy asserts
/// it), so statistics from a peer cannot crash a search.
struct StatsProvider<'a> {
    stats: &'a Bm25Stats,
    fields: &'a Fields,
}

impl StatsProvider<'_> {
    fn slot(&self, field: Field) -> Option<usize> {
        self.fields.scored().iter().position(|f| *f == field)
    }
}

impl tantivy::query::Bm25StatisticsProvider for StatsProvider<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        Ok(self.slot(field).map_or(0, |i| self.stats.tokens[i]))
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.stats.docs)
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        let df = match (self.slot(term.field()), term.value().as_str()) {
            (Some(i), Some(text)) => self.stats.terms.get(text).map_or(0, |df| df[i]),
            _ => 0,
        };
        Ok(df.min(self.stats.docs))
    }
}

fn build_schema(tokenizer: &str) -> (Schema, Fields) {
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(tokenizer)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let mut builder = Schema::builder();
    let id = builder.add_u64_field("id", INDEXED | STORED | FAST);
    let body = builder.add_text_field("body", text.clone());
    let title = builder.add_text_field("title", text.clone());
    let doc = builder.add_text_field("doc", text);
    (
        builder.build(),
        Fields {
            id,
            body,
            title,
            doc,
        },
    )
}

fn bm25_err(e: TantivyError) -> IndexError {
    IndexError::Bm25(e.to_string())
}

fn corrupt(dir: &Path, message: impl Into<String>) -> IndexError {
    IndexError::Corrupt {
        path: dir.to_path_buf(),
        message: message.into(),
    }
}

fn payload_for(seq: Seq) -> String {
    serde_json::json!({ "applied_seq": seq }).to_string()
}

fn seq_from_payload(payload: Option<&str>) -> std::result::Result<Seq, String> {
    let Some(payload) = payload else {
        return Ok(0);
    };
    let value: serde_json::Value = serde_json::from_str(payload)
        .map_err(|e| format!("unreadable commit payload {payload:?}: {e}"))?;
    value
        .get("applied_seq")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| format!("commit payload {payload:?} has no applied_seq"))
}

/// A BM25 index over chunks, stored in one directory.
///
/// One writer is kept open for the life of the value (tantivy holds a lock
/// file in the directory, so a second `Bm25Index` on the same directory fails
/// with [`IndexError::Bm25`]). Changes are staged with [`add`](Self::add) and
/// [`delete`](Self::delete) and become visible, atomically, on
/// [`commit`](Self::commit). Dropping the value discards staged changes.
///
/// Every method takes `&self`, and the value is `Send + Sync`. The writer
/// sits behind a mutex that only the write methods take; searches,
/// [`num_docs`](Self::num_docs) and [`applied_seq`](Self::applied_seq) read
/// the last committed state through the reader and never wait for a writer
/// (not even for a commit). Staged changes are shared by all callers: one
/// caller at a time should stage and commit.
pub struct Bm25Index {
    dir: PathBuf,
    index: Index,
    writer: Mutex<Option<IndexWriter>>,
    reader: IndexReader,
    fields: Fields,
    applied_seq: AtomicU64,
    /// No writer: opened with [`Bm25Index::open_read_only`].
    read_only: bool,
    analyzer: Analyzer,
    /// Query-time weights of the title and document-path fields (f32 bits).
    title_boost: AtomicU32,
    doc_boost: AtomicU32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn writer_of(w: &mut Option<IndexWriter>) -> Result<&mut IndexWriter> {
    w.as_mut()
        .ok_or_else(|| IndexError::Bm25("the index has no writer".into()))
}

impl std::fmt::Debug for Bm25Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bm25Index")
            .field("dir", &self.dir)
            .field("applied_seq", &self.applied_seq())
            .field("num_docs", &self.num_docs())
            .finish()
    }
}

impl Bm25Index {
    /// Open the index in `dir`, creating it if the directory is missing or
    /// empty. An existing directory that does not hold a readable index of
    /// this schema (and analyzer version) gives [`IndexError::Corrupt`]: the
    /// caller deletes it and rebuilds from the catalog. A directory already
    /// opened by another writer gives [`IndexError::Bm25`].
    pub fn open_or_create(dir: &Path) -> Result<Bm25Index> {
        Bm25Index::open_with(dir, Analyzer::default())
    }

    /// [`Bm25Index::open_or_create`] with some analyzer parts switched off.
    pub fn open_with(dir: &Path, analyzer: Analyzer) -> Result<Bm25Index> {
        let io = |source| IndexError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let fresh = match std::fs::read_dir(dir) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io)?;
                true
            }
            Err(e) => return Err(io(e)),
        };
        let name = analyzer.tokenizer_name();
        let (schema, _) = build_schema(&name);
        let index = if fresh {
            Index::create_in_dir(dir, schema).map_err(bm25_err)?
        } else {
            Index::open_in_dir(dir).map_err(|e| corrupt(dir, e.to_string()))?
        };
        Self::with_index(dir, index, analyzer, false)
    }

    /// Open an existing index for searching only, beside a writer that may
    /// be another process: no writer lock is taken, and searches read the
    /// last commit as of the open. A missing or unreadable index is
    /// [`IndexError::Corrupt`].
    pub fn open_read_only(dir: &Path, analyzer: Analyzer) -> Result<Bm25Index> {
        let index = Index::open_in_dir(dir).map_err(|e| corrupt(dir, e.to_string()))?;
        Self::with_index(dir, index, analyzer, true)
    }

    /// A new index in memory (nothing on disk): a read-only collection's
    /// chunks newer than its index on disk.
    pub fn in_memory(analyzer: Analyzer) -> Result<Bm25Index> {
        let (schema, _) = build_schema(&analyzer.tokenizer_name());
        Self::with_index(Path::new(""), Index::create_in_ram(schema), analyzer, false)
    }

    fn with_index(
        dir: &Path,
        index: Index,
        analyzer: Analyzer,
        read_only: bool,
    ) -> Result<Bm25Index> {
        let name = analyzer.tokenizer_name();
        let (schema, fields) = build_schema(&name);
        if index.schema() != schema {
            return Err(corrupt(
                dir,
                format!("schema differs from the expected one (analyzer {name})"),
            ));
        }
        index
            .tokenizers()
            .register(&name, TextAnalyzer::from(IdentTokenizer::with(analyzer)));

        let metas = index
            .load_metas()
            .map_err(|e| corrupt(dir, e.to_string()))?;
        let applied_seq =
            seq_from_payload(metas.payload.as_deref()).map_err(|m| corrupt(dir, m))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| corrupt(dir, e.to_string()))?;
        let writer = if read_only {
            None
        } else {
            Some(
                index
                    .writer_with_num_threads(1, WRITER_MEMORY_BUDGET)
                    .map_err(|e| match e {
                        TantivyError::LockFailure(..) => IndexError::Bm25(format!(
                            "index at {} is in use by another writer: {e}",
                            dir.display()
                        )),
                        e => corrupt(dir, e.to_string()),
                    })?,
            )
        };
        Ok(Bm25Index {
            dir: dir.to_path_buf(),
            index,
            writer: Mutex::new(writer),
            reader,
            fields,
            applied_seq: AtomicU64::new(applied_seq),
            read_only,
            analyzer,
            title_boost: AtomicU32::new(TITLE_BOOST.to_bits()),
            doc_boost: AtomicU32::new(DOC_BOOST.to_bits()),
        })
    }

    /// The writer, or an error for an index opened read-only.
    fn writer(&self) -> Result<MutexGuard<'_, Option<IndexWriter>>> {
        if self.read_only {
            return Err(IndexError::Bm25(format!(
                "index at {} is open read-only",
                self.dir.display()
            )));
        }
        Ok(lock(&self.writer))
    }

    /// The directory of the index.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Catalog sequence number applied by the last commit (stored as the
    /// tantivy commit payload); 0 for a new index.
    pub fn applied_seq(&self) -> Seq {
        self.applied_seq.load(Ordering::Acquire)
    }

    /// Stage a chunk (`doc` = document display path, `title` = the
    /// document's title for its first chunk and empty for the others,
    /// `text` = chunk text). Adding an id twice indexes it twice: to replace
    /// a chunk, [`delete`](Self::delete) it first (deletes only affect
    /// chunks staged before them).
    pub fn add(&self, id: ChunkId, doc: &str, title: &str, text: &str) -> Result<()> {
        let mut document = TantivyDocument::default();
        document.add_u64(self.fields.id, id);
        document.add_text(self.fields.body, text);
        if !title.is_empty() {
            document.add_text(self.fields.title, title);
        }
        if !doc.is_empty() {
            document.add_text(self.fields.doc, doc);
        }
        writer_of(&mut *self.writer()?)?
            .add_document(document)
            .map_err(bm25_err)?;
        Ok(())
    }

    /// Stage removal of a chunk by id (no error if absent).
    pub fn delete(&self, id: ChunkId) -> Result<()> {
        writer_of(&mut *self.writer()?)?.delete_term(Term::from_field_u64(self.fields.id, id));
        Ok(())
    }

    /// Commit staged changes atomically, recording `seq` as applied; then
    /// reload the reader so searches see them. Searches go on meanwhile,
    /// on the previous commit.
    pub fn commit(&self, seq: Seq) -> Result<()> {
        let mut writer = self.writer()?;
        self.commit_locked(writer_of(&mut writer)?, seq)
    }

    fn commit_locked(&self, writer: &mut IndexWriter, seq: Seq) -> Result<()> {
        let mut prepared = writer.prepare_commit().map_err(bm25_err)?;
        prepared.set_payload(&payload_for(seq));
        cairn_core::failpoint::reach("bm25.commit.prepared");
        prepared.commit().map_err(bm25_err)?;
        cairn_core::failpoint::reach("bm25.commit.done");
        self.applied_seq.store(seq, Ordering::Release);
        self.reader.reload().map_err(bm25_err)?;
        Ok(())
    }

    /// Discard staged changes (the committed state is untouched).
    pub fn rollback(&self) -> Result<()> {
        writer_of(&mut *self.writer()?)?
            .rollback()
            .map_err(bm25_err)?;
        Ok(())
    }

    /// Remove every chunk (committed or staged) and commit at once, with an
    /// applied sequence of 0: the index is then as new, ready for a rebuild.
    pub fn clear(&self) -> Result<()> {
        let mut guard = self.writer()?;
        let writer = writer_of(&mut guard)?;
        writer.rollback().map_err(bm25_err)?;
        writer.delete_all_documents().map_err(bm25_err)?;
        self.commit_locked(writer, 0)
    }

    /// Set the query-time weights of the title and document-path fields
    /// (defaults [`TITLE_BOOST`] and [`DOC_BOOST`]; 0 leaves a field out).
    pub fn set_field_boosts(&self, title: f32, doc: f32) {
        self.title_boost.store(title.to_bits(), Ordering::Relaxed);
        self.doc_boost.store(doc.to_bits(), Ordering::Relaxed);
    }

    /// Top-`k` chunk ids by BM25 score, best first.
    ///
    /// The query is not parsed (no syntax, never a syntax error): it is run
    /// through [`analyze`] and every term is searched in the body, in the
    /// title (weight ×1 by default) and in the document path (×0.5 by
    /// default; see [`Bm25Index::set_field_boosts`]); a chunk's score is
    /// the sum. An empty query, or one made only of stopwords and
    /// punctuation, returns nothing.
    pub fn search(&self, query: &str, k: usize) -> Result<Vec<Scored>> {
        self.search_with(query, k, None)
    }

    /// [`Bm25Index::search`] scored with term statistics from elsewhere
    /// (`stats`: a whole collection's, summed over its shards) instead of
    /// this index's own, so that a shard's scores equal those of one index
    /// holding every shard's chunks. `None` uses this index's statistics.
    pub fn search_with(
        &self,
        query: &str,
        k: usize,
        stats: Option<&Bm25Stats>,
    ) -> Result<Vec<Scored>> {
        let terms = self.query_terms(query);
        let searcher = self.reader.searcher();
        let k = k.min(usize::try_from(searcher.num_docs()).unwrap_or(usize::MAX));
        if terms.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let fields = [
            (self.fields.body, 1.0),
            (
                self.fields.title,
                f32::from_bits(self.title_boost.load(Ordering::Relaxed)),
            ),
            (
                self.fields.doc,
                f32::from_bits(self.doc_boost.load(Ordering::Relaxed)),
            ),
        ];
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(terms.len() * 3);
        for term in &terms {
            for (field, boost) in fields {
                if boost <= 0.0 {
                    continue;
                }
                let query: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_text(field, term),
                    IndexRecordOption::WithFreqs,
                ));
                let query = if boost == 1.0 {
                    query
                } else {
                    Box::new(BoostQuery::new(query, boost))
                };
                clauses.push((Occur::Should, query));
            }
        }
        let query = BooleanQuery::new(clauses);
        let collector = TopDocs::with_limit(k).order_by_score();
        let top = match stats {
            None => searcher.search(&query, &collector),
            Some(stats) => {
                let provider = StatsProvider {
                    stats,
                    fields: &self.fields,
                };
                searcher.search_with_statistics_provider(&query, &collector, &provider)
            }
        }
        .map_err(bm25_err)?;

        let mut columns = std::collections::HashMap::new();
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let column = match columns.entry(address.segment_ord) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(
                    searcher
                        .segment_reader(address.segment_ord)
                        .fast_fields()
                        .u64("id")
                        .map_err(bm25_err)?,
                ),
            };
            let id = column
                .first(address.doc_id)
                .ok_or_else(|| IndexError::Bm25(format!("document {address:?} has no chunk id")))?;
            hits.push(Scored { id, score });
        }
        Ok(hits)
    }

    /// The distinct analyzed terms of a query, at most [`MAX_QUERY_TERMS`].
    fn query_terms(&self, query: &str) -> Vec<String> {
        let mut terms: Vec<String> = Vec::new();
        for term in self.analyzer.analyze(query) {
            if terms.len() >= MAX_QUERY_TERMS {
                break;
            }
            if !terms.contains(&term) {
                terms.push(term);
            }
        }
        terms
    }

    /// This index's BM25 statistics for the terms of `query`: what a
    /// coordinator sums over shards ([`Bm25Stats::add`]) and hands back to
    /// [`Bm25Index::search_with`]. Counted exactly as tantivy counts them
    /// for its own scoring (documents and tokens of every committed
    /// segment, deleted ones included), so the sum over shards equals one
    /// index's figures.
    pub fn query_stats(&self, query: &str) -> Result<Bm25Stats> {
        use tantivy::query::Bm25StatisticsProvider;
        let searcher = self.reader.searcher();
        let fields = self.fields.scored();
        let mut stats = Bm25Stats {
            docs: searcher.total_num_docs().map_err(bm25_err)?,
            ..Bm25Stats::default()
        };
        for (i, field) in fields.iter().enumerate() {
            stats.tokens[i] = searcher.total_num_tokens(*field).map_err(bm25_err)?;
        }
        for term in self.query_terms(query) {
            let mut df = [0u64; 3];
            for (i, field) in fields.iter().enumerate() {
                df[i] = searcher
                    .doc_freq(&Term::from_field_text(*field, &term))
                    .map_err(bm25_err)?;
            }
            stats.terms.insert(term, df);
        }
        Ok(stats)
    }

    /// Whether the last commit holds a live chunk with this id.
    pub fn holds(&self, id: ChunkId) -> Result<bool> {
        let searcher = self.reader.searcher();
        let query = TermQuery::new(
            Term::from_field_u64(self.fields.id, id),
            IndexRecordOption::Basic,
        );
        let n = searcher
            .search(&query, &tantivy::collector::Count)
            .map_err(bm25_err)?;
        Ok(n > 0)
    }

    /// Number of live (committed, not deleted) chunks.
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Number of segments the searches read (each costs a query its own
    /// term lookups and scorer set-up).
    pub fn segments(&self) -> usize {
        self.reader.searcher().segment_readers().len()
    }

    /// The underlying tantivy index (for diagnostics).
    pub fn tantivy_index(&self) -> &Index {
        &self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    #[test]
    fn an_index_built_with_other_analyzer_parts_is_rebuilt() {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("b");
        {
            let index = Bm25Index::open_or_create(&dir).unwrap();
            index.add(1, "a.md", "", "running tests").unwrap();
            index.commit(1).unwrap();
        }
        let plain = Analyzer {
            stemming: false,
            ..Analyzer::default()
        };
        match Bm25Index::open_with(&dir, plain) {
            Err(IndexError::Corrupt { message, .. }) => {
                assert!(message.contains("stem0"), "{message}")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened with another analyzer"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
        let index = Bm25Index::open_with(&dir, plain).unwrap();
        index.add(1, "a.md", "", "running tests").unwrap();
        index.commit(1).unwrap();
        assert_eq!(ids(&index, "running", 5), [1]);
        assert!(ids(&index, "run", 5).is_empty(), "not stemmed");
    }

    /// A small corpus of documentation-like chunks: (id, doc, heading, text).
    const CORPUS: &[(ChunkId, &str, &str, &str)] = &[
        (1, "library/os.path.html", "os.path > Functions",
         "os.path.join(path, *paths) joins one or more path segments intelligently. The return value is the concatenation of path and all members of *paths, with exactly one directory separator following each non-empty part."),
        (2, "library/pathlib.html", "pathlib > Basic use",
         "A Path object represents a filesystem path. You can join paths with the slash operator and read the parts of a path; paths are immutable and hashable."),
        (3, "tutorial/classes.html", "Classes > Class objects",
         "When a class defines an __init__() method, class instantiation automatically invokes __init__() for the newly created class instance. The method may take arguments for greater flexibility."),
        (4, "tutorial/modules.html", "Modules > Packages",
         "Packages are a way of structuring modules. The init step of a package runs the code in its initialisation file when it is imported, and the package can initialise submodules there."),
        (5, "library/sys.html", "sys > Variables",
         "sys.argv is the list of command line arguments passed to a Python script. argv[0] is the script name; the remaining items are the arguments given on the command line."),
        (6, "howto/argparse.html", "Argparse tutorial",
         "The argparse module makes it easy to write user-friendly command-line interfaces. The program defines what arguments it requires, and argparse will figure out how to parse them."),
        (7, "library/venv.html", "venv > Creating virtual environments",
         "Creation of virtual environments is done by executing the command python -m venv /path/to/new/virtual/environment. Running this command creates the target directory."),
        (8, "using/cmdline.html", "Command line > Environment variables",
         "These environment variables influence Python's behaviour. PYTHONPATH augments the default search path for module files; the environment is read when the interpreter starts."),
        (9, "book/ch12-02.html", "An I/O project > Reading a file",
         "We use std::fs::read_to_string to open the file and return a Result<String> of its contents. The fs module of the standard library handles files."),
        (10, "book/ch08-03.html", "Collections > Hash maps",
         "The type HashMap<K, V> stores a mapping of keys of type K to values of type V using a hashing function. Create an empty hash map with new and insert elements."),
        (11, "guide/testing.md", "Testing > Running tests",
         "Before you push, run the test suite with cargo test; every test must pass. Slow tests can be marked ignored."),
        (12, "guide/style.md", "Style > Naming",
         "Use snake_case_name for functions and variables, CamelCase for types, and SCREAMING_SNAKE_CASE for constants. A case of naming is consistency."),
        (13, "git/fetch.md", "git-fetch > Options",
         "git fetch --prune removes any remote-tracking references that no longer exist on the remote. Pruning keeps the list of branches short."),
        (14, "whatsnew/3.11.html", "What's New In Python 3.11",
         "Python 3.11 is between 10-60% faster than Python 3.10. Error messages point at the exact expression, and exception groups were added."),
        (15, "library/os.html", "os > Files and directories",
         "The os module provides a portable way of using operating system dependent functionality, such as reading or writing files and manipulating paths."),
        (16, "tutorial/venv.html", "Virtual Environments and Packages",
         "A virtual environment is a self-contained directory tree that contains a Python installation for a particular version of Python, plus a number of additional packages."),
        (17, "library/functions.html", "Built-in functions > join",
         "str.join(iterable) returns a string which is the concatenation of the strings in iterable. The separator between elements is the string providing this method."),
    ];

    fn corpus_index(dir: &Path) -> Bm25Index {
        let index = Bm25Index::open_or_create(dir).unwrap();
        for &(id, doc, heading, text) in CORPUS {
            index.add(id, doc, heading, text).unwrap();
        }
        index.commit(7).unwrap();
        index
    }

    fn ids(index: &Bm25Index, query: &str, k: usize) -> Vec<ChunkId> {
        index
            .search(query, k)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect()
    }

    fn top(index: &Bm25Index, query: &str) -> ChunkId {
        let hits = index.search(query, 5).unwrap();
        assert!(!hits.is_empty(), "no hit for {query:?}");
        hits[0].id
    }

    #[test]
    fn field_boosts_weigh_title_and_path_matches() {
        let tmp = TempDir::new().unwrap();
        let index = Bm25Index::open_or_create(&tmp.path().join("b")).unwrap();
        // "lighthouse" is in chunk 1's title and path only, in chunk 2's body only.
        index
            .add(
                1,
                "notes/lighthouse.md",
                "Lighthouse",
                "the lamp is lit at dusk",
            )
            .unwrap();
        index
            .add(
                2,
                "notes/harbour.md",
                "Harbour",
                "a lighthouse stands on the pier",
            )
            .unwrap();
        index
            .add(3, "notes/other.md", "Other", "nothing here")
            .unwrap();
        index.commit(1).unwrap();
        assert_eq!((TITLE_BOOST, DOC_BOOST), (1.0, 0.5), "the defaults");
        index.set_field_boosts(2.0, 0.0);
        assert_eq!(ids(&index, "lighthouse", 5), [1, 2], "title ×2");
        index.set_field_boosts(0.0, 0.0);
        assert_eq!(ids(&index, "lighthouse", 5), [2], "body only");
        index.set_field_boosts(0.0, 10.0);
        assert_eq!(
            ids(&index, "lighthouse", 5),
            [1, 2],
            "path match, weighted up"
        );
        index.set_field_boosts(TITLE_BOOST, DOC_BOOST);
        assert_eq!(ids(&index, "lighthouse", 5).len(), 2, "body and path");
    }

    #[test]
    fn shards_scored_with_summed_statistics_equal_one_index() {
        let tmp = TempDir::new().unwrap();
        let whole = corpus_index(&tmp.path().join("whole"));
        // Two shards, split unevenly so that their own statistics differ.
        let shards: Vec<Bm25Index> = (0..2)
            .map(|s| {
                let index = Bm25Index::open_or_create(&tmp.path().join(format!("s{s}"))).unwrap();
                for &(id, doc, heading, text) in CORPUS {
                    if (id % 3 == 0) == (s == 0) {
                        index.add(id, doc, heading, text).unwrap();
                    }
                }
                index.commit(1).unwrap();
                index
            })
            .collect();
        let queries = [
            "how do I join strings",
            "read and write files in a directory",
            "virtual environment packages",
            "exception groups error messages",
        ];
        for q in queries {
            let mut sum = Bm25Stats::default();
            for shard in &shards {
                sum.add(&shard.query_stats(q).unwrap());
            }
            assert_eq!(sum, whole.query_stats(q).unwrap(), "{q}");
            let expected = whole.search(q, 20).unwrap();
            let mut own: Vec<Scored> = Vec::new();
            let mut global: Vec<Scored> = Vec::new();
            for shard in &shards {
                own.extend(shard.search(q, 20).unwrap());
                global.extend(shard.search_with(q, 20, Some(&sum)).unwrap());
            }
            let by_id = |v: &[Scored]| -> Vec<(ChunkId, f32)> {
                let mut v: Vec<(ChunkId, f32)> = v.iter().map(|s| (s.id, s.score)).collect();
                v.sort_by_key(|p| p.0);
                v
            };
            let (want, got) = (by_id(&expected), by_id(&global));
            assert_eq!(want.len(), got.len(), "{q}");
            for (w, g) in want.iter().zip(&got) {
                assert_eq!(w.0, g.0, "{q}");
                assert!(
                    (w.1 - g.1).abs() < 1e-5,
                    "{q}: chunk {}: {} vs {}",
                    w.0,
                    w.1,
                    g.1
                );
            }
            // The shards' own statistics give other scores: the test can fail.
            let own = by_id(&own);
            assert!(
                own.iter().zip(&want).any(|(o, w)| (o.1 - w.1).abs() > 1e-3),
                "{q}: local statistics happened to equal the whole's"
            );
        }
        // Statistics from a peer that make no sense do not crash a search.
        let mut bad = Bm25Stats {
            docs: 1,
            ..Bm25Stats::default()
        };
        bad.terms.insert("join".into(), [99, 99, 99]);
        assert!(shards[0].search_with("join", 5, Some(&bad)).is_ok());
    }

    /// Queries and their expected top 5 as (chunk id, score bits), recorded
    /// when issue 18 turned tantivy's debug assertions off in the dev
    /// profile (assertions that never fire change nothing): how a query is
    /// built and how tantivy is compiled may change, rankings and scores may
    /// not.
    const GOLDEN: &[(&str, &[(ChunkId, u32)])] = &[
        (
            "how do I join strings",
            &[
                (17, 0x40e9e4ea),
                (9, 0x40961984),
                (6, 0x40130199),
                (1, 0x3ffcaf6e),
                (2, 0x3fda8e06),
            ],
        ),
        (
            "os.path.join",
            &[
                (1, 0x4199b76b),
                (15, 0x40d0b146),
                (17, 0x40822e68),
                (2, 0x4075e2d5),
                (7, 0x3f9aedc7),
            ],
        ),
        (
            "virtual environment packages",
            &[
                (16, 0x413bf9bf),
                (7, 0x4105b856),
                (4, 0x40ae8901),
                (8, 0x4072865d),
            ],
        ),
        (
            "read and write files in a directory",
            &[
                (15, 0x411cc343),
                (9, 0x40dbb09c),
                (8, 0x403526ab),
                (6, 0x3fe9926b),
                (16, 0x3fdf5147),
            ],
        ),
        ("exception groups error messages", &[(14, 0x41296e51)]),
        (
            "python -m venv",
            &[
                (7, 0x41423090),
                (14, 0x407029aa),
                (16, 0x402ef193),
                (8, 0x3f9aedc7),
                (5, 0x3f94b7c6),
            ],
        ),
        ("HashMap<K, V>", &[(10, 0x41ab4eeb)]),
        (
            "command line arguments",
            &[
                (5, 0x40e3c424),
                (6, 0x409b45fb),
                (8, 0x40923764),
                (7, 0x40122a3f),
                (3, 0x3fc96036),
            ],
        ),
        (
            "Running the tests before you push",
            &[
                (11, 0x41a6bc8c),
                (2, 0x4003baeb),
                (7, 0x3fd5fdb3),
                (4, 0x3fd19d2a),
            ],
        ),
        (
            "path",
            &[
                (1, 0x40ad7358),
                (2, 0x40089bd2),
                (15, 0x3fa54871),
                (7, 0x3f9aedc7),
                (8, 0x3f9aedc7),
            ],
        ),
    ];

    const GOLDEN_QUERIES: &[&str] = &[
        "how do I join strings",
        "os.path.join",
        "virtual environment packages",
        "read and write files in a directory",
        "exception groups error messages",
        "python -m venv",
        "HashMap<K, V>",
        "command line arguments",
        "Running the tests before you push",
        "path",
    ];

    #[test]
    fn rankings_and_scores_are_unchanged() {
        let tmp = TempDir::new().unwrap();
        let index = corpus_index(tmp.path());
        let got: Vec<(&str, Vec<(ChunkId, u32)>)> = GOLDEN_QUERIES
            .iter()
            .map(|q| {
                let hits = index.search(q, 5).unwrap();
                (*q, hits.iter().map(|s| (s.id, s.score.to_bits())).collect())
            })
            .collect();
        let want: Vec<(&str, Vec<(ChunkId, u32)>)> =
            GOLDEN.iter().map(|(q, h)| (*q, h.to_vec())).collect();
        assert_eq!(got, want, "\n{got:#x?}");
    }

    #[test]
    fn new_index_is_empty() {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("bm25");
        let index = Bm25Index::open_or_create(&dir).unwrap();
        assert_eq!(index.applied_seq(), 0);
        assert_eq!(index.num_docs(), 0);
        assert!(index.search("anything", 10).unwrap().is_empty());
        assert_eq!(index.dir(), dir);
    }

    #[test]
    fn identifiers_rank_their_chunk_first() {
        let tmp = TempDir::new().unwrap();
        let index = corpus_index(tmp.path());
        assert_eq!(index.num_docs(), CORPUS.len() as u64);
        assert_eq!(top(&index, "os.path.join"), 1);
        assert_eq!(top(&index, "__init__"), 3);
        assert_eq!(top(&index, "sys.argv"), 5);
        assert_eq!(top(&index, "-m venv"), 7);
        assert_eq!(top(&index, "python -m venv"), 7);
        assert_eq!(top(&index, "std::fs::read_to_string"), 9);
        assert_eq!(top(&index, "read_to_string"), 9);
        assert_eq!(top(&index, "HashMap<K, V>"), 10);
        assert_eq!(top(&index, "snake_case_name"), 12);
        assert_eq!(top(&index, "--prune"), 13);
        assert_eq!(top(&index, "3.11"), 14);
        assert_eq!(top(&index, "os.path"), 1);
        // Scores are sorted, best first.
        let hits = index.search("path join", 10).unwrap();
        assert!(hits.len() >= 3);
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        // k limits the result.
        assert_eq!(index.search("path", 2).unwrap().len(), 2);
        assert!(index.search("path", 0).unwrap().is_empty());
    }

    #[test]
    fn stemming_and_odd_queries() {
        let tmp = TempDir::new().unwrap();
        let index = corpus_index(tmp.path());
        assert_eq!(top(&index, "running tests"), 11);
        assert!(ids(&index, "environment", 20).contains(&16));
        // Stopwords only, punctuation only, empty: no error, nothing found.
        assert!(index.search("the of and", 10).unwrap().is_empty());
        assert!(index.search("", 10).unwrap().is_empty());
        assert!(index.search("   \n\t ", 10).unwrap().is_empty());
        assert!(index.search("!!! ??? ---", 10).unwrap().is_empty());
        // Query syntax characters are not interpreted.
        index.search("foo:(bar\" -baz", 10).unwrap();
        index
            .search("AND OR NOT ~2 ^3 * [a TO b] {x} \\ / ''", 10)
            .unwrap();
        let hits = ids(&index, "path:(join\" -os", 10);
        assert!(hits.contains(&1));
        // Huge k is fine.
        assert_eq!(
            index.search("python", usize::MAX).unwrap().len(),
            ids(&index, "python", 100).len()
        );
    }

    #[test]
    fn delete_then_commit() {
        let tmp = TempDir::new().unwrap();
        let index = corpus_index(tmp.path());
        assert_eq!(top(&index, "sys.argv"), 5);
        index.delete(5).unwrap();
        index.delete(999).unwrap(); // absent: no error
                                    // Not visible before commit.
        assert_eq!(top(&index, "sys.argv"), 5);
        index.commit(8).unwrap();
        assert!(!ids(&index, "sys.argv", 20).contains(&5));
        assert_eq!(index.num_docs(), CORPUS.len() as u64 - 1);
        assert_eq!(index.applied_seq(), 8);
        // Replace a chunk: delete then add in the same batch.
        index.delete(1).unwrap();
        index
            .add(
                1,
                "library/os.path.html",
                "",
                "os.path.exists(path) tests a path",
            )
            .unwrap();
        index.commit(9).unwrap();
        assert_eq!(index.num_docs(), CORPUS.len() as u64 - 1);
        assert_eq!(top(&index, "os.path.exists"), 1);
        assert!(index.search("intelligently", 10).unwrap().is_empty());
    }

    #[test]
    fn persistence_across_reopen() {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("idx");
        {
            let index = corpus_index(&dir);
            assert_eq!(index.applied_seq(), 7);
            // Staged but never committed: lost on drop.
            index.add(100, "x.md", "", "uncommitted zanzibar").unwrap();
            index.delete(1).unwrap();
        }
        {
            let index = Bm25Index::open_or_create(&dir).unwrap();
            assert_eq!(index.applied_seq(), 7);
            assert_eq!(index.num_docs(), CORPUS.len() as u64);
            assert!(index.search("zanzibar", 10).unwrap().is_empty());
            assert_eq!(top(&index, "os.path.join"), 1);
            // An empty commit still records the sequence.
            index.commit(12).unwrap();
            assert_eq!(index.applied_seq(), 12);
        }
        let index = Bm25Index::open_or_create(&dir).unwrap();
        assert_eq!(index.applied_seq(), 12);
        assert_eq!(top(&index, "__init__"), 3);
    }

    #[test]
    fn clear_empties_and_resets_seq() {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("idx");
        {
            let index = corpus_index(&dir);
            index.add(200, "y.md", "", "staged quetzal").unwrap();
            index.clear().unwrap();
            assert_eq!(index.num_docs(), 0);
            assert_eq!(index.applied_seq(), 0);
            assert!(index.search("os.path.join", 10).unwrap().is_empty());
            index.commit(3).unwrap();
            assert!(index.search("quetzal", 10).unwrap().is_empty());
            index.add(1, "a.md", "", "sys.argv again").unwrap();
            index.commit(4).unwrap();
            assert_eq!(ids(&index, "sys.argv", 10), [1]);
        }
        let index = Bm25Index::open_or_create(&dir).unwrap();
        assert_eq!(index.applied_seq(), 4);
        assert_eq!(index.num_docs(), 1);
    }

    #[test]
    fn second_writer_is_not_corrupt() {
        let tmp = TempDir::new().unwrap();
        let _first = Bm25Index::open_or_create(tmp.path()).unwrap();
        match Bm25Index::open_or_create(tmp.path()) {
            Err(IndexError::Bm25(_)) => {}
            other => panic!("expected a Bm25 (lock) error, got {other:?}"),
        }
    }

    #[test]
    fn corrupt_meta_is_reported() {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("idx");
        drop(corpus_index(&dir));
        std::fs::write(dir.join("meta.json"), b"{ this is not json").unwrap();
        match Bm25Index::open_or_create(&dir) {
            Err(IndexError::Corrupt { path, .. }) => assert_eq!(path, dir),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // A directory with unrelated files is not an index either.
        let other = tmp.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("notes.txt"), b"hello").unwrap();
        assert!(matches!(
            Bm25Index::open_or_create(&other),
            Err(IndexError::Corrupt { .. })
        ));
        // After deleting, it can be rebuilt.
        std::fs::remove_dir_all(&dir).unwrap();
        let index = Bm25Index::open_or_create(&dir).unwrap();
        assert_eq!(index.num_docs(), 0);
    }

    #[test]
    fn foreign_schema_is_corrupt() {
        let tmp = TempDir::new().unwrap();
        let mut builder = Schema::builder();
        builder.add_text_field("body", tantivy::schema::TEXT);
        Index::create_in_dir(tmp.path(), builder.build()).unwrap();
        assert!(matches!(
            Bm25Index::open_or_create(tmp.path()),
            Err(IndexError::Corrupt { .. })
        ));
    }
}
