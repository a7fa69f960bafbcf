//! The name an upload is stored under, as PocketBase makes it: the
//! original name's stem in snake case (ASCII word characters only, at most
//! 100 bytes, a random part added below 3), `_`, ten random characters of
//! `[a-z0-9]`, and the original extension (a double one such as `.tar.gz`
//! kept, characters outside `[A-Za-z0-9_.*+=#-]` dropped, at most 20 bytes)
//! or, without one, the extension of the type detected from the bytes.
//!
//! `My Photo.JPG` → `my_photo_k3j9x0p2qa.JPG`; `日本語.txt` →
//! `ab12cd34ef_0k2j4h6g8f.txt`.

use rand::Rng;

/// `[a-z0-9]` characters, `n` of them.
pub fn random_part(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The stored name of an upload called `original` whose bytes look like a
/// file with extension `detected` (with its dot, or empty).
pub fn stored_name(original: &str, detected: &str) -> String {
    // A path's last segment only.
    let original = original.rsplit(['/', '\\']).next().unwrap_or(original);
    let original_ext = extension(original);
    let cleaned: String = original_ext
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_.*-+=#".contains(*c))
        .collect();
    let trimmed = cleaned.trim_matches('.');
    let mut ext = if trimmed.is_empty() {
        detected.to_string()
    } else {
        format!(".{trimmed}")
    };
    if ext.len() > 20 {
        // ASCII only after the filter above.
        ext = format!(".{}", &ext[ext.len() - 20..]);
    }
    let stem = original.strip_suffix(original_ext).unwrap_or(original);
    let mut name = snake_case(stem);
    if name.len() < 3 {
        name.push_str(&random_part(10));
    } else if name.len() > 100 {
        name.truncate(100);
    }
    format!("{name}_{}{ext}", random_part(10))
}

/// The extension with its dot, a double one included (`.tar.gz`); empty
/// without a dot.
fn extension(name: &str) -> &str {
    let Some(primary) = name.rfind('.') else {
        return "";
    };
    match name[..primary].rfind('.') {
        Some(secondary) => &name[secondary..],
        None => &name[primary..],
    }
}

/// PocketBase's `inflector.Snakecase`: words split at anything that is not
/// an ASCII letter or digit, joined by `_`, an upper-case letter after a
/// lower-case one starting a new word, all lower case.
fn snake_case(s: &str) -> String {
    let mut out = String::new();
    for word in s
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push('_');
        }
        let bytes = word.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            if b.is_ascii_uppercase() && i > 0 && !bytes[i - 1].is_ascii_uppercase() {
                out.push('_');
            }
            out.push(b.to_ascii_lowercase() as char);
        }
    }
    out
}

/// Whether `name` may be a stored file's name: one path segment, no
/// traversal, as [`stored_name`] makes them.
pub fn is_safe(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.starts_with("thumbs_")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name without its random part (`_` + 10 characters before the
    /// extension).
    fn shape(stored: &str, ext: &str) -> String {
        let stem = stored.strip_suffix(ext).unwrap();
        let (base, random) = stem.split_at(stem.len() - 11);
        assert!(random.starts_with('_'), "{stored}");
        assert!(
            random[1..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "{stored}"
        );
        base.to_string()
    }

    #[test]
    fn names_follow_pocketbase() {
        assert_eq!(shape(&stored_name("My Photo.JPG", ""), ".JPG"), "my_photo");
        assert_eq!(
            shape(&stored_name("myTestDB.png", ""), ".png"),
            "my_test_db"
        );
        assert_eq!(
            shape(&stored_name("weird name!!.tar.gz", ""), ".tar.gz"),
            "weird_name"
        );
        assert_eq!(shape(&stored_name("a.b.c.txt", ""), ".c.txt"), "a_b");
        // No extension: the detected one.
        assert_eq!(shape(&stored_name("report", ".pdf"), ".pdf"), "report");
        // Too short, or nothing left: a random part is added.
        let short = shape(&stored_name("x", ""), "");
        assert!(short.starts_with('x') && short.len() == 11, "{short}");
        let cjk = shape(&stored_name("日本語.txt", ""), ".txt");
        assert_eq!(cjk.len(), 10, "{cjk}");
        let long = "n".repeat(150);
        assert_eq!(
            shape(&stored_name(&format!("{long}.md"), ""), ".md").len(),
            100
        );
        // An extension's odd characters are dropped, and it is cut to 20.
        assert!(stored_name("a.p$n g", "").ends_with(".png"));
        assert!(stored_name("dir/sub\\photo.png", "").starts_with("photo_"));
        assert!(stored_name("data.", ".txt").ends_with(".txt"));
        let ext = format!(".{}", "e".repeat(30));
        assert!(stored_name(&format!("file{ext}"), "").ends_with(&format!(".{}", "e".repeat(20))));
    }

    #[test]
    fn unsafe_names_are_refused() {
        for bad in ["", ".", "..", "a/b", "..\\x", "thumbs_a.png", "a\0b"] {
            assert!(!is_safe(bad), "{bad:?}");
        }
        assert!(is_safe("my_photo_k3j9x0p2qa.JPG"));
    }
}
