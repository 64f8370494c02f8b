//! `accounts`: print shell commands that create the benchmark users.
//!
//! The load tool never writes to a server's account store itself (that would tie
//! it to one server's internals); instead it emits the native admin commands,
//! which can be piped into `sh`. `--register` on the other subcommands is the
//! in-band (XEP-0077) alternative for servers that allow it.

use clap::ValueEnum;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// `poolxmpp user add JID PASSWORD --config FILE`
    Poolxmpp,
    /// `prosodyctl register USER DOMAIN PASSWORD`
    Prosody,
}

/// Single-quote a word for POSIX sh.
fn sh(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"@._-/:+=".contains(&b)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

pub fn lines<'a>(
    format: Format,
    prefix: &'a str,
    count: usize,
    domain: &str,
    password: &str,
    config: &str,
) -> impl Iterator<Item = String> + 'a {
    let (domain, password, config) = (sh(domain), sh(password), sh(config));
    (0..count).map(move |i| {
        let user = sh(&format!("{prefix}{i}"));
        match format {
            Format::Poolxmpp => {
                format!("poolxmpp user add {user}@{domain} {password} --config {config}")
            }
            Format::Prosody => format!("prosodyctl register {user} {domain} {password}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let v: Vec<_> = lines(Format::Prosody, "load", 2, "localhost", "pw", "x").collect();
        assert_eq!(
            v,
            [
                "prosodyctl register load0 localhost pw",
                "prosodyctl register load1 localhost pw"
            ]
        );
        let v: Vec<_> = lines(Format::Poolxmpp, "u", 1, "localhost", "p w", "/etc/p.toml").collect();
        assert_eq!(v, ["poolxmpp user add u0@localhost 'p w' --config /etc/p.toml"]);
    }
}
