//! Backup export: both databases of a tenant, restored from the bucket (so
//! the node's cache plays no part), in a zip like PocketBase's backups
//! (`data.db`, `auxiliary.db` at the top level), stored uncompressed.

/// A zip archive of `(name, bytes)` entries, method "stored". `None` if an
/// entry or the archive exceeds zip32's 4 GiB limits.
pub fn zip_stored(entries: &[(&str, Vec<u8>)]) -> Option<Vec<u8>> {
    // 1980-01-01 00:00 in DOS format: the entries carry no meaningful time.
    const DOS_DATE: u16 = (1 << 5) | 1;
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = u32::try_from(out.len()).ok()?;
        let size = u32::try_from(data.len()).ok()?;
        let crc = crc32fast::hash(data);
        let name_len = u16::try_from(name.len()).ok()?;
        // Local file header.
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        for v in [20u16, 0, 0, 0, DOS_DATE] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, size, size] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        // Central directory entry.
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        for v in [20u16, 20, 0, 0, 0, DOS_DATE] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, size, size] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [name_len, 0, 0, 0, 0] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        central.extend_from_slice(&0u32.to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = u32::try_from(out.len()).ok()?;
    let cd_size = u32::try_from(central.len()).ok()?;
    let n = u16::try_from(entries.len()).ok()?;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, n, n] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    u32::try_from(out.len()).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn zip_layout() {
        let z = super::zip_stored(&[("a.txt", b"hello".to_vec()), ("b", vec![])]).unwrap();
        assert_eq!(&z[..4], b"PK\x03\x04");
        assert_eq!(
            u32::from_le_bytes(z[14..18].try_into().unwrap()),
            crc32fast::hash(b"hello")
        );
        assert_eq!(&z[30..35], b"a.txt");
        assert_eq!(&z[35..40], b"hello");
        let eocd = z.len() - 22;
        assert_eq!(&z[eocd..eocd + 4], b"PK\x05\x06");
        assert_eq!(u16::from_le_bytes([z[eocd + 10], z[eocd + 11]]), 2);
    }
}
