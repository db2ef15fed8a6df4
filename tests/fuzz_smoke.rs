//! Every fuzz target, for a bounded time in every CI run: first the committed seed corpus
//! (`fuzz/corpus/TARGET/`), then random mutations of it (bit flips, byte overwrites, cuts,
//! splices, repeated chunks, interesting integers). A panic fails the test and leaves the input
//! in `target/fuzz-smoke/`. Coverage-guided fuzzing is the longer documented command:
//! `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O TARGET`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proctor::fuzzing::Target;

fn targets() -> Vec<Target> {
    let mut t: Vec<Target> = proctor::fuzzing::TARGETS.to_vec();
    t.extend_from_slice(proctor_postgres_targets());
    t.extend_from_slice(proctor_ssh_targets());
    t
}

fn proctor_postgres_targets() -> &'static [Target] {
    proctor_postgres::fuzzing::TARGETS
}

fn proctor_ssh_targets() -> &'static [Target] {
    proctor_ssh::fuzzing::TARGETS
}

/// xorshift64*: deterministic per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u32] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];

fn mutate(rng: &mut Rng, corpus: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        match rng.below(7) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] = rng.next() as u8;
            }
            2 if !input.is_empty() => {
                let cut = rng.below(input.len());
                input.truncate(cut);
            }
            3 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                let at = rng.below(input.len() + 1);
                let from = rng.below(other.len() + 1);
                let to = from + rng.below(other.len() - from + 1);
                input.splice(at..at, other[from..to].iter().copied());
            }
            4 if !input.is_empty() => {
                let from = rng.below(input.len());
                let len = rng.below((input.len() - from).min(64) + 1);
                let chunk = input[from..from + len].to_vec();
                for _ in 0..=rng.below(8) {
                    input.extend_from_slice(&chunk);
                }
            }
            5 if input.len() >= 4 => {
                let i = rng.below(input.len() - 3);
                let v = INTERESTING[rng.below(INTERESTING.len())];
                input[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            _ => input.push(rng.next() as u8),
        }
    }
    input.truncate(1 << 20);
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus")
        .join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
}

fn run_one(name: &str, f: fn(&[u8]), input: &[u8]) {
    let result = std::panic::catch_unwind(|| f(input));
    if result.is_err() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("fuzz-smoke");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!(
            "{name}-crash-{}",
            hex::encode(&sha2_digest(input)[..8])
        ));
        let _ = std::fs::write(&path, input);
        panic!(
            "fuzz target {name} panicked on an input saved to {}",
            path.display()
        );
    }
}

fn sha2_digest(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

#[test]
fn every_target_survives_its_corpus_and_mutations() {
    let per_target = Duration::from_millis(
        std::env::var("PROCTOR_FUZZ_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000),
    );
    let mut report = Vec::new();
    for (name, f) in targets() {
        let seeds = corpus(name);
        assert!(!seeds.is_empty(), "fuzz/corpus/{name} has no seeds");
        for s in &seeds {
            run_one(name, f, s);
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        let started = Instant::now();
        let mut execs = 0u64;
        while started.elapsed() < per_target {
            let mut input = seeds[rng.below(seeds.len())].clone();
            mutate(&mut rng, &seeds, &mut input);
            run_one(name, f, &input);
            execs += 1;
        }
        report.push(format!(
            "{name}: {} seeds, {execs} mutated inputs",
            seeds.len()
        ));
    }
    eprintln!("{}", report.join("\n"));
}
