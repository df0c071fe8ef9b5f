//! The interactive chat of `corral run MODEL`: Ollama's prompt, slash commands and keys.
//!
//! Lines are read with rustyline on a blocking thread; answers stream over `/api/chat`. Ctrl+C
//! during an answer stops it (the request is dropped, which cancels it on the server); Ctrl+C at
//! the prompt prints a hint; Ctrl+D or `/bye` leaves.

use std::io::Write;
use std::path::PathBuf;

use corral_client::Client;
use corral_types::api::{ChatRequest, ChatResponse, CreateRequest, Message, ShowRequest, ShowResponse};
use corral_types::params;
use futures_util::StreamExt;
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;
use serde_json::{Map, Value};

use super::output::{check_model, print_stats, Interrupt, Printer};

/// The session's state.
pub struct Session {
    pub model: String,
    pub show: ShowResponse,
    pub format: Option<Value>,
    pub think: Option<Value>,
    pub keep_alive: Option<Value>,
    pub verbose: bool,
    pub wordwrap: bool,
    /// History file, unless history is off.
    pub history: Option<PathBuf>,
}

const HELP: &str = "Available Commands:
  /set            Set session variables
  /show           Show model information
  /load <model>   Load a session or model
  /save <model>   Save your current session
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command
  /? shortcuts    Help for keyboard shortcuts

Use \"\"\" to begin a multi-line message.
";

const SET_HELP: &str = "Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set template <string> Set prompt template
  /set history           Enable history
  /set nohistory         Disable history
  /set wordwrap          Enable wordwrap
  /set nowordwrap        Disable wordwrap
  /set format json       Enable JSON mode
  /set noformat          Disable formatting
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats
  /set think             Enable thinking
  /set nothink           Disable thinking
";

const SHOW_HELP: &str = "Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show modelfile    Show Modelfile for this model
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template
";

const SHORTCUTS: &str = "Available keyboard shortcuts:
  Ctrl + a            Move to the beginning of the line (Home)
  Ctrl + e            Move to the end of the line (End)
   Alt + b            Move back (left) one word
   Alt + f            Move forward (right) one word
  Ctrl + k            Delete the sentence after the cursor
  Ctrl + u            Delete the sentence before the cursor
  Ctrl + w            Delete the word before the cursor

  Ctrl + l            Clear the screen
  Ctrl + c            Stop the model from responding
  Ctrl + d            Exit (/bye)
";

const PARAMETER_HELP: &str = "Available Parameters:
  /set parameter seed <int>             Random number seed
  /set parameter num_predict <int>      Max number of tokens to predict
  /set parameter top_k <int>            Pick from top k num of tokens
  /set parameter top_p <float>          Pick token based on sum of probabilities
  /set parameter min_p <float>          Pick token based on top token probability * min_p
  /set parameter num_ctx <int>          Set the context size
  /set parameter temperature <float>    Set creativity level
  /set parameter repeat_penalty <float> How strongly to penalize repetitions
  /set parameter repeat_last_n <int>    Set how far back to look for repetitions
  /set parameter num_gpu <int>          The number of layers to send to the GPU
  /set parameter stop <string> <string> ...   Set the stop parameters
";

enum Input {
    Line(String),
    Interrupted,
    Eof,
}

/// Reads one line on a blocking thread (rustyline owns the terminal while it reads).
async fn read(editor: &mut Option<DefaultEditor>, prompt: &'static str) -> anyhow::Result<Input> {
    let mut ed = editor.take().expect("editor present between reads");
    let (ed, result) = tokio::task::spawn_blocking(move || {
        let r = ed.readline(prompt);
        (ed, r)
    })
    .await?;
    *editor = Some(ed);
    Ok(match result {
        Ok(line) => Input::Line(line),
        Err(ReadlineError::Interrupted) => Input::Interrupted,
        Err(ReadlineError::Eof) => Input::Eof,
        Err(e) => return Err(e.into()),
    })
}

struct Repl<'a> {
    client: &'a Client,
    s: Session,
    messages: Vec<Message>,
    system: Option<String>,
    /// The session's prompt template (`/set template`), sent with each chat and kept by `/save`.
    template: Option<String>,
    options: Map<String, Value>,
    history_on: bool,
}

pub async fn run(client: &Client, session: Session) -> anyhow::Result<()> {
    let mut repl = Repl {
        client,
        history_on: session.history.is_some(),
        s: session,
        messages: Vec::new(),
        system: None,
        template: None,
        options: Map::new(),
    };
    repl.load().await?;
    let mut editor = Some(DefaultEditor::new()?);
    if let (Some(path), Some(ed)) = (&repl.s.history, editor.as_mut()) {
        let _ = ed.load_history(path);
    }
    // Text between """ markers: a message, or the value of `/set system` or `/set template`.
    let mut multiline: Option<Multiline> = None;
    loop {
        let prompt = if multiline.is_some() { "... " } else { ">>> " };
        let line = match read(&mut editor, prompt).await? {
            Input::Eof => break,
            Input::Interrupted => {
                if multiline.take().is_none() {
                    println!("Use Ctrl + d or /bye to exit.");
                }
                continue;
            }
            Input::Line(l) => l,
        };
        if let Some(pending) = multiline.as_mut() {
            if let Some(end) = line.strip_suffix("\"\"\"") {
                pending.text.push_str(end);
                let Some(Multiline { command, text }) = multiline.take() else { continue };
                match command {
                    None => {
                        repl.remember(&mut editor, &text);
                        repl.chat(text).await?;
                    }
                    Some(command) => {
                        repl.remember(&mut editor, &format!("{command} \"\"\"{text}\"\"\""));
                        repl.command(&format!("{command} {text}")).await?;
                    }
                }
            } else {
                pending.text.push_str(&line);
                pending.text.push('\n');
            }
            continue;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some((command, rest)) = opens_multiline(trimmed) {
            match rest.strip_suffix("\"\"\"").filter(|_| rest.len() >= 3) {
                // `"""text"""` on one line.
                Some(inner) => {
                    repl.remember(&mut editor, trimmed);
                    match command {
                        None => repl.chat(inner.to_string()).await?,
                        Some(command) => {
                            repl.command(&format!("{command} {inner}")).await?;
                        }
                    }
                }
                None => {
                    let text = format!("{rest}\n").trim_start_matches('\n').to_string();
                    multiline = Some(Multiline { command: command.map(String::from), text });
                }
            }
            continue;
        }
        repl.remember(&mut editor, trimmed);
        if trimmed.starts_with('/') {
            if !repl.command(trimmed).await? {
                break;
            }
            continue;
        }
        repl.chat(line).await?;
    }
    if let (Some(path), Some(ed)) = (&repl.s.history, editor.as_mut()) {
        if repl.history_on {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = ed.save_history(path);
        }
    }
    Ok(())
}

/// Text being typed between """ markers, and the command it is for (`None`: a message).
struct Multiline {
    command: Option<String>,
    text: String,
}

/// Whether `line` opens a """ block: a message (`"""…`), or `/set system """…` or
/// `/set template """…`. Returns the command and what follows the opening marker.
fn opens_multiline(line: &str) -> Option<(Option<&'static str>, &str)> {
    if let Some(rest) = line.strip_prefix("\"\"\"") {
        return Some((None, rest));
    }
    for command in ["/set system", "/set template"] {
        if let Some(rest) = line.strip_prefix(command).map(str::trim_start).and_then(|r| r.strip_prefix("\"\"\"")) {
            return Some((Some(command), rest));
        }
    }
    None
}

impl Repl<'_> {
    fn remember(&self, editor: &mut Option<DefaultEditor>, line: &str) {
        if self.history_on {
            if let Some(ed) = editor.as_mut() {
                let _ = ed.add_history_entry(line);
            }
        }
    }

    /// Loads the model (with a spinner) and replays its MESSAGEs.
    async fn load(&mut self) -> anyhow::Result<()> {
        let spinner = crate::progress::Progress::spinner();
        let req =
            ChatRequest { model: self.s.model.clone(), keep_alive: self.s.keep_alive.clone(), ..Default::default() };
        let result = self.client.stream::<_, ChatResponse>("/api/chat", &req).await;
        spinner.clear();
        let mut stream = Box::pin(result?);
        while let Some(chunk) = stream.next().await {
            chunk?;
        }
        for m in &self.s.show.messages {
            match m.role.as_str() {
                "user" => println!(">>> {}", m.content),
                "assistant" => println!("{}\n", m.content),
                _ => {}
            }
        }
        Ok(())
    }

    /// Sends one user message and streams the answer. Ctrl+C drops the turn.
    async fn chat(&mut self, text: String) -> anyhow::Result<()> {
        let mut messages = Vec::new();
        if let Some(sys) = &self.system {
            messages.push(Message::new("system", sys));
        }
        messages.extend(self.messages.iter().cloned());
        let mut user = Message::new("user", &text);
        if super::run::reads_media(&self.s.show) {
            let (rest, files) = match super::attach::extract(&text) {
                Ok(found) => found,
                Err(e) => {
                    eprintln!("Error: {e}");
                    return Ok(());
                }
            };
            super::attach::announce(&files);
            user.content = rest;
            user.images = (!files.is_empty()).then(|| files.into_iter().map(|f| f.base64).collect());
        }
        messages.push(user.clone());
        let req = ChatRequest {
            model: self.s.model.clone(),
            messages,
            stream: Some(true),
            format: self.s.format.clone(),
            keep_alive: self.s.keep_alive.clone(),
            options: (!self.options.is_empty()).then(|| self.options.clone()),
            think: self.s.think.clone(),
            template: self.template.clone(),
            ..Default::default()
        };
        let spinner = crate::progress::Progress::spinner();
        let mut spinner = Some(spinner);
        let mut printer = Printer::new(self.s.wordwrap);
        let mut answer = String::new();
        let mut interrupt = Interrupt::listen()?;
        let mut stream = Box::pin(self.client.stream::<_, ChatResponse>("/api/chat", &req).await?);
        loop {
            let chunk = tokio::select! {
                c = stream.next() => c,
                () = interrupt.pressed() => {
                    if let Some(s) = spinner.take() { s.clear(); }
                    // Dropping the stream closes the connection: the server cancels the answer.
                    println!();
                    return Ok(());
                }
            };
            let Some(chunk) = chunk else { break };
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    if let Some(s) = spinner.take() {
                        s.clear();
                    }
                    eprintln!("Error: {e}");
                    return Ok(());
                }
            };
            if let Some(s) = spinner.take() {
                s.clear();
            }
            printer.push(&chunk.message.content);
            answer.push_str(&chunk.message.content);
            if chunk.done {
                printer.finish();
                println!();
                if self.s.verbose {
                    print_stats(&chunk.metrics);
                }
                break;
            }
        }
        self.messages.push(user);
        self.messages.push(Message::new("assistant", &answer));
        Ok(())
    }

    /// Runs a slash command. `false` means leave.
    async fn command(&mut self, line: &str) -> anyhow::Result<bool> {
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or_default();
        let args: Vec<&str> = words.collect();
        match cmd {
            "/bye" | "/exit" => return Ok(false),
            "/?" | "/help" => match args.first() {
                Some(&"set") => print!("{SET_HELP}"),
                Some(&"show") => print!("{SHOW_HELP}"),
                Some(&"shortcut") | Some(&"shortcuts") => print!("{SHORTCUTS}"),
                _ => print!("{HELP}"),
            },
            "/clear" => {
                self.messages.clear();
                println!("Cleared session context");
            }
            "/set" => self.set(line, &args),
            "/show" => self.show_cmd(&args).await?,
            "/load" => match args.first() {
                None => println!("Usage:\n  /load <modelname>"),
                Some(m) => {
                    println!("Loading model '{m}'");
                    match check_model(self.client, m).await {
                        Ok(show) => {
                            self.s.model = m.to_string();
                            self.s.show = show;
                            self.messages.clear();
                            self.load().await?;
                        }
                        Err(_) => println!("Couldn't find model '{m}'"),
                    }
                }
            },
            "/save" => match args.first() {
                None => println!("Usage:\n  /save <modelname>"),
                Some(m) => self.save(m).await?,
            },
            other => println!("Unknown command '{other}'. Type /? for help"),
        }
        Ok(true)
    }

    fn set(&mut self, line: &str, args: &[&str]) {
        match args.first().copied() {
            None => print!("{SET_HELP}"),
            Some("parameter") => {
                let (Some(name), values) = (args.get(1), &args[2.min(args.len())..]) else {
                    print!("{PARAMETER_HELP}");
                    return;
                };
                if values.is_empty() {
                    print!("{PARAMETER_HELP}");
                    return;
                }
                let mut parsed = Map::new();
                let result = values
                    .iter()
                    .try_for_each(|v| params::insert_text_param(&mut parsed, name, v).map_err(|e| e.to_string()));
                match result {
                    Ok(()) => {
                        self.options.extend(parsed);
                        println!("Set parameter '{name}' to '{}'", values.join(", "));
                    }
                    Err(e) => println!("Couldn't set parameter: {e:?}"),
                }
            }
            Some("system") => {
                let text = line.split_once("system").map(|(_, t)| t.trim()).unwrap_or_default();
                let text = text.trim_matches('"').to_string();
                self.system = Some(text);
                println!("Set system message.");
            }
            Some("template") => {
                let text = line.split_once("template").map(|(_, t)| t.trim()).unwrap_or_default();
                if text.is_empty() {
                    print!("{SET_HELP}");
                    return;
                }
                self.template = Some(text.to_string());
                println!("Set prompt template.");
            }
            Some("history") => {
                self.history_on = true;
                println!("Set 'history' mode.");
            }
            Some("nohistory") => {
                self.history_on = false;
                println!("Set 'nohistory' mode.");
            }
            Some("wordwrap") => {
                self.s.wordwrap = true;
                println!("Set 'wordwrap' mode.");
            }
            Some("nowordwrap") => {
                self.s.wordwrap = false;
                println!("Set 'nowordwrap' mode.");
            }
            Some("verbose") => {
                self.s.verbose = true;
                println!("Set 'verbose' mode.");
            }
            Some("quiet") => {
                self.s.verbose = false;
                println!("Set 'quiet' mode.");
            }
            Some("format") if args.get(1) == Some(&"json") => {
                self.s.format = Some(Value::String("json".into()));
                println!("Set format to 'json' mode.");
            }
            Some("format") => println!("Invalid or missing format. For 'json' mode use '/set format json'"),
            Some("noformat") => {
                self.s.format = None;
                println!("Disabled format.");
            }
            Some("think") => {
                self.s.think = Some(args.get(1).map_or(Value::Bool(true), |l| Value::String(l.to_string())));
                if !self.s.show.capabilities.iter().any(|c| c == "thinking") {
                    println!("warning: model \"{}\" does not support thinking output", self.s.model);
                }
                match args.get(1) {
                    Some(level) => println!("Set 'think' mode to '{level}'."),
                    None => println!("Set 'think' mode."),
                }
            }
            Some("nothink") => {
                self.s.think = Some(Value::Bool(false));
                println!("Set 'nothink' mode.");
            }
            Some(other) => println!("Unknown command '/set {other}'. Type /? for help"),
        }
    }

    async fn show_cmd(&self, args: &[&str]) -> anyhow::Result<()> {
        let req = ShowRequest {
            model: self.s.model.clone(),
            system: self.system.clone(),
            options: (!self.options.is_empty()).then(|| self.options.clone()),
            ..Default::default()
        };
        let resp = self.client.show(&req).await?;
        let or = |s: &str, none: &str| if s.is_empty() { none.to_string() } else { s.to_string() };
        match args.first().copied() {
            Some("info") => print!("{}", super::show::info(&resp, false)),
            Some("license") => println!("{}", or(&resp.license, "No license was specified for this model.")),
            Some("modelfile") => println!("{}", resp.modelfile),
            Some("parameters") => {
                println!(
                    "Model defined parameters:\n{}",
                    or(&self.s.show.parameters, "No additional parameters were specified for this model.")
                );
                if !self.options.is_empty() {
                    println!("\nUser defined parameters:");
                    for (k, v) in &self.options {
                        println!("{k:<30} {}", corral_types::format::go_value_sharp(v));
                    }
                }
            }
            Some("system") => println!("{}", or(&resp.system, "No system message was specified for this model.")),
            Some("template") => match &self.template {
                Some(session) => println!("{session}"),
                None => println!("{}", or(&resp.template, "No prompt template was specified for this model.")),
            },
            _ => print!("{SHOW_HELP}"),
        }
        Ok(())
    }

    /// `/save NAME`: a new model from this one with the session's system message, parameters and
    /// conversation.
    async fn save(&self, name: &str) -> anyhow::Result<()> {
        if corral_types::ModelName::parse(name).is_err() {
            println!("error: The model name '{name}' is invalid");
            return Ok(());
        }
        let req = CreateRequest {
            model: name.to_string(),
            from: Some(self.s.model.clone()),
            system: self.system.clone(),
            template: self.template.clone(),
            parameters: (!self.options.is_empty()).then(|| self.options.clone()),
            messages: (!self.messages.is_empty()).then(|| self.messages.clone()),
            ..Default::default()
        };
        match self.client.create(&req, |_| {}).await {
            Ok(()) => println!("Created new model '{name}'"),
            Err(e) => println!("error: {e}"),
        }
        let _ = std::io::stdout().flush();
        Ok(())
    }
}
