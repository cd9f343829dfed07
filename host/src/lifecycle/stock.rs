//! The bookkeeping of containers made ahead of time, per key: those ready to take and
//! those being made, under a target per key and a cap for all keys together. Shared by
//! the prewarm pool (per skill) and the network holders (per egress network); pure, so
//! its counts are unit-tested without an engine.

use std::collections::{HashMap, VecDeque};

/// What is held ahead of time, per key; callers keep it behind a mutex.
#[derive(Debug)]
pub(crate) struct Stock<T> {
    ready: HashMap<String, VecDeque<T>>,
    making: HashMap<String, usize>,
    closed: bool,
}

impl<T> Default for Stock<T> {
    fn default() -> Self {
        Stock {
            ready: HashMap::new(),
            making: HashMap::new(),
            closed: false,
        }
    }
}

impl<T> Stock<T> {
    /// How many more of `key` to make so that `target` are held for it, with no more
    /// than `cap` held for all keys; those are counted as being made from now on. None
    /// once closed.
    pub(crate) fn reserve(&mut self, key: &str, target: usize, cap: usize) -> usize {
        if self.closed {
            return 0;
        }
        let held = self.ready.values().map(VecDeque::len).sum::<usize>()
            + self.making.values().sum::<usize>();
        let held_for = self.ready(key) + self.making.get(key).copied().unwrap_or(0);
        let wanted = target
            .saturating_sub(held_for)
            .min(cap.saturating_sub(held));
        *self.making.entry(key.to_string()).or_default() += wanted;
        wanted
    }

    /// One of `key`'s being made is done: `item`, or `None` when making it failed. It is
    /// kept ready, or, once the stock is closed, given back for the caller to remove.
    pub(crate) fn made(&mut self, key: &str, item: Option<T>) -> Option<T> {
        if let Some(n) = self.making.get_mut(key) {
            *n = n.saturating_sub(1);
        }
        match item {
            Some(item) if !self.closed => {
                self.ready
                    .entry(key.to_string())
                    .or_default()
                    .push_back(item);
                None
            }
            other => other,
        }
    }

    /// The oldest ready one of `key`.
    pub(crate) fn take(&mut self, key: &str) -> Option<T> {
        self.ready.get_mut(key)?.pop_front()
    }

    /// Ready ones of `key`.
    pub(crate) fn ready(&self, key: &str) -> usize {
        self.ready.get(key).map_or(0, VecDeque::len)
    }

    /// Whether any is being made.
    pub(crate) fn making(&self) -> bool {
        self.making.values().any(|n| *n > 0)
    }

    /// Make no more, and give back every ready one for the caller to remove.
    pub(crate) fn close(&mut self) -> Vec<T> {
        self.closed = true;
        self.ready.drain().flat_map(|(_, ready)| ready).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_counts_ready_and_being_made_against_the_target_and_the_cap() {
        let mut stock = Stock::default();
        assert_eq!(stock.reserve("a", 2, 10), 2);
        // Being made counts: nothing more is wanted.
        assert_eq!(stock.reserve("a", 2, 10), 0);
        assert_eq!(stock.made("a", Some(1)), None);
        assert_eq!(stock.reserve("a", 2, 10), 0);
        // A failure frees its place.
        assert_eq!(stock.made("a", None), None);
        assert_eq!(stock.reserve("a", 2, 10), 1);
        // The cap is for all keys together: "a" holds 2 of 3.
        assert_eq!(stock.reserve("b", 5, 3), 1);
        assert!(stock.making());
        assert_eq!(stock.ready("a"), 1);
    }

    #[test]
    fn ready_ones_are_taken_oldest_first() {
        let mut stock = Stock::default();
        stock.reserve("a", 2, 2);
        stock.made("a", Some(1));
        stock.made("a", Some(2));
        assert!(!stock.making());
        assert_eq!(stock.take("a"), Some(1));
        assert_eq!(stock.take("a"), Some(2));
        assert_eq!(stock.take("a"), None);
        assert_eq!(stock.take("b"), None);
    }

    #[test]
    fn a_closed_stock_makes_nothing_and_gives_everything_back() {
        let mut stock = Stock::default();
        stock.reserve("a", 2, 2);
        stock.made("a", Some(1));
        assert_eq!(stock.close(), vec![1]);
        assert_eq!(stock.reserve("a", 2, 2), 0);
        // One that was being made comes back to be removed, not kept.
        assert_eq!(stock.made("a", Some(2)), Some(2));
        assert_eq!(stock.ready("a"), 0);
        assert!(!stock.making());
    }
}
