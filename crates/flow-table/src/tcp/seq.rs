//! TCP sequence numbers with the wrapping arithmetic of RFC 9293 §3.4.

use core::fmt;
use core::ops::Add;

/// A TCP sequence number.
///
/// Sequence numbers live on a circle of 2^32 values, so they have no total
/// order: `a` is before `b` when the forward distance from `a` to `b` is
/// below 2^31. `SeqNum` deliberately implements neither `Ord` nor `Sub`;
/// comparisons go through [`SeqNum::lt`] and friends, and distances through
/// [`SeqNum::since`], none of which can panic or overflow.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNum(u32);

impl SeqNum {
    /// Wraps a raw 32-bit sequence number.
    #[must_use]
    pub const fn new(raw: u32) -> Self {
        Self(raw)
    }

    /// The raw 32-bit value, as it goes on the wire.
    #[must_use]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The forward distance from `earlier` to `self`, modulo 2^32.
    ///
    /// When `self` is before `earlier` the result is a large number; callers
    /// check the order first where that matters.
    #[must_use]
    pub const fn since(self, earlier: SeqNum) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }

    /// Signed distance from `other` to `self`, in -2^31..2^31.
    #[must_use]
    #[allow(clippy::cast_possible_wrap)] // reinterpreting the circle distance is the point
    const fn offset_from(self, other: SeqNum) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// True when `self` comes strictly before `other`.
    #[must_use]
    pub const fn lt(self, other: SeqNum) -> bool {
        self.offset_from(other) < 0
    }

    /// True when `self` comes before or equals `other`.
    #[must_use]
    pub const fn le(self, other: SeqNum) -> bool {
        self.offset_from(other) <= 0
    }

    /// True when `self` comes strictly after `other`.
    #[must_use]
    pub const fn gt(self, other: SeqNum) -> bool {
        self.offset_from(other) > 0
    }

    /// True when `self` comes after or equals `other`.
    #[must_use]
    pub const fn ge(self, other: SeqNum) -> bool {
        self.offset_from(other) >= 0
    }

    /// True when `self` lies in the half-open window `[start, start + len)`.
    #[must_use]
    pub const fn in_window(self, start: SeqNum, len: u32) -> bool {
        self.since(start) < len
    }

    /// The later of two sequence numbers.
    #[must_use]
    pub const fn max(self, other: SeqNum) -> SeqNum {
        if self.lt(other) { other } else { self }
    }
}

impl Add<u32> for SeqNum {
    type Output = SeqNum;

    fn add(self, rhs: u32) -> SeqNum {
        SeqNum(self.0.wrapping_add(rhs))
    }
}

impl fmt::Debug for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SeqNum({})", self.0)
    }
}

impl fmt::Display for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn comparisons_hold_across_the_wrap() {
        let before = SeqNum::new(u32::MAX - 5);
        let after = before + 10;
        assert_eq!(after.get(), 4);
        assert!(before.lt(after));
        assert!(after.gt(before));
        assert_eq!(after.since(before), 10);
        assert!(after.in_window(before, 11));
        assert!(!after.in_window(before, 10));
    }

    proptest! {
        #[test]
        fn add_then_since_is_identity(a in any::<u32>(), n in any::<u32>()) {
            let a = SeqNum::new(a);
            prop_assert_eq!((a + n).since(a), n);
        }

        #[test]
        fn order_is_antisymmetric_within_half_circle(a in any::<u32>(), n in 1u32..(1 << 31)) {
            let a = SeqNum::new(a);
            let b = a + n;
            prop_assert!(a.lt(b));
            prop_assert!(!b.lt(a));
            prop_assert!(b.gt(a));
            prop_assert!(a.le(b) && b.ge(a));
            prop_assert_eq!(a.max(b), b);
        }

        #[test]
        fn equal_numbers_are_neither_before_nor_after(a in any::<u32>()) {
            let a = SeqNum::new(a);
            prop_assert!(!a.lt(a) && !a.gt(a) && a.le(a) && a.ge(a));
        }

        #[test]
        fn window_membership_matches_distance(a in any::<u32>(), off in any::<u32>(), len in any::<u32>()) {
            let start = SeqNum::new(a);
            prop_assert_eq!((start + off).in_window(start, len), off < len);
        }
    }
}
