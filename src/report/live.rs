//! The live view of a run on a terminal: a spinner per running stage with
//! its elapsed time, under the stage-prefixed log lines.

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::run::events::Event;

pub struct Live {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    style: ProgressStyle,
}

impl Live {
    /// A live view drawing on standard error.
    pub fn new() -> Self {
        let style = ProgressStyle::with_template("{spinner} {prefix} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: HashMap::new(),
            style,
        }
    }

    /// Prints `text` above the bars and updates them for `event`.
    pub fn show(&mut self, event: &Event, text: &str) {
        for line in text.lines() {
            let _ = self.multi.println(line);
        }
        match event {
            Event::StageStarted { stage, .. } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(self.style.clone());
                bar.set_prefix(stage.clone());
                bar.enable_steady_tick(Duration::from_millis(120));
                if let Some(old) = self.bars.insert(stage.clone(), bar) {
                    old.finish_and_clear();
                }
            }
            Event::StageFinished { stage, .. } => {
                if let Some(bar) = self.bars.remove(stage) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
            }
            Event::RunFinished { .. } => {
                for (_, bar) in self.bars.drain() {
                    bar.finish_and_clear();
                }
            }
            _ => {}
        }
    }
}

impl Live {
    /// Takes the bars off the terminal (a question is being asked there);
    /// nothing is drawn until [`Live::resume`].
    pub fn pause(&mut self) {
        let _ = self.multi.clear();
        self.multi.set_draw_target(ProgressDrawTarget::hidden());
    }

    /// Draws the bars again.
    pub fn resume(&mut self) {
        self.multi.set_draw_target(ProgressDrawTarget::stderr());
    }
}

impl Default for Live {
    fn default() -> Self {
        Self::new()
    }
}
