//! How the slots follow the daemon's cards: a refresh asks ListCards and
//! puts the answer into the slots. A card arriving in a slot is a new
//! insertion (a slot event); a renewed card (same id, new certificate and
//! key) stays the same insertion, so sessions and the login carry over.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use lanyard_proto::agent::{request, response, CardInfo, CardStatus, ListCards, Logout};

use crate::client::{lock, ClientError, Retry};
use crate::library::Library;
use crate::slot::{Insertion, SlotState, Token};

impl Library {
    /// Asks the daemon for the cards and updates every slot. An unreachable
    /// daemon means no card is present; a daemon that is there but answered
    /// late or with an error leaves the slots as they were (this runs on
    /// most calls, and one slow answer must not end every session).
    pub fn refresh(&self) {
        let ticket = self.next_ticket.fetch_add(1, Ordering::AcqRel);
        *lock(&self.last_refresh) = Some(std::time::Instant::now());
        // Not `self.call`: that refreshes after DEVICE_REMOVED.
        let result = self
            .client
            .call(request::Body::ListCards(ListCards {}), Retry::Idempotent);
        self.apply_epoch();
        let cards = match result {
            Ok(response::Body::Cards(list)) => list.cards,
            Err(ClientError::Unreachable { .. } | ClientError::Closed) => Vec::new(),
            Ok(_) | Err(_) => return,
        };
        self.apply_cards(ticket, cards);
    }

    /// Puts `cards` into their slots (the starting view at C_Initialize).
    pub fn update_slots(&self, cards: Vec<CardInfo>) {
        let ticket = self.next_ticket.fetch_add(1, Ordering::AcqRel);
        self.apply_cards(ticket, cards);
    }

    /// Puts the card list numbered `ticket` into the slots, unless a list
    /// asked for later was already applied (concurrent refreshes must not
    /// bring back a card an older answer still showed).
    fn apply_cards(&self, ticket: u64, cards: Vec<CardInfo>) {
        let mut applied = lock(&self.applied_ticket);
        if ticket < *applied {
            return;
        }
        *applied = ticket;
        let mut by_slot: Vec<Option<CardInfo>> = vec![None; self.slots.len()];
        for card in cards.into_iter().filter(presentable) {
            if let Some(place) = by_slot.get_mut(card.slot as usize) {
                *place = Some(card);
            }
        }
        let looked = self.looked.load(Ordering::Acquire);
        let mut stale_logins = Vec::new();
        for (index, card) in by_slot.into_iter().enumerate() {
            let mut state = lock(&self.slots[index]);
            let old_id = state.token.as_ref().map(|t| t.card.card_id.clone());
            match card {
                None => *state = SlotState::default(),
                Some(card) => {
                    let daemon_login = card.logged_in;
                    let card_id = card.card_id.clone();
                    self.put_card(index, &mut state, card);
                    let new_id = state.token.as_ref().map(|t| t.card.card_id.clone());
                    if new_id != old_id {
                        state.insertion = match new_id {
                            Some(_) => {
                                Insertion(self.next_insertion.fetch_add(1, Ordering::AcqRel))
                            }
                            None => Insertion::NONE,
                        };
                        // A card that arrives is a new token: the sessions
                        // and login of an earlier arrival ended with it
                        // (PKCS#11 removal). A login the daemon kept across
                        // a suspension is ended there too.
                        state.logged_in = false;
                        if daemon_login && new_id.is_some() {
                            stale_logins.push(card_id);
                        }
                    } else {
                        state.logged_in = daemon_login;
                    }
                }
            }
            let new_id = state.token.as_ref().map(|t| t.card.card_id.clone());
            drop(state);
            if old_id != new_id && looked {
                let mut events = lock(&self.events);
                if !events.contains(&index) {
                    events.push(index);
                }
            }
        }
        self.looked.store(true, Ordering::Release);
        drop(applied);
        for card_id in stale_logins {
            // Not `self.call`: a refresh must not start another.
            let _ = self
                .client
                .call(request::Body::Logout(Logout { card_id }), Retry::Never);
        }
    }

    /// Updates a slot holding (or receiving) `card`: PIN state always, the
    /// token when its certificate or key changed (a renewal) or another card
    /// came.
    fn put_card(&self, index: usize, state: &mut SlotState, card: CardInfo) {
        let keep = state.token.as_ref().is_some_and(|t| t.same_content(&card));
        state.pin = card.pin.unwrap_or_default();
        state.pin_min_len = card.pin_min_len;
        state.pin_max_len = card.pin_max_len;
        if !keep {
            // A card the module cannot present stays invisible.
            state.token = Token::new(index, card).ok().map(Arc::new);
        }
    }

    /// The next slot with a card event, if any (C_WaitForSlotEvent).
    pub fn take_event(&self) -> Option<usize> {
        let mut events = lock(&self.events);
        (!events.is_empty()).then(|| events.remove(0))
    }
}

/// Whether a listed card is shown as a token. The daemon leaves suspended
/// and revoked cards out of ListCards; one that lists them anyway still
/// does not get a token (an expired card stays: it is still the user's card).
fn presentable(card: &CardInfo) -> bool {
    let status = card
        .lifecycle
        .as_ref()
        .and_then(|l| CardStatus::try_from(l.status).ok());
    !matches!(status, Some(CardStatus::Suspended | CardStatus::Revoked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanyard_proto::agent::Lifecycle;

    fn with_status(status: CardStatus) -> CardInfo {
        CardInfo {
            lifecycle: Some(Lifecycle {
                status: status as i32,
                ..Lifecycle::default()
            }),
            ..CardInfo::default()
        }
    }

    #[test]
    fn suspended_and_revoked_cards_are_not_tokens() {
        assert!(presentable(&CardInfo::default()));
        assert!(presentable(&with_status(CardStatus::Active)));
        assert!(presentable(&with_status(CardStatus::Expired)));
        assert!(presentable(&with_status(CardStatus::Unspecified)));
        assert!(!presentable(&with_status(CardStatus::Suspended)));
        assert!(!presentable(&with_status(CardStatus::Revoked)));
    }
}
