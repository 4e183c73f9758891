//! A private (0700) temporary directory for unit tests, removed on drop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub struct TestDir(PathBuf);

impl TestDir {
    pub fn new(tag: &str) -> TestDir {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).expect("random");
        let name = crate::hex::encode(&nonce);
        let dir = std::env::temp_dir().join(format!("pgw-{tag}-{name}"));
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        TestDir(dir)
    }
}

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        // Tests may leave read-only or odd modes behind: make it removable.
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o700));
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
