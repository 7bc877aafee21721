//! Choosing the rows a transaction acts on: existing keys skewed toward the hot ones, open
//! carts, and orders still in progress.

use rand::Rng;

use super::World;
use crate::model::*;
use crate::schema::Table;

impl World {
    /// A random existing key of `table` (hot keys more likely).
    pub fn random_key(&mut self, table: Table) -> Option<Key> {
        match table {
            Table::Customers => (!self.customers.is_empty()).then(|| Key::Id(self.pick_customer())),
            Table::Products => Some(Key::Id(self.pick_product())),
            Table::Inventory => Some(Key::Id(self.pick_product())),
            Table::Carts => self.pick_open_cart(false).map(|(_, id)| Key::Id(id)),
            Table::CartItems => {
                let (_, cart) = self.pick_open_cart(true)?;
                let items = &self.cart_contents[&cart];
                Some(Key::Pair(
                    cart,
                    items[self.rng.random_range(0..items.len())],
                ))
            }
            Table::Orders => self.pick_active_order().map(|(_, id)| Key::Id(id)),
            Table::Payments => {
                let (_, order) = self.pick_active_order()?;
                Some(Key::Id(self.order_payment[order as usize - 1]))
            }
        }
    }

    /// Skewed index in `0..n`: low indices (the hot keys) are picked far more often.
    fn skewed(&mut self, n: usize) -> usize {
        let u: f64 = self.rng.random();
        (((u * u * u) * n as f64) as usize).min(n - 1)
    }

    pub(super) fn pick_customer(&mut self) -> i64 {
        let n = self.customers.len();
        let start = self.skewed(n);
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.customers[i].is_some())
            .map_or(1, |i| i as i64 + 1)
    }

    pub(super) fn pick_product(&mut self) -> i64 {
        self.skewed(self.products.len()) as i64 + 1
    }

    pub(super) fn pick_open_cart(&mut self, with_items: bool) -> Option<(usize, i64)> {
        if self.open_carts.is_empty() {
            return None;
        }
        for _ in 0..8 {
            let i = self.rng.random_range(0..self.open_carts.len());
            let id = self.open_carts[i];
            if !with_items || self.cart_contents.get(&id).is_some_and(|c| !c.is_empty()) {
                return Some((i, id));
            }
        }
        None
    }

    /// A recent order still in progress (recent ones move more), dropping finished ones.
    pub(super) fn pick_active_order(&mut self) -> Option<(usize, i64)> {
        while !self.active_orders.is_empty() {
            let n = self.active_orders.len();
            let i = n - 1 - self.skewed(n);
            let id = self.active_orders[i];
            match &self.orders[id as usize - 1] {
                Some(o) if o.status < ORDER_DELIVERED => return Some((i, id)),
                _ => {
                    self.active_orders.swap_remove(i);
                }
            }
        }
        None
    }
}
