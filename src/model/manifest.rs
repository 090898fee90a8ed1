//! `manifest.json`: what kefu needs to know about a model directory beyond `config.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ModelError;

/// How token states become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over the tokens the attention mask keeps.
    Mean,
    /// The first token's state.
    Cls,
}

/// Model identity and serving parameters, stored as `manifest.json` in the model directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    /// `name@` plus the first 12 hex digits of the weights' sha256: changes whenever the
    /// weights do, so caches and index snapshots keyed by it never mix models.
    pub version: String,
    pub dimension: usize,
    pub pooling: Pooling,
    /// Text put before every input (e5 models expect `query: `).
    pub prefix: String,
    /// Longest input in tokens, special tokens included; longer inputs are truncated.
    pub max_tokens: usize,
    /// sha256 of every file in the directory except the manifest itself.
    pub files: BTreeMap<String, String>,
}

/// The parts of a manifest its writer chooses; checksums and version are computed.
#[derive(Debug, Clone)]
pub struct ManifestSpec {
    pub name: String,
    pub dimension: usize,
    pub pooling: Pooling,
    pub prefix: String,
    pub max_tokens: usize,
}

pub const MANIFEST_FILE: &str = "manifest.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut f = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| ModelError::io(path, e))?;
    Ok(hex::encode(h.finalize()))
}

impl Manifest {
    /// Builds the manifest for the files now in `dir`.
    pub fn compute(dir: &Path, spec: ManifestSpec) -> Result<Self, ModelError> {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))? {
            let entry = entry.map_err(|e| ModelError::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == MANIFEST_FILE || entry.path().is_dir() {
                continue;
            }
            files.insert(name, sha256_file(&entry.path())?);
        }
        let weights = files.get(WEIGHTS_FILE).ok_or_else(|| {
            ModelError::Invalid(format!("{} has no {WEIGHTS_FILE}", dir.display()))
        })?;
        Ok(Self {
            version: format!("{}@{}", spec.name, &weights[..12]),
            name: spec.name,
            dimension: spec.dimension,
            pooling: spec.pooling,
            prefix: spec.prefix,
            max_tokens: spec.max_tokens,
            files,
        })
    }

    pub fn read(dir: &Path) -> Result<Option<Self>, ModelError> {
        let path = dir.join(MANIFEST_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ModelError::Invalid(format!("{}: {e}", path.display())))
    }

    pub fn write(&self, dir: &Path) -> Result<(), ModelError> {
        let path = dir.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(self).expect("manifest serialises");
        std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))
    }

    /// Checks every listed file against its checksum.
    pub fn verify(&self, dir: &Path) -> Result<(), ModelError> {
        for (name, want) in &self.files {
            let path = dir.join(name);
            if !path.exists() {
                return Err(ModelError::Invalid(format!(
                    "{} is missing",
                    path.display()
                )));
            }
            let got = sha256_file(&path)?;
            if &got != want {
                return Err(ModelError::Invalid(format!(
                    "{} is damaged: sha256 {got} does not match the manifest's {want}",
                    path.display()
                )));
            }
        }
        Ok(())
    }
}
