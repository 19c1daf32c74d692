//! The UNIX socket a vhost-user server listens on: what a server (the vRouter's vif in
//! server mode, or a guest stand-in as QEMU) does with a path that already exists.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// Why a server cannot take its socket path.
#[derive(Debug, thiserror::Error)]
pub enum SocketPathError {
    /// The path is a file, directory, ... but not a socket.
    #[error("{0} exists and is not a socket")]
    NotASocket(String),
    /// Some process accepts connections on it.
    #[error("{0} is served by another process")]
    InUse(String),
    /// Removing the stale socket failed.
    #[error("removing the stale socket {0}: {1}")]
    Remove(String, std::io::Error),
}

/// Removes the socket file a killed server left behind (nobody accepts on it), so a new
/// server can listen on the same path; refuses anything else at the path and a socket some
/// process still serves. Nothing to do when the path does not exist.
pub fn clear_stale(path: &Path) -> Result<(), SocketPathError> {
    let shown = || path.display().to_string();
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    if !meta.file_type().is_socket() {
        return Err(SocketPathError::NotASocket(shown()));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(SocketPathError::InUse(shown()));
    }
    std::fs::remove_file(path).map_err(|e| SocketPathError::Remove(shown(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_sockets_go_live_ones_and_other_files_stay() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        clear_stale(&stale).unwrap();
        assert!(!stale.exists());
        let live = dir.path().join("live.sock");
        let _l = std::os::unix::net::UnixListener::bind(&live).unwrap();
        assert!(matches!(clear_stale(&live), Err(SocketPathError::InUse(_))));
        assert!(live.exists());
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(clear_stale(&file), Err(SocketPathError::NotASocket(_))));
        clear_stale(&dir.path().join("absent")).unwrap();
    }
}
