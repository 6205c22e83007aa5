//! File watching for live reload. Editors save by writing a temp file and renaming it, so
//! the watch is on the parent directory and events are filtered by file name; a burst of
//! events becomes one reload after a short settle delay.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Keeps the OS watch alive; dropping it stops the notifications.
pub struct FileWatch {
    _watcher: RecommendedWatcher,
}

/// Watches `files`; each change (after settling) sends one `()` on the returned channel.
pub fn watch_files(files: &[PathBuf]) -> notify::Result<(FileWatch, mpsc::Receiver<()>)> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let names: HashSet<OsString> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_os_string()))
        .collect();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let relevant = ev.kind.is_create() || ev.kind.is_modify() || ev.kind.is_remove();
            if relevant
                && ev
                    .paths
                    .iter()
                    .any(|p| p.file_name().is_some_and(|n| names.contains(n)))
            {
                let _ = raw_tx.send(());
            }
        }
    })?;
    let dirs: HashSet<PathBuf> = files.iter().map(|f| parent_dir(f)).collect();
    for d in dirs {
        watcher.watch(&d, RecursiveMode::NonRecursive)?;
    }
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Let the writer finish (and both files of a cert/key pair land).
            tokio::time::sleep(Duration::from_millis(100)).await;
            while raw_rx.try_recv().is_ok() {}
            if tx.send(()).await.is_err() {
                break;
            }
        }
    });
    Ok((FileWatch { _watcher: watcher }, rx))
}

fn parent_dir(f: &Path) -> PathBuf {
    match f.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
