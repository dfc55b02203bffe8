//! Which partition of an internal topic holds a key (a group id, later a transactional id):
//! Kafka's rule, `Utils.abs(key.hashCode) % partitions`, with Java's `String.hashCode`.

/// Java's `String.hashCode` over UTF-16 code units.
pub fn java_string_hashcode(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// Kafka's `Utils.abs(key.hashCode) % partitionCount` (`Utils.abs` maps `i32::MIN` to 0).
pub fn partition_for(key: &str, num_partitions: i32) -> i32 {
    let h = java_string_hashcode(key);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % num_partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashcode_matches_java() {
        // Values of java.lang.String#hashCode.
        assert_eq!(java_string_hashcode(""), 0);
        assert_eq!(java_string_hashcode("a"), 97);
        assert_eq!(java_string_hashcode("hello"), 99_162_322);
        assert_eq!(java_string_hashcode("console-consumer-12345"), 158_455_506);
        assert_eq!(java_string_hashcode("my-group"), -1_906_497_762);
        assert_eq!(partition_for("my-group", 50), 12);
        // The well-known string whose hashCode is Integer.MIN_VALUE: Utils.abs gives 0.
        assert_eq!(java_string_hashcode("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // Characters outside the BMP count as two UTF-16 units, as in Java.
        assert_eq!(java_string_hashcode("\u{1F600}"), 0xD83D * 31 + 0xDE00);
    }
}
