//! The terminal on standard input: echo off while a secret is typed.

/// Terminal echo on standard input off (and newlines still echoed) until
/// dropped, when the settings found are restored.
pub struct EchoOff {
    saved: libc::termios,
}

impl EchoOff {
    /// Turns echo off on standard input. Fails when it is not a terminal
    /// (ENOTTY) or its settings cannot be read or changed.
    pub fn stdin() -> std::io::Result<EchoOff> {
        // SAFETY: termios is plain old data; all-zero is a valid value and
        // tcgetattr fills it in.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr writes one termios, `saved`, a live local; on a
        // descriptor that is not a terminal it fails without writing.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: tcsetattr reads one termios, `quiet`, derived from the
        // terminal's current settings.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &quiet) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(EchoOff { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: tcsetattr reads one termios: the settings `stdin` read
        // from the same descriptor.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &self.saved) };
    }
}
