//! Storing a secret variable in a `.env` file without disturbing the rest.

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, Result, bail};

/// What [`write_env_var`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvWrite {
    /// The file did not exist and was created.
    pub created: bool,
    /// A line for the variable existed and was replaced.
    pub replaced: bool,
}

/// Sets `key='value'` in the dotenv file at `path`: the first line that
/// assigns `key` (with or without `export`) is replaced, later ones are
/// dropped, every other line is kept as it was. The file is written to a
/// temporary file beside it and renamed into place, with mode 0600 on Unix
/// (also when it existed with wider permissions), because the value is a
/// secret.
///
/// `value` is single-quoted, so it must not contain `'` or a line break.
pub fn write_env_var(path: &Path, key: &str, value: &str) -> Result<EnvWrite> {
    let valid_key = key.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !valid_key {
        let key: String = key.chars().take(80).collect();
        bail!("invalid variable name `{key}`: use upper-case letters, digits and underscores");
    }
    if value.contains(['\'', '\n', '\r']) {
        bail!("invalid value (not shown): it contains a quote or a line break");
    }
    let (existing, created) = match std::fs::read_to_string(path) {
        Ok(text) => (text, false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), true),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let assignment = format!("{key}='{value}'");
    let mut replaced = false;
    let mut lines: Vec<String> = Vec::new();
    for line in existing.lines() {
        if assigns(line, key) {
            if !replaced {
                lines.push(assignment.clone());
                replaced = true;
            }
        } else {
            lines.push(line.to_owned());
        }
    }
    if !replaced {
        lines.push(assignment);
    }
    let mut text = lines.join("\n");
    text.push('\n');

    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".env".into());
    let tmp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let write = || -> std::io::Result<()> {
        let mut file = options.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(EnvWrite { created, replaced })
}

fn assigns(line: &str, key: &str) -> bool {
    let line = line.trim_start();
    let line = line
        .strip_prefix("export")
        .filter(|rest| rest.starts_with(char::is_whitespace))
        .map_or(line, str::trim_start);
    line.strip_prefix(key)
        .is_some_and(|rest| rest.trim_start().starts_with('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "# comment\nDATABASE_URL=postgres://localhost/cruddur\nexport PROD_CONNECTION_URL=old\n\
             PROD_CONNECTION_URL_X=keep\nPROD_CONNECTION_URL = older\n",
        )
        .unwrap();
        let w = write_env_var(&path, "PROD_CONNECTION_URL", "postgresql://u:p@h/db").unwrap();
        assert_eq!(
            w,
            EnvWrite {
                created: false,
                replaced: true
            }
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "# comment\nDATABASE_URL=postgres://localhost/cruddur\n\
             PROD_CONNECTION_URL='postgresql://u:p@h/db'\nPROD_CONNECTION_URL_X=keep\n"
        );
    }

    #[cfg(unix)]
    #[test]
    fn creates_the_file_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        let w = write_env_var(&path, "K", "v").unwrap();
        assert!(w.created && !w.replaced);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(write_env_var(&path, "K", "it's").is_err());
        assert!(write_env_var(&path, "k", "v").is_err());
    }
}
