//! Numbers for people: parameter counts, tokens and FLOPs as `1.33M`, and
//! exact counts with thousands separators. One place, so `plan`, `show` and
//! the report print the same quantity the same way.

/// 85_056_000 → "85.06M"; 1_334_976 → "1.33M"; 50_112 → "50.1k".
pub fn si(v: f64) -> String {
    match v.abs() {
        a if a >= 1e12 => format!("{:.2}T", v / 1e12),
        a if a >= 1e9 => format!("{:.2}G", v / 1e9),
        a if a >= 1e6 => format!("{:.2}M", v / 1e6),
        a if a >= 1e3 => format!("{:.1}k", v / 1e3),
        _ => format!("{v:.0}"),
    }
}

/// `1536` → `1.5 KiB`: sizes of artifacts and transfers.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_people_write_them() {
        assert_eq!(si(1_334_976.0), "1.33M");
        assert_eq!(si(85_056_000.0), "85.06M");
        assert_eq!(si(50_112.0), "50.1k");
        assert_eq!(si(32e9), "32.00G");
        assert_eq!(si(0.0), "0");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(85_056_000), "85,056,000");
        assert_eq!(thousands(-1234), "-1,234");
    }
}
