//! Replacing a directory whole: readers see the old one or the new one, never a mix.

use std::path::Path;

use anyhow::Context;

/// Builds a new `dir` with `fill` in a temporary sibling directory (named `prefix`…), then
/// swaps it in by rename, the previous `dir` moved aside and removed. A failure in `fill`
/// leaves `dir` untouched.
pub fn replace_dir(
    dir: &Path,
    prefix: &str,
    fill: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))?;
    fill(tmp.path())?;
    // Temporary directories are private (0700); these are meant to be read by others.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    let old = parent.join(format!("{prefix}old-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(dir, &old)
            .with_context(|| format!("moving the previous {} aside", dir.display()))?;
    }
    std::fs::rename(tmp.keep(), dir).with_context(|| format!("writing {}", dir.display()))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}
