//! Replacing a directory whole: readers see the old one or the new one, never a mix, and a
//! crash (even `kill -9` or a power cut) at any moment leaves one of them complete in place.
//!
//! The new directory is filled in a temporary sibling (`<prefix>XXXXXX`), its files and the
//! directory itself are synced, and it is swapped with the old one in one atomic exchange
//! (`renameat2(RENAME_EXCHANGE)` on Linux). Where the file system cannot exchange, the old
//! directory is moved aside and the new one renamed into place: a crash between the two
//! renames leaves no `dir`, which [`recover_dir`] puts back from the newest complete sibling.
//! Every writer holds a lock on `<temporary>.lock` while it works, so leftovers of writers
//! that died can be told apart from the work of live ones and removed.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Builds a new `dir` with `fill` in a temporary sibling directory (named `prefix`…), then
/// swaps it in. A failure in `fill` leaves `dir` untouched. Leftovers of earlier writers of
/// the same prefix that died are removed first.
pub fn replace_dir(
    dir: &Path,
    prefix: &str,
    fill: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let parent = parent_of(dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    remove_stale(&parent, prefix);
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))?;
    let lock_path = lock_path(tmp.path());
    let lock =
        File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let result = fill_and_swap(dir, &parent, tmp, fill);
    let _ = std::fs::remove_file(&lock_path);
    drop(lock);
    result
}

fn fill_and_swap(
    dir: &Path,
    parent: &Path,
    tmp: tempfile::TempDir,
    fill: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    fill(tmp.path())?;
    // Temporary directories are private (0700); these are meant to be read by others.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    // What is renamed into place must be on disk first, or a power cut could leave the new
    // name holding empty files.
    sync_tree(tmp.path()).with_context(|| format!("syncing {}", tmp.path().display()))?;
    if dir.exists() && exchange(tmp.path(), dir)? {
        // `tmp` now holds the previous directory; dropping it removes it.
        sync_dir(parent);
        return Ok(());
    }
    let mut old_name = tmp.path().file_name().unwrap_or_default().to_os_string();
    old_name.push("-old");
    let old = parent.join(old_name);
    if dir.exists() {
        std::fs::rename(dir, &old)
            .with_context(|| format!("moving the previous {} aside", dir.display()))?;
    }
    std::fs::rename(tmp.keep(), dir).with_context(|| format!("writing {}", dir.display()))?;
    sync_dir(parent);
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Swaps `a` and `b` atomically; false where the file system cannot (then nothing changed).
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> anyhow::Result<bool> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => Ok(false),
        Err(e) => Err(std::io::Error::from(e))
            .with_context(|| format!("swapping {} into place", b.display())),
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> anyhow::Result<bool> {
    Ok(false)
}

fn parent_of(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn lock_path(tmp: &Path) -> PathBuf {
    let mut name = tmp.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    tmp.with_file_name(name)
}

/// Whether a writer is still working on `tmp` (it holds the lock on `<tmp>.lock`).
fn in_use(tmp: &Path) -> bool {
    match File::open(lock_path(tmp)) {
        Ok(f) => matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

/// The directories in `parent` named `prefix`… that no live writer is working on.
fn leftovers(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return vec![];
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(prefix))
        })
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| !in_use(p))
        .collect()
}

/// Removes what writers of `prefix` that died left in `parent` (temporary directories, the
/// previous directories they had moved aside, their lock files); returns how many bytes that
/// freed.
pub fn remove_stale(parent: &Path, prefix: &str) -> u64 {
    let mut freed = 0;
    for dir in leftovers(parent, prefix) {
        freed += size_of_tree(&dir);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "removing a leftover temporary directory failed");
        }
        let _ = std::fs::remove_file(lock_path(&dir));
    }
    // Lock files whose directory is gone.
    if let Ok(entries) = std::fs::read_dir(parent) {
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(".lock")
                && stem.starts_with(prefix)
                && !parent.join(stem).exists()
                && let Ok(f) = File::open(e.path())
                && f.try_lock().is_ok()
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    freed
}

/// When `dir` is missing (a crash between the two renames of a file system that cannot
/// exchange, or an older kefu's leftovers), renames the newest sibling named `prefix`… that
/// `complete` accepts into its place; then removes the remaining leftovers. Returns the
/// directory recovered, if any.
pub fn recover_dir(
    dir: &Path,
    prefix: &str,
    complete: impl Fn(&Path) -> bool,
) -> anyhow::Result<Option<PathBuf>> {
    let parent = parent_of(dir);
    let mut recovered = None;
    if !dir.exists() {
        let newest = leftovers(&parent, prefix)
            .into_iter()
            .filter(|p| complete(p))
            .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
            .max_by_key(|(t, _)| *t);
        if let Some((_, p)) = newest {
            std::fs::rename(&p, dir)
                .with_context(|| format!("moving {} to {}", p.display(), dir.display()))?;
            sync_dir(&parent);
            let _ = std::fs::remove_file(lock_path(&p));
            recovered = Some(p);
        }
    }
    let freed = remove_stale(&parent, prefix);
    if freed > 0 {
        tracing::info!(
            dir = %parent.display(),
            prefix,
            mb = freed / 1_000_000,
            "removed leftover temporary directories"
        );
    }
    Ok(recovered)
}

fn size_of_tree(p: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(p)
        .map(|es| {
            es.filter_map(Result::ok)
                .map(|e| size_of_tree(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// Syncs every file under `dir` and the directories themselves.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            sync_tree(&e.path())?;
        } else {
            File::open(e.path())?.sync_all()?;
        }
    }
    File::open(dir)?.sync_all()
}

/// Syncs a directory's entries (a rename in it); best effort where directories cannot be
/// opened for that.
fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_whole_and_leaves_nothing_behind() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("out");
        replace_dir(&dir, ".t-", |d| Ok(std::fs::write(d.join("a"), "1")?)).unwrap();
        replace_dir(&dir, ".t-", |d| Ok(std::fs::write(d.join("b"), "2")?)).unwrap();
        assert_eq!(names(&dir), vec!["b"]);
        assert_eq!(names(root.path()), vec!["out"]);
        // A failing fill leaves the previous directory as it was.
        let err = replace_dir(&dir, ".t-", |d| {
            std::fs::write(d.join("c"), "3")?;
            anyhow::bail!("interrupted")
        });
        assert!(err.is_err());
        assert_eq!(names(&dir), vec!["b"]);
        assert_eq!(names(root.path()), vec!["out"]);
    }

    #[test]
    fn dead_writers_leftovers_are_removed_and_live_ones_kept() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("out");
        // A writer that died mid-fill, and one that died between the two renames.
        std::fs::create_dir(root.path().join(".t-dead1")).unwrap();
        std::fs::write(root.path().join(".t-dead1/x"), "half").unwrap();
        std::fs::write(root.path().join(".t-dead1.lock"), "").unwrap();
        std::fs::create_dir(root.path().join(".t-old-77")).unwrap();
        // A live writer.
        std::fs::create_dir(root.path().join(".t-live")).unwrap();
        let live = File::create(root.path().join(".t-live.lock")).unwrap();
        live.lock().unwrap();
        replace_dir(&dir, ".t-", |d| Ok(std::fs::write(d.join("a"), "1")?)).unwrap();
        assert_eq!(
            names(root.path()),
            vec![".t-live", ".t-live.lock", "out"],
            "only the live writer's work is kept"
        );
        drop(live);
        assert!(remove_stale(root.path(), ".t-") == 0);
        assert_eq!(names(root.path()), vec!["out"]);
    }

    #[test]
    fn a_missing_directory_is_recovered_from_the_newest_complete_sibling() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("index");
        // As a crash between the renames leaves it: the previous directory moved aside, the
        // new one complete, and an incomplete one of a later writer.
        for (name, content) in [(".x-old-1", "old"), (".x-abc", "new")] {
            std::fs::create_dir(root.path().join(name)).unwrap();
            std::fs::write(root.path().join(name).join("meta"), content).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::fs::create_dir(root.path().join(".x-partial")).unwrap();
        let recovered = recover_dir(&dir, ".x-", |p| p.join("meta").exists()).unwrap();
        assert_eq!(recovered, Some(root.path().join(".x-abc")));
        assert_eq!(std::fs::read_to_string(dir.join("meta")).unwrap(), "new");
        assert_eq!(names(root.path()), vec!["index"]);
        // With the directory in place, recovery only tidies.
        std::fs::create_dir(root.path().join(".x-more")).unwrap();
        assert_eq!(recover_dir(&dir, ".x-", |_| true).unwrap(), None);
        assert_eq!(names(root.path()), vec!["index"]);
    }
}
