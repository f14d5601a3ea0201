//! Playback of the diagram: live, paused, stepped, slowed down, replayed, scrubbed. A plain
//! state machine over "how many rows are shown", driven by a clock the page ticks.

/// Speeds the `+`/`−` keys step through.
pub const SPEEDS: [f64; 6] = [0.1, 0.25, 0.5, 1.0, 2.0, 4.0];
/// Time between two revealed rows at 1× (slowed down or replaying).
pub const ROW_MS: f64 = 400.0;

#[derive(Debug, Clone, PartialEq)]
pub struct Playback {
    /// Index into [`SPEEDS`].
    speed: usize,
    pub paused: bool,
    /// Rows revealed (when not simply following).
    shown: usize,
    /// Revealing one by one (a replay, or slow motion catching up).
    replaying: bool,
    last_reveal_ms: f64,
}

impl Default for Playback {
    fn default() -> Self {
        Self { speed: 3, paused: false, shown: 0, replaying: false, last_reveal_ms: 0.0 }
    }
}

impl Playback {
    pub fn speed(&self) -> f64 {
        SPEEDS[self.speed]
    }

    /// Shows every row as it comes: not paused, not replaying, not slowed down.
    pub fn following(&self) -> bool {
        !self.paused && !self.replaying && self.speed() >= 1.0
    }

    /// How many of `total` rows to show.
    pub fn visible(&self, total: usize) -> usize {
        if self.following() { total } else { self.shown.min(total) }
    }

    /// How long an arrow takes to travel, in ms (slow motion makes it visible).
    pub fn travel_ms(&self) -> f64 {
        350.0 / self.speed()
    }

    /// Advances the reveal at `now_ms` for `total` rows; answers whether anything changed.
    pub fn tick(&mut self, now_ms: f64, total: usize) -> bool {
        if self.paused {
            return false;
        }
        if self.following() {
            let changed = self.shown != total;
            self.shown = total;
            return changed;
        }
        if self.shown >= total {
            if self.replaying && self.speed() >= 1.0 {
                self.replaying = false;
            }
            self.shown = total;
            return false;
        }
        if now_ms - self.last_reveal_ms >= ROW_MS / self.speed() {
            self.shown += 1;
            self.last_reveal_ms = now_ms;
            if self.shown >= total && self.speed() >= 1.0 {
                self.replaying = false;
            }
            return true;
        }
        false
    }

    /// Space: pause where we are, or go on.
    pub fn toggle_pause(&mut self, total: usize) {
        if !self.paused {
            self.shown = self.visible(total);
        }
        self.paused = !self.paused;
    }

    /// → / PageDown: one more row (pauses first).
    pub fn step(&mut self, total: usize) {
        if !self.paused {
            self.toggle_pause(total);
        }
        self.shown = (self.shown + 1).min(total);
    }

    /// ← / PageUp: one row less (pauses first).
    pub fn back(&mut self, total: usize) {
        if !self.paused {
            self.toggle_pause(total);
        }
        self.shown = self.shown.saturating_sub(1);
    }

    pub fn faster(&mut self, total: usize) {
        let was = self.visible(total);
        self.speed = (self.speed + 1).min(SPEEDS.len() - 1);
        self.shown = was;
    }

    pub fn slower(&mut self, total: usize) {
        let was = self.visible(total);
        self.speed = self.speed.saturating_sub(1);
        self.shown = was;
    }

    /// R: from the first row again, one by one, then live.
    pub fn replay(&mut self, now_ms: f64) {
        self.paused = false;
        self.replaying = true;
        self.shown = 0;
        self.last_reveal_ms = now_ms;
    }

    /// The scrubber: show exactly `n` rows (paused there).
    pub fn scrub(&mut self, n: usize) {
        self.paused = true;
        self.shown = n;
    }

    /// Back to live.
    pub fn live(&mut self) {
        *self = Self { speed: self.speed.max(3), ..Self::default() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_shows_everything_as_it_comes() {
        let mut p = Playback::default();
        assert!(p.following());
        assert_eq!(p.visible(7), 7);
        p.tick(0.0, 9);
        assert_eq!(p.visible(9), 9);
    }

    #[test]
    fn pause_freezes_step_and_back_move_one_row() {
        let mut p = Playback::default();
        p.toggle_pause(5);
        assert_eq!(p.visible(8), 5, "new rows wait while paused");
        p.step(8);
        assert_eq!(p.visible(8), 6);
        p.back(8);
        p.back(8);
        assert_eq!(p.visible(8), 4);
        p.toggle_pause(8);
        assert_eq!(p.visible(8), 8, "resuming catches up");
    }

    #[test]
    fn slow_motion_reveals_one_row_per_interval() {
        let mut p = Playback::default();
        p.toggle_pause(3);
        p.slower(3);
        p.slower(3);
        p.slower(3);
        assert_eq!(p.speed(), 0.1);
        p.toggle_pause(3);
        assert!(!p.following());
        assert_eq!(p.visible(5), 3);
        assert!(!p.tick(3999.0, 5), "4 s per row at 0.1×");
        assert!(p.tick(4000.0, 5));
        assert_eq!(p.visible(5), 4);
        assert_eq!(p.travel_ms(), 3500.0);
    }

    #[test]
    fn replay_starts_over_and_returns_to_live_at_the_end() {
        let mut p = Playback::default();
        p.replay(0.0);
        assert_eq!(p.visible(3), 0);
        for (t, want) in [(400.0, 1), (800.0, 2), (1200.0, 3)] {
            p.tick(t, 3);
            assert_eq!(p.visible(3), want);
        }
        assert!(p.following(), "live again");
        p.scrub(1);
        assert_eq!(p.visible(3), 1);
        p.live();
        assert_eq!(p.visible(3), 3);
    }

    #[test]
    fn speeds_are_bounded() {
        let mut p = Playback::default();
        for _ in 0..10 {
            p.faster(0);
        }
        assert_eq!(p.speed(), 4.0);
        for _ in 0..10 {
            p.slower(0);
        }
        assert_eq!(p.speed(), 0.1);
    }
}
