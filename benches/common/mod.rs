//! Helpers shared by the benches.

/// Runs `script` with `python3` and parses what it prints as one figure; `None` when python3
/// is missing or the script fails. The script goes to a file, not `-c`, so that Python's
/// `spawn` start method can import the functions it defines.
pub fn python_figure(script: &str) -> Option<f64> {
    let dir = std::env::temp_dir().join(format!("multiproc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join("anchor.py");
    std::fs::write(&path, script).ok()?;
    let output = std::process::Command::new("python3").arg(&path).output();
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8(output.ok()?.stdout)
        .ok()?
        .trim()
        .parse()
        .ok()
}
