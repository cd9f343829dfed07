//! Build progress on stderr: a spinner per image on a terminal, plain lines otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use skillhost::build::Observer;
use skillhost::engine::BuildEvent;

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

    fn event(&self, name: &str, event: BuildEvent) {
        let (kind, text) = match &event {
            BuildEvent::Step(text) => ("step", text),
            BuildEvent::Output(text) => ("output", text),
        };
        let Some((multi, bars)) = &self.bars else {
            if kind == "step" {
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
        if kind == "step" {
            // Steps stay visible above the spinner; output only flashes past.
            let _ = multi.println(format!("{name}: {text}"));
        }
        bar.set_message(text.clone());
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
