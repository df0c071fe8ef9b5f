//! Progress on stderr: a spinner per status on a terminal, plain lines otherwise.
//!
//! On a terminal each status gets its own line with a spinner; when the next status arrives the
//! previous line stays, without the spinner. When stderr is not a terminal (logs, CI, tests) each
//! status is printed once, in its final form, with no escape codes.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

struct State {
    /// The line being shown (not yet finished).
    current: Option<String>,
    frame: usize,
    tty: bool,
}

impl State {
    fn draw(&mut self) {
        if let (true, Some(msg)) = (self.tty, &self.current) {
            eprint!("\r\x1b[K{msg} {}", FRAMES[self.frame % FRAMES.len()]);
            let _ = std::io::stderr().flush();
        }
    }

    /// Ends the current line in its final form.
    fn settle(&mut self) {
        if let Some(msg) = self.current.take() {
            if self.tty {
                eprint!("\r\x1b[K{msg} \n");
            } else {
                eprintln!("{msg}");
            }
        }
    }
}

/// A live progress display; call [`Progress::finish`] (or drop it) when done.
pub struct Progress {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    pub fn new() -> Self {
        let tty = std::io::stderr().is_terminal();
        let state = Arc::new(Mutex::new(State { current: None, frame: 0, tty }));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = tty.then(|| {
            eprint!("\x1b[?25l");
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                    s.frame += 1;
                    s.draw();
                }
            })
        });
        Progress { state, stop, ticker }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A bare spinner (no text), for "wait, the model is thinking"; [`Progress::clear`] ends it.
    pub fn spinner() -> Self {
        let p = Self::new();
        p.status("");
        p
    }

    /// Starts a new status line (the previous one stays as it last was).
    pub fn status(&self, msg: impl Into<String>) {
        let msg = msg.into();
        self.with(|s| {
            if s.current.as_deref() == Some(msg.as_str()) {
                return;
            }
            s.settle();
            s.current = Some(msg);
            s.draw();
        });
    }

    /// Replaces the current line's text (a bar moving on).
    pub fn update(&self, msg: impl Into<String>) {
        let msg = msg.into();
        self.with(|s| {
            s.current = Some(msg);
            s.draw();
        });
    }

    /// A handle that replaces the current line's text from any thread (upload callbacks).
    pub fn updater(&self) -> impl Fn(String) + Send + Sync + 'static {
        let state = self.state.clone();
        move |msg| {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            s.current = Some(msg);
            s.draw();
        }
    }

    /// Settles the last line and restores the cursor.
    pub fn finish(mut self) {
        self.shutdown();
    }

    /// Stops and erases the current line (a spinner that only meant "wait").
    pub fn clear(mut self) {
        self.with(|s| {
            if s.tty && s.current.take().is_some() {
                eprint!("\r\x1b[K");
            }
            s.current = None;
        });
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
            eprint!("\x1b[?25h");
        }
        self.with(State::settle);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.shutdown();
    }
}
