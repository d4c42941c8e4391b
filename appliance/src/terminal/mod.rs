//! `appliance terminal`: what a printer's panel shows, in a console, for
//! demos and for people testing a site. It is an ordinary client of the
//! release API: log in, see your jobs, choose, release, watch the
//! progress, log out.
//!
//! Input is read line by line, so the terminal can be driven by a script
//! as well as by a person; the parsing of choices and the rendering of the
//! job list are plain functions.

mod client;

use std::io::{self, BufRead, Write};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{Value, json};

pub use client::{ApiClient, ClientError};

/// How often a release's progress is asked for.
const POLL: Duration = Duration::from_millis(300);
/// How long progress is followed before the terminal gives the screen back.
const FOLLOW_LIMIT: Duration = Duration::from_secs(300);

/// Why the terminal stopped.
#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    /// The API could not be reached or answered nonsense.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The console failed.
    #[error("console: {0}")]
    Console(#[from] io::Error),
    /// The device is not one of the site's printers.
    #[error("{0}")]
    Device(String),
}

/// What the user typed at the job list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Release everything.
    All,
    /// Release these (1-based positions in the list).
    Jobs(Vec<usize>),
    /// Switch black-and-white printing on or off.
    ToggleMono,
    /// Delete the job at this position.
    Delete(usize),
    /// Show the list again.
    Refresh,
    /// End the session.
    Logout,
    /// Something else; the text says what is expected.
    Invalid(String),
}

/// Reads a choice; `count` is the number of jobs listed.
pub fn parse_choice(line: &str, count: usize) -> Choice {
    let line = line.trim().to_ascii_lowercase();
    let position = |word: &str| match word.parse::<usize>() {
        Ok(n) if (1..=count).contains(&n) => Ok(n),
        _ => Err(format!("{word:?} is not a job number from 1 to {count}")),
    };
    match line.as_str() {
        "a" | "all" => Choice::All,
        "m" | "mono" => Choice::ToggleMono,
        "" | "r" | "refresh" => Choice::Refresh,
        "l" | "q" | "logout" | "quit" => Choice::Logout,
        _ => {
            if let Some(rest) = line.strip_prefix('d') {
                return match position(rest.trim()) {
                    Ok(n) => Choice::Delete(n),
                    Err(e) => Choice::Invalid(e),
                };
            }
            let picked: Result<Vec<usize>, String> = line
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|w| !w.is_empty())
                .map(position)
                .collect();
            match picked {
                Ok(mut jobs) if !jobs.is_empty() => {
                    jobs.dedup();
                    Choice::Jobs(jobs)
                }
                Ok(_) => Choice::Refresh,
                Err(e) => Choice::Invalid(e),
            }
        }
    }
}

/// The job list as the panel shows it.
pub fn job_table(jobs: &[Value]) -> String {
    if jobs.is_empty() {
        return "You have no jobs waiting.\n".to_owned();
    }
    let mut out = format!(
        "{:>3}  {:<28}  {:>5}  {:>6}  {:<10}  {:<8}  {}\n",
        "#", "NAME", "PAGES", "COPIES", "COLOUR", "STATE", "SUBMITTED"
    );
    for (i, job) in jobs.iter().enumerate() {
        let name: String = job["name"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(28)
            .collect();
        let pages = match (job["pages"].as_u64(), job["pages_exact"].as_bool()) {
            (Some(n), Some(true)) => n.to_string(),
            (Some(n), _) => format!("~{n}"),
            (None, _) => "?".to_owned(),
        };
        let submitted: String = job["submitted"]
            .as_str()
            .unwrap_or("")
            .replace('T', " ")
            .chars()
            .take(16)
            .collect();
        out.push_str(&format!(
            "{:>3}  {:<28}  {:>5}  {:>6}  {:<10}  {:<8}  {}\n",
            i + 1,
            name,
            pages,
            job["copies"].as_u64().unwrap_or(1),
            job["color"].as_str().unwrap_or("?"),
            job["state"].as_str().unwrap_or("?"),
            submitted
        ));
    }
    out
}

/// Where secrets are typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// At the console, without echo.
    Console,
    /// As the next line of the input (scripts, tests).
    Input,
}

/// An interactive terminal at one printer.
pub struct Terminal<R: BufRead, W: Write> {
    client: ApiClient,
    device: String,
    input: R,
    out: W,
    secrets: Secrets,
}

/// How a session ended.
enum SessionEnd {
    Logout,
    Expired,
    InputClosed,
}

impl<R: BufRead, W: Write> Terminal<R, W> {
    /// A terminal at `device`.
    pub fn new(client: ApiClient, device: String, input: R, out: W, secrets: Secrets) -> Self {
        Terminal {
            client,
            device,
            input,
            out,
            secrets,
        }
    }

    /// Runs until the input ends or the user quits at the login prompt.
    pub fn run(&mut self) -> Result<(), TerminalError> {
        let devices = self
            .client
            .call(Method::GET, "/api/v1/devices", None, None)?;
        let list = devices.json["devices"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let Some(device) = list.iter().find(|d| d["id"] == self.device.as_str()) else {
            let known: Vec<&str> = list.iter().filter_map(|d| d["id"].as_str()).collect();
            return Err(TerminalError::Device(format!(
                "no printer {:?} at this site (printers: {})",
                self.device,
                known.join(", ")
            )));
        };
        let title = match device["location"].as_str() {
            Some(location) => format!("{} ({location})", device["name"].as_str().unwrap_or("")),
            None => device["name"].as_str().unwrap_or("").to_owned(),
        };
        loop {
            writeln!(self.out, "\n== {title} — release station ==")?;
            let Some(token) = self.login()? else {
                writeln!(self.out, "Goodbye.")?;
                return Ok(());
            };
            match self.session(&token)? {
                SessionEnd::Logout => {
                    let _ = self.client.call(
                        Method::DELETE,
                        "/api/v1/sessions/current",
                        Some(&token),
                        None,
                    );
                    writeln!(self.out, "Logged out.")?;
                }
                SessionEnd::Expired => writeln!(self.out, "Your session ended (unused too long).")?,
                SessionEnd::InputClosed => {
                    let _ = self.client.call(
                        Method::DELETE,
                        "/api/v1/sessions/current",
                        Some(&token),
                        None,
                    );
                    return Ok(());
                }
            }
        }
    }

    fn read_secret(&mut self, label: &str) -> Result<Option<String>, TerminalError> {
        match self.secrets {
            Secrets::Console => Ok(Some(rpassword::prompt_password(label)?)),
            Secrets::Input => self.prompt(label),
        }
    }

    fn prompt(&mut self, text: &str) -> Result<Option<String>, TerminalError> {
        write!(self.out, "{text}")?;
        self.out.flush()?;
        let mut line = String::new();
        if self.input.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        Ok(Some(line.trim().to_owned()))
    }

    /// Asks for a login until one succeeds; `None` when the user quits.
    fn login(&mut self) -> Result<Option<String>, TerminalError> {
        loop {
            let Some(method) =
                self.prompt("Log in with [p]IN, [c]ard or pass[w]ord (q quits): ")?
            else {
                return Ok(None);
            };
            let (method, user) = match method.to_ascii_lowercase().as_str() {
                "p" | "pin" | "" => (
                    "pin",
                    self.prompt("User name (empty if your PIN alone identifies you): ")?,
                ),
                "c" | "card" => ("card", Some(String::new())),
                "w" | "password" => ("password", self.prompt("User name: ")?),
                "q" | "quit" => return Ok(None),
                other => {
                    writeln!(self.out, "{other:?}: type p, c or w.")?;
                    continue;
                }
            };
            let Some(user) = user else { return Ok(None) };
            let label = match method {
                "pin" => "PIN: ",
                "card" => "Hold your card to the reader (card number): ",
                _ => "Password: ",
            };
            let Some(secret) = self.read_secret(label)? else {
                return Ok(None);
            };
            let mut body = json!({"device": self.device, "method": method, "secret": secret});
            if !user.is_empty() {
                body["user"] = json!(user);
            }
            let answer = self
                .client
                .call(Method::POST, "/api/v1/sessions", None, Some(&body))?;
            if answer.status == StatusCode::CREATED {
                let name = answer.json["user"]["display_name"].as_str().unwrap_or("");
                writeln!(self.out, "Welcome, {name}.")?;
                return Ok(answer.json["token"].as_str().map(str::to_owned));
            }
            writeln!(self.out, "{}", answer.error_message())?;
        }
    }

    fn session(&mut self, token: &str) -> Result<SessionEnd, TerminalError> {
        let mut mono = false;
        loop {
            let answer = self
                .client
                .call(Method::GET, "/api/v1/jobs", Some(token), None)?;
            if answer.status == StatusCode::UNAUTHORIZED {
                return Ok(SessionEnd::Expired);
            }
            let jobs = answer.json["jobs"].as_array().cloned().unwrap_or_default();
            write!(self.out, "{}", job_table(&jobs))?;
            let prompt = format!(
                "Release [a]ll or numbers (1 3), [m] black-and-white: {}, [d N] delete, [r]efresh, [l]ogout: ",
                if mono { "on" } else { "off" }
            );
            let Some(line) = self.prompt(&prompt)? else {
                return Ok(SessionEnd::InputClosed);
            };
            let ids = |positions: &[usize]| -> Vec<Value> {
                positions
                    .iter()
                    .filter_map(|p| jobs.get(p - 1))
                    .map(|j| j["id"].clone())
                    .collect()
            };
            match parse_choice(&line, jobs.len()) {
                Choice::All if jobs.is_empty() => writeln!(self.out, "Nothing to release.")?,
                Choice::All => self.release(token, json!("all"), mono)?,
                Choice::Jobs(positions) => self.release(token, json!(ids(&positions)), mono)?,
                Choice::ToggleMono => mono = !mono,
                Choice::Delete(p) => {
                    let id = jobs[p - 1]["id"].as_str().unwrap_or("");
                    let answer = self.client.call(
                        Method::DELETE,
                        &format!("/api/v1/jobs/{id}"),
                        Some(token),
                        None,
                    )?;
                    match answer.status {
                        StatusCode::NO_CONTENT => writeln!(self.out, "Deleted.")?,
                        StatusCode::UNAUTHORIZED => return Ok(SessionEnd::Expired),
                        _ => writeln!(self.out, "{}", answer.error_message())?,
                    }
                }
                Choice::Refresh => {}
                Choice::Logout => return Ok(SessionEnd::Logout),
                Choice::Invalid(message) => writeln!(self.out, "{message}")?,
            }
        }
    }

    fn release(&mut self, token: &str, jobs: Value, mono: bool) -> Result<(), TerminalError> {
        let mut body = json!({ "jobs": jobs });
        if mono {
            body["color"] = json!("mono");
        }
        let answer = self.client.call(
            Method::POST,
            "/api/v1/jobs/release",
            Some(token),
            Some(&body),
        )?;
        if answer.status != StatusCode::ACCEPTED {
            writeln!(self.out, "{}", answer.error_message())?;
            return Ok(());
        }
        for job in answer.json["jobs"].as_array().into_iter().flatten() {
            let name = job["name"].as_str().unwrap_or("(unknown job)");
            if job["outcome"] != "queued" {
                writeln!(
                    self.out,
                    "  {name}: not released. {}",
                    job["message"].as_str().unwrap_or("")
                )?;
            }
            for note in job["notes"].as_array().into_iter().flatten() {
                writeln!(self.out, "  {name}: {}", note.as_str().unwrap_or(""))?;
            }
        }
        let Some(release) = answer.json["release"].as_str() else {
            return Ok(());
        };
        self.follow(token, release)
    }

    /// Prints each job's progress as it changes, until the release is done.
    fn follow(&mut self, token: &str, release: &str) -> Result<(), TerminalError> {
        let started = Instant::now();
        let mut shown: Vec<(String, String)> = Vec::new();
        loop {
            let answer = self.client.call(
                Method::GET,
                &format!("/api/v1/releases/{release}"),
                Some(token),
                None,
            )?;
            if answer.status != StatusCode::OK {
                writeln!(self.out, "{}", answer.error_message())?;
                return Ok(());
            }
            for job in answer.json["jobs"].as_array().into_iter().flatten() {
                let name = job["name"].as_str().unwrap_or("").to_owned();
                let state = job["state"].as_str().unwrap_or("").to_owned();
                if !shown.iter().any(|(n, s)| *n == name && *s == state) {
                    let message = match state.as_str() {
                        "returned" | "failed" => {
                            format!(" {}", job["message"].as_str().unwrap_or(""))
                        }
                        _ => String::new(),
                    };
                    writeln!(self.out, "  {name}: {state}{message}")?;
                    shown.retain(|(n, _)| *n != name);
                    shown.push((name, state));
                }
            }
            if answer.json["done"] == true {
                writeln!(
                    self.out,
                    "Done: {} of {} printed.",
                    answer.json["printed"].as_u64().unwrap_or(0),
                    answer.json["total"].as_u64().unwrap_or(0)
                )?;
                return Ok(());
            }
            if started.elapsed() > FOLLOW_LIMIT {
                writeln!(self.out, "Still printing; the printer has your jobs.")?;
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_are_read_forgivingly_and_checked() {
        assert_eq!(parse_choice(" A ", 2), Choice::All);
        assert_eq!(parse_choice("1, 3", 3), Choice::Jobs(vec![1, 3]));
        assert_eq!(parse_choice("2 2", 3), Choice::Jobs(vec![2]));
        assert_eq!(parse_choice("d 2", 2), Choice::Delete(2));
        assert_eq!(parse_choice("", 2), Choice::Refresh);
        assert_eq!(parse_choice("l", 2), Choice::Logout);
        assert_eq!(parse_choice("m", 0), Choice::ToggleMono);
        assert!(matches!(parse_choice("4", 3), Choice::Invalid(m) if m.contains("1 to 3")));
        assert!(matches!(parse_choice("d9", 1), Choice::Invalid(_)));
        assert!(matches!(parse_choice("x", 1), Choice::Invalid(_)));
    }

    #[test]
    fn the_job_list_shows_pages_and_estimates() {
        let jobs = [
            json!({"name": "report", "pages": 3, "pages_exact": true, "copies": 1, "color": "color",
                   "state": "held", "submitted": "2026-11-22T04:51:28.834Z"}),
            json!({"name": "scan", "pages": 7, "pages_exact": false, "copies": 2, "color": "unknown",
                   "state": "held", "submitted": "2026-11-22T05:00:00Z"}),
            json!({"name": "mystery", "pages": null, "copies": 1, "state": "printing"}),
        ];
        let table = job_table(&jobs);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(
            lines[1].contains("report")
                && lines[1].contains(" 3 ")
                && lines[1].contains("2026-11-22 04:51")
        );
        assert!(lines[2].contains("~7"));
        assert!(lines[3].contains(" ? "));
        assert_eq!(job_table(&[]), "You have no jobs waiting.\n");
    }
}
