//! Plain-text reports for people: the `status` table and the `sockets`
//! host report. Scripts get JSON instead.

pub mod sockets;
pub mod status;

use std::fmt::Write as _;

/// Rows as left-aligned columns two spaces apart, without trailing blanks.
fn columns<R: AsRef<[String]>>(rows: &[R]) -> String {
    let width = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..width)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.as_ref().get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .as_ref()
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align_on_the_widest_cell_by_characters() {
        let rows = vec![
            vec!["A".to_string(), "µs".into(), "x".into()],
            vec!["long".to_string(), "1".into(), "".into()],
        ];
        assert_eq!(super::columns(&rows), "A     µs  x\nlong  1\n");
    }
}
