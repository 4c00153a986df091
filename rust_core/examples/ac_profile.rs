#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]
#[path = "../benches/support/scan_corpus.rs"]
mod scan_corpus;
use std::time::Instant;
use aho_corasick::{packed, Span};
use _core::scan::{builtin, Category};

fn best<F: FnMut() -> usize>(mut f: F) -> (f64, usize) {
    let mut b = f64::MAX; let mut n = 0;
    for _ in 0..7 { let t = Instant::now(); n = f(); b = b.min(t.elapsed().as_secs_f64()); }
    (b * 1000.0, n)
}

fn main() {
    let text = scan_corpus::corpus();
    let lower = text.to_ascii_lowercase();
    let b = lower.as_bytes();
    let mut kws: Vec<Vec<u8>> = builtin::rules().iter().filter(|r| r.category == Category::Secret).flat_map(|r| r.keywords.clone()).map(|k| k.into_bytes()).collect();
    kws.sort(); kws.dedup();
    kws.sort_by(|a, c| c.len().min(3).cmp(&a.len().min(3)).then_with(|| a.cmp(c)));
    let mut total = 0.0;
    for chunk in kws.chunks(16) {
        let mut cfg = packed::Config::new();
        cfg.match_kind(packed::MatchKind::LeftmostFirst);
        let s = cfg.builder().extend(chunk).build().unwrap();
        let (t, n) = best(|| { let mut c = 0; let mut at = 0; while let Some(m) = s.find_in(b, Span::from(at..b.len())) { c += 1; at = m.start() + 1; } c });
        let (t2, _) = best(|| s.find_iter(b).count());
        total += t;
        println!("{t:.3} ms (iter {t2:.3}) {n} hits: {:?}", chunk.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect::<Vec<_>>());
    }
    println!("total {total:.3}");
}
