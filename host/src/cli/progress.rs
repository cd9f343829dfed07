//! Build, push and pull progress on stderr: a spinner per image on a terminal, plain
//! lines otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use skillhost::build::Observer;
use skillhost::engine::{BuildEvent, TransferProgress};
use skillhost::ship::ShipObserver;

/// Where build progress goes, chosen once for the whole run.
pub(crate) struct Progress {
    bars: Option<(MultiProgress, Mutex<HashMap<String, ProgressBar>>)>,
}

impl Progress {
    pub(crate) fn new() -> Arc<Progress> {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| (MultiProgress::new(), Mutex::new(HashMap::new())));
        Arc::new(Progress { bars })
    }

    pub(crate) fn observer(self: &Arc<Self>) -> Observer {
        let this = self.clone();
        Arc::new(move |name, event| this.event(name, event))
    }

    /// An observer of pushes and pulls: a terminal sees each layer's bytes move; plain
    /// output gets a line per layer when it is done, not every step of the bytes.
    pub(crate) fn ship_observer(self: &Arc<Self>) -> ShipObserver {
        let this = self.clone();
        Arc::new(move |name, line: TransferProgress| {
            let moving = line.bytes.is_some();
            if line.status.is_empty() || (this.bars.is_none() && moving) {
                return;
            }
            this.show(name, !moving, &line.to_string());
        })
    }

    fn event(&self, name: &str, event: BuildEvent) {
        match &event {
            BuildEvent::Step(text) => self.show(name, true, text),
            BuildEvent::Output(text) => self.show(name, false, text),
        }
    }

    /// Show `text` for image `name`: a milestone stays visible, other text only flashes
    /// past in the spinner (or is indented, without a terminal).
    fn show(&self, name: &str, milestone: bool, text: &str) {
        let Some((multi, bars)) = &self.bars else {
            if milestone {
                errln!("{name}: {text}");
            } else {
                errln!("{name}:   {text}");
            }
            return;
        };
        // A panic while drawing poisoned it: progress is not worth a second one.
        let Ok(mut bars) = bars.lock() else { return };
        let bar = bars.entry(name.to_string()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(name.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        if milestone {
            let _ = multi.println(format!("{name}: {text}"));
        }
        bar.set_message(text.to_string());
    }

    /// Stop the spinner of `name`, if any, so the final line is clean.
    pub(crate) fn finish(&self, name: &str) {
        let bar = self
            .bars
            .as_ref()
            .and_then(|(_, bars)| bars.lock().ok()?.remove(name));
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    }
}
