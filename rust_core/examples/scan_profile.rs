#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]
#[path = "../benches/support/scan_corpus.rs"]
mod scan_corpus;
use std::time::Instant;
use _core::scan::{builtin, RuleDef, Scanner};

fn time(scanner: &Scanner, text: &str) -> f64 {
    let actions = vec![2u8; scanner.len()];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        std::hint::black_box(scanner.find(text, &actions));
        best = best.min(t.elapsed().as_secs_f64());
    }
    best * 1000.0
}

fn main() {
    let text = scan_corpus::corpus();
    let rules = builtin::rules();
    let all = Scanner::new(rules.clone()).unwrap();
    println!("all: {:.3} ms, findings {}", time(&all, &text), all.find(&text, &vec![2; all.len()]).len());
    // keywords only: every rule's keywords with a regex that never matches
    let kw: Vec<RuleDef> = rules.iter().filter(|r| !r.keywords.is_empty()).map(|r| { let mut d = r.clone(); d.regex = "(\\x00never)".into(); d.max_len = Some(1); d.secret_group = 0; d }).collect();
    println!("prefilter only: {:.3} ms", time(&Scanner::new(kw).unwrap(), &text));
    let mut rows: Vec<(f64, String, usize)> = rules.iter().map(|r| {
        let s = Scanner::new(vec![r.clone()]).unwrap();
        (time(&s, &text), format!("{} {:?} kw={:?}", r.id, r.category, r.keywords), s.max_len(0))
    }).collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (t, name, ml) in rows.iter().take(30) { println!("{t:8.3} ms  max_len={ml:5}  {name}"); }
}
