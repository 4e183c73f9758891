//! The module's arguments from the PAM stack line, parsed once into a typed
//! struct. The module crate parses them at every login; the CLI's `status`
//! checks the stack lines it finds with the same parser.

use std::path::PathBuf;

use crate::config::DEFAULT_CONFIG_PATH;

/// The module's arguments from the PAM stack line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleArgs {
    pub config: PathBuf,
    pub debug: bool,
}

impl ModuleArgs {
    /// `config=PATH` (absolute) and `debug`; anything else is an error, so a
    /// typo in a stack line denies instead of being ignored.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<ModuleArgs, String> {
        let mut parsed = ModuleArgs {
            config: PathBuf::from(DEFAULT_CONFIG_PATH),
            debug: false,
        };
        for arg in args {
            let arg = arg.as_ref();
            if arg == "debug" {
                parsed.debug = true;
            } else if let Some(path) = arg.strip_prefix("config=") {
                let path = PathBuf::from(path);
                if !path.is_absolute() {
                    return Err(format!(
                        "module argument config={}: the path must be absolute",
                        path.display()
                    ));
                }
                parsed.config = path;
            } else {
                return Err(format!(
                    "unknown module argument {arg:?} (known: config=PATH, debug)"
                ));
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
        assert!(e.contains("\"nullok\""), "{e}");
        assert!(ModuleArgs::parse(&["config=rel.toml"]).is_err());
        assert!(ModuleArgs::parse(&["Debug"]).is_err());
    }
}
