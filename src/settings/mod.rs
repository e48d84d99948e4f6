//! The environment, read once: a snapshot of every variable after the
//! `.env` file is loaded ([`Settings`]), and the typed readers every crate
//! of the workspace uses on it.
//!
//! Which variables exist is not listed here: each crate declares and
//! documents its own as [`Variable`] constants in one module of its own
//! (the library's are in [`crate::variables`]). A reader takes a
//! `&Variable`, never a string, so a misspelled name does not compile.
//!
//! A blank value counts as unset everywhere (an empty `DATABASE_URL=` in
//! the environment masks a `.env` line).
//!
//! A `.env` file is read with [`dotenvy`]; variables already set in the
//! environment win over it. It is looked for in the current directory and
//! its parents up to the project root, the nearest one that holds `.git`;
//! outside a git checkout, in the current directory only. So a `.env` in
//! a shared place above the project (the system temp directory, `/`) is
//! never read. The file must belong to the current user or to root and
//! must not be writable by its group or others: it chooses programs that
//! may be run as root (`CRUDDUR_PG_BINDIR`), so a file another user could
//! have written is refused ([`Error::DotEnvUnsafe`]).

mod dotenv;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use crate::config::{Config, DatabaseUrl, Environment};
use crate::error::{Error, Result};

/// An environment variable a crate reads: its name and one line saying
/// what it does (with its default and unit), for that crate's docs.
///
/// Each crate declares its variables as constants in one module and lists
/// them in a `VARIABLES` slice; a test checks that the crate's docs name
/// each one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Variable {
    name: &'static str,
    doc: &'static str,
}

impl Variable {
    /// A variable called `name`, described by `doc`.
    pub const fn new(name: &'static str, doc: &'static str) -> Self {
        Self { name, doc }
    }

    /// Its name, as set in the environment.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// What it does, in one line.
    pub const fn doc(&self) -> &'static str {
        self.doc
    }
}

/// Shows the name.
impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// The environment of the process, read once: every variable, after the
/// `.env` file is loaded ([`Settings::from_env`]), or given pairs
/// ([`Settings::from_pairs`], for tests). Everything else takes its
/// variables from a `Settings` value, never from the process environment.
///
/// `Debug` shows the names of the variables that are set, never a value
/// (connection strings hold passwords).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Settings {
    vars: BTreeMap<String, String>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

impl Settings {
    /// Loads the `.env` file (of the current directory or its nearest
    /// parent up to the project root, see the [module docs](self)) into the
    /// process environment (variables already set win), then takes a
    /// snapshot of the whole environment. A `.env` that another user could
    /// have written is an [`Error::DotEnvUnsafe`] and applies nothing. The
    /// whole file is parsed before any of it is applied: a malformed `.env`
    /// is an [`Error::DotEnv`] naming the line (never its content) and
    /// applies nothing. A variable whose name or value is not UTF-8 is left
    /// out (no setting of the project is).
    pub fn from_env() -> Result<Self> {
        dotenv::load_dotenv()?;
        Ok(Self::from_pairs(std::env::vars_os().filter_map(
            |(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)),
        )))
    }

    /// Settings holding exactly `pairs` (for tests and callers with an
    /// environment of their own). Reads no `.env` file.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `var`; `None` when unset or blank (an empty
    /// `DATABASE_URL=` means "not set", so that it can mask a `.env` line).
    pub fn get(&self, var: &Variable) -> Option<&str> {
        self.vars
            .get(var.name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// Whether `var` is set to something other than blanks.
    pub fn is_set(&self, var: &Variable) -> bool {
        self.get(var).is_some()
    }

    /// `var` as a whole number in `range`, `None` when unset. Anything
    /// else is an [`Error::InvalidSetting`] naming the variable and the
    /// range.
    pub fn number<T>(&self, var: &Variable, range: RangeInclusive<T>) -> Result<Option<T>>
    where
        T: FromStr + PartialOrd + fmt::Display,
    {
        let Some(value) = self.get(var) else {
            return Ok(None);
        };
        match value.trim().parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(invalid(
                var,
                value,
                format!(
                    "must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    /// `var` as a duration in whole milliseconds within `range`, `None`
    /// when unset; as [`Settings::number`] otherwise.
    pub fn millis(&self, var: &Variable, range: RangeInclusive<u64>) -> Result<Option<Duration>> {
        Ok(self.number(var, range)?.map(Duration::from_millis))
    }

    /// `var` as a switch: `1` is on, `0` or unset off; anything else is an
    /// [`Error::InvalidSetting`] rather than a guess.
    pub fn flag(&self, var: &Variable) -> Result<bool> {
        match self.get(var).map(str::trim) {
            None | Some("0") => Ok(false),
            Some("1") => Ok(true),
            Some(other) => Err(invalid(var, other, "must be 1 or 0".to_owned())),
        }
    }

    /// `var` as a comma-separated list: entries trimmed, blank ones left
    /// out (a trailing comma is harmless); empty when unset.
    pub fn list(&self, var: &Variable) -> Vec<&str> {
        self.get(var)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// These settings with `var` set to `value`, e.g. to apply a
    /// command-line flag.
    pub fn with(mut self, var: &Variable, value: impl Into<String>) -> Self {
        self.vars.insert(var.name.to_owned(), value.into());
        self
    }

    /// These settings without `var`.
    pub fn without(mut self, var: &Variable) -> Self {
        self.vars.remove(var.name);
        self
    }

    /// The [`Config`] for `environment`: `PROD_CONNECTION_URL`, or
    /// `DATABASE_URL` / `CONNECTION_URL`, with the pool settings. Returns
    /// [`Error::MissingUrl`] when the chosen variable is unset; which
    /// database to use when none is set is [`crate::resolve`](mod@crate::resolve)'s to say.
    pub fn config(&self, environment: Environment) -> Result<Config> {
        Config::from_settings(environment, self)
    }

    /// A development [`Config`] for `url`, with the pool settings of these
    /// settings (for a URL chosen by other means: a flag, a local cluster).
    pub fn config_for(&self, url: DatabaseUrl) -> Result<Config> {
        Config::new(url).with_settings(self)
    }
}

/// The longest part of a refused value an error shows: enough to recognise
/// it, short enough that a pasted file does not fill the terminal.
const SHOWN_VALUE_CHARS: usize = 40;

/// [`Error::InvalidSetting`] for `value` of `var`, the value cut short.
fn invalid(var: &Variable, value: &str, reason: String) -> Error {
    Error::InvalidSetting {
        name: var.name,
        value: value.chars().take(SHOWN_VALUE_CHARS).collect(),
        reason,
    }
}

#[cfg(test)]
mod tests;
