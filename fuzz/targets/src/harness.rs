//! The stable harness: replays a target's committed corpus, then feeds it a bounded number of
//! inputs derived from that corpus by a deterministic mutator (xorshift, fixed seed), so that
//! a run is reproducible from its seed. No coverage feedback: that is what `cargo fuzz` adds
//! in the long runs. A failing input is written to `fuzz/artifacts/<target>/` in the format
//! libFuzzer uses, so `cargo fuzz run <target> <file>` replays it too.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the fuzz crate lives (corpus, dictionaries, artifacts).
pub fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every file of `fuzz/corpus/<target>`, sorted by name.
pub fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} is unreadable: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.into_iter().map(|p| (p.clone(), fs::read(&p).expect("read corpus file"))).collect()
}

/// The tokens of a libFuzzer dictionary (`fuzz/dict/<target>.dict`): lines `name="value"` or
/// `"value"` with `\\`, `\"` and `\xNN` escapes; `#` starts a comment.
pub fn dictionary(target: &str) -> Vec<Vec<u8>> {
    let path = fuzz_dir().join("dict").join(format!("{target}.dict"));
    let Ok(text) = fs::read_to_string(&path) else { return Vec::new() };
    let mut tokens = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (Some(start), Some(end)) = (line.find('"'), line.rfind('"')) else { continue };
        if end <= start {
            continue;
        }
        let raw = &line.as_bytes()[start + 1..end];
        let mut token = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            match (raw[i], raw.get(i + 1)) {
                (b'\\', Some(b'x')) if raw.len() >= i + 4 => {
                    let hex = std::str::from_utf8(&raw[i + 2..i + 4]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                    token.push(hex.unwrap_or(b'?'));
                    i += 4;
                }
                (b'\\', Some(c)) => {
                    token.push(*c);
                    i += 2;
                }
                (c, _) => {
                    token.push(c);
                    i += 1;
                }
            }
        }
        tokens.push(token);
    }
    tokens
}

/// xorshift64*: small, fast, and the same sequence everywhere for a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng((seed ^ 0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}

const INTERESTING: &[u8] =
    &[0, 1, 0x7f, 0x80, 0xff, b'"', b'.', b'/', b'%', b';', b'=', b',', b'&', b'\n', b'{', b'}', b'\\', b' ', b'0'];

/// Derives a new input from `input` with 1 to 8 stacked edits; `pool` supplies splices and
/// `dict` tokens. The result is at most `max_len` bytes. The first byte selects a mode or a
/// method in every target, so seven times out of eight it is kept and only the rest is edited.
pub fn mutate(rng: &mut Rng, input: &[u8], pool: &[Vec<u8>], dict: &[Vec<u8>], max_len: usize) -> Vec<u8> {
    if input.len() > 1 && rng.below(8) != 0 {
        let mut out = vec![input[0]];
        out.extend(edit(rng, &input[1..], pool, dict, max_len.saturating_sub(1)));
        return out;
    }
    edit(rng, input, pool, dict, max_len)
}

fn edit(rng: &mut Rng, input: &[u8], pool: &[Vec<u8>], dict: &[Vec<u8>], max_len: usize) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        let len = out.len();
        match rng.below(12) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.byte();
            }
            2 if len > 0 => {
                let i = rng.below(len);
                out[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
                out.splice(i..i, bytes);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                out.drain(i..i + n);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                let copy = out[i..i + n].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, copy);
            }
            6 | 7 if !dict.is_empty() => {
                let token = &dict[rng.below(dict.len())];
                let i = rng.below(len + 1);
                if rng.below(2) == 0 || len == 0 {
                    out.splice(i..i, token.iter().copied());
                } else {
                    let end = (i + token.len()).min(len);
                    out.splice(i..end, token.iter().copied());
                }
            }
            8 if !pool.is_empty() => {
                let other = &pool[rng.below(pool.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            9 if len > 0 => {
                out.truncate(rng.below(len));
            }
            10 if len > 0 => {
                let i = rng.below(len);
                if out[i].is_ascii_digit() {
                    out[i] = b'0' + (out[i] - b'0' + 1 + rng.below(9) as u8) % 10;
                } else {
                    out[i] = out[i].wrapping_add(1 + rng.below(3) as u8);
                }
            }
            _ => {
                let i = rng.below(len + 1);
                out.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
        }
        out.truncate(max_len);
    }
    out
}

/// How much random input a run gets after the corpus.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    Iterations(u64),
    Time(Duration),
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    pub corpus_files: usize,
    pub generated: u64,
    pub elapsed: Duration,
}

fn escape(input: &[u8]) -> String {
    input.escape_ascii().to_string()
}

/// Saves a failing input where libFuzzer would, and returns its path.
fn save_artifact(target: &str, input: &[u8]) -> PathBuf {
    let dir = fuzz_dir().join("artifacts").join(target);
    let _ = fs::create_dir_all(&dir);
    // FNV-1a: a stable name for the same input.
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    let path = dir.join(format!("crash-{hash:016x}"));
    let _ = fs::write(&path, input);
    path
}

fn check(target: &str, f: fn(&[u8]), input: &[u8], origin: &dyn Fn() -> String) {
    if panic::catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
        let saved = save_artifact(target, input);
        panic!("{target}: finding on {} (saved to {}); input: \"{}\"", origin(), saved.display(), escape(input));
    }
}

/// Replays the corpus of `target` through `f`, then runs `budget` mutated inputs from `seed`.
/// Panics (failing the test) at the first input that makes `f` panic.
pub fn run(target: &str, f: fn(&[u8]), budget: Budget, seed: u64) -> Report {
    let start = Instant::now();
    let files = corpus(target);
    assert!(!files.is_empty(), "{target}: the corpus is empty");
    for (path, input) in &files {
        check(target, f, input, &|| format!("corpus file {}", path.display()));
    }
    let dict = dictionary(target);
    let mut pool: Vec<Vec<u8>> = files.into_iter().map(|(_, bytes)| bytes).collect();
    let corpus_files = pool.len();
    let mut rng = Rng::new(seed);
    let mut generated = 0u64;
    let deadline = match budget {
        Budget::Time(d) => Some(start + d),
        Budget::Iterations(_) => None,
    };
    loop {
        match budget {
            Budget::Iterations(n) if generated >= n => break,
            Budget::Time(_) if generated.is_multiple_of(256) && deadline.is_some_and(|d| Instant::now() >= d) => break,
            _ => {}
        }
        let parent = &pool[rng.below(pool.len())];
        let input = mutate(&mut rng, parent, &pool, &dict, 4096);
        let n = generated;
        check(target, f, &input, &|| format!("generated input #{n} (seed {seed})"));
        generated += 1;
        // Keep a few offspring so that edits can stack over generations.
        if rng.below(16) == 0 {
            if pool.len() < corpus_files + 1024 {
                pool.push(input);
            } else {
                let slot = corpus_files + rng.below(1024);
                pool[slot] = input;
            }
        }
    }
    Report { corpus_files, generated, elapsed: start.elapsed() }
}

/// Budget and seed from the environment: `FUZZ_SECONDS` (per target) wins over
/// `FUZZ_ITERATIONS`; `FUZZ_SEED` defaults to a fixed value.
pub fn settings(default_iterations: u64) -> (Budget, u64) {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok());
    let budget = match (var("FUZZ_SECONDS"), var("FUZZ_ITERATIONS")) {
        (Some(s), _) => Budget::Time(Duration::from_secs(s)),
        (None, Some(n)) => Budget::Iterations(n),
        (None, None) => Budget::Iterations(default_iterations),
    };
    (budget, var("FUZZ_SEED").unwrap_or(0x5eed_a11c_e5ed))
}
