//! The Linux watchdog device (`/dev/watchdog`, `Documentation/watchdog/watchdog-api`):
//! the last line of self-fencing. Once the device is open, the kernel (or the hardware)
//! resets the machine unless it is petted within the timeout, so a node whose daemon
//! hangs or dies is taken out of the cluster even when nothing else of it works.
//!
//! * [`Watchdog::open`] opens the device (arming it), sets the timeout with
//!   `WDIOC_SETTIMEOUT` and reads back what the driver really set (`WDIOC_GETTIMEOUT`).
//! * [`Watchdog::pet`] is `WDIOC_KEEPALIVE` (or a one-byte write).
//! * [`Watchdog::disarm`] is the magic close: write `'V'`, then close. Only a daemon
//!   leaving on purpose does this.
//! * Dropping a [`Watchdog`] without `disarm` just closes it, which leaves it armed:
//!   the machine is reset when the timeout passes. That is the point — a daemon that
//!   crashes, is killed, or fences itself by exiting must not leave the node running.
//!   (With the `nowayout` module parameter even the magic close does not stop it.)
//!
//! A FIFO (named pipe) is accepted as a *test device*: no ioctls; a pet writes `'.'`,
//! disarm writes `'V'`, and whatever reads the FIFO sees the sequence. Tests and drills
//! use it; nothing here ever needs a real watchdog to be tested.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An open, armed watchdog (or a FIFO test device).
#[derive(Debug)]
pub struct Watchdog {
    file: File,
    device: PathBuf,
    test_device: bool,
    timeout: Duration,
}

// ioctl numbers from <linux/watchdog.h>: _IOR('W', 5, int), _IOWR('W', 6, int),
// _IOR('W', 7, int), encoded as <asm-generic/ioctl.h> does for this architecture.
#[cfg(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
))]
mod ioc {
    pub const READ: u64 = 2;
    pub const WRITE: u64 = 4;
    pub const DIR_SHIFT: u64 = 29;
}
#[cfg(not(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
)))]
mod ioc {
    pub const READ: u64 = 2;
    pub const WRITE: u64 = 1;
    pub const DIR_SHIFT: u64 = 30;
}

const fn ioc(dir: u64, nr: u64) -> u64 {
    let size = std::mem::size_of::<libc::c_int>() as u64;
    (dir << ioc::DIR_SHIFT) | (size << 16) | ((b'W' as u64) << 8) | nr
}

const WDIOC_KEEPALIVE: u64 = ioc(ioc::READ, 5);
const WDIOC_SETTIMEOUT: u64 = ioc(ioc::READ | ioc::WRITE, 6);
const WDIOC_GETTIMEOUT: u64 = ioc(ioc::READ, 7);

/// The byte that tells a driver "this close is on purpose" (magic close).
const MAGIC_CLOSE: u8 = b'V';
/// What a pet writes to a test device.
const PET_BYTE: u8 = b'.';

impl Watchdog {
    /// Opens `device` — which arms a real watchdog — and sets its timeout.
    ///
    /// `timeout` must be whole seconds, at least one. When `device` does not exist and
    /// `softdog` is set, runs `modprobe softdog` once and tries again (the software
    /// watchdog resets through the kernel, not hardware: it does not help when the
    /// kernel itself hangs). A FIFO is opened as a test device (never blocks, with or
    /// without a reader). Anything else is refused.
    ///
    /// Errors name the device and the errno. When the device opened but its timeout
    /// could not be set, it is disarmed (magic close) before the error is returned.
    pub fn open(device: &Path, timeout: Duration, softdog: bool) -> Result<Watchdog, String> {
        let dev = device.display();
        let secs = whole_seconds(timeout).map_err(|e| format!("watchdog {dev}: {e}"))?;
        let meta = match std::fs::metadata(device) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound && softdog => {
                let loaded = modprobe_softdog();
                match wait_for(device) {
                    Some(m) => m,
                    None => {
                        return Err(format!(
                            "watchdog {dev}: {}; then {}, and {dev} is still missing",
                            describe(&e),
                            match loaded {
                                Ok(()) => "`modprobe softdog` succeeded".to_string(),
                                Err(why) => format!("`modprobe softdog` failed: {why}"),
                            }
                        ))
                    }
                }
            }
            Err(e) => {
                let hint = if e.kind() == io::ErrorKind::NotFound {
                    " (no watchdog driver loaded; allow softdog to load the software one)"
                } else {
                    ""
                };
                return Err(format!("watchdog {dev}: {}{hint}", describe(&e)));
            }
        };
        let kind = meta.file_type();
        if kind.is_fifo() {
            Watchdog::open_test_device(device, secs)
        } else if kind.is_char_device() {
            Watchdog::open_char_device(device, secs)
        } else {
            Err(format!(
                "watchdog {dev}: neither a character device nor a FIFO (test device)"
            ))
        }
    }

    fn open_test_device(device: &Path, secs: u32) -> Result<Watchdog, String> {
        // O_RDWR: on Linux opening a FIFO read-write never waits for the other end, and
        // holding a read end means a write never meets EPIPE. O_NONBLOCK: a full pipe
        // nobody drains makes a pet fail instead of hanging the daemon.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(device)
            .map_err(|e| {
                format!(
                    "watchdog {}: cannot open: {}",
                    device.display(),
                    describe(&e)
                )
            })?;
        let wd = Watchdog {
            file,
            device: device.to_path_buf(),
            test_device: true,
            timeout: Duration::from_secs(u64::from(secs)),
        };
        wd.check_type(true)?;
        Ok(wd)
    }

    fn open_char_device(device: &Path, secs: u32) -> Result<Watchdog, String> {
        let dev = device.display();
        let file = OpenOptions::new().write(true).open(device).map_err(|e| {
            let hint = match e.raw_os_error() {
                Some(libc::EBUSY) => {
                    " (another process holds it: a watchdog daemon, or systemd's \
                     RuntimeWatchdogSec=)"
                }
                Some(libc::EACCES) | Some(libc::EPERM) => " (run the daemon as root)",
                _ => "",
            };
            format!("watchdog {dev}: cannot open: {}{hint}", describe(&e))
        })?;
        // From here on the device is armed: every error path disarms it on the way out.
        let mut wd = Watchdog {
            file,
            device: device.to_path_buf(),
            test_device: false,
            timeout: Duration::ZERO,
        };
        if let Err(e) = wd.check_type(false) {
            return Err(wd.disarm_after(e));
        }
        let mut value = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
        if let Err(e) = wd.ioctl(WDIOC_SETTIMEOUT, &mut value) {
            let err = format!(
                "watchdog {dev}: cannot set the timeout to {secs} s (WDIOC_SETTIMEOUT): {}",
                describe(&e)
            );
            return Err(wd.disarm_after(err));
        }
        let mut actual: libc::c_int = 0;
        if let Err(e) = wd.ioctl(WDIOC_GETTIMEOUT, &mut actual) {
            let err = format!(
                "watchdog {dev}: cannot read the timeout back (WDIOC_GETTIMEOUT): {}",
                describe(&e)
            );
            return Err(wd.disarm_after(err));
        }
        match u64::try_from(actual) {
            Ok(a) if a > 0 => wd.timeout = Duration::from_secs(a),
            _ => {
                let err = format!(
                    "watchdog {dev}: the driver reports a timeout of {actual} s after \
                     setting {secs} s"
                );
                return Err(wd.disarm_after(err));
            }
        }
        Ok(wd)
    }

    /// Refuses a device whose type changed between `stat` and `open`.
    fn check_type(&self, fifo: bool) -> Result<(), String> {
        let kind = self
            .file
            .metadata()
            .map_err(|e| {
                format!(
                    "watchdog {}: fstat: {}",
                    self.device.display(),
                    describe(&e)
                )
            })?
            .file_type();
        if (fifo && kind.is_fifo()) || (!fifo && kind.is_char_device()) {
            Ok(())
        } else {
            Err(format!(
                "watchdog {}: changed type while being opened",
                self.device.display()
            ))
        }
    }

    /// Disarms an armed device on an error path, and says so when that fails too.
    fn disarm_after(self, err: String) -> String {
        match self.disarm() {
            Ok(()) => err,
            Err(e) => format!("{err}; and disarming it failed: {e}"),
        }
    }

    fn ioctl(&self, request: u64, value: &mut libc::c_int) -> io::Result<()> {
        // SAFETY: the fd is open for the life of `self`; every request used here takes
        // a pointer to one int, which `value` is.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                request as _,
                value as *mut libc::c_int,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Resets the countdown: `WDIOC_KEEPALIVE`, or a one-byte write when the driver
    /// lacks the ioctl; on a test device, writes `'.'`.
    pub fn pet(&mut self) -> Result<(), String> {
        if self.test_device {
            return self.write_byte(PET_BYTE, "pet");
        }
        let mut dummy: libc::c_int = 0;
        match self.ioctl(WDIOC_KEEPALIVE, &mut dummy) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTTY) | Some(libc::EINVAL)) => {
                // Any byte but 'V' pets the dog.
                self.write_byte(0, "pet")
            }
            Err(e) => Err(format!(
                "watchdog {}: pet (WDIOC_KEEPALIVE) failed: {}",
                self.device.display(),
                describe(&e)
            )),
        }
    }

    /// Stops the watchdog on purpose: writes the magic `'V'` and closes the device.
    /// On an error the device may still be armed (and will reset the machine).
    pub fn disarm(mut self) -> Result<(), String> {
        self.write_byte(MAGIC_CLOSE, "disarm (magic close)")?;
        let device = self.device.clone();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(self.file);
        // SAFETY: `fd` was just taken out of the File, so it is open and closed once.
        if unsafe { libc::close(fd) } != 0 {
            return Err(format!(
                "watchdog {}: close after the magic 'V' failed: {}",
                device.display(),
                describe(&io::Error::last_os_error())
            ));
        }
        Ok(())
    }

    fn write_byte(&mut self, byte: u8, what: &str) -> Result<(), String> {
        loop {
            match self.file.write(&[byte]) {
                Ok(1) => return Ok(()),
                Ok(_) => {
                    return Err(format!(
                        "watchdog {}: {what}: the write took no byte",
                        self.device.display()
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let hint = if e.kind() == io::ErrorKind::WouldBlock {
                        " (the test device's pipe is full: nobody reads it)"
                    } else {
                        ""
                    };
                    return Err(format!(
                        "watchdog {}: {what}: write failed: {}{hint}",
                        self.device.display(),
                        describe(&e)
                    ));
                }
            }
        }
    }

    /// The timeout in force: what the driver reported after setting it (drivers round
    /// or clamp to what the hardware can do), or the requested one on a test device.
    /// Callers compare it with what they asked for: a longer one delays self-fencing.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The device path as given to [`Watchdog::open`].
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// The device is a FIFO test device, not a real watchdog.
    pub fn is_test_device(&self) -> bool {
        self.test_device
    }
}

/// `timeout` in whole seconds, `1..=i32::MAX`.
fn whole_seconds(timeout: Duration) -> Result<u32, String> {
    if timeout.subsec_nanos() != 0 {
        return Err(format!(
            "the timeout must be whole seconds (the watchdog API counts seconds), not {:?}",
            timeout
        ));
    }
    match u32::try_from(timeout.as_secs()) {
        Ok(s) if s >= 1 && i32::try_from(s).is_ok() => Ok(s),
        _ => Err(format!(
            "the timeout must be at least 1 s and fit the driver's int, not {} s",
            timeout.as_secs()
        )),
    }
}

/// Runs `modprobe softdog`; `Err` says how it failed.
fn modprobe_softdog() -> Result<(), String> {
    match std::process::Command::new("modprobe")
        .arg("softdog")
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let msg = stderr.trim();
            Err(format!(
                "{}{}{msg}",
                out.status,
                if msg.is_empty() { "" } else { ": " }
            ))
        }
        Err(e) => Err(format!("cannot run modprobe: {e}")),
    }
}

/// Waits up to a second for `device` to appear (udev may create the node a moment
/// after the module is loaded).
fn wait_for(device: &Path) -> Option<std::fs::Metadata> {
    for _ in 0..20 {
        if let Ok(m) = std::fs::metadata(device) {
            return Some(m);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// `ENOENT (No such file or directory)`: the errno's name and text.
fn describe(e: &io::Error) -> String {
    let Some(n) = e.raw_os_error() else {
        return e.to_string();
    };
    let name = match n {
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EBUSY => "EBUSY",
        libc::ENODEV => "ENODEV",
        libc::ENXIO => "ENXIO",
        libc::ENOTTY => "ENOTTY",
        libc::EINVAL => "EINVAL",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAGAIN => "EAGAIN",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EINTR => "EINTR",
        _ => return format!("errno {n} ({})", io::Error::from_raw_os_error(n).kind()),
    };
    let text = io::Error::from_raw_os_error(n).to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    format!("{name} ({text})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use vigil::testing::TempDir;

    fn mkfifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in path");
        // SAFETY: `c` is a valid NUL-terminated path.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(
            rc,
            0,
            "mkfifo {}: {}",
            path.display(),
            io::Error::last_os_error()
        );
    }

    /// A non-blocking reader of the FIFO, opened before anything is written.
    fn reader(path: &Path) -> File {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .expect("open the FIFO for reading")
    }

    fn read_available(r: &mut File) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        out
    }

    #[test]
    fn a_fifo_test_device_sees_the_pets_then_the_magic_close_in_order() {
        let dir = TempDir::made("order");
        let fifo = dir.0.join("watchdog");
        mkfifo(&fifo);
        // Opening does not wait for a reader.
        let mut wd = Watchdog::open(&fifo, Duration::from_secs(5), false).expect("open");
        assert!(wd.is_test_device());
        assert_eq!(wd.timeout(), Duration::from_secs(5));
        assert_eq!(wd.device(), fifo.as_path());
        let mut r = reader(&fifo);
        for _ in 0..3 {
            wd.pet().expect("pet");
        }
        assert_eq!(read_available(&mut r), b"...");
        wd.pet().expect("pet");
        wd.disarm().expect("disarm");
        assert_eq!(read_available(&mut r), b".V");
    }

    #[test]
    fn dropping_without_disarm_writes_no_magic_close() {
        let dir = TempDir::made("drop");
        let fifo = dir.0.join("watchdog");
        mkfifo(&fifo);
        let mut r = reader(&fifo);
        {
            let mut wd = Watchdog::open(&fifo, Duration::from_secs(1), false).expect("open");
            wd.pet().expect("pet");
        }
        assert_eq!(read_available(&mut r), b".");
    }

    #[test]
    fn a_full_test_device_fails_the_pet_instead_of_hanging() {
        let dir = TempDir::made("full");
        let fifo = dir.0.join("watchdog");
        mkfifo(&fifo);
        let mut wd = Watchdog::open(&fifo, Duration::from_secs(1), false).expect("open");
        let mut err = None;
        // A pipe holds 64 KiB by default (at most 1 MiB without privileges).
        for _ in 0..(2 << 20) {
            if let Err(e) = wd.pet() {
                err = Some(e);
                break;
            }
        }
        let e = err.expect("the pipe never filled");
        assert!(e.contains("EAGAIN") && e.contains("nobody reads it"), "{e}");
    }

    #[test]
    fn a_missing_device_is_named_with_its_errno() {
        let dir = TempDir::made("missing");
        let dev = dir.0.join("no-such-watchdog");
        // softdog stays false: a test must never load a watchdog module.
        let e = Watchdog::open(&dev, Duration::from_secs(5), false).expect_err("missing");
        assert!(e.contains(&dev.display().to_string()), "{e}");
        assert!(e.contains("ENOENT"), "{e}");
    }

    #[test]
    fn a_regular_file_is_refused() {
        let dir = TempDir::made("regular");
        let dev = dir.0.join("file");
        std::fs::write(&dev, b"").expect("write");
        let e = Watchdog::open(&dev, Duration::from_secs(5), false).expect_err("regular");
        assert!(e.contains("neither a character device nor a FIFO"), "{e}");
        assert_eq!(std::fs::read(&dev).expect("read"), b"", "nothing written");
    }

    #[test]
    fn the_timeout_must_be_whole_seconds_of_at_least_one() {
        let dir = TempDir::made("timeout");
        let fifo = dir.0.join("watchdog");
        mkfifo(&fifo);
        for bad in [
            Duration::from_millis(1500),
            Duration::ZERO,
            Duration::from_millis(999),
            Duration::from_secs(1 << 40),
        ] {
            let e = Watchdog::open(&fifo, bad, false).expect_err("bad timeout");
            assert!(
                e.contains(&fifo.display().to_string()) && e.contains("timeout"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_ioctl_numbers_match_linux_watchdog_h() {
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "x86"))]
        {
            assert_eq!(WDIOC_KEEPALIVE, 0x8004_5705);
            assert_eq!(WDIOC_SETTIMEOUT, 0xC004_5706);
            assert_eq!(WDIOC_GETTIMEOUT, 0x8004_5707);
        }
    }
}
