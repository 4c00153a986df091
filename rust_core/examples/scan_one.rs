#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]
#[path = "../benches/support/scan_corpus.rs"]
mod scan_corpus;
use _core::scan::{builtin, Category, Scanner};
fn main() {
    let text = scan_corpus::corpus();
    let which = std::env::args().nth(1).unwrap_or_default();
    let rules: Vec<_> = builtin::rules().into_iter().filter(|r| which == "all" || (which == "secret" && r.category == Category::Secret) || r.id == which).collect();
    let s = Scanner::new(rules).unwrap();
    let a = vec![2u8; s.len()];
    let mut n = 0;
    for _ in 0..200 { n += s.find(&text, &a).len(); }
    println!("{n}");
}
