//! File output that never leaves a half-written file: write to a temporary file in the same
//! directory, flush and sync, then rename over the target.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `data` to `path` atomically.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.writer()
        .write_all(data)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.commit()
}

/// An 8-byte aligned copy of a blob, so that `Model::from_blob` can read it without copying.
pub struct AlignedBlob {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBlob {
    /// Copies `bytes` into aligned storage.
    pub fn new(bytes: &[u8]) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        for (w, c) in words.iter_mut().zip(bytes.chunks(8)) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            *w = u64::from_ne_bytes(b);
        }
        AlignedBlob {
            words,
            len: bytes.len(),
        }
    }

    /// Reads a blob file into aligned storage.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Self::new(&bytes))
    }

    /// The bytes (8-byte aligned start).
    pub fn bytes(&self) -> &[u8] {
        let all: &[u8] = as_bytes(&self.words);
        &all[..self.len]
    }
}

/// Views `u64` words as their bytes.
fn as_bytes(words: &[u64]) -> &[u8] {
    let ptr = words.as_ptr().cast::<u8>();
    // SAFETY: `words` is a live slice of `words.len() * 8` initialised bytes, u8 has alignment 1
    // and no invalid values, and the returned slice borrows `words` for its lifetime.
    unsafe { std::slice::from_raw_parts(ptr, words.len() * 8) }
}

/// A file written in pieces that appears at its path only when [`AtomicFile::commit`] succeeds;
/// dropped without commit (error, Ctrl-C unwinding), it leaves nothing behind.
pub struct AtomicFile {
    tmp: std::path::PathBuf,
    target: std::path::PathBuf,
    file: Option<std::io::BufWriter<fs::File>>,
}

impl AtomicFile {
    /// Starts writing `path` (through a temporary file beside it).
    pub fn create(path: &Path) -> Result<Self> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .with_context(|| format!("{}: not a file path", path.display()))?;
        let tmp = dir.join(format!(
            ".{}.tmp{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file =
            fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(AtomicFile {
            tmp,
            target: path.to_path_buf(),
            file: Some(std::io::BufWriter::new(file)),
        })
    }

    /// The writer.
    pub fn writer(&mut self) -> &mut impl Write {
        self.file.as_mut().expect("AtomicFile used after commit")
    }

    /// Flushes, syncs and renames into place.
    pub fn commit(mut self) -> Result<()> {
        let file = self.file.take().expect("AtomicFile committed twice");
        let f = file
            .into_inner()
            .map_err(|e| anyhow::anyhow!("cannot write {}: {}", self.tmp.display(), e.error()))?;
        f.sync_all()
            .with_context(|| format!("cannot sync {}", self.tmp.display()))?;
        fs::rename(&self.tmp, &self.target).with_context(|| {
            format!(
                "cannot move {} to {}",
                self.tmp.display(),
                self.target.display()
            )
        })
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}
