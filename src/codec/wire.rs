//! The bytes the registry's out-of-line texts are made of: a version
//! byte, then little-endian numbers, length-prefixed UTF-8 strings,
//! optional strings and durations, written by [`Writer`] and read back,
//! checked, by [`Reader`].

use std::time::Duration;

/// Bumped when an encoding changes; bytes of another version are not
/// read (they never outlive the server's files of one version).
pub(super) const VERSION: u8 = 2;

pub(super) struct Writer(pub(super) Vec<u8>);

impl Writer {
    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn str(&mut self, v: &str) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v.as_bytes());
    }
    pub(super) fn opt_str(&mut self, v: &Option<String>) {
        match v {
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
            None => self.u8(0),
        }
    }
    pub(super) fn opt_duration(&mut self, v: Option<Duration>) {
        match v {
            Some(d) => {
                self.u8(1);
                self.i64(d.as_micros().min(i64::MAX as u128) as i64);
            }
            None => self.u8(0),
        }
    }
}

pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl Reader<'_> {
    pub(super) fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("stored bytes are cut short".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    pub(super) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(super) fn i64(&mut self) -> Result<i64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(a))
    }
    pub(super) fn str(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "stored text is not UTF-8".into())
    }
    pub(super) fn opt_str(&mut self) -> Result<Option<String>, String> {
        Ok(match self.u8()? {
            0 => None,
            _ => Some(self.str()?),
        })
    }
    pub(super) fn opt_duration(&mut self) -> Result<Option<Duration>, String> {
        Ok(match self.u8()? {
            0 => None,
            _ => Some(Duration::from_micros(self.i64()?.max(0) as u64)),
        })
    }
}
