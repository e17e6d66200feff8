//! The fuzz targets (fuzz/src/lib.rs) on stable, bounded by count: each target runs over every
//! seed of its corpus (fuzz/corpus/<target>/) and a fixed number of deterministic mutations of
//! each. A panic is a bug; its input goes into the corpus as a regression seed once fixed.
//! `cargo fuzz run <target>` (nightly) explores the same targets with libFuzzer for as long as
//! one likes.

#[path = "../../fuzz/src/lib.rs"]
mod targets;

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;

/// Mutations per seed, which keep each target to a few seconds: the in-memory parsers take
/// thousands, the unpacker and the configuration loader (a temp dir and files per input) fewer.
const MUTATIONS: usize = 3000;
const UNPACK_MUTATIONS: usize = 150;
const CONFIG_MUTATIONS: usize = 300;
/// Mutants grow by splicing and insertion; past this they are cut back, which also bounds the
/// time any one input can take.
const MAX_INPUT: usize = 64 << 10;

/// xorshift64*: deterministic, so a failure names a seed and a mutation number that replay it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

/// Values that tend to sit on parsers' boundaries: lengths, counts, signs.
const INTERESTING: &[&[u8]] = &[
    &[0x00],
    &[0xff],
    &[0x7f],
    &[0x80],
    &[0xff, 0xff],
    &[0x7f, 0xff, 0xff, 0xff],
    &[0xff, 0xff, 0xff, 0xff],
    &[0x80, 0x00, 0x00, 0x00],
    &[0x00, 0x00, 0x00, 0x00],
    &[0xff, 0xff, 0xff],
    b"-1",
    b"4294967296",
    b"99999999999999999999",
    b"..",
    b"../",
    b"/",
    b"\"",
    b"{",
    b"[",
    b"\\u0000",
    b"\n",
];

/// One to four stacked mutations of `seed`, sometimes spliced with another seed.
fn mutate(rng: &mut Rng, seed: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(8) {
            0 if !data.is_empty() => {
                let at = rng.below(data.len());
                data[at] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let at = rng.below(data.len());
                data[at] = rng.next() as u8;
            }
            2 => {
                let at = rng.below(data.len() + 1);
                data.insert(at, rng.next() as u8);
            }
            3 if !data.is_empty() => {
                let at = rng.below(data.len());
                let len = 1 + rng.below((data.len() - at).min(16));
                data.drain(at..at + len);
            }
            4 => data.truncate(rng.below(data.len() + 1)),
            5 => {
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let at = rng.below(data.len() + 1);
                let end = (at + value.len()).min(data.len());
                data.splice(at..end, value.iter().copied());
            }
            6 => {
                let other = &seeds[rng.below(seeds.len())];
                let at = rng.below(data.len() + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            _ if data.len() > 1 => {
                // Repeat a run, as a length field or a nesting that grows would.
                let at = rng.below(data.len());
                let len = 1 + rng.below((data.len() - at).min(64));
                let run = data[at..at + len].to_vec();
                for _ in 0..1 + rng.below(8) {
                    data.splice(at..at, run.iter().copied());
                }
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data.truncate(MAX_INPUT);
    data
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut seeds: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.file_name().unwrap().to_string_lossy().into_owned(), fs::read(&path).unwrap())
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "{} holds no seeds", dir.display());
    seeds
}

/// Runs `target` over its corpus and the mutations; on a panic, names the input and saves it
/// under target/fuzz-failures/ so it can be added to the corpus.
fn run(name: &str, mutations: usize) {
    let (_, target) = targets::TARGETS.iter().find(|(n, _)| *n == name).expect("a known target");
    let seeds = corpus(name);
    let bodies: Vec<Vec<u8>> = seeds.iter().map(|(_, b)| b.clone()).collect();
    // CRISP_FUZZ_SEED explores other mutations, CRISP_FUZZ_ROUNDS multiplies their number.
    let seed = env_number("CRISP_FUZZ_SEED").unwrap_or(0x9E37_79B9_7F4A_7C15);
    let mutations = mutations * env_number("CRISP_FUZZ_ROUNDS").unwrap_or(1) as usize;
    let mut rng = Rng(seed ^ name.bytes().fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b)) | 1);
    let mut inputs = 0;
    for (file, seed) in &seeds {
        let try_input = |label: String, input: &[u8]| {
            if panic::catch_unwind(AssertUnwindSafe(|| target(input))).is_err() {
                let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures").join(name);
                fs::create_dir_all(&dir).unwrap();
                let path = dir.join(label.replace('/', "_"));
                fs::write(&path, input).unwrap();
                panic!("{name}: {label} panicked; the input is in {}", path.display());
            }
        };
        try_input(file.clone(), seed);
        inputs += 1;
        for i in 0..mutations {
            let input = mutate(&mut rng, seed, &bodies);
            try_input(format!("{file}-mutation-{i}"), &input);
            inputs += 1;
        }
    }
    eprintln!("{name}: {inputs} inputs from {} seeds, mutator seed {seed}", seeds.len());
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(text.parse().unwrap_or_else(|_| panic!("{name}={text:?} is not a number")))
}

#[test]
fn reference() {
    run("reference", MUTATIONS);
}

#[test]
fn manifest() {
    run("manifest", MUTATIONS);
}

#[test]
fn image_config() {
    run("image_config", MUTATIONS);
}

#[test]
fn unpack() {
    run("unpack", UNPACK_MUTATIONS);
}

#[test]
fn cni_result() {
    run("cni_result", MUTATIONS);
}

#[test]
fn spdy_frame() {
    run("spdy_frame", MUTATIONS);
}

#[test]
fn spdy_client() {
    run("spdy_client", MUTATIONS);
}

#[test]
fn websocket_channel() {
    run("websocket_channel", MUTATIONS);
}

#[test]
fn config() {
    run("config", CONFIG_MUTATIONS);
}

#[test]
fn every_target_has_a_test_and_a_fuzz_target() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    for (name, _) in targets::TARGETS {
        assert!(dir.join(format!("{name}.rs")).is_file(), "fuzz/fuzz_targets/{name}.rs is missing");
    }
}
