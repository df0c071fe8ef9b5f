//! Executing a parsed template over JSON data.
//!
//! Data is API-shaped JSON (`role`, `tool_calls`, …), while templates ask for Go field names
//! (`.Role`, `.ToolCalls`, `.ToolCallID`). A field lookup tries the name as written, then with a
//! lower-case first letter, then in snake case, so both kinds of key work and a map prints as the
//! JSON clients sent (what Ollama's `String()` methods print).

use serde_json::{Map, Value};

use super::parse::{Arg, Node, Pipe};
use crate::TemplateError;

fn err(msg: impl Into<String>) -> TemplateError {
    TemplateError(msg.into())
}

fn snake(name: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if c.is_uppercase() && i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit()) {
            out.push('_');
        }
        out.extend(c.to_lowercase());
    }
    out
}

fn lookup(v: &Value, name: &str) -> Value {
    let Value::Object(m) = v else { return Value::Null };
    if let Some(x) = m.get(name) {
        return x.clone();
    }
    let mut lower = name.to_string();
    if let Some(first) = lower.get_mut(0..1) {
        first.make_ascii_lowercase();
    }
    m.get(&lower).or_else(|| m.get(&snake(name))).cloned().unwrap_or(Value::Null)
}

fn walk_fields(mut v: Value, fields: &[String]) -> Value {
    for f in fields {
        v = lookup(&v, f);
    }
    v
}

/// Go's truthiness.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// How a value prints.
pub fn print(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => corral_types::format::go_float(n.as_f64().unwrap_or(0.0)),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering, TemplateError> {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => {
            Ok(num(a).unwrap_or(0.0).partial_cmp(&num(b).unwrap_or(0.0)).unwrap_or(std::cmp::Ordering::Equal))
        }
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        _ => Err(err(format!("incompatible types for comparison: {a} and {b}"))),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => num(a) == num(b),
        _ => a == b,
    }
}

fn index_of(v: &Value, i: &Value) -> Result<Value, TemplateError> {
    match (v, i) {
        (Value::Array(a), Value::Number(_)) => {
            let n = num(i).unwrap_or(-1.0);
            a.get(n as usize).cloned().filter(|_| n >= 0.0).ok_or_else(|| err(format!("index out of range: {n}")))
        }
        (Value::Object(m), Value::String(k)) => Ok(m.get(k).cloned().unwrap_or(Value::Null)),
        (Value::Null, _) => Ok(Value::Null),
        _ => Err(err(format!("can't index {v} with {i}"))),
    }
}

fn slice(args: &[Value]) -> Result<Value, TemplateError> {
    let (target, bounds) = args.split_first().ok_or_else(|| err("slice needs an argument"))?;
    let b: Vec<usize> = bounds.iter().map(|v| num(v).unwrap_or(0.0).max(0.0) as usize).collect();
    match target {
        Value::Array(a) => {
            let start = b.first().copied().unwrap_or(0);
            let end = b.get(1).copied().unwrap_or(a.len());
            if start > end || end > a.len() {
                return Err(err(format!("slice index out of range: {start}:{end} of {}", a.len())));
            }
            Ok(Value::Array(a[start..end].to_vec()))
        }
        Value::String(s) => {
            let start = b.first().copied().unwrap_or(0);
            let end = b.get(1).copied().unwrap_or(s.len());
            s.get(start..end).map(|x| Value::String(x.into())).ok_or_else(|| err("slice index out of range"))
        }
        other => Err(err(format!("can't slice {other}"))),
    }
}

fn printf(args: &[Value]) -> Result<Value, TemplateError> {
    let (fmt, rest) = args.split_first().ok_or_else(|| err("printf needs a format"))?;
    let fmt = fmt.as_str().ok_or_else(|| err("printf format must be a string"))?;
    let mut out = String::new();
    let mut rest = rest.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('q') => out.push_str(&corral_types::format::go_quote(&print(rest.next().unwrap_or(&Value::Null)))),
            Some(_) => out.push_str(&print(rest.next().unwrap_or(&Value::Null))),
            None => out.push('%'),
        }
    }
    Ok(Value::String(out))
}

fn call(name: &str, args: Vec<Value>) -> Result<Value, TemplateError> {
    let arg = |i: usize| args.get(i).cloned().unwrap_or(Value::Null);
    Ok(match name {
        "and" => args.iter().find(|v| !truthy(v)).or(args.last()).cloned().unwrap_or(Value::Null),
        "or" => args.iter().find(|v| truthy(v)).or(args.last()).cloned().unwrap_or(Value::Null),
        "not" => Value::Bool(!truthy(&arg(0))),
        "eq" => Value::Bool(args.len() >= 2 && args[1..].iter().any(|b| equal(&args[0], b))),
        "ne" => Value::Bool(!equal(&arg(0), &arg(1))),
        "lt" => Value::Bool(compare(&arg(0), &arg(1))?.is_lt()),
        "le" => Value::Bool(compare(&arg(0), &arg(1))?.is_le()),
        "gt" => Value::Bool(compare(&arg(0), &arg(1))?.is_gt()),
        "ge" => Value::Bool(compare(&arg(0), &arg(1))?.is_ge()),
        "len" => Value::from(match arg(0) {
            Value::String(s) => s.len(),
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            Value::Null => 0,
            other => return Err(err(format!("len of {other}"))),
        }),
        "index" => {
            let mut v = arg(0);
            for i in args.iter().skip(1) {
                v = index_of(&v, i)?;
            }
            v
        }
        "slice" => slice(&args)?,
        "print" => Value::String(args.iter().map(print).collect::<Vec<_>>().join("")),
        "println" => Value::String(args.iter().map(print).collect::<Vec<_>>().join(" ") + "\n"),
        "printf" => printf(&args)?,
        "json" => Value::String(serde_json::to_string(&arg(0)).unwrap_or_default()),
        "currentDate" => Value::String(chrono::Local::now().format("%Y-%m-%d").to_string()),
        "yesterdayDate" => {
            Value::String((chrono::Local::now() - chrono::Duration::days(1)).format("%Y-%m-%d").to_string())
        }
        "toTypeScriptType" => Value::String(match arg(0) {
            Value::Object(m) => m.get("type").map(print).unwrap_or_else(|| "any".into()),
            other => print(&other),
        }),
        other => return Err(err(format!("function {other:?} not defined"))),
    })
}

/// Runs a parsed template, within the crate's bounds on steps and output.
pub struct Exec {
    /// Variables in scope, innermost last; `$` is the root.
    vars: Vec<(String, Value)>,
    pub out: String,
    /// Steps left.
    fuel: u64,
}

impl Exec {
    pub fn new(root: &Value) -> Self {
        Exec { vars: vec![("$".into(), root.clone())], out: String::new(), fuel: crate::FUEL }
    }

    /// Takes one step: an error once the steps are spent or the output is too long.
    fn tick(&mut self) -> Result<(), TemplateError> {
        self.fuel = self.fuel.checked_sub(1).ok_or_else(crate::out_of_fuel)?;
        if self.out.len() > crate::MAX_OUTPUT {
            return Err(crate::too_long());
        }
        Ok(())
    }

    fn var(&self, name: &str) -> Result<Value, TemplateError> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| err(format!("undefined variable: {name}")))
    }

    fn arg(&mut self, a: &Arg, dot: &Value) -> Result<Value, TemplateError> {
        Ok(match a {
            Arg::Field(f) => walk_fields(dot.clone(), f),
            Arg::Var(name, f) => walk_fields(self.var(name)?, f),
            Arg::Str(s) => Value::String(s.clone()),
            Arg::Num(n) => serde_json::Number::from_f64(*n).map(Value::Number).unwrap_or(Value::Null),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Nil => Value::Null,
            Arg::Ident(name) => call(name, vec![])?,
            Arg::Sub(p, f) => walk_fields(self.pipe(p, dot)?, f),
        })
    }

    /// Evaluates a pipeline; declarations and assignments bind variables.
    pub fn pipe(&mut self, p: &Pipe, dot: &Value) -> Result<Value, TemplateError> {
        let mut piped: Option<Value> = None;
        for cmd in &p.cmds {
            let value = match cmd.first() {
                Some(Arg::Ident(name)) => {
                    let mut args = Vec::with_capacity(cmd.len());
                    for a in &cmd[1..] {
                        args.push(self.arg(a, dot)?);
                    }
                    args.extend(piped.take());
                    call(name, args)?
                }
                Some(a) if cmd.len() == 1 => self.arg(a, dot)?,
                Some(_) => return Err(err("can't give arguments to a non-function")),
                None => Value::Null,
            };
            piped = Some(value);
        }
        let value = piped.unwrap_or(Value::Null);
        if p.declare {
            for v in &p.vars {
                self.vars.push((v.clone(), value.clone()));
            }
        } else if let Some(name) = p.vars.first() {
            let slot = self
                .vars
                .iter_mut()
                .rev()
                .find(|(n, _)| n == name)
                .ok_or_else(|| err(format!("undefined variable: {name}")))?;
            slot.1 = value.clone();
        }
        Ok(value)
    }

    pub fn nodes(&mut self, nodes: &[Node], dot: &Value) -> Result<(), TemplateError> {
        for n in nodes {
            self.node(n, dot)?;
        }
        Ok(())
    }

    fn scoped(&mut self, nodes: &[Node], dot: &Value) -> Result<(), TemplateError> {
        let depth = self.vars.len();
        let r = self.nodes(nodes, dot);
        self.vars.truncate(depth);
        r
    }

    fn node(&mut self, n: &Node, dot: &Value) -> Result<(), TemplateError> {
        self.tick()?;
        match n {
            Node::Text(t) => self.out.push_str(t),
            Node::Action(p) => {
                let v = self.pipe(p, dot)?;
                if p.vars.is_empty() {
                    self.out.push_str(&print(&v));
                }
            }
            Node::If { branches, otherwise } => {
                let depth = self.vars.len();
                for (cond, body) in branches {
                    if truthy(&self.pipe(cond, dot)?) {
                        let r = self.scoped(body, dot);
                        self.vars.truncate(depth);
                        return r;
                    }
                }
                if let Some(body) = otherwise {
                    self.scoped(body, dot)?;
                }
                self.vars.truncate(depth);
            }
            Node::With { pipe, body, otherwise } => {
                let depth = self.vars.len();
                let v = self.pipe(pipe, dot)?;
                if truthy(&v) {
                    self.scoped(body, &v)?;
                } else if let Some(e) = otherwise {
                    self.scoped(e, dot)?;
                }
                self.vars.truncate(depth);
            }
            Node::Range { pipe, body, otherwise } => {
                let depth = self.vars.len();
                let value = self.pipe(&Pipe { vars: vec![], declare: false, cmds: pipe.cmds.clone() }, dot)?;
                // Items are made one at a time: `range N` must not allocate N of them first.
                let items: Box<dyn Iterator<Item = (Value, Value)>> = match value {
                    Value::Array(a) => Box::new(a.into_iter().enumerate().map(|(i, v)| (Value::from(i), v))),
                    Value::Object(m) => {
                        let mut keys: Vec<(String, Value)> = m.into_iter().collect();
                        keys.sort_by(|a, b| a.0.cmp(&b.0));
                        Box::new(keys.into_iter().map(|(k, v)| (Value::String(k), v)))
                    }
                    Value::Null => Box::new(std::iter::empty()),
                    Value::Number(n) => {
                        // Number literals parse as floats; a whole one counts (Go ranges over ints).
                        let whole = n.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0).map(|f| f as u64);
                        let count = n.as_u64().or(whole).unwrap_or(0);
                        Box::new((0..count).map(|i| (Value::from(i), Value::from(i))))
                    }
                    other => return Err(err(format!("range can't iterate over {other}"))),
                };
                let mut empty = true;
                for (k, v) in items {
                    empty = false;
                    self.tick()?;
                    let inner = self.vars.len();
                    match pipe.vars.as_slice() {
                        [] => {}
                        [e] => self.vars.push((e.clone(), v.clone())),
                        [i, e, ..] => {
                            self.vars.push((i.clone(), k));
                            self.vars.push((e.clone(), v.clone()));
                        }
                    }
                    self.scoped(body, &v)?;
                    self.vars.truncate(inner);
                }
                if empty {
                    if let Some(e) = otherwise {
                        self.scoped(e, dot)?;
                    }
                }
                self.vars.truncate(depth);
            }
        }
        Ok(())
    }
}

/// Builds a map from pairs (for template data).
pub fn data(pairs: Vec<(&str, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<String, Value>>())
}

#[cfg(test)]
mod tests {
    #[test]
    fn snake_case() {
        assert_eq!(super::snake("ToolCallID"), "tool_call_id");
        assert_eq!(super::snake("ToolCalls"), "tool_calls");
        assert_eq!(super::snake("Role"), "role");
    }
}
