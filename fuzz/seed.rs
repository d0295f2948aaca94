//! Each target's seed: one valid input, encoded by the crate itself.

/// Writes the seed of `target` into the corpus directory `MULTIPROC_FUZZ_SEEDS` names, if
/// set (`run.sh` sets it); libFuzzer reads that directory after this runs.
pub fn write(target: &str) {
    let Ok(dir) = std::env::var("MULTIPROC_FUZZ_SEEDS") else {
        return;
    };
    let Some(seed) = multiproc::__fuzz::seeds(target) else {
        return;
    };
    std::fs::create_dir_all(&dir).expect("creating the corpus directory");
    std::fs::write(std::path::Path::new(&dir).join("seed"), seed).expect("writing the seed");
}
