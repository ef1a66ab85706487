//! The README's tables, as the docs tests read them: the first column of
//! the table under a heading, each cell's first code span.

use std::path::PathBuf;

/// The README at the workspace's root.
pub fn text() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The first code span of the first cell of each row of the first table
/// after the heading `heading` (`## Layout`), header and rule excluded.
pub fn first_column(readme: &str, heading: &str) -> Vec<String> {
    let after = readme
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no {heading:?} heading in the README"))
        .1;
    after
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .filter_map(|row| {
            let cell = row.trim_start_matches('|').split('|').next()?;
            Some(cell.split('`').nth(1)?.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_column_is_read_under_its_heading_only() {
        let text = "# x\n| a | b |\n|---|---|\n| `no` | x |\n\n## Here\n\nSome text.\n\n| path | what |\n|---|---|\n| `one/` | x |\n| `two` and more | y |\n\nafter\n| `three` | z |\n";
        assert_eq!(first_column(text, "## Here"), ["one/", "two"]);
    }
}

/// The metric names `/metrics` exposes (OpenMetrics text), as PromQL names
/// them: a counter `x` as `x_total`, everything else by its `# TYPE` name.
pub fn exposed_metrics(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let (name, kind) = rest.split_once(' ')?;
            Some(match kind.trim() {
                "counter" => format!("{name}_total"),
                _ => name.to_owned(),
            })
        })
        .collect()
}

/// Whether the README's metric `pattern` (`imagestreams_<service>_…`)
/// names `metric`.
pub fn names(pattern: &str, metric: &str) -> bool {
    match pattern.split_once("<service>") {
        None => pattern == metric,
        Some((before, after)) => metric
            .strip_prefix(before)
            .and_then(|rest| rest.strip_suffix(after))
            .is_some_and(|service| !service.is_empty() && !service.contains("__")),
    }
}

/// The README's metrics table (`### Metrics`) against the metrics a
/// process has: those `/metrics` exposes (`metrics_text`) and those
/// registered, with or without samples yet. Returns the metrics no row
/// names, and the rows that name nothing registered; both empty when they
/// agree.
pub fn undocumented_and_missing(
    metrics_text: &str,
    registered: &[String],
) -> (Vec<String>, Vec<String>) {
    let documented = first_column(&text(), "### Metrics");
    let mut all = exposed_metrics(metrics_text);
    all.extend(registered.iter().cloned());
    let missing = documented
        .iter()
        .filter(|pattern| !all.iter().any(|m| names(pattern, m)))
        .cloned()
        .collect();
    let undocumented = all
        .iter()
        .filter(|m| m.starts_with("imagestreams_"))
        .filter(|m| !documented.iter().any(|pattern| names(pattern, m)))
        .cloned()
        .collect();
    (undocumented, missing)
}

#[cfg(test)]
mod metric_tests {
    use super::*;

    #[test]
    fn openmetrics_names_read_as_promql_names_them() {
        let text = "# HELP a_b x\n# TYPE a_b counter\na_b_total 1\n# TYPE c_seconds histogram\n# TYPE d gauge\n# EOF\n";
        let names: Vec<String> = exposed_metrics(text).into_iter().collect();
        assert_eq!(names, ["a_b_total", "c_seconds", "d"]);
        assert!(super::names(
            "imagestreams_<service>_consumer_lag",
            "imagestreams_trigger_consumer_lag"
        ));
        assert!(!super::names(
            "imagestreams_<service>_consumer_lag",
            "imagestreams__consumer_lag"
        ));
        assert!(!super::names(
            "imagestreams_x_total",
            "imagestreams_y_total"
        ));
    }
}
