//! Elastic tabstops as Go's `text/tabwriter` computes them, so tables align
//! like `oc get` and descriptions like `oc describe`.
//!
//! Text is written with cells ended by `\t` and lines ended by `\n`. A column
//! block is a run of consecutive lines that all have a tab-terminated cell in
//! that column; every cell of a block is padded to the block's widest cell
//! plus the padding. The last cell of a line is never padded.

use std::fmt;

/// A buffer that aligns tab-separated cells when finished.
#[derive(Debug, Clone)]
pub struct TabWriter {
    min_width: usize,
    tab_width: usize,
    padding: usize,
    pad_with_tabs: bool,
    buf: String,
}

impl TabWriter {
    /// `kubectl`'s table settings: cells padded with spaces, at least 3
    /// between columns (Go's `NewWriter(out, 6, 4, 3, ' ', 0)`).
    pub fn table() -> Self {
        Self {
            min_width: 6,
            tab_width: 4,
            padding: 3,
            pad_with_tabs: false,
            buf: String::new(),
        }
    }

    /// `oc describe`'s settings: cells padded with tabs to 8-column stops
    /// (Go's `Init(out, 0, 8, 1, '\t', 0)`).
    pub fn describe() -> Self {
        Self {
            min_width: 0,
            tab_width: 8,
            padding: 1,
            pad_with_tabs: true,
            buf: String::new(),
        }
    }

    /// Appends one row: `cells` joined by tabs, then a newline.
    pub fn row<S: AsRef<str>>(&mut self, cells: &[S]) {
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                self.buf.push('\t');
            }
            self.buf.push_str(cell.as_ref());
        }
        self.buf.push('\n');
    }

    /// The aligned text.
    pub fn finish(self) -> String {
        let lines: Vec<Vec<&str>> = self
            .buf
            .split('\n')
            .map(|line| line.split('\t').collect())
            .collect();
        let mut out = String::with_capacity(self.buf.len() * 2);
        let mut widths = Vec::new();
        self.format(&lines, &mut widths, 0, lines.len(), &mut out);
        out
    }

    /// Go's `Writer.format`: finds the column blocks of column `widths.len()`
    /// within `lines[line0..line1]`, recursing into the next column per block.
    fn format(
        &self,
        lines: &[Vec<&str>],
        widths: &mut Vec<usize>,
        mut line0: usize,
        line1: usize,
        out: &mut String,
    ) {
        let column = widths.len();
        let mut this = line0;
        while this < line1 {
            if column + 1 >= lines[this].len() {
                this += 1;
                continue;
            }
            self.write_lines(lines, widths, line0, this, out);
            line0 = this;
            let mut width = self.min_width;
            while this < line1 && column + 1 < lines[this].len() {
                width = width.max(text_width(lines[this][column]) + self.padding);
                this += 1;
            }
            widths.push(width);
            self.format(lines, widths, line0, this, out);
            widths.pop();
            line0 = this;
        }
        self.write_lines(lines, widths, line0, line1, out);
    }

    fn write_lines(
        &self,
        lines: &[Vec<&str>],
        widths: &[usize],
        line0: usize,
        line1: usize,
        out: &mut String,
    ) {
        for (i, line) in lines.iter().enumerate().take(line1).skip(line0) {
            for (j, cell) in line.iter().enumerate() {
                out.push_str(cell);
                if let Some(&width) = widths.get(j) {
                    self.pad(text_width(cell), width, out);
                }
            }
            // The text after the last newline is a line without one.
            if i + 1 < lines.len() {
                out.push('\n');
            }
        }
    }

    fn pad(&self, text_width: usize, cell_width: usize, out: &mut String) {
        if self.pad_with_tabs {
            let cell_width = cell_width.div_ceil(self.tab_width) * self.tab_width;
            let n = cell_width.saturating_sub(text_width);
            out.extend(std::iter::repeat_n('\t', n.div_ceil(self.tab_width)));
        } else {
            out.extend(std::iter::repeat_n(
                ' ',
                cell_width.saturating_sub(text_width),
            ));
        }
    }
}

impl fmt::Write for TabWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.buf.push_str(s);
        Ok(())
    }
}

fn text_width(cell: &str) -> usize {
    cell.chars().count()
}

/// A list as `get` prints it: `header` and `rows` as a table on `out`, or,
/// with no rows, kubectl's "No resources found in NS namespace." (without a
/// namespace, "No resources found") on `err`, and nothing on `out`.
pub fn print_list<S: AsRef<str>>(
    out: &mut impl std::io::Write,
    err: &mut impl std::io::Write,
    namespace: Option<&str>,
    header: &[&str],
    rows: &[Vec<S>],
) -> std::io::Result<()> {
    if rows.is_empty() {
        return match namespace {
            Some(ns) => writeln!(err, "No resources found in {ns} namespace."),
            None => writeln!(err, "No resources found"),
        };
    }
    let mut table = TabWriter::table();
    table.row(header);
    for row in rows {
        table.row(row);
    }
    write!(out, "{}", table.finish())
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    #[test]
    fn table_pads_every_column_but_the_last() {
        let mut t = TabWriter::table();
        t.row(&["NAME", "IMAGE REPOSITORY", "TAGS"]);
        t.row(&["ruby", "openshift/ruby-20-centos7", "latest,v0.4"]);
        t.row(&["a", "", ""]);
        assert_eq!(
            t.finish(),
            "NAME   IMAGE REPOSITORY            TAGS\n\
             ruby   openshift/ruby-20-centos7   latest,v0.4\n\
             a                                  \n"
        );
    }

    #[test]
    fn describe_pads_with_tabs_per_block() {
        let mut t = TabWriter::describe();
        write!(
            t,
            "Name:\truby\nImage Repository:\tx\n\nlatest\n  * ref\n      3 minutes ago\tsha256:1\n"
        )
        .unwrap();
        assert_eq!(
            t.finish(),
            "Name:\t\t\truby\nImage Repository:\tx\n\nlatest\n  * ref\n      3 minutes ago\tsha256:1\n"
        );
    }

    #[test]
    fn continuation_lines_with_an_empty_first_cell_align() {
        let mut t = TabWriter::describe();
        write!(t, "Labels:\t<none>\nAnnotations:\ta=1\n\tb=2\n").unwrap();
        assert_eq!(
            t.finish(),
            "Labels:\t\t<none>\nAnnotations:\ta=1\n\t\tb=2\n"
        );
    }
}
