//! Modelfiles: the recipe format of `corral create`.
//!
//! [`Modelfile::parse`] follows Ollama's lexer (`parser/parser.go`): case-insensitive instruction
//! keywords, `#` comments only where an instruction could start, values that run to the end of the
//! line, and `"…"` / `"""…"""` quoting that may span lines. Every error names the line and what was
//! wrong with it. [`Modelfile`]'s `Display` prints text that parses back to the same commands.
//! [`Modelfile::recipe`] turns the commands into the typed parts of a create request.
//!
//! Architecture invariant: no I/O. Deciding whether `FROM x` names a file or a model needs the file
//! system, so that is left to the caller; [`expand_path`] is the pure half of it.

mod lexer;
mod recipe;

pub use lexer::{Command, Instruction, Modelfile, ParseError};
pub use recipe::{expand_path, Recipe, Sourced};
