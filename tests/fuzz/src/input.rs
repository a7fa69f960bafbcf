//! Reading a structured input out of the fuzzer's bytes: numbers and lines
//! taken from the front, zeros once the bytes run out, so every byte string
//! is a valid input and a short one a small case.

/// A cursor over a fuzz input.
pub struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input(data)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The next `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }

    pub fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    pub fn u16(&mut self) -> u16 {
        let mut b = [0u8; 2];
        let s = self.take(2);
        b[..s.len()].copy_from_slice(s);
        u16::from_le_bytes(b)
    }

    pub fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        let s = self.take(4);
        b[..s.len()].copy_from_slice(s);
        u32::from_le_bytes(b)
    }

    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let s = self.take(8);
        b[..s.len()].copy_from_slice(s);
        u64::from_le_bytes(b)
    }

    /// The bytes up to the next `\n` (consumed, not returned), or the rest.
    pub fn line(&mut self) -> &'a [u8] {
        match self.0.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let l = &self.0[..i];
                self.0 = &self.0[i + 1..];
                l
            }
            None => self.rest(),
        }
    }

    /// [`line`](Self::line) as text (invalid UTF-8 replaced).
    pub fn text(&mut self) -> String {
        String::from_utf8_lossy(self.line()).into_owned()
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Input;

    #[test]
    fn reads_and_runs_dry() {
        let mut i = Input::new(b"\x01\x02\x03ab\ncd");
        assert_eq!(i.u8(), 1);
        assert_eq!(i.u16(), 0x0302);
        assert_eq!(i.line(), b"ab");
        assert_eq!(i.text(), "cd");
        assert!(i.is_empty());
        assert_eq!((i.u8(), i.u32(), i.u64()), (0, 0, 0));
        assert_eq!(i.line(), b"");
    }
}
