//! Target identity: the id the driver gives each configured target, and the
//! one map type every per-target table of the agent keys by it.

/// A target as the running agent knows it. Ids are handed out in order and
/// never reused: a target changed by a reload is a new target with a new id,
/// so late events of the old one can never land in the new one's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId(u32);

impl TargetId {
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The id at `index`, or `None` past the 4-billionth target.
    pub fn from_index(index: usize) -> Option<TargetId> {
        u32::try_from(index).ok().map(TargetId)
    }
}

impl std::fmt::Display for TargetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Values by target id; a removed target leaves a hole, never a shift.
#[derive(Debug, Clone)]
pub struct TargetMap<T> {
    by_id: Vec<Option<T>>,
}

impl<T> Default for TargetMap<T> {
    fn default() -> Self {
        TargetMap { by_id: Vec::new() }
    }
}

impl<T> TargetMap<T> {
    /// Stores `value` under the next unused id.
    pub fn push(&mut self, value: T) -> TargetId {
        let id = self.next_id();
        self.by_id.push(Some(value));
        id
    }

    /// The id `push` will hand out next.
    pub fn next_id(&self) -> TargetId {
        // Beyond u32::MAX targets the agent has bigger problems than ids.
        TargetId::from_index(self.by_id.len()).unwrap_or(TargetId(u32::MAX))
    }

    /// Stores `value` under an id handed out elsewhere (by the driver).
    pub fn insert(&mut self, id: TargetId, value: T) {
        if self.by_id.len() <= id.index() {
            self.by_id.resize_with(id.index() + 1, || None);
        }
        self.by_id[id.index()] = Some(value);
    }

    pub fn remove(&mut self, id: TargetId) -> Option<T> {
        self.by_id.get_mut(id.index()).and_then(Option::take)
    }

    pub fn get(&self, id: TargetId) -> Option<&T> {
        self.by_id.get(id.index()).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, id: TargetId) -> Option<&mut T> {
        self.by_id.get_mut(id.index()).and_then(Option::as_mut)
    }

    /// Every live target, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (TargetId, &T)> {
        self.by_id
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some((TargetId(i as u32), v.as_ref()?)))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (TargetId, &mut T)> {
        self.by_id
            .iter_mut()
            .enumerate()
            .filter_map(|(i, v)| Some((TargetId(i as u32), v.as_mut()?)))
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.by_id.iter().flatten()
    }

    /// One past the highest id ever stored: the length a dense per-id
    /// scratch vector needs.
    pub fn id_bound(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused_and_removal_leaves_a_hole() {
        let mut m = TargetMap::default();
        let a = m.push("a");
        let b = m.push("b");
        assert_eq!(m.remove(a), Some("a"));
        let c = m.push("c");
        assert_ne!(c, a);
        assert_eq!(m.get(a), None);
        assert_eq!(m.iter().collect::<Vec<_>>(), [(b, &"b"), (c, &"c")]);
        assert_eq!(m.id_bound(), 3);
        let mut other = TargetMap::default();
        other.insert(c, 1);
        assert_eq!((other.get(c), other.get(a), other.id_bound()), (Some(&1), None, 3));
    }
}
