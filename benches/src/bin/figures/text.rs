//! Reading numbers out of the text lines of tools that have no machine-readable output.

/// The first number at the start of `s` (after spaces), and the word after it.
pub(crate) fn leading_number(s: &str) -> Option<(f64, &str)> {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(s.len());
    let value = s[..end].parse().ok()?;
    let unit = s[end..].split_whitespace().next().unwrap_or("");
    Some((value, unit))
}

/// The number right after `marker` in `line`.
pub(crate) fn after(line: &str, marker: &str) -> Option<f64> {
    let at = line.find(marker)? + marker.len();
    leading_number(&line[at..]).map(|(v, _)| v)
}

/// A duration right after `marker` ("1.23 s", "45.6 ms", "120 us"), in seconds.
pub(crate) fn seconds_after(line: &str, marker: &str) -> Option<f64> {
    let at = line.find(marker)? + marker.len();
    let (v, unit) = leading_number(&line[at..])?;
    let unit = unit.trim_end_matches([',', ';', ')']);
    Some(match unit {
        "s" => v,
        "ms" => v / 1e3,
        "us" | "µs" => v / 1e6,
        _ => return None,
    })
}

/// A rate right after `marker` as the recovery example prints it ("1.24 M/s", "817 k/s").
pub(crate) fn rate_after(line: &str, marker: &str) -> Option<f64> {
    let at = line.find(marker)? + marker.len();
    let (v, unit) = leading_number(&line[at..])?;
    Some(match unit.trim_end_matches([',', ';', ')']) {
        "M/s" => v * 1e6,
        "k/s" => v * 1e3,
        _ => return None,
    })
}

/// A duration right after `marker` as the tool wrote it ("0.08 s", "11.8 ms"): its precision
/// is the tool's, so it is quoted rather than converted.
pub(crate) fn duration_after(line: &str, marker: &str) -> Option<String> {
    seconds_after(line, marker)?;
    let at = line.find(marker)? + marker.len();
    let (value, unit) = leading_number(&line[at..])?;
    let written = line[at..].split_whitespace().next()?;
    let unit = match unit.trim_end_matches([',', ';', ')']) {
        "us" => "µs",
        u => u,
    };
    debug_assert!(written.parse::<f64>().ok() == Some(value));
    Some(format!("{written} {unit}"))
}

/// The one line of `output` that starts with `prefix`.
pub(crate) fn line<'a>(output: &'a str, prefix: &str) -> Result<&'a str, String> {
    output
        .lines()
        .find(|l| l.starts_with(prefix))
        .ok_or_else(|| format!("no line starting with {prefix:?} in the output"))
}

pub(crate) fn need<T>(value: Option<T>, what: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("could not read {what} from the output"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_durations_and_rates() {
        let l = "replay: open with integrity check 0.43 s; Engine::recover (decode on a second thread) 8.05 s (1.24 M/s); open + recover 8.48 s, rss 1400.0 MiB";
        assert_eq!(seconds_after(l, "integrity check "), Some(0.43));
        assert_eq!(seconds_after(l, "(decode on a second thread) "), Some(8.05));
        let at = l.find("second thread) ").expect("marker");
        assert_eq!(rate_after(&l[at..], " s ("), Some(1.24e6));
        assert_eq!(rate_after("x 817 k/s)", "x "), Some(817e3));
        assert_eq!(
            seconds_after("locked for 48.0 ms);", "locked for "),
            Some(0.048)
        );
    }
}
