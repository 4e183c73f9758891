//! The module's arguments from the PAM stack line, parsed once into a typed
//! struct. The module crate parses them at every login; the CLI's `status`
//! checks the stack lines it finds with the same parser.

use std::fmt;
use std::path::PathBuf;

use crate::config::DEFAULT_CONFIG_PATH;

/// The module's arguments from the PAM stack line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleArgs {
    pub config: PathBuf,
    /// pam-gatewayd's socket, where the module offers the login to the
    /// daemon (`approve::hosted`); `None`: the default,
    /// [`crate::approve::DEFAULT_SOCKET`].
    pub socket: Option<PathBuf>,
    pub debug: bool,
}

/// A module argument the module does not accept: the login is denied
/// (PAM_SERVICE_ERR), since a typo must not silently change what runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleArgsError {
    /// `config=PATH` with a relative path.
    RelativeConfig(PathBuf),
    /// `socket=PATH` with a relative path.
    RelativeSocket(PathBuf),
    /// An argument that is neither `config=PATH` nor `debug`.
    Unknown(String),
}

impl fmt::Display for ModuleArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleArgsError::RelativeConfig(path) => write!(
                f,
                "module argument config={}: the path must be absolute",
                path.display()
            ),
            ModuleArgsError::RelativeSocket(path) => write!(
                f,
                "module argument socket={}: the path must be absolute",
                path.display()
            ),
            ModuleArgsError::Unknown(arg) => write!(
                f,
                "unknown module argument {arg:?} (known: config=PATH, socket=PATH, debug)"
            ),
        }
    }
}

impl std::error::Error for ModuleArgsError {}

impl ModuleArgs {
    /// `config=PATH`, `socket=PATH` (both absolute) and `debug`; anything else is an error, so a
    /// typo in a stack line denies instead of being ignored.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<ModuleArgs, ModuleArgsError> {
        let mut parsed = ModuleArgs {
            config: PathBuf::from(DEFAULT_CONFIG_PATH),
            socket: None,
            debug: false,
        };
        for arg in args {
            let arg = arg.as_ref();
            if arg == "debug" {
                parsed.debug = true;
            } else if let Some(path) = arg.strip_prefix("config=") {
                let path = PathBuf::from(path);
                if !path.is_absolute() {
                    return Err(ModuleArgsError::RelativeConfig(path));
                }
                parsed.config = path;
            } else if let Some(path) = arg.strip_prefix("socket=") {
                let path = PathBuf::from(path);
                if !path.is_absolute() {
                    return Err(ModuleArgsError::RelativeSocket(path));
                }
                parsed.socket = Some(path);
            } else {
                return Err(ModuleArgsError::Unknown(arg.to_string()));
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args() {
        let a = ModuleArgs::parse::<&str>(&[]).expect("empty");
        assert_eq!(a.config, PathBuf::from(DEFAULT_CONFIG_PATH));
        assert!(!a.debug);
        let a = ModuleArgs::parse(&["debug", "config=/srv/g.toml"]).expect("args");
        assert_eq!(a.config, PathBuf::from("/srv/g.toml"));
        assert!(a.debug);
        let e = ModuleArgs::parse(&["nullok"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown module argument \"nullok\" (known: config=PATH, socket=PATH, debug)"
        );
        let a = ModuleArgs::parse(&["socket=/run/x/d.sock"]).expect("socket");
        assert_eq!(a.socket, Some(PathBuf::from("/run/x/d.sock")));
        assert_eq!(ModuleArgs::parse::<&str>(&[]).expect("none").socket, None);
        let e = ModuleArgs::parse(&["socket=d.sock"]).unwrap_err();
        assert_eq!(e, ModuleArgsError::RelativeSocket("d.sock".into()));
        assert_eq!(
            e.to_string(),
            "module argument socket=d.sock: the path must be absolute"
        );
        let e = ModuleArgs::parse(&["config=rel.toml"]).unwrap_err();
        assert_eq!(e, ModuleArgsError::RelativeConfig("rel.toml".into()));
        assert_eq!(
            e.to_string(),
            "module argument config=rel.toml: the path must be absolute"
        );
        assert_eq!(
            ModuleArgs::parse(&["Debug"]),
            Err(ModuleArgsError::Unknown("Debug".into()))
        );
    }
}
