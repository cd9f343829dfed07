//! `skillhost export` and `skillhost import`: a lock's images moved as one file, for hosts
//! no registry reaches. The engine's save and load do the image work; the bundle's own
//! lock is checked against the images before the engine sees a byte, and the engine's
//! images against the lock after.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::bundle_check::{check_images, unpack, BundleError, IMAGES_NAME, LOCK_NAME};
use super::ShipError;
use crate::engine::Engine;
use crate::lock::{verify, LockFile};

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// The bundle.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BundleError {
    let path = path.to_path_buf();
    move |source| BundleError::Io {
        action,
        path,
        source,
    }
}

/// Write every locked image, checked against `lock`, and the lock itself to `out`. The
/// file appears only when complete.
pub async fn export(engine: &Engine, lock: &LockFile, out: &Path) -> Result<Exported, ShipError> {
    all_locked(engine, lock).await?;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let work = tempfile::Builder::new()
        .prefix(".skillhost-export")
        .tempdir_in(parent)
        .map_err(io("cannot make a temporary directory in", parent))?;
    let images = work.path().join(IMAGES_NAME);
    let mut file = tokio::fs::File::create(&images)
        .await
        .map_err(io("cannot write", &images))?;
    let tags: Vec<&str> = lock.pins().iter().map(|p| p.image).collect();
    let mut saved = std::pin::pin!(engine.save_images(&tags));
    while let Some(chunk) = saved.next().await {
        let chunk = chunk?;
        file.write_all(&chunk)
            .await
            .map_err(io("cannot write", &images))?;
    }
    file.flush().await.map_err(io("cannot write", &images))?;
    drop(file);
    let bundle = work.path().join("bundle.tar");
    let lock_text = lock.render();
    let (images_in, bundle_out) = (images.clone(), bundle.clone());
    tokio::task::spawn_blocking(move || write_bundle(&bundle_out, &lock_text, &images_in))
        .await
        .map_err(|e| BundleError::Io {
            action: "cannot write",
            path: bundle.clone(),
            source: std::io::Error::other(e),
        })??;
    std::fs::rename(&bundle, out).map_err(io("cannot move the bundle to", out))?;
    let bytes = std::fs::metadata(out)
        .map_err(io("cannot read", out))?
        .len();
    Ok(Exported {
        path: out.to_path_buf(),
        bytes,
    })
}

fn write_bundle(bundle: &Path, lock_text: &str, images: &Path) -> Result<(), BundleError> {
    let file = std::fs::File::create(bundle).map_err(io("cannot write", bundle))?;
    let mut builder = tar::Builder::new(file);
    let mut header = tar::Header::new_gnu();
    header.set_size(lock_text.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, LOCK_NAME, lock_text.as_bytes())
        .map_err(io("cannot write", bundle))?;
    builder
        .append_path_with_name(images, IMAGES_NAME)
        .map_err(io("cannot write", bundle))?;
    builder
        .into_inner()
        .and_then(|f| f.sync_all())
        .map_err(io("cannot write", bundle))
}

/// Check `bundle` whole, then load its images and check them on the engine. Returns the
/// bundle's lock. A bundle refused by the check imports nothing.
pub async fn import(engine: &Engine, bundle: &Path) -> Result<LockFile, ShipError> {
    let work = tempfile::Builder::new()
        .prefix("skillhost-import")
        .tempdir()
        .map_err(io("cannot make a temporary directory for", bundle))?;
    let (dest, from) = (work.path().to_path_buf(), bundle.to_path_buf());
    let (lock, images) = tokio::task::spawn_blocking(move || {
        let (lock, images) = unpack(&from, &dest)?;
        check_images(&images, &lock)?;
        Ok::<_, BundleError>((lock, images))
    })
    .await
    .map_err(|e| BundleError::Io {
        action: "cannot check",
        path: bundle.to_path_buf(),
        source: std::io::Error::other(e),
    })??;
    let file = tokio::fs::File::open(&images)
        .await
        .map_err(io("cannot open", &images))?;
    let chunks = futures_util::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    engine.load_images(chunks).await?;
    all_locked(engine, &lock).await?;
    Ok(lock)
}

/// Every locked image is on the engine as the lock pins it; the first that is not, else.
async fn all_locked(engine: &Engine, lock: &LockFile) -> Result<(), ShipError> {
    match verify(engine, lock).await?.problems.into_iter().next() {
        Some(problem) => Err(problem.into()),
        None => Ok(()),
    }
}
