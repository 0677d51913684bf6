//! How the CLI prints: aligned tables for people, JSON for programs, chosen by `--format`.

use clap::{Args, ValueEnum};
use serde::Serialize;

/// Output format of listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON for programs.
    Json,
}

/// `--format` for listings.
#[derive(Debug, Args)]
pub struct FormatArg {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
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
    }
}
