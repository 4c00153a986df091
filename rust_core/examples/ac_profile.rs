#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]
#[path = "../benches/support/scan_corpus.rs"]
mod scan_corpus;
use std::time::Instant;
use aho_corasick::packed;
use _core::scan::{builtin, Category};

fn best<F: FnMut() -> usize>(mut f: F) -> (f64, usize) {
    let mut b = f64::MAX; let mut n = 0;
    for _ in 0..7 { let t = Instant::now(); n = f(); b = b.min(t.elapsed().as_secs_f64()); }
    (b * 1000.0, n)
}

fn main() {
    let text = scan_corpus::corpus();
    let lower = text.to_ascii_lowercase();
    let mut kws: Vec<String> = builtin::rules().iter().filter(|r| r.category == Category::Secret).flat_map(|r| r.keywords.clone()).collect();
    kws.sort(); kws.dedup();
    println!("{kws:?}");
    for all in [false, true] {
    let mut kws: Vec<String> = builtin::rules().iter().filter(|r| all || r.category == Category::Secret).flat_map(|r| r.keywords.clone()).collect();
    kws.sort(); kws.dedup();
    for g in [8usize, 12, 16, 24, 32] {
        let searchers: Vec<packed::Searcher> = kws.chunks(g).map(|set| {
            let mut cfg = packed::Config::new();
            cfg.match_kind(packed::MatchKind::LeftmostFirst).heuristic_pattern_limits(false);
            let mut b = cfg.builder(); b.extend(set.iter()); b.build().unwrap()
        }).collect();
        let (t, c) = best(|| { let l = text.to_ascii_lowercase(); searchers.iter().map(|s| s.find_iter(&l).count()).sum() });
        let per: Vec<String> = searchers.iter().map(|s| { let (t, _) = best(|| s.find_iter(&lower).count()); format!("{t:.2}") }).collect();
        println!("all={all} groups of {g}: {} passes {t:.3} ms ({c} hits) per pass {per:?}", searchers.len());
    }
    }
}
