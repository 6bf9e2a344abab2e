//! Byte sizes on the command line: `4GiB`, `256KiB`, `1.5GiB`, `500MB`, `1048576`.

/// Parses a size: a number (decimals allowed) and an optional unit. `KiB`/`MiB`/`GiB`/`TiB`
/// and the short `K`/`M`/`G`/`T` are powers of 1024; `KB`/`MB`/`GB`/`TB` are powers of 1000.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} does not start with a number"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("size {s:?} out of range"));
    }
    if bytes.fract() != 0.0 {
        return Err(format!("size {s:?} is not a whole number of bytes"));
    }
    Ok(bytes as u64)
}

/// `4294967296` -> `4 GiB`, `262144` -> `256 KiB`, `1000` -> `1000 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (mult, name) in UNITS {
        if bytes >= mult && bytes.is_multiple_of(mult) {
            return format!("{} {name}", bytes / mult);
        }
    }
    for (mult, name) in UNITS {
        if bytes >= mult {
            return format!("{:.2} {name}", bytes as f64 / mult as f64);
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_and_decimal_units() {
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("256KiB"), Ok(256 << 10));
        assert_eq!(parse_size("256 MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("2m"), Ok(2 << 20));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("12345"), Ok(12345));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "GiB", "4XB", "1.5", "-1GiB", "1e400", "0.1B"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn formats_round_sizes_exactly() {
        assert_eq!(format_size(4 << 30), "4 GiB");
        assert_eq!(format_size(256 << 10), "256 KiB");
        assert_eq!(format_size(1000), "1000 B");
        assert_eq!(format_size((1 << 30) + (1 << 29) + 1), "1.50 GiB");
    }
}
