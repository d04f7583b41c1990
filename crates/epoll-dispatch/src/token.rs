//! Packed epoll tokens: kind, flow index and generation in one `u64`.

use std::fmt;

/// What sort of file descriptor a [`Token`] names.
///
/// A plain `u8` so that the crates above define their own kinds (TCP flow
/// socket, UDP flow socket, listener, frontend, timer) as constants. The
/// value [`Kind::WAKER`] is reserved for the poller's own waker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kind(pub u8);

impl Kind {
    /// The kind of the poller's own waker; user registrations may not use it.
    pub const WAKER: Kind = Kind(u8::MAX);
}

/// The 64-bit epoll user data attached to a registered file descriptor.
///
/// Layout, most significant bits first: 8 bits kind | 24 bits index |
/// 32 bits generation. The generation lets the event loop tell a readiness
/// event for a freed flow from one for the flow that reused its slot.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(u64);

const KIND_SHIFT: u32 = 56;
const INDEX_SHIFT: u32 = 32;
const INDEX_MASK: u64 = (1 << 24) - 1;
const GENERATION_MASK: u64 = (1 << 32) - 1;

impl Token {
    /// The largest index a token can carry (2^24 - 1).
    pub const MAX_INDEX: u32 = (1 << 24) - 1;

    /// The token under which the poller registers its waker.
    pub const WAKER: Token = Token((Kind::WAKER.0 as u64) << KIND_SHIFT);

    /// Packs `kind`, `index` and `generation`; `None` when `index` does not
    /// fit in 24 bits.
    #[must_use]
    pub const fn new(kind: Kind, index: u32, generation: u32) -> Option<Token> {
        if index > Self::MAX_INDEX {
            return None;
        }
        Some(Token(
            ((kind.0 as u64) << KIND_SHIFT) | ((index as u64) << INDEX_SHIFT) | generation as u64,
        ))
    }

    /// The kind of file descriptor this token names.
    #[must_use]
    pub const fn kind(self) -> Kind {
        // The shift leaves exactly the top 8 bits.
        #[allow(clippy::cast_possible_truncation)]
        let kind = (self.0 >> KIND_SHIFT) as u8;
        Kind(kind)
    }

    /// The flow (or other table) index, always at most [`Token::MAX_INDEX`].
    #[must_use]
    pub const fn index(self) -> u32 {
        // Masked to 24 bits.
        #[allow(clippy::cast_possible_truncation)]
        let index = ((self.0 >> INDEX_SHIFT) & INDEX_MASK) as u32;
        index
    }

    /// The generation of the slot at [`Token::index`] when the token was made.
    #[must_use]
    pub const fn generation(self) -> u32 {
        // Masked to 32 bits.
        #[allow(clippy::cast_possible_truncation)]
        let generation = (self.0 & GENERATION_MASK) as u32;
        generation
    }

    /// The packed value stored in the epoll event's user data.
    #[must_use]
    pub const fn to_u64(self) -> u64 {
        self.0
    }

    /// Unpacks a value produced by [`Token::to_u64`]. Every `u64` is a valid
    /// token, so this cannot fail.
    #[must_use]
    pub const fn from_u64(value: u64) -> Token {
        Token(value)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("kind", &self.kind().0)
            .field("index", &self.index())
            .field("generation", &self.generation())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn index_at_limit_is_accepted_and_above_is_rejected() {
        let token = Token::new(Kind(3), Token::MAX_INDEX, u32::MAX);
        assert_eq!(token.map(Token::index), Some(Token::MAX_INDEX));
        assert_eq!(Token::new(Kind(3), Token::MAX_INDEX + 1, 0), None);
        assert_eq!(Token::new(Kind(3), u32::MAX, 0), None);
    }

    #[test]
    fn layout_is_kind_index_generation_from_the_top() {
        let token = Token::new(Kind(0xAB), 0x00CD_EF01, 0x2345_6789);
        assert_eq!(token.map(Token::to_u64), Some(0xABCD_EF01_2345_6789));
    }

    #[test]
    fn waker_token_has_the_reserved_kind() {
        assert_eq!(Token::WAKER.kind(), Kind::WAKER);
        assert_eq!(Token::WAKER.index(), 0);
        assert_eq!(Token::WAKER.generation(), 0);
    }

    #[test]
    fn debug_shows_the_fields() {
        let token = Token::new(Kind(1), 2, 3);
        assert_eq!(
            format!("{token:?}"),
            "Some(Token { kind: 1, index: 2, generation: 3 })"
        );
    }

    proptest! {
        #[test]
        fn fields_round_trip_through_u64(
            kind in any::<u8>(),
            index in 0..=Token::MAX_INDEX,
            generation in any::<u32>(),
        ) {
            let token = Token::new(Kind(kind), index, generation);
            prop_assert!(token.is_some());
            let Some(token) = token else { return Ok(()) };
            let back = Token::from_u64(token.to_u64());
            prop_assert_eq!(back, token);
            prop_assert_eq!(back.kind(), Kind(kind));
            prop_assert_eq!(back.index(), index);
            prop_assert_eq!(back.generation(), generation);
        }

        #[test]
        fn every_u64_round_trips_through_fields(value in any::<u64>()) {
            let token = Token::from_u64(value);
            let rebuilt = Token::new(token.kind(), token.index(), token.generation());
            prop_assert_eq!(rebuilt.map(Token::to_u64), Some(value));
        }

        #[test]
        fn oversized_index_is_rejected(index in (Token::MAX_INDEX + 1)..=u32::MAX) {
            prop_assert_eq!(Token::new(Kind(0), index, 0), None);
        }
    }
}
