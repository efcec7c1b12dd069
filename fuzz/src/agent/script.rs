//! The fuzzer's bytes as a stream of choices for the agent's answers; once
//! they run out every choice is 0, which means an ordinary successful answer.

/// A cursor over the bytes that choose the agent's answers.
#[derive(Default)]
pub struct Script {
    data: Vec<u8>,
    pos: usize,
}

impl Script {
    /// A script over `data`, read from the start.
    pub fn new(data: &[u8]) -> Script {
        Script {
            data: data.to_vec(),
            pos: 0,
        }
    }

    /// The next byte, 0 when none is left.
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }

    /// A flag.
    pub fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// A small number most of the time, any u32 after a 0xff marker.
    pub fn u32(&mut self) -> u32 {
        match self.byte() {
            0xff => (0..4).fold(0, |v, _| (v << 8) | u32::from(self.byte())),
            b => u32::from(b),
        }
    }

    /// Any i64 (eight bytes, big-endian).
    pub fn i64(&mut self) -> i64 {
        (0..8).fold(0i64, |v, _| (v << 8) | i64::from(self.byte()))
    }

    /// Up to 255 bytes, as many as the script has left.
    pub fn bytes(&mut self) -> Vec<u8> {
        let n = usize::from(self.byte());
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = end;
        self.data[start..end].to_vec()
    }

    /// A short string (lossy UTF-8 of [`Script::bytes`]).
    pub fn string(&mut self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
}
