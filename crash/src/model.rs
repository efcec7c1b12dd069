//! What the harness was told succeeded (acknowledged), which is all a user
//! can rely on: the cards, their PINs, the failures counted against them.

/// One enrolled card as acknowledged to the harness.
#[derive(Debug, Clone)]
pub struct Card {
    /// The CA's card id.
    pub card_id: String,
    /// The holder name (the token label contains it).
    pub holder: String,
    /// The PIN last acknowledged.
    pub pin: String,
    /// A PIN change that was in flight when a process died: either PIN may hold.
    pub pending_pin: Option<String>,
    /// Wrong PINs acknowledged since the last acknowledged success.
    pub acked_failures: u32,
}

impl Card {
    /// The PINs that may open the card now, acknowledged first.
    pub fn candidate_pins(&self) -> Vec<String> {
        let mut pins = vec![self.pin.clone()];
        if let Some(p) = &self.pending_pin {
            pins.insert(0, p.clone());
        }
        pins
    }
}

/// An enrolment whose outcome was not acknowledged.
#[derive(Debug, Clone)]
pub struct PendingEnrolment {
    /// The card id issued at the CA.
    pub card_id: String,
    /// The holder name.
    pub holder: String,
    /// The enrolment code (a test secret, never printed).
    pub code: String,
    /// The PIN it was enrolled with.
    pub pin: String,
}

/// A fresh 6-digit PIN that differs from `avoid`.
pub fn new_pin(rng: &mut impl rand::Rng, avoid: &[&str]) -> String {
    loop {
        let pin = format!("{:06}", rng.gen_range(0..1_000_000u32));
        if !avoid.contains(&pin.as_str()) {
            return pin;
        }
    }
}
