//! The benchmark's "limit": an IPP responder that does nothing. It reads
//! each request and its whole document off the connection, throws the
//! bytes away and answers `successful-ok`, one thread per connection. What
//! a spooler achieves against it is what this machine's loopback, client
//! and scheduler allow, before any parsing, hashing or storing.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;

/// A running do-nothing responder on loopback; stops when dropped.
pub struct LimitResponder {
    /// Its port on 127.0.0.1.
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl LimitResponder {
    /// Starts one on a free loopback port.
    pub fn start() -> Result<LimitResponder> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    std::thread::spawn(move || {
                        let _ = answer(stream);
                    });
                }
            }
        });
        Ok(LimitResponder { port, stop })
    }
}

impl Drop for LimitResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads one request (head, then `Content-Length` bytes, or to the end)
/// and answers `successful-ok` with the request's version and id.
fn answer(stream: TcpStream) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(256 * 1024, stream.try_clone()?);
    let mut length: Option<u64> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok();
        }
    }
    let mut head = [0u8; 8];
    reader.read_exact(&mut head)?;
    let rest = length.map(|l| l.saturating_sub(8));
    match rest {
        Some(rest) => io::copy(&mut (&mut reader).take(rest), &mut io::sink())?,
        None => io::copy(&mut reader, &mut io::sink())?,
    };
    let mut ipp = vec![head[0], head[1], 0x00, 0x00];
    ipp.extend_from_slice(&head[4..8]);
    ipp.push(0x01);
    for (tag, name, value) in [
        (0x47u8, "attributes-charset", "utf-8"),
        (0x48, "attributes-natural-language", "en"),
    ] {
        ipp.push(tag);
        ipp.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ipp.extend_from_slice(name.as_bytes());
        ipp.extend_from_slice(&(value.len() as u16).to_be_bytes());
        ipp.extend_from_slice(value.as_bytes());
    }
    ipp.push(0x03);
    let mut stream = stream;
    stream.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/ipp\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            ipp.len()
        )
        .as_bytes(),
    )?;
    stream.write_all(&ipp)?;
    stream.flush()
}
