//! Output constraints as GBNF grammars for llama.cpp's grammar sampler.

use corral_types::runner::Constraint;

/// Any JSON value, llama.cpp's `grammars/json.gbnf` rewritten for an object or array at the top
/// (what `"format": "json"` users expect) with bounded whitespace so a model cannot loop on it.
const JSON: &str = r#"
root   ::= object | array
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt/] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [0-9]{0,15})? ws
ws     ::= | " " | "\n" [ \t]{0,20}
"#;

/// The grammar for a constraint.
pub fn to_gbnf(c: &Constraint) -> Result<String, String> {
    match c {
        Constraint::Json => Ok(JSON.to_string()),
        Constraint::Grammar(g) => Ok(g.clone()),
        Constraint::JsonSchema(schema) => {
            serde_json::from_str::<serde_json::Value>(schema).map_err(|e| format!("invalid JSON schema: {e}"))?;
            llama_cpp_2::json_schema_to_grammar(schema).map_err(|e| format!("unsupported JSON schema: {e}"))
        }
    }
}
