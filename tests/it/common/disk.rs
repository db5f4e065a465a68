//! A small real filesystem for tests of a full disk: a tmpfs mounted over a directory,
//! filled with a filler file and freed again. Unmounted on drop.

use std::ffi::CString;
use std::io::Write;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

/// A tmpfs mounted over a directory of the test's own.
pub struct SmallDisk {
    mount_point: PathBuf,
    filler: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `bytes` over `dir` (which must exist and be empty). `Err` says why
    /// it could not (no privilege to mount, as in an unprivileged container).
    pub fn mount(dir: &Path, bytes: u64) -> Result<SmallDisk, String> {
        let options = CString::new(format!("size={bytes},mode=0700")).unwrap();
        if let Err(error) = mount(
            "tmpfs",
            dir,
            "tmpfs",
            MountFlags::empty(),
            options.as_c_str(),
        ) {
            return Err(format!(
                "mount -t tmpfs on {}: {}",
                dir.display(),
                std::io::Error::from(error)
            ));
        }
        Ok(SmallDisk {
            mount_point: dir.to_owned(),
            filler: dir.join("filler"),
        })
    }

    /// Writes a filler file until the filesystem has no room left; returns its size.
    pub fn fill(&self) -> u64 {
        let mut file = std::fs::File::create(&self.filler).expect("create the filler file");
        let chunk = vec![0xA5u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if Errno::from_io_error(&e) == Some(Errno::NOSPC) => break,
                Err(e) => panic!("writing the filler file: {e}"),
            }
        }
        // Smaller writes take what is left of the last page.
        for size in [4096, 512, 1] {
            while let Ok(n) = file.write(&chunk[..size]) {
                if n == 0 {
                    break;
                }
                written += n as u64;
            }
        }
        written
    }

    /// Deletes the filler file: the space is free again.
    pub fn free(&self) {
        std::fs::remove_file(&self.filler).expect("remove the filler file");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Detached, so that a process still holding files there does not keep it mounted.
        let _ = unmount(&self.mount_point, UnmountFlags::DETACH);
    }
}

/// Mounts a small tmpfs over `dir`, or says loudly why the test cannot run here.
pub fn small_disk_or_skip(dir: &Path, bytes: u64, test: &str) -> Option<SmallDisk> {
    match SmallDisk::mount(dir, bytes) {
        Ok(disk) => Some(disk),
        Err(why) => {
            eprintln!(
                "\n\n######## SKIPPED {test}: it needs a real small filesystem and cannot mount one \
                 here ({why}); run the tests as root or with CAP_SYS_ADMIN ########\n"
            );
            None
        }
    }
}
