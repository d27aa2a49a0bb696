//! Replays the saved fuzz corpus (`fuzz/corpus/<target>/*`) through the same checks the
//! cargo-fuzz targets run (`nodelocaldns::fuzzing`), so every input a fuzzer ever kept,
//! crashes included once fixed, is a regression test of `make test`. Also a property
//! test: random mutations of the cache-answer seeds, served from the cache, must parse
//! and carry the client's question.

use std::path::{Path, PathBuf};

use nodelocaldns::fuzzing;
use proptest::prelude::*;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    let files = corpus(target);
    assert!(!files.is_empty(), "fuzz/corpus/{target} is empty");
    for file in &files {
        // A running fuzzer may replace a file between the listing and the read.
        let Ok(data) = std::fs::read(file) else {
            continue;
        };
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target}: {} fails", file.display());
    }
}

#[test]
fn wire_query_corpus() {
    replay("wire_query", fuzzing::wire_query);
}

#[test]
fn cache_answer_corpus() {
    replay("cache_answer", fuzzing::cache_answer);
}

#[test]
fn corefile_corpus() {
    replay("corefile", fuzzing::corefile);
}

#[test]
fn configmap_corpus() {
    replay("configmap", fuzzing::configmap);
}

/// The hand-written seeds (short names; libFuzzer names its finds by SHA-1). Keep them
/// when minimizing the corpus (`cargo fuzz cmin` drops them).
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        corpus("cache_answer")
            .iter()
            .filter(|p| p.file_name().is_some_and(|n| n.len() <= 16))
            .filter_map(|p| std::fs::read(p).ok())
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]
    /// Any answer the cache accepts, however mangled, is served as a reply that parses
    /// with an independent parser (hickory), matches the question and fits the limit
    /// (the assertions are in `fuzzing::cache_answer`).
    #[test]
    fn served_answers_parse_and_match(
        seed in any::<prop::sample::Index>(),
        control: u8,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let seeds = seeds();
        prop_assert!(!seeds.is_empty(), "no hand-written seeds in fuzz/corpus/cache_answer");
        let mut data = seeds[seed.index(seeds.len())].clone();
        data[0] = control;
        for (at, byte) in edits {
            let i = at.index(data.len());
            data[i] = byte;
        }
        let keep = data.len() - cut.index(data.len() / 4 + 1);
        data.truncate(keep.max(1));
        fuzzing::cache_answer(&data);
    }
}

/// The hand-written `template` and `rewrite` seeds are accepted Corefiles, so the
/// fuzzer starts from inputs that reach the links themselves (`fuzzing::plugin_links`).
#[test]
fn plugin_seeds_parse() {
    let seeds: Vec<PathBuf> = corpus("corefile")
        .into_iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with("template-") || name.starts_with("rewrite-")
        })
        .collect();
    assert_eq!(seeds.len(), 6, "the template and rewrite seeds");
    for seed in seeds {
        let text = std::fs::read_to_string(&seed).expect("seed is text");
        if let Err(err) = nodelocaldns::config::parse_corefile(&text, &seed) {
            panic!("{}: {err}", seed.display());
        }
    }
}
