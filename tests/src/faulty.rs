//! HTTP and SMTP peers that break the protocol in one way for every
//! connection: what a provider's overloaded or broken load balancer or mail
//! server does, which the well-behaved stand-ins of `providers.rs` and
//! `smtp.rs` never do.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How the peer misbehaves once it has read a whole request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFault {
    /// Keeps the connection open and never answers.
    Hang,
    /// Resets the connection (TCP RST) without an answer.
    Reset,
    /// Answers bytes that are not HTTP, then closes.
    Garbage,
    /// Holds the request until [`FaultyHttp::release`], then answers 200.
    Hold,
}

/// A running faulty peer on loopback.
pub struct FaultyHttp {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    requests: Arc<AtomicUsize>,
    released: Arc<(Mutex<bool>, Condvar)>,
}

impl FaultyHttp {
    /// Starts a peer that misbehaves as `fault` says on every connection.
    pub fn start(fault: HttpFault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let released = Arc::new((Mutex::new(false), Condvar::new()));
        let (counter, gate) = (requests.clone(), released.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (counter, gate) = (counter.clone(), gate.clone());
                std::thread::spawn(move || {
                    if read_request(&stream) {
                        counter.fetch_add(1, Ordering::SeqCst);
                        misbehave(stream, fault, &gate);
                    }
                });
            }
        });
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            requests,
            released,
        }
    }

    /// Lets every held request (and every later one) have its answer.
    pub fn release(&self) {
        let (released, changed) = &*self.released;
        *released.lock().unwrap_or_else(|e| e.into_inner()) = true;
        changed.notify_all();
    }

    /// Whole requests read so far: each one reached the "provider".
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Waits until `n` whole requests have arrived; panics after a minute.
    pub fn wait_for_requests(&self, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.requests() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} of {n} held requests arrived",
                self.requests()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Reads one request's head and its `Content-Length` body; false if the
/// client went away first.
fn read_request(stream: &TcpStream) -> bool {
    let mut reader = BufReader::new(stream);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).is_ok()
}

fn misbehave(mut stream: TcpStream, fault: HttpFault, gate: &(Mutex<bool>, Condvar)) {
    match fault {
        HttpFault::Hold => {
            let (released, changed) = gate;
            let held = released.lock().unwrap_or_else(|e| e.into_inner());
            let _ =
                changed.wait_timeout_while(held, Duration::from_secs(120), |released| !*released);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
            );
        }
        HttpFault::Hang => std::thread::sleep(Duration::from_secs(120)),
        HttpFault::Reset => {
            // A zero linger turns the close into a reset.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        }
        HttpFault::Garbage => {
            let _ = stream.write_all(b"\x00\xff\x13garbage, not HTTP\r\n\r\n\xde\xad\xbe\xef");
            let _ = stream.flush();
        }
    }
}

/// How a misbehaving SMTP peer misbehaves.
#[derive(Debug, Clone, Copy)]
pub enum SmtpFault {
    /// Accepts the connection and never says a word.
    Hang,
    /// Greets with something that is not SMTP.
    Garbage,
    /// Greets, then drops the connection.
    ResetAfterGreeting,
    /// Takes this long over every reply, but otherwise accepts the message.
    Slow(Duration),
    /// Takes the whole message, then never replies to it.
    HangAfterData,
    /// Takes the whole message, then drops the connection without a reply.
    DropAfterData,
}

/// A loopback SMTP peer that misbehaves in one way for every connection;
/// returns its port.
pub fn faulty_smtp(fault: SmtpFault) -> u16 {
    faulty_smtp_counting(fault).0
}

/// [`faulty_smtp`], with a count of the messages it received whole (each
/// one may have been delivered).
pub fn faulty_smtp_counting(fault: SmtpFault) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let messages = Arc::new(AtomicUsize::new(0));
    let counter = messages.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let counter = counter.clone();
            std::thread::spawn(move || match fault {
                SmtpFault::Hang => std::thread::sleep(Duration::from_secs(120)),
                SmtpFault::Garbage => {
                    let _ = stream.write_all(b"\x00\xffHTTP/1.1 400 Bad Request\r\n\r\n");
                    std::thread::sleep(Duration::from_secs(5));
                }
                SmtpFault::ResetAfterGreeting => {
                    let _ = stream.write_all(b"220 peer ready\r\n");
                }
                SmtpFault::Slow(delay) => smtp_session(stream, delay, fault, &counter),
                SmtpFault::HangAfterData | SmtpFault::DropAfterData => {
                    smtp_session(stream, Duration::ZERO, fault, &counter);
                }
            });
        }
    });
    (port, messages)
}

/// A plain SMTP session that waits `delay` before every reply, and after
/// the message does what `fault` says.
fn smtp_session(mut stream: TcpStream, delay: Duration, fault: SmtpFault, messages: &AtomicUsize) {
    let reply = |stream: &mut TcpStream, line: &str| {
        std::thread::sleep(delay);
        stream.write_all(line.as_bytes())
    };
    let _ = reply(&mut stream, "220 peer ready\r\n");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        let command = line.to_ascii_uppercase();
        let answer = if command.starts_with("EHLO") || command.starts_with("HELO") {
            "250 peer\r\n"
        } else if command.starts_with("DATA") {
            let _ = reply(&mut stream, "354 go on\r\n");
            let mut body = String::new();
            while reader.read_line(&mut body).is_ok_and(|n| n > 0) && !body.ends_with("\r\n.\r\n") {
            }
            messages.fetch_add(1, Ordering::SeqCst);
            match fault {
                SmtpFault::HangAfterData => {
                    std::thread::sleep(Duration::from_secs(120));
                    return;
                }
                SmtpFault::DropAfterData => {
                    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                    return;
                }
                _ => "250 queued\r\n",
            }
        } else if command.starts_with("QUIT") {
            let _ = reply(&mut stream, "221 bye\r\n");
            return;
        } else {
            "250 ok\r\n"
        };
        if reply(&mut stream, answer).is_err() {
            return;
        }
        line.clear();
    }
}
