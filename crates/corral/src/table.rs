//! Borderless, left-aligned tables with four-space padding, the way Ollama's `list`, `ps` and
//! `show` print them (every cell, the last included, is followed by the padding).

const PADDING: &str = "    ";

/// Renders rows (the first is the header, if any) as lines.
pub fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        for (c, width) in widths.iter().enumerate() {
            let cell = row.get(c).map(String::as_str).unwrap_or("");
            out.push_str(cell);
            out.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            out.push_str(PADDING);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn pads_every_column() {
        let rows = vec![vec!["NAME".into(), "ID".into()], vec!["a:latest".into(), "0123".into()]];
        assert_eq!(super::render(&rows), "NAME        ID      \na:latest    0123    \n");
    }
}
