//! The line printer daemon protocol (RFC 1179) as values: the commands a
//! client sends, the subcommands of "receive a printer job", and the
//! control file that says whose job it is. Pure, so every refusal is
//! tested without a socket; `lpd_session` does the I/O.

/// Longest command or subcommand line taken.
pub const MAX_LINE: usize = 1024;

/// Largest control file taken; real ones are a few hundred bytes.
pub const MAX_CONTROL_FILE: u64 = 64 * 1024;

/// Longest user or job name kept from a control file.
const MAX_FIELD: usize = 255;

/// Why a line or a control file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LpdError {
    /// A command byte RFC 1179 does not define.
    #[error("unknown LPD command {0:#04x}")]
    UnknownCommand(u8),
    /// A subcommand byte RFC 1179 does not define.
    #[error("unknown LPD subcommand {0:#04x}")]
    UnknownSubcommand(u8),
    /// A line without the fields its command needs.
    #[error("malformed LPD line: {0}")]
    Malformed(&'static str),
    /// A control file with no `P` (user) line: nobody could own the job.
    #[error("the control file names no user (P line)")]
    NoUser,
    /// A control file that prints nothing.
    #[error("the control file prints no data file")]
    NoDataFile,
}

/// A command: the first line of a connection (RFC 1179 §5). Each names
/// the queue it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// 01: start printing waiting jobs (the appliance always is).
    PrintWaiting {
        /// The queue.
        queue: String,
    },
    /// 02: receive a printer job; subcommands follow.
    ReceiveJob {
        /// The queue the job lands in.
        queue: String,
    },
    /// 03 (short) and 04 (long): the queue's state.
    QueueState {
        /// The queue.
        queue: String,
        /// 04 rather than 03.
        long: bool,
        /// The users whose jobs to list.
        users: Vec<String>,
    },
    /// 05: remove jobs.
    RemoveJobs {
        /// The queue.
        queue: String,
    },
}

/// A subcommand of "receive a printer job" (RFC 1179 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subcommand {
    /// 01: forget what was sent of this job.
    Abort,
    /// 02: a control file follows.
    ControlFile {
        /// Its length in bytes.
        size: u64,
        /// Its name (`cfA123host`).
        name: String,
    },
    /// 03: a data file follows.
    DataFile {
        /// Its length in bytes.
        size: u64,
        /// Its name (`dfA123host`), as the control file refers to it.
        name: String,
    },
}

/// Parses a command line (without its LF).
pub fn parse_command(line: &[u8]) -> Result<Command, LpdError> {
    let (&code, operands) = line
        .split_first()
        .ok_or(LpdError::Malformed("empty command"))?;
    let operands = text(operands);
    let mut words = operands.split_ascii_whitespace().map(str::to_owned);
    let queue = words
        .next()
        .ok_or(LpdError::Malformed("the command names no queue"))?;
    Ok(match code {
        1 => Command::PrintWaiting { queue },
        2 => Command::ReceiveJob { queue },
        3 | 4 => Command::QueueState {
            queue,
            long: code == 4,
            users: words.collect(),
        },
        5 => Command::RemoveJobs { queue },
        other => return Err(LpdError::UnknownCommand(other)),
    })
}

/// Parses a subcommand line (without its LF).
pub fn parse_subcommand(line: &[u8]) -> Result<Subcommand, LpdError> {
    let (&code, operands) = line
        .split_first()
        .ok_or(LpdError::Malformed("empty subcommand"))?;
    if code == 1 {
        return Ok(Subcommand::Abort);
    }
    let operands = text(operands);
    let mut words = operands.split_ascii_whitespace();
    let size = words
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or(LpdError::Malformed("the file's size is not a number"))?;
    let name = words
        .next()
        .filter(|n| !n.contains('/'))
        .ok_or(LpdError::Malformed("the file has no name"))?
        .to_owned();
    match code {
        2 => Ok(Subcommand::ControlFile { size, name }),
        3 => Ok(Subcommand::DataFile { size, name }),
        other => Err(LpdError::UnknownSubcommand(other)),
    }
}

/// What a control file says (RFC 1179 §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlFile {
    /// `H`: the sending host, as it calls itself.
    pub host: Option<String>,
    /// `P`: the user the job belongs to.
    pub user: String,
    /// `J`: the job's name.
    pub job_name: Option<String>,
    /// The data files to print, in order, each once.
    pub files: Vec<PrintFile>,
}

/// A data file a control file prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrintFile {
    /// Its name in the data file subcommand (`dfA123host`).
    pub name: String,
    /// `N`: the file's name on the sending host.
    pub source_name: Option<String>,
    /// How many print lines name it (BSD `lpr -#N` repeats the line).
    pub copies: u32,
}

/// The print commands (`l` literal, `f` formatted text, `o` PostScript,
/// ...): the appliance stores every one as it is and lets the printer
/// interpret the bytes, as a print server forwarding raw does.
const PRINT_LINES: &[u8] = b"cdfgklnoprtv";

/// Parses a control file.
pub fn parse_control_file(data: &[u8]) -> Result<ControlFile, LpdError> {
    let mut host = None;
    let mut user = None;
    let mut job_name = None;
    let mut files: Vec<PrintFile> = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let Some((&code, operand)) = line.split_first() else {
            continue;
        };
        let value = field(operand);
        match code {
            b'H' => host = Some(value),
            b'P' => user = Some(value),
            b'J' if !value.is_empty() => job_name = Some(value),
            b'N' => {
                if let Some(last) = files.last_mut() {
                    last.source_name.get_or_insert(value);
                }
            }
            c if PRINT_LINES.contains(&c) && !value.is_empty() => {
                match files.iter_mut().find(|f| f.name == value) {
                    Some(file) => file.copies += 1,
                    None => files.push(PrintFile {
                        name: value,
                        source_name: None,
                        copies: 1,
                    }),
                }
            }
            _ => {}
        }
    }
    let user = user.filter(|u| !u.is_empty()).ok_or(LpdError::NoUser)?;
    if files.is_empty() {
        return Err(LpdError::NoDataFile);
    }
    Ok(ControlFile {
        host,
        user,
        job_name,
        files,
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A control file's operand: printable, at most [`MAX_FIELD`] characters.
fn field(operand: &[u8]) -> String {
    text(operand)
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_FIELD)
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(
            parse_command(b"\x02secure").unwrap(),
            Command::ReceiveJob {
                queue: "secure".into()
            }
        );
        assert_eq!(
            parse_command(b"\x04secure alice bob").unwrap(),
            Command::QueueState {
                queue: "secure".into(),
                long: true,
                users: vec!["alice".into(), "bob".into()],
            }
        );
        assert_eq!(
            parse_command(b"\x09x").unwrap_err(),
            LpdError::UnknownCommand(9)
        );
        assert!(parse_command(b"\x02").is_err());
        assert!(parse_command(b"").is_err());
    }

    #[test]
    fn subcommands() {
        assert_eq!(
            parse_subcommand(b"\x03123 dfA001host").unwrap(),
            Subcommand::DataFile {
                size: 123,
                name: "dfA001host".into()
            }
        );
        assert_eq!(parse_subcommand(b"\x01").unwrap(), Subcommand::Abort);
        assert!(parse_subcommand(b"\x02abc cfA001host").is_err());
        assert!(parse_subcommand(b"\x02-1 cfA001host").is_err());
        assert!(parse_subcommand(b"\x0312").is_err());
        assert!(parse_subcommand(b"\x0312 ../../etc/passwd").is_err());
        assert_eq!(
            parse_subcommand(b"\x0712 x").unwrap_err(),
            LpdError::UnknownSubcommand(7)
        );
    }

    #[test]
    fn control_file_as_bsd_lpr_writes_it() {
        let cf = b"Hworkstation\nPalice\nJreport\nCA\nLalice\n\
ldfA001workstation\nldfA001workstation\nUdfA001workstation\nNreport.pdf\n\
odfB001workstation\nNslides.ps\n";
        let parsed = parse_control_file(cf).unwrap();
        assert_eq!(parsed.user, "alice");
        assert_eq!(parsed.host.as_deref(), Some("workstation"));
        assert_eq!(parsed.job_name.as_deref(), Some("report"));
        assert_eq!(
            parsed.files,
            vec![
                PrintFile {
                    name: "dfA001workstation".into(),
                    source_name: Some("report.pdf".into()),
                    copies: 2,
                },
                PrintFile {
                    name: "dfB001workstation".into(),
                    source_name: Some("slides.ps".into()),
                    copies: 1,
                },
            ]
        );
    }

    #[test]
    fn control_file_needs_a_user_and_a_file() {
        assert_eq!(
            parse_control_file(b"Hh\nldfA1h\n").unwrap_err(),
            LpdError::NoUser
        );
        assert_eq!(
            parse_control_file(b"Hh\nP\nldfA1h\n").unwrap_err(),
            LpdError::NoUser
        );
        assert_eq!(
            parse_control_file(b"Hh\nPalice\n").unwrap_err(),
            LpdError::NoDataFile
        );
    }

    #[test]
    fn control_characters_do_not_reach_names() {
        let parsed = parse_control_file(b"Pev\x1b[2Je\r\nJa\x07b\nldfA1h\n").unwrap();
        assert_eq!(parsed.user, "ev[2Je");
        assert_eq!(parsed.job_name.as_deref(), Some("ab"));
    }
}
