//! Writing files and folders so that a reader never sees half of one and a failure leaves what
//! was there before: the one home of that rule for the whole workspace (datasets, model
//! folders, checkpoints, MIDI, PNG and JSON outputs).
//!
//! - A file is written to a temporary file in the same folder, synced, and renamed over the
//!   destination ([`write_file`], [`write_file_with`] for writers that want a path).
//! - A folder is assembled in a hidden staging folder beside the destination ([`staging_beside`])
//!   and renamed into place when complete ([`publish_folder`]); a folder it replaces is moved
//!   aside first and deleted only once the new one is in place.
//! - An existing destination folder is replaced only when asked, and only when it holds the
//!   marker file of its kind or is empty ([`check_replaceable`]): a mistyped output path must
//!   never delete someone's folder.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The folder a path's file lives in (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temporary file in `path`'s folder: `.partial-XXXXXX.EXT`, keeping `path`'s extension
/// because some writers choose the format by it (libtorch writes safetensors only to a
/// `.safetensors` name, its own zip archive otherwise).
fn temporary_beside(path: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let suffix = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let mut builder = tempfile::Builder::new();
    builder.prefix(".partial-").suffix(&suffix);
    // Temporary files are private (0600) by default; the result is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(parent_of(path))
}

/// Write `bytes` to `path` atomically.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = temporary_beside(path)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Let `write` fill a temporary file (given its path), then sync it and rename it to `path`:
/// for writers such as libtorch's that only take a path.
pub fn write_file_with<E>(path: &Path, write: impl FnOnce(&Path) -> Result<(), E>) -> Result<(), E>
where
    E: From<std::io::Error>,
{
    let file = temporary_beside(path)?;
    write(file.path())?;
    std::fs::File::open(file.path())?.sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Why an existing destination folder may not be replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It exists and replacing was not asked for.
    Exists,
    /// It exists but is neither empty nor a folder of the expected kind.
    NotOurs,
}

/// May `output` be published over? Yes when it does not exist; with `force`, also when it is
/// empty or holds `marker` (the file that makes it a dataset, a model folder, …).
pub fn check_replaceable(output: &Path, force: bool, marker: &str) -> Result<(), Refusal> {
    if !output.exists() {
        return Ok(());
    }
    if !force {
        return Err(Refusal::Exists);
    }
    let is_ours = output.join(marker).is_file();
    let is_empty = std::fs::read_dir(output).is_ok_and(|mut d| d.next().is_none());
    if is_ours || is_empty {
        Ok(())
    } else {
        Err(Refusal::NotOurs)
    }
}

/// A hidden staging folder beside `output` (`.NAME.partial-XXXX`), deleted when dropped unless
/// published: every early return leaves nothing behind. Creates `output`'s parent if needed.
pub fn staging_beside(output: &Path) -> std::io::Result<tempfile::TempDir> {
    let parent = parent_of(output);
    std::fs::create_dir_all(parent)?;
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-"))
        .tempdir_in(parent)
}

/// Rename the finished `staging` folder to `output`. An existing `output` (already checked with
/// [`check_replaceable`]) is moved aside first, put back if the rename fails, and deleted once
/// the new folder is in place.
pub fn publish_folder(staging: tempfile::TempDir, output: &Path) -> std::io::Result<()> {
    let old = if output.exists() {
        let mut aside = staging.path().as_os_str().to_owned();
        aside.push(".replaced");
        let aside = PathBuf::from(aside);
        std::fs::rename(output, &aside)?;
        Some(aside)
    } else {
        None
    };
    let staged = staging.keep();
    if let Err(error) = std::fs::rename(&staged, output) {
        if let Some(old) = &old {
            let _ = std::fs::rename(old, output);
        }
        let _ = std::fs::remove_dir_all(&staged);
        return Err(error);
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_writer_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.bin");
        write_file(&path, b"old").unwrap();
        let failed: std::io::Result<()> = write_file_with(&path, |temp| {
            std::fs::write(temp, b"half")?;
            Err(std::io::Error::other("writer failed"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary file was left behind");
        write_file_with(&path, |temp| {
            assert_eq!(
                temp.extension(),
                path.extension(),
                "the writer sees the extension"
            );
            std::fs::write(temp, b"new")
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }

    #[test]
    fn only_empty_or_marked_folders_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out");
        assert_eq!(check_replaceable(&output, false, "m.json"), Ok(()));
        std::fs::create_dir(&output).unwrap();
        assert_eq!(check_replaceable(&output, true, "m.json"), Ok(()));
        std::fs::write(output.join("precious.txt"), b"x").unwrap();
        assert_eq!(
            check_replaceable(&output, false, "m.json"),
            Err(Refusal::Exists)
        );
        assert_eq!(
            check_replaceable(&output, true, "m.json"),
            Err(Refusal::NotOurs)
        );
        std::fs::write(output.join("m.json"), b"{}").unwrap();
        assert_eq!(check_replaceable(&output, true, "m.json"), Ok(()));

        let staging = staging_beside(&output).unwrap();
        std::fs::write(staging.path().join("m.json"), b"new").unwrap();
        publish_folder(staging, &output).unwrap();
        assert_eq!(std::fs::read(output.join("m.json")).unwrap(), b"new");
        assert!(!output.join("precious.txt").exists());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "staging or the old folder was left behind");
    }
}
