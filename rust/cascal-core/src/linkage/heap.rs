//! Indexed binary min-heap over keys `0..n` with priorities that can move up or down.

/// Min-heap of the keys `0..n` ordered by `(priority, key)`.
pub struct IndexedHeap {
    priority: Vec<f64>,
    /// Heap array of keys.
    heap: Vec<usize>,
    /// Position of each key in `heap`, `usize::MAX` once removed.
    position: Vec<usize>,
}

impl IndexedHeap {
    /// Heap of keys `0..priority.len()` with the given priorities.
    pub fn new(priority: Vec<f64>) -> Self {
        let n = priority.len();
        let mut h = Self { priority, heap: (0..n).collect(), position: (0..n).collect() };
        for slot in (0..n / 2).rev() {
            h.sift_down(slot);
        }
        h
    }

    #[inline]
    fn less(&self, a: usize, b: usize) -> bool {
        let (pa, pb) = (self.priority[a], self.priority[b]);
        pa < pb || (pa == pb && a < b)
    }

    #[inline]
    fn swap(&mut self, i: usize, j: usize) {
        self.heap.swap(i, j);
        self.position[self.heap[i]] = i;
        self.position[self.heap[j]] = j;
    }

    fn sift_up(&mut self, mut slot: usize) {
        while slot > 0 {
            let parent = (slot - 1) / 2;
            if self.less(self.heap[slot], self.heap[parent]) {
                self.swap(slot, parent);
                slot = parent;
            } else {
                break;
            }
        }
    }

    fn sift_down(&mut self, mut slot: usize) {
        loop {
            let (left, right) = (2 * slot + 1, 2 * slot + 2);
            let mut smallest = slot;
            if left < self.heap.len() && self.less(self.heap[left], self.heap[smallest]) {
                smallest = left;
            }
            if right < self.heap.len() && self.less(self.heap[right], self.heap[smallest]) {
                smallest = right;
            }
            if smallest == slot {
                break;
            }
            self.swap(slot, smallest);
            slot = smallest;
        }
    }

    /// Key with the smallest priority (lowest key on ties), if any.
    pub fn top(&self) -> Option<usize> {
        self.heap.first().copied()
    }

    /// Current priority of `key`.
    #[inline]
    pub fn priority(&self, key: usize) -> f64 {
        self.priority[key]
    }

    /// Change the priority of a key still in the heap.
    pub fn set(&mut self, key: usize, priority: f64) {
        let old = self.priority[key];
        self.priority[key] = priority;
        let slot = self.position[key];
        debug_assert!(slot != usize::MAX, "key was removed");
        if priority < old {
            self.sift_up(slot);
        } else {
            self.sift_down(slot);
        }
    }

    /// Remove `key` from the heap.
    pub fn remove(&mut self, key: usize) {
        let slot = self.position[key];
        debug_assert!(slot != usize::MAX, "key was removed");
        let last = self.heap.len() - 1;
        self.swap(slot, last);
        self.heap.pop();
        self.position[key] = usize::MAX;
        if slot < self.heap.len() {
            self.sift_down(slot);
            self.sift_up(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_priority_then_key() {
        let mut h = IndexedHeap::new(vec![3.0, 1.0, 2.0, 1.0]);
        assert_eq!(h.top(), Some(1));
        h.remove(1);
        assert_eq!(h.top(), Some(3));
        h.set(0, 0.5);
        assert_eq!(h.top(), Some(0));
        h.set(0, 9.0);
        assert_eq!(h.top(), Some(3));
        h.remove(3);
        h.remove(2);
        assert_eq!(h.top(), Some(0));
        h.remove(0);
        assert_eq!(h.top(), None);
    }
}
