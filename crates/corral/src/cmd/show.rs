//! `corral show`.

use anyhow::bail;
use corral_client::Client;
use corral_types::api::{ShowRequest, ShowResponse};
use corral_types::format::{go_float, human_number};
use serde_json::Value;

use crate::table;

#[derive(clap::Args)]
pub struct Args {
    /// Name of the model
    model: String,
    /// Show license of a model
    #[arg(long)]
    license: bool,
    /// Show Modelfile of a model
    #[arg(long)]
    modelfile: bool,
    /// Show parameters of a model
    #[arg(long)]
    parameters: bool,
    /// Show template of a model
    #[arg(long)]
    template: bool,
    /// Show system message of a model
    #[arg(long)]
    system: bool,
    /// Show detailed model information
    #[arg(short, long)]
    verbose: bool,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let selected = [args.license, args.modelfile, args.parameters, args.system, args.template];
    if selected.iter().filter(|b| **b).count() > 1 {
        bail!("only one of '--license', '--modelfile', '--parameters', '--system', or '--template' can be specified");
    }
    let req = ShowRequest { model: args.model.clone(), verbose: args.verbose, ..Default::default() };
    let resp = client.show(&req).await?;
    let field = |value: &str, empty: &str| println!("{}", if value.is_empty() { empty } else { value });
    if args.license {
        field(&resp.license, "No license was specified for this model.");
    } else if args.modelfile {
        println!("{}", resp.modelfile);
    } else if args.parameters {
        field(&resp.parameters, "No parameters were specified for this model.");
    } else if args.system {
        field(&resp.system, "No system message was specified for this model.");
    } else if args.template {
        field(&resp.template, "No prompt template was specified for this model.");
    } else {
        print!("{}", info(&resp, args.verbose));
    }
    Ok(())
}

fn section(out: &mut String, title: &str, rows: Vec<Vec<String>>) {
    out.push_str(&format!("  {title}\n"));
    out.push_str(&table::render(&rows));
    out.push('\n');
}

fn row(cells: &[&str]) -> Vec<String> {
    std::iter::once(String::new()).chain(cells.iter().map(|s| s.to_string())).collect()
}

/// The first `n` non-empty lines, then `...` if there were more.
fn head(text: &str, n: usize) -> Vec<Vec<String>> {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let mut rows: Vec<Vec<String>> = lines.iter().take(n).map(|l| row(&[l])).collect();
    if lines.len() > n {
        rows.push(row(&["..."]));
    }
    rows
}

/// A metadata value in a column: arrays cut to about ten characters, as Ollama does.
fn metadata_value(v: &Value) -> String {
    let scalar = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => go_float(n.as_f64().unwrap_or_default()),
        other => other.to_string(),
    };
    match v {
        Value::Array(items) => {
            let mut width = 1;
            let mut shown = 0;
            for (i, item) in items.iter().enumerate() {
                let w = scalar(item).chars().count() + if i > 0 { 2 } else { 0 };
                if width + w > 10 && i > 0 {
                    break;
                }
                width += w;
                shown += 1;
            }
            let head: Vec<String> = items[..shown].iter().map(scalar).collect();
            if shown < items.len() {
                format!("[{} ...+{} more]", head.join(" "), items.len() - shown)
            } else {
                format!("[{}]", head.join(" "))
            }
        }
        other => scalar(other),
    }
}

/// The default `show` view: Model, Capabilities, Parameters, (Metadata, Tensors), System, License.
pub fn info(resp: &ShowResponse, verbose: bool) -> String {
    let mut out = String::new();
    let mut model = Vec::new();
    let arch = resp.model_info.get("general.architecture").and_then(Value::as_str);
    match arch {
        Some(arch) => {
            model.push(row(&["architecture", arch]));
            let params = if resp.details.parameter_size.is_empty() {
                resp.model_info
                    .get("general.parameter_count")
                    .and_then(Value::as_u64)
                    .map(human_number)
                    .unwrap_or_default()
            } else {
                resp.details.parameter_size.clone()
            };
            model.push(row(&["parameters", &params]));
            for (key, label) in [("context_length", "context length"), ("embedding_length", "embedding length")] {
                if let Some(n) = resp.model_info.get(&format!("{arch}.{key}")).and_then(Value::as_f64) {
                    model.push(row(&[label, &go_float(n)]));
                }
            }
        }
        None => {
            model.push(row(&["architecture", &resp.details.family]));
            model.push(row(&["parameters", &resp.details.parameter_size]));
        }
    }
    model.push(row(&["quantization", &resp.details.quantization_level]));
    if !resp.requires.is_empty() {
        model.push(row(&["requires", &resp.requires]));
    }
    section(&mut out, "Model", model);

    if !resp.capabilities.is_empty() {
        section(&mut out, "Capabilities", resp.capabilities.iter().map(|c| row(&[c])).collect());
    }
    if let Some(arch) = resp.projector_info.get("general.architecture").and_then(Value::as_str) {
        let info = &resp.projector_info;
        let mut rows = vec![row(&["architecture", arch])];
        if let Some(n) = info.get("general.parameter_count").and_then(Value::as_u64) {
            rows.push(row(&["parameters", &human_number(n)]));
        }
        for (key, label) in [("vision.embedding_length", "embedding length"), ("vision.projection_dim", "dimensions")] {
            if let Some(n) = info.get(&format!("{arch}.{key}")).and_then(Value::as_f64) {
                rows.push(row(&[label, &go_float(n)]));
            }
        }
        section(&mut out, "Projector", rows);
    }
    if !resp.parameters.is_empty() {
        let rows = resp
            .parameters
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| std::iter::once(String::new()).chain(l.split_whitespace().map(String::from)).collect())
            .collect();
        section(&mut out, "Parameters", rows);
    }
    if verbose {
        let mut keys: Vec<&String> = resp.model_info.keys().collect();
        keys.sort();
        section(&mut out, "Metadata", keys.iter().map(|k| row(&[k, &metadata_value(&resp.model_info[*k])])).collect());
        if !resp.tensors.is_empty() {
            let rows = resp
                .tensors
                .iter()
                .map(|t| {
                    let shape: Vec<String> = t.shape.iter().map(u64::to_string).collect();
                    row(&[&t.name, &t.kind, &format!("[{}]", shape.join(" "))])
                })
                .collect();
            section(&mut out, "Tensors", rows);
        }
    }
    if !resp.system.is_empty() {
        section(&mut out, "System", head(&resp.system, 2));
    }
    if !resp.license.is_empty() {
        section(&mut out, "License", head(&resp.license, 2));
    }
    out
}
