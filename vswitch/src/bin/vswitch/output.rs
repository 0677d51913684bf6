//! How the CLI prints: aligned tables for people, JSON for programs, or a Go template per
//! item (as Docker's `--format`), chosen by `--format`.

use clap::Args;
use serde::Serialize;

use crate::template::GoTemplate;

/// Output format of listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON for programs.
    Json,
    /// A Go template, rendered for each item (a line each).
    Template(GoTemplate),
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Format, String> {
        match text {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            t if t.contains("{{") => GoTemplate::parse(t).map(Format::Template),
            other => Err(format!(
                "unknown format {other:?}: table, json, or a Go template such as '{{{{.Name}}}}'"
            )),
        }
    }
}

/// `--format` for listings.
#[derive(Debug, Args)]
pub struct FormatArg {
    /// Output format: table, json, or a Go template applied to each item, e.g. '{{.Name}}'
    /// (keys as in the JSON, or in Docker's CamelCase: .Name, .ID, .RxPackets; `{{json .}}`)
    #[arg(long, default_value = "table", value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<Format>()))]
    pub format: Format,
}

/// Prints `value` through `template`, a line; an error (a field it cannot render) on stderr.
fn print_template(template: &GoTemplate, value: &impl Serialize) {
    match template.render(value) {
        Ok(text) => println!("{text}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

/// Prints rows as aligned columns under `header`.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", table(header, rows));
}

/// Rows as aligned columns under `header`, a line each.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Prints `items` as JSON, or as a table of `header` with one `row` per item.
pub fn print_listing<T: Serialize>(
    format: Format,
    items: &[T],
    header: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) {
    match format {
        Format::Json => print_json(&items),
        Format::Table => print_table(header, &items.iter().map(row).collect::<Vec<_>>()),
        Format::Template(template) => items.iter().for_each(|i| print_template(&template, i)),
    }
}

/// Prints one value as indented JSON.
pub fn print_json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}

/// Prints one value as JSON, or runs `table` to print it for people.
pub fn print_one<T: Serialize>(format: Format, value: &T, table: impl FnOnce(&T)) {
    match format {
        Format::Json => print_json(value),
        Format::Table => table(value),
        Format::Template(template) => print_template(&template, value),
    }
}
